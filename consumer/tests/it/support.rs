//! Test support: a harness around the engine, the embedded queue and lease store, and a
//! scripted build runner.
//!
//! The runner is `kiro_backends::testing::InMemoryBuilds::scripted()` (a test stand-in
//! that passes the build contract suite like the real runners): a build finishes when the
//! test says so, with the exported variables the test scripts per item and attempt. Its
//! keys behave as CodeBuild's tokens: the same key with other parameters is refused
//! (`contention`, "parameter mismatch"), and with `expire_keys_after(TOKEN_WINDOW)` a key
//! is forgotten after 5 minutes.

use async_trait::async_trait;
use kiro_backends::embedded::{EmbeddedDb, QueueConfig, SqliteLeaseStore, SqliteQueue};
use kiro_backends::testing::InMemoryBuilds;
use kiro_consumer::clock::TokioClock;
use kiro_consumer::{Engine, EngineConfig, Ports, RetryPolicy};
use kiro_protocol::ports::queue::standard_attributes;
use kiro_protocol::*;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long CodeBuild honours an idempotency token (for
/// [`InMemoryBuilds::expire_keys_after`]).
pub const TOKEN_WINDOW: Duration = Duration::from_secs(300);

/// Let `d` pass on tokio's clock (paused in these tests, so this advances it at once).
pub async fn pass(d: Duration) {
    tokio::time::sleep(d).await;
}

/// One state directory shared by any number of engines ("consumer processes").
pub struct Harness {
    /// Keeps the state directory alive as long as the harness.
    _dir: tempfile::TempDir,
    pub clock: Arc<TokioClock>,
    pub queue: Arc<SqliteQueue>,
    pub leases: Arc<SqliteLeaseStore>,
    pub runner: Arc<InMemoryBuilds>,
}

pub const VISIBILITY: Duration = Duration::from_secs(30);
pub const LEASE_TTL: Duration = Duration::from_secs(30);

impl Harness {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(TokioClock::new());
        let db = EmbeddedDb::open_dir(dir.path()).unwrap();
        let queue = Arc::new(
            SqliteQueue::new(
                db.clone(),
                clock.clone(),
                QueueConfig {
                    visibility_timeout: VISIBILITY,
                    ..QueueConfig::default()
                },
            )
            .unwrap(),
        );
        let leases =
            Arc::new(SqliteLeaseStore::new(db, clock.clone(), Duration::from_secs(1)).unwrap());
        let runner = Arc::new(InMemoryBuilds::scripted().with_clock(clock.clone()));
        Harness {
            _dir: dir,
            clock,
            queue,
            leases,
            runner,
        }
    }

    pub fn config(owner: &str) -> EngineConfig {
        EngineConfig {
            owner: owner.into(),
            max_jobs: 8,
            receive_wait: Duration::ZERO,
            receive_gap: Duration::ZERO,
            lease_ttl: LEASE_TTL,
            visibility: VISIBILITY,
            renew_every: Duration::from_secs(10),
            safety_margin: Duration::from_secs(2),
            poll_every: Duration::from_secs(5),
            board_every: None,
            build_timeout: Some(Duration::from_secs(3600)),
            contention_delay: Duration::from_secs(60),
            retry: RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::from_secs(10),
                max_delay: Duration::from_secs(60),
            },
            build_env: BTreeMap::new(),
            item_agent_budget: kiro_consumer::defaults::duration(
                kiro_consumer::defaults::ITEM_AGENT_BUDGET,
            ),
            metrics: None,
        }
    }

    pub fn engine(&self, owner: &str) -> Engine {
        self.engine_with(Self::config(owner), self.leases.clone())
    }

    pub fn engine_with(&self, cfg: EngineConfig, leases: Arc<dyn LeaseStore>) -> Engine {
        Engine::new(
            cfg,
            Ports {
                queue: self.queue.clone(),
                leases,
                builds: self.runner.clone(),
                board: None,
                pulls: None,
                clock: self.clock.clone(),
                protection: None,
            },
        )
    }

    /// An engine over this harness with a forge: `board` and `pulls`.
    pub fn engine_on_forge(
        &self,
        cfg: EngineConfig,
        board: Arc<dyn Board>,
        pulls: Option<Arc<dyn PullRequests>>,
    ) -> Engine {
        Engine::new(
            cfg,
            Ports {
                queue: self.queue.clone(),
                leases: self.leases.clone(),
                builds: self.runner.clone(),
                board: Some(board),
                pulls,
                clock: self.clock.clone(),
                protection: None,
            },
        )
    }

    pub async fn send(&self, id: &str, project: &str) -> MessageId {
        self.send_in_group(id, project, project).await
    }

    /// Send item `id` of `project` in message group `group` (normally the project).
    pub async fn send_in_group(&self, id: &str, project: &str, group: &str) -> MessageId {
        let item = BoardItem {
            id: id.into(),
            project: project.into(),
            title: format!("item {id}"),
            repo: "acme/calc".into(),
            branch: "feature/x".into(),
            spec: "x".into(),
            pr: "1".into(),
            updated_at: "1".into(),
            conflict: None,
            assignees: Vec::new(),
        }
        .validate()
        .unwrap();
        self.send_body(
            Envelope::new(item.clone(), TraceContext::default(), self.clock.now()).encode(),
            group,
            item.dedup_id(),
        )
        .await
    }

    pub async fn send_body(&self, body: String, project: &str, dedup: DedupId) -> MessageId {
        let trace = TraceContext::default();
        self.queue
            .send(OutgoingMessage {
                body,
                group: ProjectKey::parse(project).unwrap(),
                dedup,
                attributes: standard_attributes(&trace),
                trace,
            })
            .await
            .unwrap()
            .message_id
    }

    pub async fn job(&self, project: &str, item: &str) -> JobRecord {
        self.leases
            .job(
                &ProjectKey::parse(project).unwrap(),
                &ItemId::parse(item).unwrap(),
            )
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no job record for {item}"))
    }

    pub async fn depth(&self) -> QueueDepth {
        self.queue.depth().await.unwrap()
    }
}

