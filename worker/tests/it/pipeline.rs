//! End-to-end runs of the worker pipeline.

use crate::{CALC_1, GREET_2, World, git, quickstart};
use kiro_protocol::outcome::vars;
use kiro_protocol::{
    FailureClass, Fence, ItemStatus, LeaseStore, OutcomeStatus, PrNumber, ProjectKey, RepoName,
    WorkerOutcome,
};
use std::time::Duration;

fn repo(s: &str) -> RepoName {
    RepoName::parse(s).unwrap()
}

fn class(o: &WorkerOutcome) -> FailureClass {
    o.failure.as_ref().expect("a failure").class
}

#[tokio::test]
async fn a_good_item_is_implemented_pushed_reported_and_done() {
    let w = World::new();
    let fence = w.take_lease("calc").await;
    let before = w.tip("calc", "feature/subtract");
    let cfg = w.config(CALC_1, fence);
    let o = kiro_worker::run_and_write(&cfg, &w.ports).await.unwrap();
    assert_eq!(o.status, OutcomeStatus::Succeeded, "{o:?}");
    assert_eq!(
        (o.tasks_done_before, o.tasks_done_after, o.tasks_total),
        (0, 4, 4)
    );
    assert!(o.coverage.unwrap() >= 80.0);
    assert!(
        o.agent_seconds.is_some_and(|s| s >= 1),
        "the agent's time is measured (rounded up): {o:?}"
    );

    // The commit is on the forge's branch, on top of the old tip, with all tasks done.
    let tip = w.tip("calc", "feature/subtract");
    assert_eq!(o.commit.as_deref(), Some(tip.as_str()));
    let bare = w.bare("calc");
    assert_eq!(git(&bare, &["rev-parse", &format!("{tip}^")]), before);
    let msg = git(&bare, &["log", "-1", "--format=%s%n%an <%ae>", &tip]);
    assert_eq!(
        msg,
        "feat(subtract): complete tasks 1, 2, 2.1, 3 of .kiro/specs/subtract\nkiro-worker <kiro-worker@users.noreply.local>"
    );
    let tasks = git(
        &bare,
        &["show", &format!("{tip}:.kiro/specs/subtract/tasks.md")],
    );
    let parsed = kiro_worker::tasks::parse(&tasks);
    assert_eq!(parsed.len(), 4);
    assert!(parsed.iter().all(|t| t.state.is_done()));
    let files = git(&bare, &["show", "--name-only", "--format=", &tip]);
    assert!(files.contains("test/subtract.test.js"), "{files}");
    assert!(
        !files.contains("coverage/"),
        "coverage output was committed: {files}"
    );

    // One check run, successful, naming the coverage.
    let checks = w.recorded.checks.lock().unwrap().clone();
    assert_eq!(checks.len(), 1);
    assert!(checks[0].success, "{:?}", checks[0]);
    assert!(checks[0].title.contains("coverage"), "{}", checks[0].title);

    // The report and the board.
    let (report, revision) = w
        .pulls
        .report(&repo("acme/calc"), PrNumber(1))
        .await
        .unwrap()
        .expect("a report");
    assert_eq!(revision, 1);
    assert_eq!(report.item.as_str(), "CALC-1");
    assert!(report.markdown.contains("succeeded"), "{}", report.markdown);
    assert!(
        report.markdown.contains("Line coverage: ✅ 100%"),
        "{}",
        report.markdown
    );
    assert!(report.markdown.contains(&tip));
    assert_eq!(
        w.board.status_of("CALC-1").await.unwrap(),
        Some(ItemStatus::Done)
    );

    // The outcome file, sourced by sh, carries the same outcome.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            ". '{}'; printf '%s|%s|%s' \"$KIRO_OUTCOME\" \"$KIRO_COMMIT\" \"$KIRO_TASKS_DONE_AFTER\"",
            cfg.outcome_path().display()
        ))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("succeeded|{tip}|4")
    );
    // The agent's log is in the build directory, not in the commit.
    let log = std::fs::read_to_string(cfg.agent_log()).unwrap();
    assert!(log.contains("scripted stand-in agent, not Kiro"), "{log}");
}

/// Take the project over as another consumer would after this one's lease expired.
async fn take_over(w: &World, project: &str) -> Fence {
    let p = ProjectKey::parse(project).unwrap();
    let view = w.lease.get(&p).await.unwrap().unwrap();
    let held = kiro_protocol::Lease {
        project: p,
        owner: view.owner.clone().unwrap(),
        fence: view.fence,
    };
    w.lease.release(&held).await.unwrap();
    let newer = w.take_lease(project).await;
    assert!(newer > view.fence);
    newer
}

