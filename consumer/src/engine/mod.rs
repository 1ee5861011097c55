//! The consumer engine: the dispatch loop and one supervisor per job.
//!
//! [`Engine::run`] (`run.rs`) is the loop: one long-polling receive at a time on its own
//! task, always for the full `receive_wait`, while supervision, polling and protection run
//! on their own deadlines. [`Engine::tick`] is one deterministic step that tests and the
//! benchmarks drive (with tokio's paused time). Each phase has its own file:
//! 1. **receive** while below `max_jobs` (never while draining), here and in `run.rs`;
//! 2. **dispatch** (`dispatch.rs`) each delivery: decode (a bad envelope is dead-lettered
//!    as permanent input), take the project's lease (contention releases the message
//!    with a delay and never burns an attempt), read the item's job record and either
//!    settle a redelivered final job, **re-attach** to a build that may be running, or
//!    record the intent and start a new build;
//! 3. **supervise** (`supervise.rs`): renew the leases that are due; on one beat for the
//!    consumer (when the receipt with the least visibility left has a third of the
//!    visibility timeout left), extend EVERY receipt in flight, in batches of 10;
//!    confirmations move each job's monotonic `safe_until` deadline; a job that passes it
//!    is cancelled (the engine stops acting on it, and stops the build if its fence was
//!    lost);
//! 4. **poll and settle** (`settle.rs`): every `poll_every`, ONE round polls every running
//!    build (≤ 100 ids per batched status call): ack on success; otherwise the
//!    [`RetryPolicy`] decides between a delayed retry (the message stays in flight, so the
//!    project's order holds) and an explicit dead letter with reason, class and attempt
//!    history;
//! 5. **protect** (`protection.rs`): hold scale-in protection while any job is in flight
//!    (on at 0 → 1 job, off at → 0, re-armed before it expires); failures are logged,
//!    never fatal.
//!
//! Cancellation (`withdraw.rs`): an item whose card left the board's active statuses is
//! withdrawn — when its message is taken (one board read per received batch) and, while
//! its build runs, within one poll round (one batched board read per round): record
//! `cancelled` through [`LeaseStore::cancel`](kiro_protocol::LeaseStore::cancel) (fence
//! bumped), build stopped, message acknowledged, card left where it is. A job whose
//! record write finds its fence lost to such a cancel (`kiro-consumer cancel`)
//! acknowledges its message too.
//!
//! On shutdown, [`Engine::drain`] (`drain.rs`) hands every job off (record `handoff`,
//! make the message visible, release the lease) instead of waiting. Spans and metrics
//! are written by `observe.rs`.
//!
//! Invariants: a build is started only by the holder of the project's lease, after the
//! intent is recorded under its fence; every job-record write is fence-conditional; a
//! final state is recorded before the message is settled, so a crash in between is
//! repaired by the next delivery.
//!
//! This module holds what the phases share: the configuration, the engine's state and
//! jobs, the step, and the helpers every phase uses. A phase file imports only this
//! module and `observe.rs`, never another phase; the calls across phases go one way:
//! dispatch settles a delivery that ends before its build runs (`settle.rs`), and drain
//! gives scale-in protection up (`protection.rs`).

use crate::defaults;
use crate::policy::RetryPolicy;
use kiro_protocol::{
    Board, BuildId, BuildRunner, Clock, Delivery, Destination, JobRecord, Lease, LeaseStore,
    PortError, PullRequests, TaskProtection, WorkItem, WorkQueue,
};
use kiro_telemetry::metrics::Metrics;
use protection::ProtectionState;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tracing::{Span, warn};

mod dispatch;
mod drain;
mod observe;
mod protection;
mod run;
mod session;
mod settle;
mod supervise;
mod withdraw;

pub use settle::outcome_of;

/// Most messages one receive asks for (the SQS limit).
const RECEIVE_BATCH: usize = 10;

/// The longest one call to the forge (a board read or write, a pull-request comment) may
/// hold the loop. Supervision runs on the same task, so a forge that stalls, or asks to
/// have its rate limit waited out, must not make a renewal or an extension late: the call
/// is given at most this, and no more than half a renewal period or a sixth of the
/// visibility timeout (the slack supervision has before a deadline).
const FORGE_CALL_LIMIT: Duration = Duration::from_secs(15);

