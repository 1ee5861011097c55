//! Test support: a harness around the engine, the embedded queue and lease store, and a
//! scripted build runner.
//!
//! `ScriptedRunner` is a test stand-in for the `BuildRunner` port (the real runners pass
//! the build contract suite in `kiro-backends`): a build finishes when the test says so,
//! with the exported variables the test scripts per item and attempt. Its keys behave
//! as CodeBuild's tokens: the same key with other parameters is refused (`contention`,
//! "parameter mismatch"), and with `expiring_keys` a key is forgotten after 5 minutes.

use async_trait::async_trait;
use kiro_backends::embedded::{EmbeddedDb, QueueConfig, SqliteLeaseStore, SqliteQueue};
use kiro_consumer::clock::TokioClock;
use kiro_consumer::{Engine, EngineConfig, Ports, RetryPolicy};
use kiro_protocol::ports::queue::standard_attributes;
use kiro_protocol::*;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ScriptedBuild {
    pub id: BuildId,
    pub item: String,
    pub key: String,
    pub env: BTreeMap<String, String>,
    pub state: BuildState,
    pub exported: BTreeMap<String, String>,
    /// The request that started it.
    pub req: BuildRequest,
    pub started: tokio::time::Instant,
}

/// How long CodeBuild honours an idempotency token.
pub const TOKEN_WINDOW: Duration = Duration::from_secs(300);

/// A scripted `BuildRunner` (test stand-in): idempotent on the key, builds stay
/// IN_PROGRESS until `finish` is called.
#[derive(Debug, Default)]
pub struct ScriptedRunner {
    pub builds: Mutex<Vec<ScriptedBuild>>,
    pub stopped: Mutex<Vec<BuildId>>,
    pub fail_start: Mutex<Option<PortError>>,
    /// Keys are forgotten [`TOKEN_WINDOW`] after their build started (CodeBuild).
    pub expiring_keys: std::sync::atomic::AtomicBool,
    /// `find` answers `None` (a build not visible yet).
    pub hide_from_find: std::sync::atomic::AtomicBool,
    /// Every request `start` was called with.
    pub start_calls: Mutex<Vec<BuildRequest>>,
}

impl ScriptedRunner {
    pub fn starts(&self) -> usize {
        self.builds.lock().unwrap().len()
    }

    pub fn builds_of(&self, item: &str) -> Vec<ScriptedBuild> {
        self.builds
            .lock()
            .unwrap()
            .iter()
            .filter(|b| b.item == item)
            .cloned()
            .collect()
    }

    /// Finish the latest build of `item` with an outcome.
    pub fn finish(&self, item: &str, state: BuildState, outcome: &WorkerOutcome) {
        let mut builds = self.builds.lock().unwrap();
        let b = builds
            .iter_mut()
            .rev()
            .find(|b| b.item == item)
            .expect("a build of the item");
        b.state = state;
        b.exported = outcome.to_vars();
    }

    pub fn succeed(&self, item: &str) {
        let mut o = WorkerOutcome::success();
        o.coverage = Some(91.0);
        self.finish(item, BuildState::Succeeded, &o);
    }

    pub fn fail(&self, item: &str, class: FailureClass) {
        self.finish(
            item,
            BuildState::Failed,
            &WorkerOutcome::failure(Failure::new(class, format!("scripted {class}"))),
        );
    }
}

#[async_trait]
impl BuildRunner for ScriptedRunner {
    async fn start(&self, req: &BuildRequest) -> Result<BuildId, PortError> {
        self.start_calls.lock().unwrap().push(req.clone());
        if let Some(e) = self.fail_start.lock().unwrap().clone() {
            return Err(e);
        }
        let mut builds = self.builds.lock().unwrap();
        let expiring = self
            .expiring_keys
            .load(std::sync::atomic::Ordering::Relaxed);
        if let Some(b) = builds.iter().rev().find(|b| {
            b.key == req.idempotency_key && (!expiring || b.started.elapsed() < TOKEN_WINDOW)
        }) {
            if b.req != *req {
                return Err(PortError::new(
                    FailureClass::Contention,
                    format!(
                        "parameter mismatch: key {} was used with other parameters",
                        req.idempotency_key
                    ),
                ));
            }
            return Ok(b.id.clone());
        }
        let id = BuildId::new(format!("scripted:{}", builds.len() + 1));
        builds.push(ScriptedBuild {
            id: id.clone(),
            item: req.item.to_string(),
            key: req.idempotency_key.clone(),
            env: req.env.clone(),
            state: BuildState::InProgress,
            exported: BTreeMap::new(),
            req: req.clone(),
            started: tokio::time::Instant::now(),
        });
        Ok(id)
    }

    async fn find(&self, key: &str, _since: Timestamp) -> Result<Option<BuildId>, PortError> {
        if self
            .hide_from_find
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Ok(None);
        }
        let builds = self.builds.lock().unwrap();
        Ok(builds.iter().find(|b| b.key == key).map(|b| b.id.clone()))
    }

    async fn status(&self, ids: &[BuildId]) -> Result<Vec<BuildStatus>, PortError> {
        let builds = self.builds.lock().unwrap();
        Ok(builds
            .iter()
            .filter(|b| ids.contains(&b.id))
            .map(|b| BuildStatus {
                id: b.id.clone(),
                state: b.state,
                phase: None,
                started_at: Timestamp(0),
                ended_at: None,
                exported: b.exported.clone(),
                log: None,
                message: None,
            })
            .collect())
    }

    async fn stop(&self, id: &BuildId) -> Result<(), PortError> {
        self.stopped.lock().unwrap().push(id.clone());
        let mut builds = self.builds.lock().unwrap();
        if let Some(b) = builds.iter_mut().find(|b| &b.id == id) {
            b.state = BuildState::Stopped;
        }
        Ok(())
    }
}

