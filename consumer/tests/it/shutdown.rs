//! A shutdown signal that arrives while a received batch is being dispatched (found by
//! the fault suite, `tests/it/fault/`): the builds that dispatch starts are handed off
//! like every other job — record `handoff`, message visible now, lease released — never
//! left behind with the lease held and the message invisible.

use crate::support::Harness;
use kiro_backends::testing::Spy;
use kiro_protocol::*;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[tokio::test(start_paused = true)]
async fn a_shutdown_during_dispatch_hands_off_the_builds_it_started() {
    let h = Harness::new();
    h.send("A-1", "alpha").await;
    h.send("B-1", "beta").await;
    let cancel = CancellationToken::new();
    // The shutdown signal fires the moment a dispatch records its job (mid-dispatch: the
    // build is about to start or runs, the job is not yet supervised).
    let signal = cancel.clone();
    let leases = Arc::new(Spy::new(h.leases.clone()).with_observer(move |c| {
        if matches!(c.method, "record" | "record_new") {
            signal.cancel();
        }
    }));
    let mut e = h.engine_with(Harness::config("c1"), leases);
    e.run(cancel, kiro_consumer::RunUntil::Shutdown).await;

    assert_eq!(h.runner.starts(), 2, "both builds started");
    for (project, item) in [("alpha", "A-1"), ("beta", "B-1")] {
        let job = h.job(project, item).await;
        assert_eq!(job.state, JobState::Handoff, "{item}: {job:?}");
        assert!(job.build_id.is_some(), "{item}: the record names its build");
        let lease = h
            .leases
            .get(&ProjectKey::parse(project).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(lease.owner, None, "{item}: the lease is released");
    }
    assert_eq!(
        h.depth().await.visible,
        2,
        "both messages are visible again at once"
    );
    // The next consumer re-attaches to both builds at once, starting none.
    let mut next = h.engine("c2");
    let r = next.tick(Duration::ZERO).await;
    assert_eq!(r.adopted, 2, "{r:?}");
    assert_eq!(h.runner.starts(), 2, "no second build");
}
