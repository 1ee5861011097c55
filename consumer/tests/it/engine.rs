//! Engine behaviour: one build per project, order, retries, dead letters, contention,
//! re-attach on takeover, handoff on drain, and cancellation at the safe-until deadline.

use crate::support::*;
use kiro_backends::testing::Spy;
use kiro_protocol::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;

async fn pass(d: Duration) {
    tokio::time::sleep(d).await;
}

#[tokio::test(start_paused = true)]
async fn items_of_two_projects_run_side_by_side_and_succeed() {
    let h = Harness::new();
    h.send("A-1", "alpha").await;
    h.send("B-1", "beta").await;
    let mut e = h.engine("c1");
    let r = e.tick(Duration::ZERO).await;
    assert_eq!(r.started, 2, "{r:?}");
    assert_eq!(h.job("alpha", "A-1").await.state, JobState::Running);
    h.runner.succeed("A-1");
    h.runner.succeed("B-1");
    pass(Duration::from_secs(6)).await;
    let r = e.tick(Duration::ZERO).await;
    assert_eq!(r.succeeded, 2, "{r:?}");
    let job = h.job("alpha", "A-1").await;
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.attempts, 1);
    assert_eq!(job.coverage, Some(91.0));
    assert!(h.depth().await.is_idle());
    assert_eq!(e.active_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn one_build_per_project_in_send_order() {
    let h = Harness::new();
    for id in ["A-1", "A-2", "A-3"] {
        h.send(id, "alpha").await;
    }
    let mut e = h.engine("c1");
    let mut order = Vec::new();
    for _ in 0..3 {
        e.tick(Duration::ZERO).await;
        let running: Vec<_> = h
            .runner
            .builds()
            .iter()
            .filter(|b| b.state == BuildState::InProgress)
            .map(|b| b.req.item.to_string())
            .collect();
        assert_eq!(
            running.len(),
            1,
            "exactly one build of the project runs: {running:?}"
        );
        order.push(running[0].clone());
        h.runner.succeed(&running[0]);
        pass(Duration::from_secs(6)).await;
        e.tick(Duration::ZERO).await;
    }
    assert_eq!(order, ["A-1", "A-2", "A-3"]);
    assert!(h.depth().await.is_idle());
}

#[tokio::test(start_paused = true)]
async fn the_build_gets_the_item_and_the_fence() {
    let h = Harness::new();
    h.send("A-1", "alpha").await;
    let mut e = h.engine("c1");
    e.tick(Duration::ZERO).await;
    let b = &h.runner.builds_of("A-1")[0];
    let job = h.job("alpha", "A-1").await;
    assert_eq!(
        b.req.env.get("KIRO_ITEM_ID").map(String::as_str),
        Some("A-1")
    );
    assert_eq!(
        b.req.env.get("KIRO_BRANCH").map(String::as_str),
        Some("feature/x")
    );
    assert_eq!(
        b.req.env.get("KIRO_SPEC_PATH").map(String::as_str),
        Some(".kiro/specs/x")
    );
    assert_eq!(
        b.req.env.get("KIRO_FENCE").cloned(),
        Some(job.fence.to_string())
    );
    assert_eq!(job.build_id.as_ref(), Some(&b.id));
    // The worker learns the build's limit, to keep its own inside it.
    assert_eq!(b.req.timeout, Some(Duration::from_secs(3600)));
    assert_eq!(
        b.req.env.get("KIRO_BUILD_TIMEOUT").map(String::as_str),
        Some("1h")
    );
}

#[tokio::test(start_paused = true)]
async fn a_retryable_failure_is_retried_after_backoff_then_succeeds() {
    let h = Harness::new();
    h.send("A-1", "alpha").await;
    let mut e = h.engine("c1");
    e.tick(Duration::ZERO).await;
    h.runner.fail("A-1", FailureClass::TestsFailed);
    pass(Duration::from_secs(6)).await;
    let r = e.tick(Duration::ZERO).await;
    assert_eq!(r.retried, 1, "{r:?}");
    let job = h.job("alpha", "A-1").await;
    assert_eq!(job.state, JobState::Retrying);
    assert_eq!(
        job.last_failure.as_ref().map(|f| f.class),
        Some(FailureClass::TestsFailed)
    );
    // Within the backoff (base 10 s) nothing is started again.
    let r = e.tick(Duration::ZERO).await;
    assert_eq!(r.started, 0);
    pass(Duration::from_secs(25)).await;
    let r = e.tick(Duration::ZERO).await;
    assert_eq!(r.started, 1, "{r:?}");
    assert_eq!(h.runner.starts(), 2);
    h.runner.succeed("A-1");
    pass(Duration::from_secs(6)).await;
    e.tick(Duration::ZERO).await;
    let job = h.job("alpha", "A-1").await;
    assert_eq!((job.state, job.attempts), (JobState::Succeeded, 2));
    assert_eq!(job.history.len(), 2);
    assert_eq!(
        job.history[0].failure.as_ref().map(|f| f.class),
        Some(FailureClass::TestsFailed)
    );
}

#[tokio::test(start_paused = true)]
async fn the_budget_spent_dead_letters_with_reason_class_and_history() {
    let h = Harness::new();
    h.send("A-1", "alpha").await;
    let mut e = h.engine("c1");
    for _ in 0..3 {
        e.tick(Duration::ZERO).await;
        h.runner.fail("A-1", FailureClass::AgentFailed);
        pass(Duration::from_secs(6)).await;
        e.tick(Duration::ZERO).await;
        pass(Duration::from_secs(130)).await;
    }
    let job = h.job("alpha", "A-1").await;
    assert_eq!(job.state, JobState::DeadLettered);
    assert_eq!(job.attempts, 3);
    let dlq = h.queue.dlq_list(10).await.unwrap().entries;
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].letter.class, FailureClass::AgentFailed);
    assert!(
        dlq[0].letter.reason.contains("after 3 of 3 attempts"),
        "{}",
        dlq[0].letter.reason
    );
    assert_eq!(dlq[0].letter.attempts.len(), 3);
    assert_eq!(dlq[0].group, "alpha");
    assert!(h.depth().await.is_idle());
}

