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
    let lease = w.hold("calc", owner).await;
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

/// A worker stopped mid-agent (its pipeline dropped, as on SIGTERM) takes the agent's
/// whole process group with it: nothing the agent started keeps running.
#[tokio::test]
async fn a_stopped_worker_leaves_no_agent_behind() {
    let w = World::new();
    let fence = w.take_lease("calc").await;
    let pid_file = w.path("agent.pid");
    let mut cfg = w.config(CALC_1, fence);
    // The agent starts a child in its own process group and waits.
    cfg.agent_cmd = format!("sh -c 'sleep 300 & echo $! > {}; wait'", pid_file.display());
    let run = tokio::spawn({
        let ports = w.ports.clone();
        async move { kiro_worker::run(&cfg, &ports).await }
    });
    wait_for(&pid_file).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let alive = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    };
    assert!(alive(pid), "the agent's child runs");
    run.abort();
    let _ = run.await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while alive(pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "the agent's child {pid} outlived the stopped worker"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `kiro-worker` stopped with SIGTERM (a build stopped or timed out) ends its agent's
/// whole process group, still writes its outcome (class `stopped`) and exits 0, so the
/// build exports why it ended.
#[tokio::test]
async fn sigterm_stops_the_agent_and_the_outcome_is_still_written() {
    let w = World::new();
    let fence = w.take_lease("calc").await;
    let pid_file = w.path("agent.pid");
    let outcome = w.path("build/kiro-outcome.env");
    let (id, project, repo, branch, spec, pr) = CALC_1;
    let fence_text = fence.0.to_string();
    let git_base = format!("file://{}", w.path("forge").display());
    let mut worker = std::process::Command::new(env!("CARGO_BIN_EXE_kiro-worker"))
        .args(["run", "--item", id, "--project", project, "--repo", repo])
        .args([
            "--branch",
            branch,
            "--spec",
            spec,
            "--pr",
            pr,
            "--fence",
            &fence_text,
        ])
        .args(["--git-base", &git_base])
        .arg("--build-dir")
        .arg(w.path("build"))
        .arg("--state-dir")
        .arg(w.path("state"))
        .arg("--board-file")
        .arg(quickstart().join("board.yaml"))
        .arg("--agent-cmd")
        .arg(format!(
            "sh -c 'sleep 300 & echo $! > {}; wait'",
            pid_file.display()
        ))
        .env_remove("KIRO_BACKEND")
        .env_remove("KIRO_FORGE")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&pid_file).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let agent_child: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let worker_pid = i32::try_from(worker.id()).unwrap();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &worker_pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = worker.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the worker did not stop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status:?}");
    let written = std::fs::read_to_string(&outcome).unwrap();
    assert!(written.contains("KIRO_OUTCOME='failed'"), "{written}");
    assert!(
        written.contains("KIRO_FAILURE_CLASS='stopped'"),
        "{written}"
    );
    let alive = std::fs::read_to_string(format!("/proc/{agent_child}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    });
    assert!(
        !alive,
        "the agent's child {agent_child} outlived the worker"
    );
}
