//! The repository's settings file (`.kiro/codebuild-worker.toml`), end to end through the
//! pipeline: its test command, threshold, setup commands, coverage and JUnit globs and
//! never-commit paths replace the deployment's; the agent cannot change them; a bad file
//! is `permanent-input` naming repository, file and key, and pushes nothing.

use crate::{CALC_1, GREET_2, World, git, quickstart};
use kiro_protocol::{FailureClass, OutcomeStatus, PrNumber, RepoName, WorkerOutcome};

const FILE: &str = ".kiro/codebuild-worker.toml";

fn reason(o: &WorkerOutcome) -> &str {
    &o.failure.as_ref().expect("a failure").reason
}

/// Commit `files` on `branch` of `acme/<name>`, as the repository's owners would.
fn commit_on(w: &World, name: &str, branch: &str, files: &[(&str, &str)]) {
    let work = w.path(&format!("{name}-edit"));
    git(
        w.root.path(),
        &[
            "clone",
            "--quiet",
            "--branch",
            branch,
            w.bare(name).to_str().unwrap(),
            work.to_str().unwrap(),
        ],
    );
    for (path, text) in files {
        let p = work.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        git(&work, &["add", "-f", path]);
    }
    git(
        &work,
        &["commit", "--quiet", "-m", "the repository's settings"],
    );
    git(&work, &["push", "--quiet", "origin", branch]);
}

/// calc's own CI script: needs what setup installed, runs the real tests, writes two
/// lcov shards (1/2 and 2/2 lines: 75% merged) and two JUnit reports (one case each).
const CI_SH: &str = r#"set -e
test "$(cat .deps/marker)" = ready
node --test
mkdir -p reports/a reports/b
printf 'SF:src/a.js\nDA:1,1\nDA:2,0\nend_of_record\n' > reports/a/lcov.info
printf 'SF:src/b.js\nDA:1,1\nDA:2,1\nend_of_record\n' > reports/b/lcov.info
printf '<testsuites><testsuite name="a"><testcase name="x"/></testsuite></testsuites>' > reports/a/junit.xml
printf '<testsuites><testsuite name="b"><testcase name="y"/><testcase name="z"><skipped/></testcase></testsuite></testsuites>' > reports/b/junit.xml
"#;

const CALC_SETTINGS: &str = r#"# calc's settings
setup = ["mkdir -p .deps && echo ready > .deps/marker"]
setup_timeout = "1m"
test_command = "sh scripts/ci.sh"
test_timeout = "2m"
coverage_threshold = 70
junit = ["reports/*/junit.xml"]
never_commit = [".deps", "notes/*.tmp"]
agent_timeout = "2m"

[[coverage]]
format = "lcov"
path = "reports/*/lcov.info"
"#;

/// Before: one test command and threshold for every repository. The deployment's
/// command here would fail and its 80% threshold would refuse the 75% the repository's
/// own settings accept.
#[tokio::test]
async fn the_repositorys_file_sets_its_test_command_threshold_reports_and_setup() {
    let w = World::new();
    commit_on(
        &w,
        "calc",
        "feature/subtract",
        &[(FILE, CALC_SETTINGS), ("scripts/ci.sh", CI_SH)],
    );
    let fence = w.take_lease("calc").await;
    let mut cfg = w.config(CALC_1, fence);
    cfg.test_cmd = "echo the deployment's tests must not run; exit 9".into();
    cfg.coverage_threshold = 80.0;
    // The agent tries to lower the bar for later runs and leaves scratch notes.
    let agent = quickstart().join("agent/scripted-agent.mjs");
    cfg.agent_cmd = format!(
        "sh -c 'echo \"coverage_threshold = 0\" >> {FILE} && mkdir -p notes && echo x > \
         notes/a.tmp && echo kept > notes/b.md && exec node {} \"$0\"'",
        agent.display()
    );
    let o = kiro_worker::run_and_write(&cfg, &w.ports).await.unwrap();
    assert_eq!(o.status, OutcomeStatus::Succeeded, "{o:?}");
    assert_eq!(o.coverage, Some(75.0));

    let (report, _) = w
        .pulls
        .report(&RepoName::parse("acme/calc").unwrap(), PrNumber(1))
        .await
        .unwrap()
        .expect("a report");
    assert!(
        report
            .markdown
            .contains("— 3 tests, 0 failures, 0 errors, 1 skipped"),
        "{}",
        report.markdown
    );
    assert!(
        report.markdown.contains("75% (threshold 70%)"),
        "{}",
        report.markdown
    );
    let setup_log = std::fs::read_to_string(cfg.setup_log(1)).unwrap();
    assert_eq!(setup_log, "", "the setup command prints nothing");

    // What was pushed: the agent's work and its notes, but not the settings file's
    // change, the setup's output, the reports or the never-commit glob's matches.
    let bare = w.bare("calc");
    let tip = w.tip("calc", "feature/subtract");
    let files = git(&bare, &["show", "--name-only", "--format=", &tip]);
    assert!(files.contains("test/subtract.test.js"), "{files}");
    assert!(files.contains("notes/b.md"), "{files}");
    for never in [FILE, ".deps", "reports/", "notes/a.tmp"] {
        assert!(!files.contains(never), "{never} was committed: {files}");
    }
    assert_eq!(
        git(&bare, &["show", &format!("{tip}:{FILE}")]),
        CALC_SETTINGS.trim_end()
    );
}