/// Tunables of the engine. The default is `kiro-consumer run`'s ([`crate::defaults`]).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// This consumer's identity in leases and job records.
    pub owner: String,
    /// Jobs in flight at most.
    pub max_jobs: usize,
    /// Long-poll wait of a receive when no job needs attention sooner.
    pub receive_wait: Duration,
    /// After a receive that delivered fewer messages than it asked for, the least time
    /// from its start to the next receive's: arrivals in between come in one batch (one
    /// receive per gap under load instead of one per message). An empty receive (it
    /// waited its full long poll) or a full one is followed at once.
    pub receive_gap: Duration,
    /// Time-to-live of the consumer's session, which holds all its project leases.
    pub lease_ttl: Duration,
    /// Visibility set on every extension.
    pub visibility: Duration,
    /// How often the session is renewed while jobs run (one write for all their leases).
    pub renew_every: Duration,
    /// `safe_until` is the confirmed deadline minus this margin.
    pub safety_margin: Duration,
    /// How often running builds are polled.
    pub poll_every: Duration,
    /// How often the cards of running builds are read for a move off the board's active
    /// statuses: in the first poll round at least this long after the last read. `None`:
    /// in every poll round (the embedded board file; a GitHub board is rate-limited).
    pub board_every: Option<Duration>,
    /// Time limit given to each build; `None`: the runner's own (a CodeBuild project's
    /// timeout, the local runner's default).
    pub build_timeout: Option<Duration>,
    /// Longest delay before a message held up by lease contention is retried.
    pub contention_delay: Duration,
    pub retry: RetryPolicy,
    /// Extra environment for every build (settings, never secrets).
    pub build_env: BTreeMap<String, String>,
    /// Agent time one item may use across its attempts; no new attempt starts once its
    /// job record's `agent_seconds` reach it (dead-lettered `budget-spent`).
    pub item_agent_budget: Duration,
    /// Where the engine reports its metrics (CloudWatch EMF in production); none when off.
    pub metrics: Option<Arc<dyn Metrics>>,
}

/// The defaults of `kiro-consumer run` ([`crate::defaults`]), with a fresh owner.
impl Default for EngineConfig {
    fn default() -> Self {
        let lease_ttl = defaults::duration(defaults::LEASE_TTL);
        EngineConfig {
            owner: default_owner(),
            max_jobs: defaults::MAX_JOBS,
            receive_wait: defaults::duration(defaults::RECEIVE_WAIT),
            receive_gap: defaults::duration(defaults::RECEIVE_GAP),
            lease_ttl,
            visibility: defaults::duration(defaults::VISIBILITY),
            renew_every: defaults::renew_every(lease_ttl),
            safety_margin: defaults::safety_margin(lease_ttl),
            poll_every: defaults::duration(defaults::POLL_EVERY),
            board_every: None,
            build_timeout: None,
            contention_delay: defaults::contention_delay(lease_ttl),
            retry: RetryPolicy::default(),
            build_env: BTreeMap::new(),
            item_agent_budget: defaults::duration(defaults::ITEM_AGENT_BUDGET),
            metrics: None,
        }
    }
}

/// `<host>-<pid>-<random>`: unique per process start.
pub fn default_owner() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "consumer".into());
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(40)
        .collect();
    format!(
        "{host}-{}-{:06x}",
        std::process::id(),
        rand::random::<u32>() & 0xff_ffff
    )
}

/// When [`Engine::run`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunUntil {
    /// When the cancellation token fires (shutdown), after handing every job off.
    Shutdown,
    /// At shutdown, or as soon as nothing is in flight here and the queue is idle
    /// (`kiro-consumer --until-idle`: batch runs and tests).
    Idle,
}

/// The ports the engine works through.
#[derive(Debug, Clone)]
pub struct Ports {
    pub queue: Arc<dyn WorkQueue>,
    pub leases: Arc<dyn LeaseStore>,
    pub builds: Arc<dyn BuildRunner>,
    /// Where moved cards are read and dead-lettered items are marked failed; optional.
    pub board: Option<Arc<dyn Board>>,
    /// Where a final failure is announced: a new comment on the item's pull request
    /// that mentions its assignees; optional.
    pub pulls: Option<Arc<dyn PullRequests>>,
    pub clock: Arc<dyn Clock>,
    /// Scale-in protection held while jobs are in flight (ECS); optional.
    pub protection: Option<Arc<dyn TaskProtection>>,
}

