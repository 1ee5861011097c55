//! Takeover by the next consumer: re-attach to the running build after a crash, handoff
//! on drain (and from the run loop on cancel) with the next consumer taking over at once,
//! and a redelivered job whose record is already final acknowledged without a rebuild.

use crate::support::*;
use kiro_protocol::*;
use std::time::Duration;

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
async fn a_run_stopped_before_it_began_takes_nothing() {
    // The binary installs its signal handlers before wiring: a SIGTERM during start-up
    // cancels the token before the loop runs, and the loop must not receive then.
    let h = Harness::new();
    h.send("A-1", "alpha").await;
    let mut e = h.engine("c1");
    let cancel = tokio_util::sync::CancellationToken::new();
    cancel.cancel();
    let stats = tokio::time::timeout(
        Duration::from_secs(1),
        e.run(cancel, kiro_consumer::RunUntil::Shutdown),
    )
    .await
    .expect("ends at once");
    assert_eq!(stats.totals.received, 0);
    assert_eq!(h.runner.starts(), 0);
    let depth = h.depth().await;
    assert_eq!((depth.visible, depth.in_flight), (1, 0), "{depth:?}");
    // Never received: its next delivery is its first.
    let d = h.queue.receive(1, Duration::ZERO).await.unwrap();
    assert_eq!(d[0].receive_count, 1, "{d:?}");
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