#[tokio::test(start_paused = true)]
async fn a_permanent_failure_is_dead_lettered_at_once() {
    let h = Harness::new();
    h.send("A-1", "alpha").await;
    let mut e = h.engine("c1");
    e.tick(Duration::ZERO).await;
    h.runner.fail("A-1", FailureClass::CoverageBelow);
    pass(Duration::from_secs(6)).await;
    let r = e.tick(Duration::ZERO).await;
    assert_eq!(r.dead_lettered, 1, "{r:?}");
    assert_eq!(h.runner.starts(), 1);
    assert_eq!(
        h.queue.dlq_list(10).await.unwrap().entries[0].letter.class,
        FailureClass::CoverageBelow
    );
}

#[tokio::test(start_paused = true)]
async fn an_unknown_schema_version_is_dead_lettered_without_a_build() {
    let h = Harness::new();
    h.send_body(
        r#"{"schema": 42, "item": {}}"#.into(),
        "alpha",
        DedupId::new("x1"),
    )
    .await;
    h.send_body("not json at all".into(), "beta", DedupId::new("x2"))
        .await;
    let mut e = h.engine("c1");
    let r = e.tick(Duration::ZERO).await;
    assert_eq!(r.dead_lettered, 2, "{r:?}");
    assert_eq!(h.runner.starts(), 0);
    let dlq = h.queue.dlq_list(10).await.unwrap().entries;
    assert!(
        dlq.iter()
            .all(|d| d.letter.class == FailureClass::PermanentInput)
    );
    assert!(
        dlq.iter()
            .any(|d| d.letter.reason.contains("unknown schema version 42"))
    );
}

