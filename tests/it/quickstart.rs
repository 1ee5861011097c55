//! The README's first command, run in a temp dir: final states, pushed commits in the
//! bare remotes, pull-request reports, the dead letter and the rejected item.

use crate::support::*;
use kiro_protocol::{FailureClass, ItemStatus, JobState};
use std::process::Command;

#[tokio::test(flavor = "multi_thread")]
async fn the_quick_start_runs_the_whole_pipeline() {
    let bin = bin_dir();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let out = Command::new("bash")
        .arg(example().join("run.sh"))
        .env("KIRO_STATE_DIR", &state)
        .env("KIRO_QUICKSTART_SKIP_BUILD", "1")
        .env("KIRO_BIN_DIR", &bin)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "run.sh failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    // The summary table.
    assert!(
        stdout.contains("PROJECT") && stdout.contains("COVERAGE"),
        "{stdout}"
    );

    let s = State::open(&state);
    for (item, _) in [("CALC-1", 1), ("CALC-2", 2), ("GREET-1", 1)] {
        let job = s
            .job(item)
            .await
            .unwrap_or_else(|| panic!("no job for {item}\n{stderr}"));
        assert_eq!(job.state, JobState::Succeeded, "{item}: {job:?}\n{stderr}");
        assert_eq!(job.attempts, 1, "{item}");
        assert!(
            job.coverage.unwrap_or(0.0) >= 80.0,
            "{item}: {:?}",
            job.coverage
        );
        assert_eq!(
            s.board_status(item).await.0,
            Some(ItemStatus::Done),
            "{item}"
        );
        assert_eq!(s.builds_of(item), ["SUCCEEDED"], "{item}: one build");
    }

    // The failure on purpose: coverage below the threshold, dead-lettered at once.
    let greet2 = s.job("GREET-2").await.expect("GREET-2 job");
    assert_eq!(greet2.state, JobState::DeadLettered);
    assert_eq!(
        greet2.last_failure.as_ref().map(|f| f.class),
        Some(FailureClass::CoverageBelow)
    );
    let dlq = s.dead_letters().await;
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    assert_eq!(dlq[0].group, "greeter");
    assert_eq!(dlq[0].letter.class, FailureClass::CoverageBelow);
    assert!(
        dlq[0].letter.reason.contains("below"),
        "{}",
        dlq[0].letter.reason
    );
    let (status, note) = s.board_status("GREET-2").await;
    assert_eq!(status, Some(ItemStatus::Failed));
    assert!(note.unwrap_or_default().contains("coverage-below"));

    // The hostile item: rejected by the producer, never enqueued, marked on the board.
    assert!(s.job("BAD-1").await.is_none());
    let (status, note) = s.board_status("BAD-1").await;
    assert_eq!(status, Some(ItemStatus::Failed));
    assert!(
        note.unwrap_or_default().contains("branch"),
        "the note names the field"
    );

    // Pushed commits: the worker's commit on each succeeded branch, tasks all done.
    let calc = s.remote("calc");
    let (msg, author, tasks) = tip(&calc, "feature/subtract", ".kiro/specs/subtract/tasks.md");
    assert!(msg.contains(".kiro/specs/subtract"), "{msg}");
    assert_eq!(author, "kiro-worker");
    let tasks = tasks.unwrap();
    assert!(
        tasks.contains("- [x]") && !tasks.contains("- [ ]"),
        "{tasks}"
    );
    let (msg, _, _) = tip(&calc, "feature/multiply", ".kiro/specs/multiply/tasks.md");
    assert!(msg.contains("multiply"), "{msg}");
    // The failed item pushed nothing: its branch is still the initial import.
    let greeter = s.remote("greeter");
    let (msg, _, _) = tip(
        &greeter,
        "feature/farewell",
        ".kiro/specs/farewell/tasks.md",
    );
    assert!(msg.starts_with("initial import"), "{msg}");

    // One report per pull request, with coverage.
    let (report, revision) = s
        .report("acme/calc", 1)
        .await
        .expect("report on acme/calc#1");
    assert_eq!(revision, 1);
    assert!(
        report.contains("CALC-1") && report.to_lowercase().contains("coverage"),
        "{report}"
    );
    let (failed, _) = s
        .report("acme/greeter", 2)
        .await
        .expect("report on acme/greeter#2");
    assert!(failed.contains("coverage"), "{failed}");

    // Nothing left behind.
    assert!(s.depth().await.is_idle());
}