#[tokio::test]
async fn a_stale_fence_at_start_does_nothing() {
    let w = World::new();
    let old = w.take_lease("calc").await;
    take_over(&w, "calc").await;
    let before = w.tip("calc", "feature/subtract");
    let cfg = w.config(CALC_1, old);
    let o = kiro_worker::run(&cfg, &w.ports).await;
    assert_eq!(class(&o), FailureClass::FenceLost, "{o:?}");
    assert_eq!(w.tip("calc", "feature/subtract"), before);
    assert!(!cfg.checkout_dir().exists(), "nothing was cloned");
    assert_eq!(
        w.board.status_of("CALC-1").await.unwrap(),
        Some(ItemStatus::Ready)
    );
}

#[tokio::test]
async fn a_fence_lost_during_the_run_pushes_nothing_and_reports_nothing() {
    let w = World::new();
    let old = w.take_lease("calc").await;
    let started = w.path("agent-started");
    let agent = quickstart().join("agent/scripted-agent.mjs");
    let mut cfg = w.config(CALC_1, old);
    // The agent signals that it runs, then gives the test time to take the project over.
    cfg.agent_cmd = format!(
        "sh -c 'touch {}; sleep 2; exec node {} \"$0\"'",
        started.display(),
        agent.display()
    );
    let before = w.tip("calc", "feature/subtract");
    let ports = w.ports.clone();
    let run = tokio::spawn({
        let cfg = cfg.clone();
        async move { kiro_worker::run(&cfg, &ports).await }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !started.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the agent never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    take_over(&w, "calc").await;
    let o = run.await.unwrap();
    assert_eq!(class(&o), FailureClass::FenceLost, "{o:?}");
    assert!(o.failure.as_ref().unwrap().reason.contains("push"));
    assert_eq!(w.tip("calc", "feature/subtract"), before);
    assert_eq!(o.commit, None);
    assert!(
        w.pulls
            .report(&repo("acme/calc"), PrNumber(1))
            .await
            .unwrap()
            .is_none()
    );
    assert_ne!(
        w.board.status_of("CALC-1").await.unwrap(),
        Some(ItemStatus::Done)
    );
}

#[tokio::test]
async fn coverage_below_the_threshold_fails_and_pushes_nothing() {
    let w = World::new();
    let fence = w.take_lease("greeter").await;
    let before = w.tip("greeter", "feature/farewell");
    let cfg = w.config(GREET_2, fence);
    let o = kiro_worker::run_and_write(&cfg, &w.ports).await.unwrap();
    assert_eq!(o.status, OutcomeStatus::Failed);
    assert_eq!(class(&o), FailureClass::CoverageBelow);
    let reason = &o.failure.as_ref().unwrap().reason;
    assert!(
        reason.starts_with("line coverage ")
            && reason.ends_with("is below the 80% threshold (lcov report coverage/lcov.info)"),
        "{reason}"
    );
    assert!(o.coverage.unwrap() < 80.0);
    assert_eq!(o.commit, None);
    assert_eq!(w.tip("greeter", "feature/farewell"), before);
    let checks = w.recorded.checks.lock().unwrap().clone();
    assert_eq!(checks.len(), 1);
    assert!(!checks[0].success);
    assert!(
        checks[0].title.starts_with("coverage-below: "),
        "{}",
        checks[0].title
    );
    // The failure is on the pull request; the board is left for the consumer.
    let (report, _) = w
        .pulls
        .report(&repo("acme/greeter"), PrNumber(2))
        .await
        .unwrap()
        .expect("a failure report");
    assert!(
        report.markdown.contains("`coverage-below`"),
        "{}",
        report.markdown
    );
    assert_eq!(
        w.board.status_of("GREET-2").await.unwrap(),
        Some(ItemStatus::InProgress)
    );
    let text = std::fs::read_to_string(cfg.outcome_path()).unwrap();
    assert!(
        text.contains("export KIRO_FAILURE_CLASS='coverage-below'"),
        "{text}"
    );
}

#[tokio::test]
async fn a_branch_that_moved_is_a_push_conflict() {
    let w = World::new();
    let fence = w.take_lease("calc").await;
    // A clone that will push a competing commit while the agent runs.
    let other = w.path("other");
    git(
        w.root.path(),
        &[
            "clone",
            "--quiet",
            "--branch",
            "feature/subtract",
            w.bare("calc").to_str().unwrap(),
            other.to_str().unwrap(),
        ],
    );
    std::fs::write(other.join("NOTES.md"), "someone else was here\n").unwrap();
    git(&other, &["add", "NOTES.md"]);
    git(&other, &["commit", "--quiet", "-m", "competing change"]);
    let competing = git(&other, &["rev-parse", "HEAD"]);
    let agent = quickstart().join("agent/scripted-agent.mjs");
    let mut cfg = w.config(CALC_1, fence);
    cfg.agent_cmd = format!(
        "sh -c 'git -C {} push --quiet origin feature/subtract && exec node {} \"$0\"'",
        other.display(),
        agent.display()
    );
    let o = kiro_worker::run(&cfg, &w.ports).await;
    assert_eq!(class(&o), FailureClass::PushConflict, "{o:?}");
    let reason = &o.failure.as_ref().unwrap().reason;
    assert!(reason.contains("feature/subtract"), "{reason}");
    eprintln!("push conflict: {reason}");
    assert_eq!(w.tip("calc", "feature/subtract"), competing);
    assert_ne!(
        w.board.status_of("CALC-1").await.unwrap(),
        Some(ItemStatus::Done)
    );
}

#[tokio::test]
async fn an_agent_past_its_time_limit_is_killed_with_its_group() {
    let w = World::new();
    let fence = w.take_lease("calc").await;
    let pidfile = w.path("agent.pid");
    let mut cfg = w.config(CALC_1, fence);
    cfg.agent_cmd = format!(
        "sh -c 'echo $$ > {}; sleep 30 & sleep 30'",
        pidfile.display()
    );
    cfg.agent_timeout = Duration::from_secs(1).into();
    let started = std::time::Instant::now();
    let o = kiro_worker::run(&cfg, &w.ports).await;
    assert!(started.elapsed() < Duration::from_secs(25));
    assert_eq!(class(&o), FailureClass::AgentFailed, "{o:?}");
    assert_eq!(
        o.failure.as_ref().unwrap().reason,
        "agent timed out after 1s"
    );
    let pgid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let pgid = rustix::process::Pid::from_raw(pgid).unwrap();
    // Every process of the group (the shell and both sleeps) is gone.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while rustix::process::test_kill_process_group(pgid).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the process group survived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_agent_that_changes_nothing_made_no_progress() {
    let w = World::new();
    let fence = w.take_lease("calc").await;
    let mut cfg = w.config(CALC_1, fence);
    cfg.agent_cmd = "true".into();
    let o = kiro_worker::run(&cfg, &w.ports).await;
    assert_eq!(class(&o), FailureClass::AgentFailed);
    assert_eq!(o.failure.as_ref().unwrap().reason, "agent made no progress");
    cfg.agent_cmd = "sh -c 'exit 4'".into();
    let o = kiro_worker::run(&cfg, &w.ports).await;
    assert_eq!(class(&o), FailureClass::PermanentInput);
}

#[tokio::test]
async fn hostile_values_are_permanent_input_naming_the_field() {
    let w = World::new();
    let marker = w.path("pwned");
    let mut cfg = w.config(CALC_1, Fence(1));
    cfg.branch = Some(format!("a;rm -rf /;touch {}", marker.display()));
    let o = kiro_worker::run_and_write(&cfg, &w.ports).await.unwrap();
    assert_eq!(class(&o), FailureClass::PermanentInput);
    assert!(
        o.failure
            .as_ref()
            .unwrap()
            .reason
            .starts_with("invalid branch \"a;rm"),
        "{o:?}"
    );
    assert!(!marker.exists());
    assert!(!cfg.checkout_dir().exists(), "nothing was cloned");
    assert!(cfg.outcome_path().exists());

    let mut cfg = w.config(CALC_1, Fence(1));
    cfg.spec = Some("../../etc".into());
    let o = kiro_worker::run(&cfg, &w.ports).await;
    assert!(o.failure.unwrap().reason.starts_with("invalid spec"));

    // A branch that parses but does not exist on the remote.
    let fence = w.take_lease("calc").await;
    let mut cfg = w.config(CALC_1, fence);
    cfg.branch = Some("feature/nope".into());
    let o = kiro_worker::run(&cfg, &w.ports).await;
    assert_eq!(class(&o), FailureClass::PermanentInput);
    assert_eq!(
        o.failure.unwrap().reason,
        "branch feature/nope not found on the remote"
    );
}

#[test]
fn buildspec_exports_exactly_the_outcome_variables() {
    let text = std::fs::read_to_string(quickstart().join("../../buildspec.yml")).unwrap();
    let section = text
        .split("exported-variables:")
        .nth(1)
        .expect("an exported-variables section");
    let listed: Vec<&str> = section
        .lines()
        .skip(1)
        .map(str::trim)
        .take_while(|l| l.starts_with("- "))
        .map(|l| &l[2..])
        .collect();
    assert_eq!(listed, vars::ALL);
    assert!(text.contains("KIRO_OUTCOME_FILE: kiro-outcome.env"));
    assert!(text.contains("kiro-worker run"));
}

#[tokio::test]
async fn junit_failures_fail_the_tests_even_when_the_command_passed() {
    let w = World::new();
    let fence = w.take_lease("calc").await;
    let junit = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/junit/jest-junit.xml");
    let mut cfg = w.config(CALC_1, fence);
    cfg.test_cmd = format!(
        "npm test --silent && mkdir -p reports && cp '{}' reports/junit.xml",
        junit.display()
    );
    cfg.junit_path = Some("reports/junit.xml".into());
    let before = w.tip("calc", "feature/subtract");
    let o = kiro_worker::run(&cfg, &w.ports).await;
    assert_eq!(class(&o), FailureClass::TestsFailed, "{o:?}");
    assert_eq!(
        o.failure.as_ref().unwrap().reason,
        "tests failed (exit code 0, but the JUnit report has 7 tests, 1 failures, 0 errors, 1 skipped)"
    );
    assert_eq!(w.tip("calc", "feature/subtract"), before, "nothing pushed");
    let (report, _) = w
        .pulls
        .report(&repo("acme/calc"), PrNumber(1))
        .await
        .unwrap()
        .expect("a failure report");
    assert!(
        report
            .markdown
            .contains("— 7 tests, 1 failures, 0 errors, 1 skipped"),
        "{}",
        report.markdown
    );
}

/// A new attempt on work already pushed (the first build pushed, then lost its fence
/// before it could report) recognises it: the agent is not run again, nothing new is
/// pushed, the one report is edited, and the outcome names the pushed commit.
#[tokio::test]
async fn a_new_attempt_on_work_already_pushed_reports_it_and_redoes_nothing() {
    let w = World::new();
    let first = w.take_lease("calc").await;
    let cfg = w.config(CALC_1, first);
    let o = kiro_worker::run_and_write(&cfg, &w.ports).await.unwrap();
    assert_eq!(o.status, OutcomeStatus::Succeeded, "{o:?}");
    let pushed = w.tip("calc", "feature/subtract");
    std::fs::remove_file(cfg.agent_log()).unwrap();

    let second = take_over(&w, "calc").await;
    let mut cfg = w.config(CALC_1, second);
    cfg.build_dir = cfg.build_dir.join("again");
    let o = kiro_worker::run_and_write(&cfg, &w.ports).await.unwrap();
    assert_eq!(o.status, OutcomeStatus::Succeeded, "{o:?}");
    assert_eq!(
        (o.tasks_done_before, o.tasks_done_after, o.tasks_total),
        (4, 4, 4)
    );
    assert_eq!(
        w.tip("calc", "feature/subtract"),
        pushed,
        "nothing new pushed"
    );
    assert_eq!(
        o.commit.as_deref(),
        Some(pushed.as_str()),
        "the pushed commit is named"
    );
    assert!(!cfg.agent_log().exists(), "the agent did not run again");
    let (report, revision) = w
        .pulls
        .report(&repo("acme/calc"), PrNumber(1))
        .await
        .unwrap()
        .expect("a report");
    assert_eq!(revision, 2, "the one report was edited");
    assert!(report.markdown.contains(&pushed), "{}", report.markdown);
}

/// The worker moves a card only from the status it expects: a card a human moved out of
/// the active statuses before the run is neither set In Progress nor Done.
#[tokio::test]
async fn a_card_moved_away_is_left_where_the_human_put_it() {
    use kiro_protocol::Board;
    let w = World::new();
    let fence = w.take_lease("calc").await;
    w.board
        .set_status("CALC-1", ItemStatus::Failed, Some("parked by a human"))
        .await
        .unwrap();
    let cfg = w.config(CALC_1, fence);
    let o = kiro_worker::run_and_write(&cfg, &w.ports).await.unwrap();
    assert_eq!(o.status, OutcomeStatus::Succeeded, "{o:?}");
    assert_eq!(
        w.board.status_of("CALC-1").await.unwrap(),
        Some(ItemStatus::Failed),
        "neither In Progress nor Done was written over the human's move"
    );
}