/// An item this consumer holds under its project's lease, with its job record: all that
/// settling it needs.
#[derive(Debug, Clone)]
struct HeldJob {
    delivery: Delivery,
    item: WorkItem,
    lease: Lease,
    record: JobRecord,
    /// The item's `process` span: heartbeats, retries and the handoff are its events;
    /// it ends when the job is settled or handed off.
    span: Span,
}

/// A held job whose build runs: supervised (renewed, extended, polled) until it is
/// settled or handed off.
#[derive(Debug, Clone)]
struct ActiveJob {
    held: HeldJob,
    build_id: BuildId,
    /// The earlier of `lease_until` and `visible_until`, less the safety margin.
    safe_until: Instant,
    /// How long the lease is confirmed held: its session's last confirmed renewal's start
    /// plus the lease TTL.
    lease_until: Instant,
    /// How long the message is confirmed invisible to others (receive or extension).
    visible_until: Instant,
    /// After an unconfirmed extension: when it is tried again (outside the beat).
    extend_retry: Option<Instant>,
}

impl ActiveJob {
    /// `safe_until` from the confirmed deadlines (both only move forward).
    fn refresh_safe_until(&mut self, margin: Duration) {
        let confirmed = self.lease_until.min(self.visible_until);
        self.safe_until = self
            .safe_until
            .max(confirmed.checked_sub(margin).unwrap_or(confirmed));
    }
}

/// What one tick did (counts), for logs, tests and the benchmark.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    pub received: usize,
    pub started: usize,
    pub adopted: usize,
    pub succeeded: usize,
    pub retried: usize,
    pub dead_lettered: usize,
    pub contention: usize,
    pub cancelled: usize,
    pub deferred: usize,
    /// Items withdrawn: moved off the board's active statuses (or cancelled by an
    /// operator) — record `cancelled`, build stopped, message acknowledged.
    pub withdrawn: usize,
}

impl TickReport {
    fn add(&mut self, o: &TickReport) {
        self.received += o.received;
        self.started += o.started;
        self.adopted += o.adopted;
        self.succeeded += o.succeeded;
        self.retried += o.retried;
        self.dead_lettered += o.dead_lettered;
        self.contention += o.contention;
        self.cancelled += o.cancelled;
        self.deferred += o.deferred;
        self.withdrawn += o.withdrawn;
    }
}

/// Totals and dispatch latencies since start.
#[derive(Debug, Clone, Default)]
pub struct EngineStats {
    pub totals: TickReport,
    /// Message visible → build started, in milliseconds, one sample per first delivery
    /// that started a build. "Visible" is when it was sent, or, for a message queued
    /// behind another of its project, when this consumer settled that one.
    pub dispatch_latency_ms: Vec<u64>,
}

#[derive(Debug)]
pub struct Engine {
    cfg: EngineConfig,
    ports: Ports,
    jobs: HashMap<String, ActiveJob>,
    stats: EngineStats,
    draining: bool,
    /// When this consumer last settled a job of each project (dispatch latency only).
    last_settled: HashMap<String, kiro_protocol::Timestamp>,
    /// Wall-clock milliseconds of the last completed tick (read by the health check).
    heartbeat: Arc<AtomicI64>,
    protection: ProtectionState,
    /// How the queue is named in spans (asked once).
    dest: Destination,
    /// When every running build is polled next (one round, ≤ 100 ids per call); `None`
    /// until there is a job to poll.
    next_poll: Option<Instant>,
    /// When the cards of the running builds are read next (`withdraw.rs`); `None`: in
    /// the next poll round.
    next_board_read: Option<Instant>,
    /// This consumer's session (`session.rs`): every lease it holds lives as long as it.
    session: Option<session::SessionState>,
    /// Leases taken and not yet let go of, by project (`session.rs`).
    leases_taken: std::sync::Mutex<HashMap<String, Lease>>,
}

