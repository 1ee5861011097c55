//! Supervision of a running job: heartbeats keep a long build alive; an unconfirmed
//! renewal stops the job at its `safe_until`; and when its fence is lost, the build is
//! left running while the job record names it (in transit, or adopted by the new holder)
//! and stopped only when the record names another build.

use crate::support::*;
use kiro_protocol::*;
use std::sync::Arc;
use std::time::Duration;

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
