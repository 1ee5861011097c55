//! A consumer that crashed between "intent recorded" and "build id recorded": the next
//! one re-attaches to the build the intent started and never starts a second one.
//!
//! The scripted runner refuses a key repeated with other parameters (as CodeBuild does)
//! and, with `expire_keys_after(TOKEN_WINDOW)`, forgets a key after 5 minutes (as CodeBuild does), so these
//! tests see what a rebuilt request (a new fence, a new trace context) would cause.

use crate::support::*;
use kiro_protocol::*;
use std::sync::Arc;
use std::time::Duration;

async fn pass(d: Duration) {
    tokio::time::sleep(d).await;
}

/// Consumer `c1` records the intent and starts the build, but cannot record the build
/// id, and dies. Returns the build it started and the intent's fence.
async fn crash_after_start(h: &Harness) -> (BuildId, Fence) {
    h.send("A-1", "alpha").await;
    let flaky = Arc::new(FlakyLeases::new(h.leases.clone()));
    *flaky.fail_record_of.lock().unwrap() = Some(JobState::Running);
    let mut c1 = h.engine_with(Harness::config("c1"), flaky);
    c1.tick(Duration::ZERO).await;
    drop(c1); // a crash: no drain
    assert_eq!(h.runner.starts(), 1);
    let job = h.job("alpha", "A-1").await;
    assert_eq!(
        (job.state, job.build_id.as_ref()),
        (JobState::Starting, None)
    );
    let recorded = job
        .start
        .clone()
        .expect("the request is recorded with the intent");
    let b = h.runner.builds_of("A-1").remove(0);
    assert_eq!(b.req, recorded, "the recorded request is the one sent");
    (b.id, job.fence)
}

#[tokio::test(start_paused = true)]
async fn the_next_consumer_replays_the_recorded_request_and_gets_the_same_build() {
    let h = Harness::new();
    let (started, fence1) = crash_after_start(&h).await;
    h.runner.hide_from_find(true);
    pass(VISIBILITY + LEASE_TTL).await;
    let mut c2 = h.engine("c2");
    let r = c2.tick(Duration::ZERO).await;
    assert_eq!((r.adopted, r.started), (1, 0), "{r:?}");
    assert_eq!(h.runner.starts(), 1, "no second build");
    let calls = h.runner.start_calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        calls[0], calls[1],
        "the replay is the recorded request, unchanged"
    );
    assert_eq!(
        calls[1].env.get("KIRO_FENCE").map(String::as_str),
        Some(fence1.to_string().as_str()),
        "the replay carries the intent's fence"
    );
    let job = h.job("alpha", "A-1").await;
    assert_eq!(job.build_id, Some(started.clone()));
    assert_eq!((job.state, job.attempts), (JobState::Running, 1));
    assert!(job.fence > fence1);
    // The adopted build carries the OLD fence in its environment; it may act because the
    // job record names it under the current fence.
    assert!(
        build_may_act(&*h.leases, &job.project, &job.item, fence1, Some(&started))
            .await
            .unwrap()
    );
    assert!(
        !build_may_act(
            &*h.leases,
            &job.project,
            &job.item,
            fence1,
            Some(&BuildId::new("scripted:other"))
        )
        .await
        .unwrap(),
        "another build under the old fence may not"
    );
    h.runner.succeed("A-1");
    pass(Duration::from_secs(6)).await;
    c2.tick(Duration::ZERO).await;
    let job = h.job("alpha", "A-1").await;
    assert_eq!((job.state, job.attempts), (JobState::Succeeded, 1));
}

#[tokio::test(start_paused = true)]
async fn after_the_key_expired_the_build_is_found_by_its_key_not_started_again() {
    let h = Harness::new();
    h.runner.expire_keys_after(Some(TOKEN_WINDOW));
    let (started, _) = crash_after_start(&h).await;
    // Longer than CodeBuild's 5-minute token window.
    pass(TOKEN_WINDOW + VISIBILITY + LEASE_TTL).await;
    let mut c2 = h.engine("c2");
    let r = c2.tick(Duration::ZERO).await;
    assert_eq!(r.adopted, 1, "{r:?}");
    assert_eq!(h.runner.starts(), 1, "found, not started again");
    assert_eq!(
        h.runner.start_calls().len(),
        1,
        "no replay once the build is found"
    );
    assert_eq!(h.job("alpha", "A-1").await.build_id, Some(started));
}

#[tokio::test(start_paused = true)]
async fn an_intent_whose_build_never_started_is_started_by_the_replay() {
    let h = Harness::new();
    h.send("A-1", "alpha").await;
    // c1 records the intent, then the start fails in a way that leaves the outcome
    // unknown to it, and it dies before settling anything.
    let flaky = Arc::new(FlakyLeases::new(h.leases.clone()));
    *flaky.fail_record_of.lock().unwrap() = Some(JobState::Retrying);
    h.runner
        .fail_starts(Some(PortError::transient("connection reset")));
    let mut c1 = h.engine_with(Harness::config("c1"), flaky);
    c1.tick(Duration::ZERO).await;
    drop(c1);
    h.runner.fail_starts(None);
    let job = h.job("alpha", "A-1").await;
    assert_eq!(job.state, JobState::Starting);
    assert_eq!(h.runner.starts(), 0);
    pass(VISIBILITY + LEASE_TTL).await;
    let mut c2 = h.engine("c2");
    let r = c2.tick(Duration::ZERO).await;
    assert_eq!(r.adopted, 1, "{r:?}");
    assert_eq!(h.runner.starts(), 1);
    let b = h.runner.builds_of("A-1").remove(0);
    assert_eq!(Some(b.req), job.start, "started with the recorded request");
}