impl Engine {
    pub fn new(cfg: EngineConfig, ports: Ports) -> Self {
        let dest = ports.queue.destination();
        Engine {
            dest,
            cfg,
            ports,
            jobs: HashMap::new(),
            stats: EngineStats::default(),
            draining: false,
            last_settled: HashMap::new(),
            heartbeat: Arc::new(AtomicI64::new(0)),
            protection: ProtectionState::default(),
            next_poll: None,
            next_board_read: None,
            session: None,
            leases_taken: std::sync::Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Projects with a job in flight here.
    pub fn active_projects(&self) -> Vec<String> {
        let mut v: Vec<String> = self.jobs.keys().cloned().collect();
        v.sort();
        v
    }

    /// The wall-clock time (ms since the epoch) of the last completed tick, shared so a
    /// health reporter can watch the loop make progress.
    pub fn heartbeat(&self) -> Arc<AtomicI64> {
        self.heartbeat.clone()
    }

    pub fn active_count(&self) -> usize {
        self.jobs.len()
    }

    /// One step: receive, dispatch, then attend to what is due. `wait` bounds the
    /// receive's long poll (zero never waits). Tests and the benchmarks drive this;
    /// [`run`](Self::run) receives on its own task and attends on timers instead.
    pub async fn tick(&mut self, wait: Duration) -> TickReport {
        let mut report = TickReport::default();
        // Fill the free slots: receives of at most 10 (the SQS batch size), the first one
        // long-polling, the next ones only while full batches keep coming.
        let mut wait = wait;
        while !self.draining && self.jobs.len() < self.cfg.max_jobs {
            let room = (self.cfg.max_jobs - self.jobs.len()).min(RECEIVE_BATCH);
            match self.ports.queue.receive(room, wait).await {
                Ok(deliveries) => {
                    let full = deliveries.len() == RECEIVE_BATCH;
                    report.received += deliveries.len();
                    self.dispatch_all(deliveries, &mut report).await;
                    if !full {
                        break;
                    }
                }
                Err(e) => {
                    warn!(error = %e, "receive failed");
                    break;
                }
            }
            wait = Duration::ZERO;
        }
        self.attend(&mut report).await;
        self.stats.totals.add(&report);
        self.mark_alive();
        report
    }

    /// Supervise, poll and protect: each acts only on what is due now.
    async fn attend(&mut self, report: &mut TickReport) {
        self.supervise(report).await;
        self.poll(report).await;
        self.update_protection().await;
    }

    /// Record that the loop made progress (read by the health check).
    fn mark_alive(&self) {
        self.heartbeat
            .store(self.ports.clock.now().millis(), Ordering::Relaxed);
    }

    /// When something next needs attention: a job's renewal, retried extension or
    /// `safe_until`, the visibility beat, the poll round, or scale-in protection; `None`
    /// when nothing will.
    fn next_deadline(&self) -> Option<Instant> {
        self.jobs
            .values()
            .map(Self::supervision_due)
            .chain(self.next_beat())
            .chain(self.next_visibility_beat())
            .chain(self.next_poll.filter(|_| !self.jobs.is_empty()))
            .chain(self.protection_due())
            .min()
    }

    /// The projects of the jobs matching `f`.
    fn projects_where(&self, f: impl Fn(&ActiveJob) -> bool) -> Vec<String> {
        self.jobs
            .iter()
            .filter(|(_, j)| f(j))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// `call` to the forge, abandoned after [`FORGE_CALL_LIMIT`] (or less: see there) as
    /// a transient error naming `what`.
    async fn forge_call<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, PortError>>,
    ) -> Result<T, PortError> {
        let limit = FORGE_CALL_LIMIT
            .min(self.cfg.renew_every / 2)
            .min(self.cfg.visibility / 6);
        match tokio::time::timeout(limit, call).await {
            Ok(r) => r,
            Err(_) => Err(PortError::transient(format!(
                "{what} took longer than {}; abandoned so the leases are renewed on time",
                humantime::format_duration(limit)
            ))),
        }
    }

    async fn release_quietly(&self, d: &Delivery, delay: Duration) {
        if let Err(e) = self.ports.queue.release(&d.receipt, delay).await {
            warn!(error = %e, message_id = %d.message_id, "cannot give the message back; it returns after its visibility timeout");
        }
    }
}
