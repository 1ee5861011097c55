//! The README's first command, run in a temp dir: final states, pushed commits in the
//! bare remotes, a fix round that succeeds (CALC-2), the side branch of the failed item's
//! work, pull-request reports, the dead letter and the rejected item; then each
//! item's trace as `kiro-consumer trace` prints it from the span store, and the trace id
//! on the consumer's log lines.

use crate::support::*;
use kiro_protocol::{FailureClass, ItemStatus, JobState};
use std::process::{Command, Output};

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
    let (msg, _, code) = tip(&calc, "feature/multiply", "src/calc.js");
    assert!(msg.contains("multiply"), "{msg}");
    // CALC-2's first round left a failing test; the stand-in fixed it in round 2 from
    // the failure brief, and only the fixed code was pushed.
    let code = code.unwrap();
    assert!(
        code.contains("return a * b;") && !code.contains("Math.abs"),
        "{code}"
    );
    let (calc2, _) = s
        .report("acme/calc", 2)
        .await
        .expect("report on acme/calc#2");
    assert!(
        calc2.contains("| 1 | the spec's 4 open required tasks | ❌ tests-failed:"),
        "{calc2}"
    );
    assert!(
        calc2.contains("| 2 | the failure brief: ") && calc2.contains("✅ checks passed"),
        "{calc2}"
    );
    // The failed item pushed nothing to its branch (still the initial import); its work
    // is kept on the side branch, on top of it, for a later attempt.
    let greeter = s.remote("greeter");
    let (msg, _, _) = tip(
        &greeter,
        "feature/farewell",
        ".kiro/specs/farewell/tasks.md",
    );
    assert!(msg.starts_with("initial import"), "{msg}");
    let (msg, _, farewell) = tip(&greeter, "kiro/partial/feature/farewell", "src/farewell.js");
    assert!(msg.starts_with("wip(farewell): partial work"), "{msg}");
    assert!(msg.contains("----- failure brief -----"), "{msg}");
    assert!(farewell.is_some(), "the work is on the side branch");

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
    assert!(
        failed.contains("kept on `kiro/partial/feature/farewell`"),
        "{failed}"
    );
    // The final failure is announced in a new comment that mentions GREET-2's assignee
    // (an edit of the sticky report would notify no one); nobody else is mentioned.
    let board = board_file();
    let out = consumer(
        &bin,
        &state,
        "reports",
        &["--board", &board.display().to_string()],
    );
    let reports = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mention = "@octo-reviewer: `GREET-2` failed for good after 1 attempt";
    assert_eq!(reports.matches(mention).count(), 1, "{reports}");
    assert_eq!(
        reports.matches('@').count(),
        1,
        "only the one mention: {reports}"
    );
    assert!(
        reports.contains(&format!(
            "kiro-consumer dlq replay --id {}",
            dlq[0].original_id
        )),
        "{reports}"
    );

    // Nothing left behind.
    assert!(s.depth().await.is_idle());

    // One trace per item, stored by all three binaries, printed as a tree.
    let calc1 = s.job("CALC-1").await.unwrap();
    let trace_id = calc1
        .trace
        .trace_id()
        .expect("the job record carries the item's trace")
        .to_owned();
    let out = trace(&bin, &state, &["CALC-1"]);
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = tree.lines().next().unwrap_or_default();
    let printed = first.strip_prefix("trace ").unwrap_or_default();
    assert!(
        printed.len() >= 32 && printed[..32].bytes().all(|b| b.is_ascii_hexdigit()),
        "{tree}"
    );
    assert_eq!(&printed[..32], trace_id, "{tree}");
    // send (producer) → process (consumer) → worker (worker), each nested deeper.
    let depth = |name: &str, service: &str| {
        let needle = format!("─ {name} [{service}]");
        let line = tree
            .lines()
            .find(|l| l.contains(&needle))
            .unwrap_or_else(|| panic!("no `{needle}` in\n{tree}"));
        line.find(&needle).unwrap()
    };
    let send = depth("send work", "kiro-producer");
    let process = depth("process work", "kiro-consumer");
    let worker = depth("worker", "kiro-worker");
    assert!(send < process && process < worker, "{tree}");
    assert!(!tree.contains("ERROR"), "CALC-1 succeeded:\n{tree}");

    // The dead-lettered item's trace shows why.
    let out = trace(&bin, &state, &["GREET-2"]);
    let failed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(failed.contains("ERROR: coverage-below"), "{failed}");
    assert!(
        failed.contains("kiro.failure_class=coverage-below"),
        "{failed}"
    );

    // An unknown item is an error naming it.
    let out = trace(&bin, &state, &["NOPE-9"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(err.contains("no trace recorded for item NOPE-9"), "{err}");

    // `--json`: the same trace, spans of all three services.
    let out = trace(&bin, &state, &["--json", "CALC-1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("trace --json");
    let traces = json.as_array().expect("an array of traces");
    assert_eq!(traces.len(), 1, "{json:#}");
    assert_eq!(traces[0]["trace_id"], trace_id.as_str());
    let spans = traces[0]["spans"].as_array().unwrap();
    for service in ["kiro-producer", "kiro-consumer", "kiro-worker"] {
        assert!(
            spans.iter().any(|s| s["service"] == service),
            "no span of {service}"
        );
    }
    assert!(spans.iter().all(|s| s["trace_id"] == trace_id.as_str()));

    // The consumer's logs (JSON: stderr is not a terminal): every line inside CALC-1's
    // spans carries its trace id, "build started" among them.
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let of_calc1: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| {
            l["spans"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["kiro.item"] == "CALC-1"))
        })
        .collect();
    assert!(
        of_calc1
            .iter()
            .any(|l| l["fields"]["message"] == "build started"),
        "{stderr}"
    );
    for l in &of_calc1 {
        assert_eq!(l["trace_id"], trace_id.as_str(), "{l}");
    }
}

/// `kiro-consumer --state-dir <state> trace <args>`.
fn trace(bin: &std::path::Path, state: &std::path::Path, args: &[&str]) -> Output {
    consumer(bin, state, "trace", args)
}

/// `kiro-consumer --state-dir STATE COMMAND ARGS…`.
fn consumer(
    bin: &std::path::Path,
    state: &std::path::Path,
    command: &str,
    args: &[&str],
) -> Output {
    Command::new(bin.join("kiro-consumer"))
        .arg("--state-dir")
        .arg(state)
        .arg(command)
        .args(args)
        .output()
        .unwrap()
}
