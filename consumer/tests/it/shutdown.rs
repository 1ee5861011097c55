//! A shutdown signal that arrives while a received batch is being dispatched (found by
//! the fault suite, `tests/it/fault/`): the builds that dispatch starts are handed off
//! like every other job — record `handoff`, message visible now, lease released — never
//! left behind with the lease held and the message invisible.

use crate::support::Harness;
use async_trait::async_trait;
use kiro_protocol::*;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The embedded lease store, with the shutdown signal fired the moment a build id is
/// recorded (mid-dispatch: the build runs, the job is not yet supervised).
#[derive(Debug)]
struct SignalOnStart {
    inner: Arc<dyn LeaseStore>,
    cancel: CancellationToken,
}

#[async_trait]
impl LeaseStore for SignalOnStart {
    async fn open_session(&self, id: &str, t: Duration) -> Result<Session, LeaseError> {
        self.inner.open_session(id, t).await
    }
    async fn renew_session(&self, s: &Session, t: Duration) -> Result<Session, LeaseError> {
        self.inner.renew_session(s, t).await
    }
    async fn end_session(&self, s: &Session) -> Result<(), LeaseError> {
        self.inner.end_session(s).await
    }
    async fn session(&self, id: &str) -> Result<Option<SessionView>, PortError> {
        self.inner.session(id).await
    }
    async fn acquire(&self, p: &ProjectKey, s: &Session) -> Result<Lease, LeaseError> {
        self.inner.acquire(p, s).await
    }
    async fn release(&self, l: &Lease) -> Result<(), LeaseError> {
        self.inner.release(l).await
    }
    async fn get(&self, p: &ProjectKey) -> Result<Option<LeaseView>, PortError> {
        self.inner.get(p).await
    }
    async fn record(&self, l: &Lease, j: &JobRecord) -> Result<(), LeaseError> {
        let r = self.inner.record(l, j).await;
        if j.state == JobState::Running {
            self.cancel.cancel();
            // The dispatch goes on after a moment, as it would on a real store.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        r
    }
    async fn job(&self, p: &ProjectKey, i: &ItemId) -> Result<Option<JobRecord>, PortError> {
        self.inner.job(p, i).await
    }
    async fn jobs(&self) -> Result<Vec<JobRecord>, PortError> {
        self.inner.jobs().await
    }
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_during_dispatch_hands_off_the_builds_it_started() {
    let h = Harness::new();
    h.send("A-1", "alpha").await;
    h.send("B-1", "beta").await;
    let cancel = CancellationToken::new();
    let leases = Arc::new(SignalOnStart {
        inner: h.leases.clone(),
        cancel: cancel.clone(),
    });
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