/// One state directory shared by any number of engines ("consumer processes").
pub struct Harness {
    /// Keeps the state directory alive as long as the harness.
    _dir: tempfile::TempDir,
    pub clock: Arc<TokioClock>,
    pub queue: Arc<SqliteQueue>,
    pub leases: Arc<SqliteLeaseStore>,
    pub runner: Arc<ScriptedRunner>,
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
        Harness {
            _dir: dir,
            clock,
            queue,
            leases,
            runner: Arc::new(ScriptedRunner::default()),
        }
    }

    pub fn config(owner: &str) -> EngineConfig {
        EngineConfig {
            owner: owner.into(),
            max_jobs: 8,
            receive_wait: Duration::ZERO,
            lease_ttl: LEASE_TTL,
            visibility: VISIBILITY,
            renew_every: Duration::from_secs(10),
            safety_margin: Duration::from_secs(2),
            poll_every: Duration::from_secs(5),
            build_timeout: Some(Duration::from_secs(3600)),
            contention_delay: Duration::from_secs(60),
            retry: RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::from_secs(10),
                max_delay: Duration::from_secs(60),
            },
            build_env: BTreeMap::new(),
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

/// A lease store whose renewals, or the job-record writes of one state, can be made to
/// fail (an unreachable table).
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

#[async_trait]
impl LeaseStore for FlakyLeases {
    async fn acquire(&self, p: &ProjectKey, o: &str, t: Duration) -> Result<Lease, LeaseError> {
        self.inner.acquire(p, o, t).await
    }
    async fn renew(&self, l: &Lease, t: Duration) -> Result<Lease, LeaseError> {
        if *self.fail_renew.lock().unwrap() {
            return Err(LeaseError::Port(PortError::transient(
                "scripted: table unreachable",
            )));
        }
        self.inner.renew(l, t).await
    }
    async fn release(&self, l: &Lease) -> Result<(), LeaseError> {
        self.inner.release(l).await
    }
    async fn get(&self, p: &ProjectKey) -> Result<Option<LeaseView>, PortError> {
        self.inner.get(p).await
    }
    async fn record(&self, l: &Lease, j: &JobRecord) -> Result<(), LeaseError> {
        if *self.fail_record_of.lock().unwrap() == Some(j.state) {
            return Err(LeaseError::Port(PortError::transient(
                "scripted: table unreachable",
            )));
        }
        self.inner.record(l, j).await
    }
    async fn job(&self, p: &ProjectKey, i: &ItemId) -> Result<Option<JobRecord>, PortError> {
        self.inner.job(p, i).await
    }
    async fn jobs(&self) -> Result<Vec<JobRecord>, PortError> {
        self.inner.jobs().await
    }
}

/// A queue that counts how the engine acknowledges (one by one, or in batches).
#[derive(Debug)]
pub struct CountingQueue {
    pub inner: Arc<SqliteQueue>,
    pub single_acks: Mutex<usize>,
    pub batches: Mutex<Vec<usize>>,
}

#[async_trait]
impl WorkQueue for CountingQueue {
    async fn send(&self, m: OutgoingMessage) -> Result<SendOutcome, PortError> {
        self.inner.send(m).await
    }
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, PortError> {
        self.inner.receive(max, wait).await
    }
    async fn extend(
        &self,
        r: &[Receipt],
        v: Duration,
    ) -> Result<Vec<Result<(), PortError>>, PortError> {
        self.inner.extend(r, v).await
    }
    async fn ack(&self, r: &Receipt) -> Result<(), PortError> {
        *self.single_acks.lock().unwrap() += 1;
        self.inner.ack(r).await
    }
    async fn ack_batch(&self, r: &[Receipt]) -> Result<Vec<Result<(), PortError>>, PortError> {
        self.batches.lock().unwrap().push(r.len());
        self.inner.ack_batch(r).await
    }
    async fn release(&self, r: &Receipt, d: Duration) -> Result<(), PortError> {
        self.inner.release(r, d).await
    }
    async fn dead_letter(&self, d: &Delivery, l: &DeadLetter) -> Result<(), PortError> {
        self.inner.dead_letter(d, l).await
    }
    async fn dlq_list(&self, n: usize) -> Result<Vec<DeadLetterEntry>, PortError> {
        self.inner.dlq_list(n).await
    }
    async fn dlq_replay(&self, s: &DlqSelection, dry: bool) -> Result<ReplayReport, PortError> {
        self.inner.dlq_replay(s, dry).await
    }
    async fn dlq_redrive(&self) -> Result<u64, PortError> {
        self.inner.dlq_redrive().await
    }
    async fn depth(&self) -> Result<QueueDepth, PortError> {
        self.inner.depth().await
    }
}
