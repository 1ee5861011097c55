//! The honest gates, end to end: only reports this test run wrote count (a report
//! committed earlier, written by the agent or copied with an old time never does), a
//! missing report is `report-missing` naming the paths and the setting, and reports and
//! test artefacts never reach the pushed branch, `.gitignore` or not.

use crate::{CALC_1, World, git, quickstart};
use kiro_protocol::{FailureClass, OutcomeStatus, WorkerOutcome};

fn class(o: &WorkerOutcome) -> FailureClass {
    o.failure.as_ref().expect("a failure").class
}

fn reason(o: &WorkerOutcome) -> &str {
    &o.failure.as_ref().expect("a failure").reason
}

/// An lcov report claiming every line of calc.js ran.
const FULL_LCOV: &str = "SF:src/calc.js\nDA:1,1\nDA:2,1\nLF:2\nLH:2\nend_of_record\n";

/// calc's tests without any coverage report.
const TESTS_WITHOUT_COVERAGE: &str = "node --test";

/// calc's tests writing node's lcov report and a JUnit report (node's own reporters).
const TESTS_WITH_REPORTS: &str = "mkdir -p coverage && node --test --experimental-test-coverage \
     --test-reporter=spec --test-reporter-destination=stdout \
     --test-reporter=lcov --test-reporter-destination=coverage/lcov.info \
     --test-reporter=junit --test-reporter-destination=junit.xml";

/// Commit `files` (forced past `.gitignore`) and remove `.gitignore` when asked, on
/// calc's `feature/subtract`, as an earlier commit of the repository would.
fn commit_on_calc(w: &World, files: &[(&str, &str)], drop_gitignore: bool) {
    let work = w.path("calc-edit");
    git(
        w.root.path(),
        &[
            "clone",
            "--quiet",
            "--branch",
            "feature/subtract",
            w.bare("calc").to_str().unwrap(),
            work.to_str().unwrap(),
        ],
    );
    for (path, text) in files {
        let p = work.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        git(&work, &["add", "-f", path]);
    }
    if drop_gitignore {
        git(&work, &["rm", "--quiet", ".gitignore"]);
    }
    git(&work, &["commit", "--quiet", "-m", "an earlier commit"]);
    git(&work, &["push", "--quiet", "origin", "feature/subtract"]);
}

/// Before: the committed 100% report passed the gate while the tests wrote none.
#[tokio::test]
async fn a_report_committed_earlier_never_counts() {
    let w = World::new();
    commit_on_calc(&w, &[("coverage/lcov.info", FULL_LCOV)], false);
    let fence = w.take_lease("calc").await;
    let before = w.tip("calc", "feature/subtract");
    let mut cfg = w.config(CALC_1, fence);
    cfg.test_cmd = TESTS_WITHOUT_COVERAGE.into();
    let o = kiro_worker::run_and_write(&cfg, &w.ports).await.unwrap();
    assert_eq!(o.status, OutcomeStatus::Failed, "{o:?}");
    assert_eq!(class(&o), FailureClass::ReportMissing, "{o:?}");
    let r = reason(&o);
    assert!(
        r.starts_with(
            "the tests wrote no coverage report: searched coverage/lcov.info, lcov.info, \
             coverage.lcov, coverage/cobertura-coverage.xml"
        ),
        "{r}"
    );
    assert!(r.contains("target/site/jacoco/jacoco.xml"), "{r}");
    assert!(
        r.ends_with(
            "set --coverage-path (KIRO_COVERAGE_PATH) to the report your test command \
             writes (and --coverage-format (KIRO_COVERAGE_FORMAT) if its format is not \
             detected)"
        ),
        "{r}"
    );
    assert_eq!(o.coverage, None);
    assert_eq!(w.tip("calc", "feature/subtract"), before, "nothing pushed");
    let text = std::fs::read_to_string(cfg.outcome_path()).unwrap();
    assert!(
        text.contains("export KIRO_FAILURE_CLASS='report-missing'"),
        "{text}"
    );
}

/// Before: the report the agent wrote passed the gate.
#[tokio::test]
async fn a_report_the_agent_wrote_never_counts() {
    let w = World::new();
    let fence = w.take_lease("calc").await;
    let agent = quickstart().join("agent/scripted-agent.mjs");
    let mut cfg = w.config(CALC_1, fence);
    cfg.agent_cmd = format!(
        "sh -c 'mkdir -p reports && printf \"{}\" > reports/cov.info && exec node {} \"$0\"'",
        FULL_LCOV.replace('\n', "\\n"),
        agent.display()
    );
    cfg.test_cmd = TESTS_WITHOUT_COVERAGE.into();
    cfg.coverage_path = Some("reports/cov.info".into());
    let o = kiro_worker::run(&cfg, &w.ports).await;
    assert_eq!(class(&o), FailureClass::ReportMissing, "{o:?}");
    assert_eq!(
        reason(&o),
        "the tests wrote no coverage report: searched reports/cov.info; make the test \
         command write its report there, or change --coverage-path (KIRO_COVERAGE_PATH) \
         to where it does"
    );
}