#[tokio::test(start_paused = true)]
async fn contention_returns_the_message_without_spending_an_attempt() {
    let h = Harness::new();
    let project = ProjectKey::parse("alpha").unwrap();
    let other = acquire_as(
        &*h.leases,
        &project,
        "someone-else",
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    h.send("A-1", "alpha").await;
    let mut e = h.engine("c1");
    let r = e.tick(Duration::ZERO).await;
    assert_eq!((r.contention, r.started), (1, 0), "{r:?}");
    assert_eq!(h.runner.starts(), 0);
    // The holder lets go; after the contention delay the item runs with a fresh budget.
    h.leases.release(&other).await.unwrap();
    pass(Duration::from_secs(25)).await;
    let r = e.tick(Duration::ZERO).await;
    assert_eq!(r.started, 1, "{r:?}");
    assert_eq!(h.job("alpha", "A-1").await.attempts, 1);
}

#[tokio::test(start_paused = true)]
async fn a_new_consumer_re_attaches_to_the_running_build_after_a_crash() {
    let h = Harness::new();
    h.send("A-1", "alpha").await;
    let mut crashed = h.engine("c1");
    crashed.tick(Duration::ZERO).await;
    assert_eq!(h.runner.starts(), 1);
    let fence1 = h.job("alpha", "A-1").await.fence;
    drop(crashed); // no drain: a crash
    let mut e = h.engine("c2");
    let r = e.tick(Duration::ZERO).await;
    assert_eq!(
        r.started + r.adopted,
        0,
        "the message is still invisible: {r:?}"
    );
    pass(VISIBILITY + Duration::from_secs(2)).await;
    let r = e.tick(Duration::ZERO).await;
    assert_eq!(r.adopted, 1, "{r:?}");
    assert_eq!(h.runner.starts(), 1, "no second build");
    let job = h.job("alpha", "A-1").await;
    assert!(job.fence > fence1);
    assert_eq!(job.owner.as_deref(), Some("c2"));
    // The adopted build may act under the new fence.
    let b = &h.runner.builds_of("A-1")[0];
    assert!(
        build_may_act(&*h.leases, &job.project, &job.item, fence1, Some(&b.id))
            .await
            .unwrap()
    );
    h.runner.succeed("A-1");
    pass(Duration::from_secs(6)).await;
    e.tick(Duration::ZERO).await;
    let job = h.job("alpha", "A-1").await;
    assert_eq!((job.state, job.attempts), (JobState::Succeeded, 1));
}

#[tokio::test(start_paused = true)]
async fn drain_hands_off_and_the_next_consumer_takes_over_at_once() {
    let h = Harness::new();
    h.send("A-1", "alpha").await;
    let mut first = h.engine("c1");
    first.tick(Duration::ZERO).await;
    first.drain().await;
    let job = h.job("alpha", "A-1").await;
    assert_eq!(job.state, JobState::Handoff);
    let view = h.leases.get(&job.project).await.unwrap().unwrap();
    assert!(view.owner.is_none(), "lease released");
    // No waiting for visibility or lease expiry.
    let mut next = h.engine("c2");
    let r = next.tick(Duration::ZERO).await;
    assert_eq!(r.adopted, 1, "{r:?}");
    assert_eq!(h.runner.starts(), 1);
    assert_eq!(h.job("alpha", "A-1").await.state, JobState::Running);
}

#[tokio::test(start_paused = true)]
async fn the_run_loop_drains_on_cancel() {
    let h = Harness::new();
    h.send("A-1", "alpha").await;
    let mut e = h.engine("c1");
    let cancel = tokio_util::sync::CancellationToken::new();
    let c2 = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        c2.cancel();
    });
    e.run(cancel, kiro_consumer::RunUntil::Shutdown).await;
    assert_eq!(h.job("alpha", "A-1").await.state, JobState::Handoff);
    assert_eq!(h.depth().await.visible, 1);
}