/// A lease store whose session renewals, or the job-record writes of one state, can be
/// made to fail (an unreachable table).
#[derive(Debug)]
pub struct FlakyLeases {
    pub inner: Arc<SqliteLeaseStore>,
    pub fail_renew: Mutex<bool>,
    /// Job records in this state are not written (a transient error).
    pub fail_record_of: Mutex<Option<JobState>>,
}

impl FlakyLeases {
    pub fn new(inner: Arc<SqliteLeaseStore>) -> Self {
        FlakyLeases {
            inner,
            fail_renew: Mutex::new(false),
            fail_record_of: Mutex::new(None),
        }
    }
}

impl FlakyLeases {
    /// A job-record write fails (transiently) when its state is the scripted one.
    fn fail_if_scripted(&self, j: &JobRecord) -> Result<(), LeaseError> {
        if *self.fail_record_of.lock().unwrap() == Some(j.state) {
            return Err(LeaseError::Port(PortError::transient(
                "scripted: table unreachable",
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl LeaseStore for FlakyLeases {
    async fn open_session(&self, id: &str, t: Duration) -> Result<Session, LeaseError> {
        self.inner.open_session(id, t).await
    }
    async fn renew_session(&self, s: &Session, t: Duration) -> Result<Session, LeaseError> {
        if *self.fail_renew.lock().unwrap() {
            return Err(LeaseError::Port(PortError::transient(
                "scripted: table unreachable",
            )));
        }
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
        self.fail_if_scripted(j)?;
        self.inner.record(l, j).await
    }
    async fn record_new(&self, l: &Lease, j: &JobRecord) -> Result<bool, LeaseError> {
        self.fail_if_scripted(j)?;
        self.inner.record_new(l, j).await
    }
    async fn record_and_release(&self, l: &Lease, j: &JobRecord) -> Result<(), LeaseError> {
        self.fail_if_scripted(j)?;
        self.inner.record_and_release(l, j).await
    }
    async fn job(&self, p: &ProjectKey, i: &ItemId) -> Result<Option<JobRecord>, PortError> {
        self.inner.job(p, i).await
    }
    async fn jobs(&self) -> Result<Vec<JobRecord>, PortError> {
        self.inner.jobs().await
    }
    async fn cancel(&self, j: &JobRecord) -> Result<kiro_protocol::Cancellation, LeaseError> {
        self.inner.cancel(j).await
    }
}

/// Take `project`'s lease as a consumer named `owner` would: open a session for `ttl`
/// (suffixed when the name was used before), then acquire under it.
pub async fn acquire_as(
    store: &dyn LeaseStore,
    project: &ProjectKey,
    owner: &str,
    ttl: Duration,
) -> Result<Lease, LeaseError> {
    let mut id = owner.to_owned();
    let mut n = 0;
    let session = loop {
        match store.open_session(&id, ttl).await {
            Ok(s) => break s,
            Err(e) if e.class() == FailureClass::PermanentInput && n < 10 => {
                n += 1;
                id = format!("{owner}.{n}");
            }
            Err(e) => return Err(e),
        }
    };
    store.acquire(project, &session).await
}
