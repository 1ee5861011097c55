//! [`Spy`]: any port adapter wrapped so that every call is counted per method, then
//! forwarded unchanged to the adapter — the one forwarding wrapper of the tests and
//! benchmarks (instead of a hand-written one per test, which silently kept a trait's
//! default body wherever it forgot a method).
//!
//! A spy implements every port of `kiro-protocol` its adapter implements: `WorkQueue`,
//! `LeaseStore`, `BuildRunner`, `Board`, `PullRequests`, `TaskProtection`. Each call is
//! tallied under its method's name with the number of items it carried (the length of
//! its receipts or build ids for a batch call, else 1), and handed to an optional
//! observer (e.g. a benchmark's cost model) before it is forwarded.
//!
//! Invariant: a spy forwards EVERY method of its port, those with a default body
//! (`destination`, `ack_batch`, `dlq_replay`, `dlq_purge`, `find`, `publish_check`, `refresh_every`)
//! included, and changes no argument and no answer.

use async_trait::async_trait;
use kiro_protocol::{
    Board, BoardItem, BuildId, BuildRequest, BuildRunner, BuildStatus, CheckReport, DeadLetter,
    Delivery, Destination, DlqListing, DlqSelection, ItemId, ItemStatus, JobRecord, Lease,
    LeaseError, LeaseStore, LeaseView, OutgoingMessage, PortError, PrNumber, ProjectKey,
    PullRequest, PullRequests, QueueDepth, Receipt, ReplayProgress, ReplayReport, RepoName, Report,
    SendOutcome, Session, SessionView, TaskProtection, Timestamp, WorkQueue,
};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One call a spy saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    /// The port method's name, e.g. `"ack_batch"`.
    pub method: &'static str,
    /// How many receipts or build ids it carried (1 for a call about one thing).
    pub items: usize,
}

/// The calls of one method so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub calls: usize,
    pub items: usize,
}

type Observer = Arc<dyn Fn(&Call) + Send + Sync>;

/// A port adapter whose calls are counted; see the module documentation.
pub struct Spy<P: ?Sized> {
    inner: Arc<P>,
    tally: Mutex<BTreeMap<&'static str, Tally>>,
    observer: Option<Observer>,
}

impl<P: ?Sized + std::fmt::Debug> std::fmt::Debug for Spy<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spy")
            .field("inner", &self.inner)
            .field("tally", &self.tally())
            .finish_non_exhaustive()
    }
}

impl<P: ?Sized> Spy<P> {
    /// Spy on `inner`.
    pub fn new(inner: Arc<P>) -> Self {
        Spy {
            inner,
            tally: Mutex::default(),
            observer: None,
        }
    }

