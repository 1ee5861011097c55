//! A build handed off by a draining consumer (SIGTERM, rolling deploy) is in transit, not
//! lost: before its fenced side effects it waits for the next consumer to adopt it and
//! then goes on — its work is kept, never redone — and gives up only when nobody adopts
//! it within the configured wait.

use crate::{CALC_1, World, quickstart};
use kiro_protocol::{
    BuildId, FailureClass, ItemId, JobRecord, JobState, LeaseStore, MessageId, OutcomeStatus,
    ProjectKey, Timestamp, TraceContext,
};
use std::path::Path;
use std::time::Duration;

const BUILD: &str = "local:calc:7";

/// The consumer `owner` holds calc's lease and records that BUILD runs CALC-1 under it.
async fn hold_and_record(w: &World, owner: &str) -> kiro_protocol::Lease {
    let project = ProjectKey::parse("calc").unwrap();
    let lease = w
        .lease
        .acquire(&project, owner, Duration::from_secs(600))
        .await
        .unwrap();
    let mut job = JobRecord::new(
        project,
        ItemId::parse("CALC-1").unwrap(),
        MessageId::new("m-1"),
        lease.fence,
        TraceContext::default(),
        Timestamp(0),
    );
    job.state = JobState::Running;
    job.build_id = Some(BuildId::new(BUILD));
    job.owner = Some(owner.into());
    w.lease.record(&lease, &job).await.unwrap();
    lease
}

/// The draining consumer's handoff: the record says `handoff`, the lease is released.
async fn hand_off(w: &World, lease: &kiro_protocol::Lease) {
    let project = ProjectKey::parse("calc").unwrap();
    let mut job = w
        .lease
        .job(&project, &ItemId::parse("CALC-1").unwrap())
        .await
        .unwrap()
        .unwrap();
    job.state = JobState::Handoff;
    w.lease.record(lease, &job).await.unwrap();
    w.lease.release(lease).await.unwrap();
}

/// A worker of BUILD whose agent signals it started, then takes `secs` seconds.
fn slow_worker(
    w: &World,
    fence: kiro_protocol::Fence,
    started: &Path,
    secs: u32,
) -> kiro_worker::Config {
    let agent = quickstart().join("agent/scripted-agent.mjs");
    let mut cfg = w.config(CALC_1, fence);
    cfg.build_id = Some(BUILD.into());
    cfg.agent_cmd = format!(
        "sh -c 'touch {}; sleep {secs}; exec node {} \"$0\"'",
        started.display(),
        agent.display()
    );
    cfg
}

async fn wait_for(path: &Path) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Start a worker of BUILD under consumer c1 (its agent takes `agent_secs`), and hand it
/// off as a draining c1 would once the agent runs: c1's lease, the branch tip before, and
/// the running worker.
async fn run_and_hand_off(
    w: &World,
    agent_secs: u32,
    fence_wait: Duration,
) -> (
    kiro_protocol::Lease,
    String,
    tokio::task::JoinHandle<kiro_protocol::WorkerOutcome>,
) {
    let first = hold_and_record(w, "c1").await;
    let started = w.path("agent-started");
    let mut cfg = slow_worker(w, first.fence, &started, agent_secs);
    cfg.fence_wait = fence_wait.into();
    let before = w.tip("calc", "feature/subtract");
    let run = tokio::spawn({
        let ports = w.ports.clone();
        async move { kiro_worker::run(&cfg, &ports).await }
    });
    wait_for(&started).await;
    hand_off(w, &first).await;
    (first, before, run)
}

#[tokio::test]
async fn a_handed_off_build_waits_for_adoption_then_pushes_and_reports() {
    let w = World::new();
    let (first, before, run) = run_and_hand_off(&w, 1, Duration::from_secs(60)).await;
    // The replacement starts a few seconds later, after the agent finished: the worker
    // reaches its push while the build is in transit.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!run.is_finished(), "the worker waits instead of giving up");
    let second = hold_and_record(&w, "c2").await;
    assert!(second.fence > first.fence);
    let o = run.await.unwrap();
    assert_eq!(o.status, OutcomeStatus::Succeeded, "{o:?}");
    assert_ne!(
        w.tip("calc", "feature/subtract"),
        before,
        "the work was pushed"
    );
    assert!(o.commit.is_some());
}

#[tokio::test]
async fn a_handed_off_build_nobody_adopts_gives_up_after_the_wait() {
    let w = World::new();
    let (_, before, run) = run_and_hand_off(&w, 2, Duration::from_secs(3)).await;
    let o = run.await.unwrap();
    let failure = o.failure.as_ref().expect("a failure");
    assert_eq!(failure.class, FailureClass::FenceLost, "{o:?}");
    assert!(
        failure.reason.contains("no consumer adopted"),
        "{}",
        failure.reason
    );
    assert_eq!(w.tip("calc", "feature/subtract"), before, "nothing pushed");
}