/// Before: a report copied with its old time (`cp -p`, an unpacked archive) counted.
#[tokio::test]
async fn a_report_older_than_the_test_run_never_counts() {
    let w = World::new();
    let stash = w.path("old-lcov.info");
    std::fs::write(&stash, FULL_LCOV).unwrap();
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&stash)
        .unwrap()
        .set_modified(hour_ago)
        .unwrap();
    let fence = w.take_lease("calc").await;
    let mut cfg = w.config(CALC_1, fence);
    cfg.test_cmd = format!(
        "{TESTS_WITHOUT_COVERAGE} && mkdir -p coverage && cp -p '{}' coverage/lcov.info",
        stash.display()
    );
    let o = kiro_worker::run(&cfg, &w.ports).await;
    assert_eq!(class(&o), FailureClass::ReportMissing, "{o:?}");
    let r = reason(&o);
    assert!(
        r.starts_with(
            "the coverage report at coverage/lcov.info was not written by this test run \
             (modified "
        ),
        "{r}"
    );
    assert!(
        r.contains("set --coverage-path (KIRO_COVERAGE_PATH)"),
        "{r}"
    );
}

/// Before: a configured JUnit report the tests never wrote was only a warning.
#[tokio::test]
async fn a_configured_junit_report_the_tests_did_not_write_is_report_missing() {
    let w = World::new();
    let fence = w.take_lease("calc").await;
    let mut cfg = w.config(CALC_1, fence);
    cfg.junit_path = Some("reports/junit.xml".into());
    let o = kiro_worker::run(&cfg, &w.ports).await;
    assert_eq!(class(&o), FailureClass::ReportMissing, "{o:?}");
    assert_eq!(
        reason(&o),
        "the tests passed but wrote no JUnit report at reports/junit.xml (--junit-path \
         (KIRO_JUNIT_PATH)): make the test command write it there, or change --junit-path \
         (KIRO_JUNIT_PATH) (unset, the tests are judged by their exit code alone)"
    );
}

/// Before: with no `.gitignore`, the coverage report, the JUnit report and the other
/// artefacts of the test run were committed and pushed (and a report committed earlier
/// was rewritten by the run's).
#[tokio::test]
async fn reports_and_test_artefacts_are_never_pushed_even_without_a_gitignore() {
    let w = World::new();
    commit_on_calc(&w, &[("lcov.info", FULL_LCOV)], true);
    let fence = w.take_lease("calc").await;
    let before = w.tip("calc", "feature/subtract");
    let mut cfg = w.config(CALC_1, fence);
    cfg.test_cmd = format!(
        "{TESTS_WITH_REPORTS} && cp coverage/lcov.info lcov.info && mkdir -p .nyc_output \
         test-results && echo {{}} > .nyc_output/run.json && echo data > .coverage && cp \
         junit.xml test-results/junit.xml"
    );
    cfg.junit_path = Some("junit.xml".into());
    let o = kiro_worker::run(&cfg, &w.ports).await;
    assert_eq!(o.status, OutcomeStatus::Succeeded, "{o:?}");
    assert!(o.coverage.unwrap() >= 80.0);
    let tip = w.tip("calc", "feature/subtract");
    assert_eq!(o.commit.as_deref(), Some(tip.as_str()));
    let bare = w.bare("calc");
    let changed = git(&bare, &["diff", "--name-only", &before, &tip]);
    let changed: Vec<&str> = changed.lines().collect();
    assert!(changed.contains(&"test/subtract.test.js"), "{changed:?}");
    let files = git(&bare, &["ls-tree", "-r", "--name-only", &tip]);
    let files: Vec<&str> = files.lines().collect();
    assert!(!files.contains(&".gitignore"), "{files:?}");
    for artefact in [
        "coverage/",
        "junit.xml",
        ".nyc_output/",
        ".coverage",
        "test-results/",
        "lcov.info",
    ] {
        assert!(
            !changed.iter().any(|f| f.starts_with(artefact)),
            "{artefact} was pushed: {changed:?}"
        );
    }
    for artefact in [
        "coverage/",
        "junit.xml",
        ".nyc_output/",
        ".coverage",
        "test-results/",
    ] {
        assert!(
            !files.iter().any(|f| f.starts_with(artefact)),
            "{artefact} is on the branch: {files:?}"
        );
    }
    // The report committed earlier is left as it was: neither rewritten nor deleted.
    assert_eq!(
        git(&bare, &["show", &format!("{tip}:lcov.info")]),
        FULL_LCOV.trim_end()
    );
    // The run's reports were written, and stay in the checkout for the build's reports.
    assert!(cfg.checkout_dir().join("coverage/lcov.info").is_file());
    assert!(cfg.checkout_dir().join("junit.xml").is_file());
}