    /// Also hand every call to `observer`, before it is forwarded.
    pub fn with_observer(mut self, observer: impl Fn(&Call) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// The adapter spied on.
    pub fn inner(&self) -> &Arc<P> {
        &self.inner
    }

    /// How many times `method` was called.
    pub fn calls(&self, method: &str) -> usize {
        self.tally_of(method).calls
    }

    /// How many items the calls of `method` carried in all.
    pub fn items(&self, method: &str) -> usize {
        self.tally_of(method).items
    }

    /// Every method called so far, with its tally.
    pub fn tally(&self) -> BTreeMap<&'static str, Tally> {
        self.tally.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn tally_of(&self, method: &str) -> Tally {
        self.tally
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(method)
            .copied()
            .unwrap_or_default()
    }

    fn note(&self, method: &'static str, items: usize) {
        let call = Call { method, items };
        {
            let mut tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
            let t = tally.entry(method).or_default();
            t.calls += 1;
            t.items += items;
        }
        if let Some(observer) = &self.observer {
            observer(&call);
        }
    }
}

#[async_trait]
impl<P: WorkQueue + ?Sized> WorkQueue for Spy<P> {
    fn destination(&self) -> Destination {
        self.note("destination", 1);
        self.inner.destination()
    }
    async fn send(&self, msg: OutgoingMessage) -> Result<SendOutcome, PortError> {
        self.note("send", 1);
        self.inner.send(msg).await
    }
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, PortError> {
        self.note("receive", 1);
        self.inner.receive(max, wait).await
    }
    async fn extend(
        &self,
        receipts: &[Receipt],
        visibility: Duration,
    ) -> Result<Vec<Result<(), PortError>>, PortError> {
        self.note("extend", receipts.len());
        self.inner.extend(receipts, visibility).await
    }
    async fn ack(&self, receipt: &Receipt) -> Result<(), PortError> {
        self.note("ack", 1);
        self.inner.ack(receipt).await
    }
    async fn ack_batch(
        &self,
        receipts: &[Receipt],
    ) -> Result<Vec<Result<(), PortError>>, PortError> {
        self.note("ack_batch", receipts.len());
        self.inner.ack_batch(receipts).await
    }
    async fn release(&self, receipt: &Receipt, delay: Duration) -> Result<(), PortError> {
        self.note("release", 1);
        self.inner.release(receipt, delay).await
    }
    async fn dead_letter(&self, delivery: &Delivery, letter: &DeadLetter) -> Result<(), PortError> {
        self.note("dead_letter", 1);
        self.inner.dead_letter(delivery, letter).await
    }
    async fn dlq_list(&self, limit: usize) -> Result<DlqListing, PortError> {
        self.note("dlq_list", 1);
        self.inner.dlq_list(limit).await
    }
    async fn dlq_replay(
        &self,
        selection: &DlqSelection,
        dry_run: bool,
    ) -> Result<ReplayReport, PortError> {
        self.note("dlq_replay", 1);
        self.inner.dlq_replay(selection, dry_run).await
    }
    async fn dlq_replay_with(
        &self,
        selection: &DlqSelection,
        dry_run: bool,
        progress: &mut dyn ReplayProgress,
    ) -> Result<ReplayReport, PortError> {
        self.note("dlq_replay_with", 1);
        self.inner
            .dlq_replay_with(selection, dry_run, progress)
            .await
    }
    async fn dlq_redrive(&self) -> Result<u64, PortError> {
        self.note("dlq_redrive", 1);
        self.inner.dlq_redrive().await
    }
    async fn dlq_purge(&self) -> Result<u64, PortError> {
        self.note("dlq_purge", 1);
        self.inner.dlq_purge().await
    }
    async fn depth(&self) -> Result<QueueDepth, PortError> {
        self.note("depth", 1);
        self.inner.depth().await
    }
}

#[async_trait]
impl<P: LeaseStore + ?Sized> LeaseStore for Spy<P> {
    async fn open_session(&self, id: &str, ttl: Duration) -> Result<Session, LeaseError> {
        self.note("open_session", 1);
        self.inner.open_session(id, ttl).await
    }
    async fn renew_session(&self, session: &Session, ttl: Duration) -> Result<Session, LeaseError> {
        self.note("renew_session", 1);
        self.inner.renew_session(session, ttl).await
    }
    async fn end_session(&self, session: &Session) -> Result<(), LeaseError> {
        self.note("end_session", 1);
        self.inner.end_session(session).await
    }
    async fn session(&self, id: &str) -> Result<Option<SessionView>, PortError> {
        self.note("session", 1);
        self.inner.session(id).await
    }
    async fn acquire(&self, project: &ProjectKey, session: &Session) -> Result<Lease, LeaseError> {
        self.note("acquire", 1);
        self.inner.acquire(project, session).await
    }
    async fn release(&self, lease: &Lease) -> Result<(), LeaseError> {
        self.note("release", 1);
        self.inner.release(lease).await
    }
    async fn get(&self, project: &ProjectKey) -> Result<Option<LeaseView>, PortError> {
        self.note("get", 1);
        self.inner.get(project).await
    }
    async fn record(&self, lease: &Lease, job: &JobRecord) -> Result<(), LeaseError> {
        self.note("record", 1);
        self.inner.record(lease, job).await
    }
    async fn record_new(&self, lease: &Lease, job: &JobRecord) -> Result<bool, LeaseError> {
        self.note("record_new", 1);
        self.inner.record_new(lease, job).await
    }
    async fn record_and_release(&self, lease: &Lease, job: &JobRecord) -> Result<(), LeaseError> {
        self.note("record_and_release", 1);
        self.inner.record_and_release(lease, job).await
    }
    async fn job(
        &self,
        project: &ProjectKey,
        item: &ItemId,
    ) -> Result<Option<JobRecord>, PortError> {
        self.note("job", 1);
        self.inner.job(project, item).await
    }
    async fn jobs(&self) -> Result<Vec<JobRecord>, PortError> {
        self.note("jobs", 1);
        self.inner.jobs().await
    }
    async fn cancel(&self, job: &JobRecord) -> Result<kiro_protocol::Cancellation, LeaseError> {
        self.note("cancel", 1);
        self.inner.cancel(job).await
    }
}

#[async_trait]
impl<P: BuildRunner + ?Sized> BuildRunner for Spy<P> {
    async fn start(&self, req: &BuildRequest) -> Result<BuildId, PortError> {
        self.note("start", 1);
        self.inner.start(req).await
    }
    async fn find(&self, key: &str, since: Timestamp) -> Result<Option<BuildId>, PortError> {
        self.note("find", 1);
        self.inner.find(key, since).await
    }
    async fn status(&self, ids: &[BuildId]) -> Result<Vec<BuildStatus>, PortError> {
        self.note("status", ids.len());
        self.inner.status(ids).await
    }
    async fn stop(&self, id: &BuildId) -> Result<(), PortError> {
        self.note("stop", 1);
        self.inner.stop(id).await
    }
}

#[async_trait]
impl<P: Board + ?Sized> Board for Spy<P> {
    async fn ready_items(&self) -> Result<Vec<BoardItem>, PortError> {
        self.note("ready_items", 1);
        self.inner.ready_items().await
    }
    async fn set_status(
        &self,
        item: &str,
        status: ItemStatus,
        note: Option<&str>,
    ) -> Result<(), PortError> {
        self.note("set_status", 1);
        self.inner.set_status(item, status, note).await
    }
    async fn statuses(
        &self,
        items: &[String],
    ) -> Result<std::collections::HashMap<String, kiro_protocol::BoardStanding>, PortError> {
        self.note("statuses", 1);
        self.inner.statuses(items).await
    }
    async fn set_status_from(
        &self,
        item: &str,
        from: &[ItemStatus],
        status: ItemStatus,
        note: Option<&str>,
    ) -> Result<kiro_protocol::StatusChange, PortError> {
        self.note("set_status_from", 1);
        self.inner.set_status_from(item, from, status, note).await
    }
}

#[async_trait]
impl<P: PullRequests + ?Sized> PullRequests for Spy<P> {
    async fn get(&self, repo: &RepoName, pr: PrNumber) -> Result<Option<PullRequest>, PortError> {
        self.note("get", 1);
        self.inner.get(repo, pr).await
    }
    async fn upsert_report(
        &self,
        repo: &RepoName,
        pr: PrNumber,
        report: &Report,
    ) -> Result<(), PortError> {
        self.note("upsert_report", 1);
        self.inner.upsert_report(repo, pr, report).await
    }
    async fn comment(
        &self,
        repo: &RepoName,
        pr: PrNumber,
        comment: &Report,
    ) -> Result<(), PortError> {
        self.note("comment", 1);
        self.inner.comment(repo, pr, comment).await
    }
    async fn publish_check(
        &self,
        repo: &RepoName,
        pr: PrNumber,
        check: &CheckReport,
    ) -> Result<(), PortError> {
        self.note("publish_check", 1);
        self.inner.publish_check(repo, pr, check).await
    }
}

#[async_trait]
impl<P: TaskProtection + ?Sized> TaskProtection for Spy<P> {
    async fn set(&self, protected: bool) -> Result<(), PortError> {
        self.note("set", 1);
        self.inner.set(protected).await
    }
    fn refresh_every(&self) -> Option<Duration> {
        self.note("refresh_every", 1);
        self.inner.refresh_every()
    }
}

#[cfg(test)]
mod tests;