#[tokio::test(start_paused = true)]
async fn heartbeats_keep_a_long_build_alive() {
    let h = Harness::new();
    h.send("A-1", "alpha").await;
    let mut e = h.engine("c1");
    e.tick(Duration::ZERO).await;
    // Ten minutes, far beyond lease TTL and visibility, ticking as the run loop would.
    for _ in 0..120 {
        pass(Duration::from_secs(5)).await;
        let r = e.tick(Duration::ZERO).await;
        assert_eq!(r.cancelled, 0);
    }
    assert_eq!(e.active_count(), 1);
    let mut other = h.engine("c2");
    let r = other.tick(Duration::ZERO).await;
    assert_eq!(r.received, 0, "the message stayed invisible");
    h.runner.succeed("A-1");
    pass(Duration::from_secs(6)).await;
    assert_eq!(e.tick(Duration::ZERO).await.succeeded, 1);
}

#[tokio::test(start_paused = true)]
async fn an_unconfirmed_renewal_cancels_the_job_at_safe_until() {
    let h = Harness::new();
    let flaky = Arc::new(FlakyLeases::new(h.leases.clone()));
    h.send("A-1", "alpha").await;
    let mut e = h.engine_with(Harness::config("c1"), flaky.clone());
    let dispatched = tokio::time::Instant::now();
    e.tick(Duration::ZERO).await;
    *flaky.fail_renew.lock().unwrap() = true;
    let mut cancelled_at = None;
    for _ in 0..10 {
        pass(Duration::from_secs(5)).await;
        if e.tick(Duration::ZERO).await.cancelled == 1 {
            cancelled_at = Some(dispatched.elapsed());
            break;
        }
    }
    // The lease is confirmed for LEASE_TTL (30 s) from the dispatch, less the 2 s margin:
    // the first tick past 28 s cancels it.
    assert_eq!(cancelled_at, Some(Duration::from_secs(30)));
    assert_eq!(e.active_count(), 0, "stopped acting");
    assert!(
        h.runner.stopped().is_empty(),
        "fence not known lost: the build is left for the next holder"
    );
}

/// c1's lease lapses and someone else takes the project; returns (harness, c1, the new
/// holder's lease, c1's cancellations over the next ticks).
async fn lease_taken_from_a_running_job(
    record_other_build: bool,
) -> (Harness, kiro_consumer::Engine, usize) {
    let h = Harness::new();
    let flaky = Arc::new(FlakyLeases::new(h.leases.clone()));
    *flaky.fail_renew.lock().unwrap() = true;
    h.send("A-1", "alpha").await;
    let mut e = h.engine_with(Harness::config("c1"), flaky.clone());
    e.tick(Duration::ZERO).await;
    pass(LEASE_TTL + Duration::from_secs(2)).await;
    let thief = acquire_as(
        &*h.leases,
        &ProjectKey::parse("alpha").unwrap(),
        "thief",
        LEASE_TTL,
    )
    .await
    .unwrap();
    assert!(thief.fence.0 >= 2);
    if record_other_build {
        // The new holder moved on: its record names a build of its own.
        let mut job = h.job("alpha", "A-1").await;
        job.fence = thief.fence;
        job.build_id = Some(BuildId::new("in-memory:alpha:other"));
        job.state = JobState::Running;
        h.leases.record(&thief, &job).await.unwrap();
    }
    *flaky.fail_renew.lock().unwrap() = false;
    let mut cancelled = 0;
    for _ in 0..3 {
        cancelled += e.tick(Duration::ZERO).await.cancelled;
        pass(Duration::from_secs(1)).await;
    }
    (h, e, cancelled)
}

/// A lost fence whose build the record still names is in transit: the holder that took
/// the project re-attaches to it, so it is left running (stopping it made the re-attach
/// find a stopped build and spend an attempt; the worker does nothing fenced meanwhile).
#[tokio::test(start_paused = true)]
async fn a_lost_fence_leaves_a_build_in_transit_for_the_next_holder() {
    let (h, _e, cancelled) = lease_taken_from_a_running_job(false).await;
    assert_eq!(cancelled, 1);
    assert!(
        h.runner.stopped().is_empty(),
        "the build the record names was left for the next holder"
    );
}

