//! The quick-start pipeline with the queue on SQS and the leases on DynamoDB (both on the
//! moto emulator, 127.0.0.1) and the local build runner: the same final states as on the
//! embedded default.

use crate::support::*;
use kiro_backends::testing::moto;
use kiro_protocol::{FailureClass, JobState};
use std::process::Command;

#[tokio::test(flavor = "multi_thread")]
async fn the_pipeline_runs_on_sqs_and_dynamodb() {
    let bin = bin_dir();
    let tmp = tempfile::tempdir().unwrap();
    let state = forge(tmp.path());

    let aws = moto::provision("e2e").await;
    let env = aws_pipeline_env(&state, &aws);

    produce_once(&bin, &env);
    let consume = Command::new(bin.join("kiro-consumer"))
        .args([
            "run",
            "--until-idle",
            "--max-jobs",
            "4",
            "--poll-every",
            "500ms",
            "--receive-wait",
            "1s",
            "--visibility",
            "60s",
        ])
        .envs(env.clone())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&consume.stderr);
    assert!(consume.status.success(), "{log}");

    let jobs = Command::new(bin.join("kiro-consumer"))
        .args(["jobs", "--json"])
        .envs(env.clone())
        .output()
        .unwrap();
    assert!(
        jobs.status.success(),
        "{}",
        String::from_utf8_lossy(&jobs.stderr)
    );
    let jobs: Vec<kiro_protocol::JobRecord> = serde_json::from_slice(&jobs.stdout).unwrap();
    let state_of = |item: &str| {
        jobs.iter()
            .find(|j| j.item.as_str() == item)
            .unwrap_or_else(|| panic!("no job record for {item} in DynamoDB:\n{log}"))
            .clone()
    };
    for item in ["CALC-1", "CALC-2", "GREET-1"] {
        let j = state_of(item);
        assert_eq!(
            (j.state, j.attempts),
            (JobState::Succeeded, 1),
            "{item}: {j:?}\n{log}"
        );
    }
    let g2 = state_of("GREET-2");
    assert_eq!(g2.state, JobState::DeadLettered);
    assert_eq!(
        g2.last_failure.map(|f| f.class),
        Some(FailureClass::CoverageBelow)
    );
    assert!(jobs.iter().all(|j| j.item.as_str() != "BAD-1"));

    let dlq = Command::new(bin.join("kiro-consumer"))
        .args(["dlq", "list", "--json"])
        .envs(env)
        .output()
        .unwrap();
    let dlq: serde_json::Value = serde_json::from_slice(&dlq.stdout).unwrap();
    assert_eq!(dlq["more"], 0, "{dlq}");
    let dlq = dlq["dead_letters"].as_array().unwrap();
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    assert_eq!(dlq[0]["item"], "GREET-2");
    assert_eq!(dlq[0]["class"], "coverage-below");

    // The workers pushed under fences kept in DynamoDB: the commits are there.
    let s = State::open(&state);
    let (msg, author, _) = tip(
        &s.remote("calc"),
        "feature/subtract",
        ".kiro/specs/subtract/tasks.md",
    );
    assert!(msg.contains(".kiro/specs/subtract"), "{msg}");
    assert_eq!(author, "kiro-worker");
}