#[tokio::test(start_paused = true)]
async fn a_refused_replay_keeps_the_intent_and_never_starts_a_second_build() {
    let h = Harness::new();
    let (_, _) = crash_after_start(&h).await;
    // The intent's request no longer matches what the runner holds for its key (as after
    // a runner configuration change), and the build is not visible to `find` yet.
    let mut job = h.job("alpha", "A-1").await;
    let mut other = job.start.clone().unwrap();
    other.env.insert("KIRO_FENCE".into(), "999".into());
    job.start = Some(other);
    pass(LEASE_TTL + Duration::from_secs(2)).await; // c1's lease lapses
    let lease = acquire_as(&*h.leases, &job.project, "editor", LEASE_TTL)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    h.leases.record(&lease, &job).await.unwrap();
    h.leases.release(&lease).await.unwrap();
    h.runner.hide_from_find(true);
    pass(VISIBILITY + LEASE_TTL).await;
    let mut c2 = h.engine("c2");
    let r = c2.tick(Duration::ZERO).await;
    assert_eq!((r.adopted, r.started, r.dead_lettered), (0, 0, 0), "{r:?}");
    assert_eq!(r.deferred, 1, "{r:?}");
    assert_eq!(h.runner.starts(), 1, "no second build");
    let kept = h.job("alpha", "A-1").await;
    assert_eq!(kept.state, JobState::Starting, "the intent is kept");
    assert_eq!(kept.start, job.start);
    assert_eq!(kept.attempts, 1, "no attempt spent");
    assert_eq!(
        kept.last_failure.map(|f| f.class),
        Some(FailureClass::Contention)
    );
    // Once the build is visible, the next delivery adopts it.
    h.runner.hide_from_find(false);
    pass(Duration::from_secs(16 * 60)).await;
    let r = c2.tick(Duration::ZERO).await;
    assert_eq!(r.adopted, 1, "{r:?}");
    assert_eq!(h.runner.starts(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_concurrent_build_limit_waits_without_spending_attempts() {
    let h = Harness::new();
    h.send("A-1", "alpha").await;
    let mut cfg = Harness::config("c1");
    cfg.retry.max_attempts = 1;
    let mut e = h.engine_with(cfg, h.leases.clone());
    h.runner.fail_starts(Some(PortError::new(
        FailureClass::Throttled,
        "codebuild:StartBuild failed with AccountLimitExceededException: \
         Cannot have more than 10 active builds for the account",
    )));
    for round in 0..5 {
        let r = e.tick(Duration::ZERO).await;
        assert_eq!((r.retried, r.dead_lettered), (1, 0), "round {round}: {r:?}");
        let d = h.depth().await;
        assert_eq!(
            (d.visible, d.dead_letters),
            (0, 0),
            "released with a delay: {d:?}"
        );
        let job = h.job("alpha", "A-1").await;
        assert_eq!((job.state, job.attempts), (JobState::Retrying, 0));
        pass(Duration::from_secs(2 * 60)).await;
    }
    h.runner.fail_starts(None);
    let r = e.tick(Duration::ZERO).await;
    assert_eq!(r.started, 1, "{r:?}");
    assert_eq!(h.job("alpha", "A-1").await.attempts, 1);
}

#[tokio::test(start_paused = true)]
async fn an_unset_timeout_sends_none_and_a_set_one_is_sent() {
    let h = Harness::new();
    h.send("A-1", "alpha").await;
    let mut cfg = Harness::config("c1");
    cfg.build_timeout = None;
    let mut e = h.engine_with(cfg, h.leases.clone());
    e.tick(Duration::ZERO).await;
    assert_eq!(h.runner.builds_of("A-1")[0].req.timeout, None);
    h.send("B-1", "beta").await;
    let mut cfg = Harness::config("c2");
    cfg.build_timeout = Some(Duration::from_secs(90 * 60));
    let mut e = h.engine_with(cfg, h.leases.clone());
    e.tick(Duration::ZERO).await;
    assert_eq!(
        h.runner.builds_of("B-1")[0].req.timeout,
        Some(Duration::from_secs(90 * 60))
    );
}

#[tokio::test(start_paused = true)]
async fn a_new_message_for_an_item_with_an_open_intent_re_attaches_to_it() {
    let h = Harness::new();
    let (started, _) = crash_after_start(&h).await;
    // The crashed consumer's message is gone (say, replayed from the DLQ as a new one):
    // a new message for the same item arrives while the intent has no build id.
    pass(VISIBILITY + LEASE_TTL).await;
    let old = h.queue.receive(1, Duration::ZERO).await.unwrap().remove(0);
    h.queue.ack(&old.receipt).await.unwrap();
    let body = Envelope::decode(&old.body).unwrap().encode();
    h.send_body(body, "alpha", DedupId::new("A-1.replayed"))
        .await;
    let mut c2 = h.engine("c2");
    let r = c2.tick(Duration::ZERO).await;
    assert_eq!((r.adopted, r.started), (1, 0), "{r:?}");
    assert_eq!(h.runner.starts(), 1, "no second build");
    let job = h.job("alpha", "A-1").await;
    assert_eq!(job.build_id, Some(started));
    assert_eq!(job.attempts, 1);
}