/// A lost fence whose build the record no longer names can never act: it is stopped.
#[tokio::test(start_paused = true)]
async fn a_lost_fence_stops_a_build_the_record_no_longer_names() {
    let (h, _e, cancelled) = lease_taken_from_a_running_job(true).await;
    assert_eq!(cancelled, 1);
    assert_eq!(
        h.runner.stopped().len(),
        1,
        "the orphaned build was stopped"
    );
}

/// c1 takes A-1 and starts its build; its renewals fail until the lease and the message
/// lapse; c2 takes the item and adopts the running build. Returns (harness, c1, c2, the
/// switch of c1's failing renewals).
async fn adopted_after_a_lost_fence() -> (
    Harness,
    kiro_consumer::Engine,
    kiro_consumer::Engine,
    Arc<FlakyLeases>,
) {
    let h = Harness::new();
    let flaky = Arc::new(FlakyLeases::new(h.leases.clone()));
    *flaky.fail_renew.lock().unwrap() = true;
    h.send("A-1", "alpha").await;
    let mut e = h.engine_with(Harness::config("c1"), flaky.clone());
    e.tick(Duration::ZERO).await;
    pass(VISIBILITY + Duration::from_secs(2)).await;
    let mut next = h.engine("c2");
    assert_eq!(next.tick(Duration::ZERO).await.adopted, 1);
    (h, e, next, flaky)
}

/// Let c1 learn that its fence is lost; returns how many jobs it cancelled.
async fn cancelled_after_renewals_resume(
    e: &mut kiro_consumer::Engine,
    flaky: &FlakyLeases,
) -> usize {
    *flaky.fail_renew.lock().unwrap() = false;
    let mut cancelled = 0;
    for _ in 0..3 {
        cancelled += e.tick(Duration::ZERO).await.cancelled;
        pass(Duration::from_secs(1)).await;
    }
    cancelled
}