/// A repository whose file only lowers the threshold: everything else stays the
/// deployment's (the quick start's GREET-2, at about 36% below the deployment's 80%,
/// passes the file's 30%).
#[tokio::test]
async fn a_file_setting_one_key_keeps_the_deployments_other_settings() {
    let w = World::new();
    commit_on(
        &w,
        "greeter",
        "feature/farewell",
        &[(FILE, "coverage_threshold = 30\n")],
    );
    let fence = w.take_lease("greeter").await;
    let cfg = w.config(GREET_2, fence);
    let o = kiro_worker::run(&cfg, &w.ports).await;
    assert_eq!(o.status, OutcomeStatus::Succeeded, "{o:?}");
    let c = o.coverage.unwrap();
    assert!((30.0..80.0).contains(&c), "{c}");
}

/// A bad file stops the run before the agent: permanent-input naming the repository,
/// the file and the key, on the pull request too; nothing is pushed.
#[tokio::test]
async fn a_bad_settings_file_is_permanent_input_naming_the_key_and_pushes_nothing() {
    let w = World::new();
    commit_on(
        &w,
        "calc",
        "feature/subtract",
        &[(
            FILE,
            "[[coverage]]\nformat = \"lcov\"\n\n[[coverage]]\nformat = \"lcovv\"\n",
        )],
    );
    let before = w.tip("calc", "feature/subtract");
    let fence = w.take_lease("calc").await;
    let cfg = w.config(CALC_1, fence);
    let o = kiro_worker::run_and_write(&cfg, &w.ports).await.unwrap();
    assert_eq!(o.status, OutcomeStatus::Failed);
    assert_eq!(
        o.failure.as_ref().unwrap().class,
        FailureClass::PermanentInput
    );
    assert_eq!(
        reason(&o),
        "acme/calc: .kiro/codebuild-worker.toml: coverage[1].format: unknown format \
         \"lcovv\" (expected one of auto, lcov, cobertura, istanbul, llvm-cov, clover, \
         istanbul-final, coverage-py, go, jacoco)"
    );
    assert_eq!(w.tip("calc", "feature/subtract"), before, "nothing pushed");
    assert!(!cfg.agent_log().exists(), "the agent never ran");
    let (report, _) = w
        .pulls
        .report(&RepoName::parse("acme/calc").unwrap(), PrNumber(1))
        .await
        .unwrap()
        .expect("a failure report");
    assert!(
        report.markdown.contains("coverage[1].format"),
        "{}",
        report.markdown
    );
}

/// A coverage glob that matches nothing is `report-missing` naming the glob and the key.
#[tokio::test]
async fn a_coverage_glob_matching_nothing_names_the_glob_and_the_key() {
    let w = World::new();
    commit_on(
        &w,
        "calc",
        "feature/subtract",
        &[(FILE, "[[coverage]]\npath = \"packages/*/lcov.info\"\n")],
    );
    let fence = w.take_lease("calc").await;
    let cfg = w.config(CALC_1, fence);
    let o = kiro_worker::run(&cfg, &w.ports).await;
    assert_eq!(
        o.failure.as_ref().unwrap().class,
        FailureClass::ReportMissing,
        "{o:?}"
    );
    assert_eq!(
        reason(&o),
        "the tests wrote no coverage report matching packages/*/lcov.info; make the test \
         command write its report there, or change coverage[0].path in \
         .kiro/codebuild-worker.toml to where it does"
    );
}