#[tokio::test(start_paused = true)]
async fn a_lost_fence_leaves_the_build_the_new_holder_adopted() {
    let (h, mut e, _next, flaky) = adopted_after_a_lost_fence().await;
    assert_eq!(cancelled_after_renewals_resume(&mut e, &flaky).await, 1);
    assert!(
        h.runner.stopped().is_empty(),
        "the adopted build keeps running"
    );
    assert_eq!(h.runner.starts(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_lost_fence_leaves_a_build_adopted_then_handed_off_running() {
    let (h, mut e, mut next, flaky) = adopted_after_a_lost_fence().await;
    // The adopter is replaced in a rolling deploy: it hands the running build off.
    next.drain().await;
    assert_eq!(cancelled_after_renewals_resume(&mut e, &flaky).await, 1);
    assert!(
        h.runner.stopped().is_empty(),
        "a handed-off build keeps running for the next holder"
    );
    assert_eq!(h.runner.starts(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_replayed_dead_letter_runs_again_with_a_fresh_budget() {
    let h = Harness::new();
    h.send("A-1", "alpha").await;
    let mut e = h.engine("c1");
    e.tick(Duration::ZERO).await;
    h.runner.fail("A-1", FailureClass::CoverageBelow);
    pass(Duration::from_secs(6)).await;
    e.tick(Duration::ZERO).await;
    assert_eq!(h.job("alpha", "A-1").await.state, JobState::DeadLettered);
    let report = h
        .queue
        .dlq_replay(
            &DlqSelection {
                all: true,
                ..Default::default()
            },
            false,
        )
        .await
        .unwrap();
    assert_eq!(report.replayed.len(), 1);
    let r = e.tick(Duration::ZERO).await;
    assert_eq!(r.started, 1, "{r:?}");
    let job = h.job("alpha", "A-1").await;
    assert_eq!(
        (job.state, job.attempts, job.history.len()),
        (JobState::Running, 1, 2)
    );
}

#[tokio::test(start_paused = true)]
async fn a_redelivery_after_success_is_acknowledged_not_rebuilt() {
    let h = Harness::new();
    h.send("A-1", "alpha").await;
    // Take the message, run it to success, but "crash" before the ack by releasing it.
    let mut e = h.engine("c1");
    e.tick(Duration::ZERO).await;
    let d_receipt = {
        // Mark the job succeeded under the engine's lease, as if the ack was lost.
        let job = h.job("alpha", "A-1").await;
        let view = h.leases.get(&job.project).await.unwrap().unwrap();
        let lease = Lease {
            project: job.project.clone(),
            owner: view.owner.clone().unwrap(),
            fence: view.fence,
        };
        let mut done = job.clone();
        done.state = JobState::Succeeded;
        h.leases.record(&lease, &done).await.unwrap();
        h.leases.release(&lease).await.unwrap();
        lease
    };
    drop(e);
    drop(d_receipt);
    pass(VISIBILITY + Duration::from_secs(2)).await;
    let mut e2 = h.engine("c2");
    e2.tick(Duration::ZERO).await;
    assert_eq!(h.runner.starts(), 1, "not rebuilt");
    assert!(h.depth().await.is_idle(), "acknowledged");
}

/// A `TaskProtection` stand-in that records every call and can be made to fail.
#[derive(Debug, Default)]
struct RecordingProtection {
    calls: Mutex<Vec<bool>>,
    fail: Mutex<bool>,
}

#[async_trait::async_trait]
impl TaskProtection for RecordingProtection {
    async fn set(&self, protected: bool) -> Result<(), PortError> {
        self.calls.lock().unwrap().push(protected);
        if *self.fail.lock().unwrap() {
            return Err(PortError::transient("scripted: ECS unreachable"));
        }
        Ok(())
    }

    fn refresh_every(&self) -> Option<Duration> {
        Some(Duration::from_secs(60))
    }
}

fn protected_engine(h: &Harness, protection: Arc<RecordingProtection>) -> kiro_consumer::Engine {
    kiro_consumer::Engine::new(
        Harness::config("c1"),
        kiro_consumer::Ports {
            queue: h.queue.clone(),
            leases: h.leases.clone(),
            builds: h.runner.clone(),
            board: None,
            pulls: None,
            clock: h.clock.clone(),
            protection: Some(protection),
        },
    )
}

#[tokio::test(start_paused = true)]
async fn scale_in_protection_is_held_while_jobs_run_and_re_armed() {
    let h = Harness::new();
    let p = Arc::new(RecordingProtection::default());
    let mut e = protected_engine(&h, p.clone());
    e.tick(Duration::ZERO).await;
    assert!(
        p.calls.lock().unwrap().is_empty(),
        "idle: nothing to protect"
    );
    h.send("A-1", "alpha").await;
    h.send("B-1", "beta").await;
    e.tick(Duration::ZERO).await;
    assert_eq!(*p.calls.lock().unwrap(), [true], "on once for 0 → 2 jobs");
    // Ticks while the jobs run: no call until the re-arm interval (60 s) passes.
    for _ in 0..11 {
        pass(Duration::from_secs(5)).await;
        e.tick(Duration::ZERO).await;
    }
    assert_eq!(*p.calls.lock().unwrap(), [true], "no call before re-arm");
    pass(Duration::from_secs(5)).await;
    e.tick(Duration::ZERO).await;
    assert_eq!(*p.calls.lock().unwrap(), [true, true], "re-armed at 60 s");
    // One job ends: still protected, no call.
    h.runner.succeed("A-1");
    pass(Duration::from_secs(5)).await;
    assert_eq!(e.tick(Duration::ZERO).await.succeeded, 1);
    assert_eq!(p.calls.lock().unwrap().len(), 2);
    // The last one ends: off.
    h.runner.succeed("B-1");
    pass(Duration::from_secs(5)).await;
    assert_eq!(e.tick(Duration::ZERO).await.succeeded, 1);
    assert_eq!(*p.calls.lock().unwrap(), [true, true, false]);
    pass(Duration::from_secs(120)).await;
    e.tick(Duration::ZERO).await;
    assert_eq!(p.calls.lock().unwrap().len(), 3, "idle: no re-arm");
}

#[tokio::test(start_paused = true)]
async fn a_failing_protection_never_stops_jobs_and_is_retried() {
    let h = Harness::new();
    let p = Arc::new(RecordingProtection::default());
    *p.fail.lock().unwrap() = true;
    let mut e = protected_engine(&h, p.clone());
    h.send("A-1", "alpha").await;
    let r = e.tick(Duration::ZERO).await;
    assert_eq!(r.started, 1, "{r:?}");
    assert_eq!(p.calls.lock().unwrap().len(), 1);
    // A failed call is not repeated on every tick...
    pass(Duration::from_secs(5)).await;
    e.tick(Duration::ZERO).await;
    assert_eq!(
        p.calls.lock().unwrap().len(),
        1,
        "backs off after a failure"
    );
    // ...but tried again later, and then it holds.
    *p.fail.lock().unwrap() = false;
    pass(Duration::from_secs(15)).await;
    e.tick(Duration::ZERO).await;
    assert_eq!(*p.calls.lock().unwrap(), [true, true]);
    assert_eq!(e.active_count(), 1, "the job kept running throughout");
    // Drain gives protection up after handing off.
    e.drain().await;
    assert_eq!(*p.calls.lock().unwrap(), [true, true, false]);
    assert_eq!(h.job("alpha", "A-1").await.state, JobState::Handoff);
}

#[tokio::test(start_paused = true)]
async fn the_successes_of_a_tick_are_acked_in_one_batch() {
    let h = Harness::new();
    let counting = Arc::new(Spy::new(h.queue.clone()));
    for (id, p) in [("A-1", "alpha"), ("B-1", "beta"), ("C-1", "gamma")] {
        h.send(id, p).await;
    }
    let mut e = kiro_consumer::Engine::new(
        Harness::config("c1"),
        kiro_consumer::Ports {
            queue: counting.clone(),
            leases: h.leases.clone(),
            builds: h.runner.clone(),
            board: None,
            pulls: None,
            clock: h.clock.clone(),
            protection: None,
        },
    );
    assert_eq!(e.tick(Duration::ZERO).await.started, 3);
    for id in ["A-1", "B-1", "C-1"] {
        h.runner.succeed(id);
    }
    pass(Duration::from_secs(6)).await;
    assert_eq!(e.tick(Duration::ZERO).await.succeeded, 3);
    assert_eq!(
        (counting.calls("ack_batch"), counting.items("ack_batch")),
        (1, 3),
        "one batch of three"
    );
    assert_eq!(counting.calls("ack"), 0);
    assert!(h.depth().await.is_idle());
}

/// A message whose group is not its item's project (sent by hand, or by a buggy
/// producer) is dead-lettered alone, as permanent input naming both; the good items of
/// that group still run (it used to make them exceed the max receive count).
#[tokio::test(start_paused = true)]
async fn a_message_whose_group_is_not_its_project_is_dead_lettered_alone() {
    let h = Harness::new();
    h.send_in_group("B-9", "beta", "alpha").await;
    h.send("A-1", "alpha").await;
    let mut e = h.engine("c1");
    for _ in 0..4 {
        e.tick(Duration::ZERO).await;
        for item in ["A-1", "B-9"] {
            if !h.runner.builds_of(item).is_empty() {
                h.runner.succeed(item);
            }
        }
        pass(Duration::from_secs(6)).await;
    }
    e.tick(Duration::ZERO).await;
    let dlq = h.queue.dlq_list(10).await.unwrap().entries;
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    assert_eq!(dlq[0].letter.class, FailureClass::PermanentInput);
    assert!(
        dlq[0].letter.reason.contains("group \"alpha\"")
            && dlq[0].letter.reason.contains("project \"beta\""),
        "{}",
        dlq[0].letter.reason
    );
    assert_eq!(h.job("alpha", "A-1").await.state, JobState::Succeeded);
    assert_eq!(h.runner.starts(), 1, "the stray item never built");
}
