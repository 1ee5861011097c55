//! The consumer engine: the dispatch loop and one supervisor per job.
//!
//! [`Engine::tick`] is one deterministic step that tests drive (with tokio's paused time):
//! 1. **receive** while below `max_jobs` (never while draining);
//! 2. **dispatch** each delivery: decode (a bad envelope is dead-lettered as
//!    permanent input), take the project's lease (contention releases the message with a
//!    delay and never burns an attempt), read the item's job record and either settle a
//!    redelivered final job, **re-attach** to a build that may be running, or record the
//!    intent and start a new build;
//! 3. **supervise**: for every job whose renewal is due, renew the lease and extend the
//!    message visibility (one batched call); a confirmed renewal moves the job's monotonic
//!    `safe_until` deadline; a job that passes `safe_until` is cancelled (the engine stops
//!    acting on it, and stops the build if its fence was lost);
//! 4. **poll** the builds that are due, in one batched status call, and settle finished
//!    jobs: ack on success; otherwise the [`RetryPolicy`] decides between a delayed
//!    retry (the message stays in flight, so the project's order holds) and an explicit
//!    dead letter with reason, class and attempt history;
//! 5. **protect**: hold scale-in protection while any job is in flight (on at 0 → 1 job,
//!    off at → 0, re-armed before it expires); failures are logged, never fatal.
//!
//! Invariants: a build is started only by the holder of the project's lease, after the
//! intent is recorded under its fence; every job-record write is fence-conditional; a
//! final state is recorded before the message is settled, so a crash in between is
//! repaired by the next delivery. On shutdown, [`Engine::drain`] hands every job off
//! (record `handoff`, make the message visible, release the lease) instead of waiting.

use crate::policy::{Decision, RetryPolicy};
use futures::future::join_all;
use kiro_protocol::ports::build::env as build_env;
use kiro_protocol::{
    AttemptRecord, Board, BuildId, BuildRequest, BuildRunner, BuildState, BuildStatus, Clock,
    DeadLetter, Delivery, Destination, Envelope, Failure, FailureClass, ItemStatus, JobRecord,
    JobState, Lease, LeaseError, LeaseStore, OutcomeStatus, Receipt, TaskProtection, WorkItem,
    WorkQueue, WorkerOutcome,
};
use kiro_telemetry::metrics::{FAILURE_CLASS_DIMENSION, Metric, Metrics, Unit, names};
use kiro_telemetry::otel::{self, keys};
use opentelemetry::KeyValue;
use opentelemetry::trace::Status;
use reattach::Recovery;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span, debug, info, info_span, instrument, warn};
use tracing_opentelemetry::OpenTelemetrySpanExt;

mod reattach;

/// Most messages one receive asks for (the SQS limit).
const RECEIVE_BATCH: usize = 10;

/// The shortest long-poll of the run loop (keeps an idle loop from spinning).
const MIN_WAIT: Duration = Duration::from_millis(50);

/// Tunables of the engine. Defaults suit CodeBuild; the embedded default shortens the
/// polling interval.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// This consumer's identity in leases and job records.
    pub owner: String,
    /// Jobs in flight at most.
    pub max_jobs: usize,
    /// Long-poll wait of a receive when no job needs attention sooner.
    pub receive_wait: Duration,
    pub lease_ttl: Duration,
    /// Visibility set on every extension.
    pub visibility: Duration,
    /// How often a job's lease and visibility are renewed.
    pub renew_every: Duration,
    /// `safe_until` is the confirmed deadline minus this margin.
    pub safety_margin: Duration,
    /// How often running builds are polled.
    pub poll_every: Duration,
    /// Time limit given to each build; `None`: the runner's own (a CodeBuild project's
    /// timeout, the local runner's default).
    pub build_timeout: Option<Duration>,
    /// Longest delay before a message held up by lease contention is retried.
    pub contention_delay: Duration,
    pub retry: RetryPolicy,
    /// Extra environment for every build (settings, never secrets).
    pub build_env: BTreeMap<String, String>,
    /// Where the engine reports its metrics (CloudWatch EMF in production); none when off.
    pub metrics: Option<Arc<dyn Metrics>>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            owner: default_owner(),
            max_jobs: 16,
            receive_wait: Duration::from_secs(10),
            lease_ttl: Duration::from_secs(60),
            visibility: Duration::from_secs(300),
            renew_every: Duration::from_secs(20),
            safety_margin: Duration::from_secs(5),
            poll_every: Duration::from_secs(10),
            build_timeout: None,
            contention_delay: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            build_env: BTreeMap::new(),
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

/// The ports the engine works through.
#[derive(Debug, Clone)]
pub struct Ports {
    pub queue: Arc<dyn WorkQueue>,
    pub leases: Arc<dyn LeaseStore>,
    pub builds: Arc<dyn BuildRunner>,
    /// Where dead-lettered items are marked failed; optional.
    pub board: Option<Arc<dyn Board>>,
    pub clock: Arc<dyn Clock>,
    /// Scale-in protection held while jobs are in flight (ECS); optional.
    pub protection: Option<Arc<dyn TaskProtection>>,
}

/// How long to wait before asking again after a protection call failed.
const PROTECTION_RETRY: Duration = Duration::from_secs(15);

/// What the engine knows of its scale-in protection.
#[derive(Debug, Default)]
struct ProtectionState {
    /// Protection was last confirmed on.
    on: bool,
    /// When protection must be re-armed (it expires by itself).
    rearm_at: Option<Instant>,
    /// After a failed call: no new call before this.
    retry_at: Option<Instant>,
}

/// A job this consumer holds.
#[derive(Debug, Clone)]
struct ActiveJob {
    delivery: Delivery,
    item: WorkItem,
    lease: Lease,
    record: JobRecord,
    build_id: BuildId,
    safe_until: Instant,
    next_renew: Instant,
    next_poll: Instant,
    /// The item's `process` span: heartbeats, retries and the handoff are its events;
    /// it ends when the job is settled or handed off.
    span: Span,
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

/// The result of dispatching one delivery.
enum Dispatch {
    Active(Box<ActiveJob>, bool),
    Settled(TickReport),
    /// Success recorded; the message is acked in one batch with the tick's other
    /// successes, then the lease is released.
    Succeeded(Receipt, Box<Lease>, Span),
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
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Report one data point, stamped with the engine's clock.
    fn metric(&self, m: Metric) {
        if let Some(sink) = &self.cfg.metrics {
            sink.record(m.at(self.ports.clock.now().millis()));
        }
    }

    /// The metrics of a finished build: the alarm inputs (dimensionless), success or
    /// failure by class, duration since the attempt started, and coverage.
    fn finished_metrics(&self, job: &ActiveJob, failure: Option<&Failure>, coverage: Option<f64>) {
        if self.cfg.metrics.is_none() {
            return;
        }
        self.metric(Metric::count(names::BUILDS_FINISHED, 1));
        if let Some(started) = job.record.history.last().map(|a| a.started_at) {
            let ms = self.ports.clock.now().since(started).as_millis();
            self.metric(Metric::millis(
                names::BUILD_DURATION,
                u64::try_from(ms).unwrap_or(u64::MAX),
            ));
        }
        match failure {
            None => self.metric(Metric::count(names::BUILDS_SUCCEEDED, 1)),
            Some(f) => {
                self.metric(Metric::count(names::BUILDS_FAILED, 1));
                self.metric(
                    Metric::count(names::BUILDS_FAILED_BY_CLASS, 1)
                        .with_dimension(FAILURE_CLASS_DIMENSION, f.class.as_str()),
                );
                if f.class == FailureClass::TestsFailed {
                    self.metric(Metric::count(names::TESTS_FAILED, 1));
                }
            }
        }
        if let Some(c) = coverage {
            self.metric(Metric::new(names::COVERAGE, c, Unit::Percent));
        }
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

    /// One step: receive, dispatch, supervise, poll. `wait` bounds the receive's long
    /// poll (zero never waits).
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
        self.supervise(&mut report).await;
        self.poll(&mut report).await;
        self.update_protection().await;
        self.stats.totals.add(&report);
        self.heartbeat
            .store(self.ports.clock.now().millis(), Ordering::Relaxed);
        report
    }

    /// Repeat [`tick`](Self::tick) until `cancel` fires, then hand every job off.
    /// With `until_idle`, also stop once nothing is in flight here and the queue is idle.
    pub async fn run(&mut self, cancel: CancellationToken, until_idle: bool) -> EngineStats {
        loop {
            // Never spin: even when a deadline is due now, a receive waits a little.
            let wait = self.next_wait().max(MIN_WAIT);
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                r = self.tick(wait) => {
                    if r != TickReport::default() {
                        debug!(?r, "tick");
                    }
                }
            }
            if until_idle && self.jobs.is_empty() {
                match self.ports.queue.depth().await {
                    Ok(d) if d.is_idle() => break,
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "cannot read queue depth"),
                }
            }
            // When no receive can happen (full or draining), sleep until the next deadline.
            if self.jobs.len() >= self.cfg.max_jobs {
                let until = self.next_deadline();
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep_until(until) => {}
                }
            }
        }
        if cancel.is_cancelled() {
            self.drain().await;
        }
        self.stats.clone()
    }

    /// How long a receive may wait without making a job miss its deadline.
    fn next_wait(&self) -> Duration {
        if self.jobs.is_empty() {
            return self.cfg.receive_wait;
        }
        self.next_deadline()
            .saturating_duration_since(Instant::now())
            .min(self.cfg.receive_wait)
    }

    fn next_deadline(&self) -> Instant {
        self.jobs
            .values()
            .map(|j| j.next_renew.min(j.next_poll))
            .min()
            .unwrap_or_else(|| Instant::now() + self.cfg.receive_wait)
    }

    async fn dispatch_all(&mut self, deliveries: Vec<Delivery>, report: &mut TickReport) {
        let mut futures = Vec::new();
        for d in deliveries {
            if self.jobs.contains_key(&d.group) {
                // An earlier message of this project is still ours: give this one back; the
                // FIFO group keeps it behind the one in flight.
                report.deferred += 1;
                if let Err(e) = self.ports.queue.release(&d.receipt, Duration::ZERO).await {
                    warn!(error = %e, message = %d.message_id, "cannot give back a deferred message");
                }
                continue;
            }
            futures.push(self.dispatch(d));
        }
        let mut done = Vec::new();
        for outcome in join_all(futures).await {
            match outcome {
                Dispatch::Active(job, adopted) => {
                    if adopted {
                        report.adopted += 1;
                    } else {
                        report.started += 1;
                        self.metric(Metric::count(names::BUILDS_STARTED, 1));
                        let visible = self
                            .last_settled
                            .get(&job.delivery.group)
                            .map_or(job.delivery.sent_at, |t| (*t).max(job.delivery.sent_at));
                        let latency = self.ports.clock.now().since(visible);
                        let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
                        if job.delivery.receive_count == 1 {
                            self.metric(Metric::millis(names::DISPATCH_LATENCY, latency_ms));
                            if self.stats.dispatch_latency_ms.len() < 1_000_000 {
                                self.stats.dispatch_latency_ms.push(latency_ms);
                            }
                        }
                    }
                    self.jobs.insert(job.item.project.to_string(), *job);
                }
                Dispatch::Settled(r) => report.add(&r),
                Dispatch::Succeeded(receipt, lease, span) => done.push((receipt, lease, span)),
            }
        }
        self.ack_successes(done, report).await;
    }

    /// Take one delivery as far as a running build, or settle it.
    async fn dispatch(&self, d: Delivery) -> Dispatch {
        let decoded = Envelope::decode(&d.body);
        // The message attributes carry the context; the envelope keeps a copy (for a
        // queue that lost the attributes, e.g. a hand-made replay).
        let trace = match &decoded {
            Ok(e) if d.trace.is_empty() => &e.trace,
            _ => &d.trace,
        };
        let span = self.process_span(&d, trace);
        self.dispatch_in(d, decoded, span.clone())
            .instrument(span)
            .await
    }

    /// The `process` span of a delivery: a child of the producer's `send` span (whose
    /// context the message carries) and linked to it, as the messaging conventions ask.
    fn process_span(&self, d: &Delivery, trace: &kiro_protocol::TraceContext) -> Span {
        let span = info_span!(
            parent: None,
            "process",
            otel.name = %format!("process {}", self.dest.name),
            otel.kind = "consumer",
            trace_id = tracing::field::Empty,
            kiro.project = %d.group,
            kiro.item = tracing::field::Empty,
        );
        otel::continue_trace(&span, trace);
        otel::set_messaging(&span, &self.dest, "process", "process");
        span.set_attribute(keys::MESSAGING_MESSAGE_ID, d.message_id.to_string());
        span.set_attribute(keys::MESSAGING_GROUP, d.group.clone());
        span.set_attribute(
            "messaging.aws.sqs.receive_count",
            i64::from(d.receive_count),
        );
        span
    }

    async fn dispatch_in(
        &self,
        d: Delivery,
        decoded: Result<Envelope, kiro_protocol::EnvelopeError>,
        span: Span,
    ) -> Dispatch {
        let envelope = match decoded {
            Ok(e) => e,
            Err(e) => {
                let failure = Failure::from(e);
                span.set_status(Status::error(failure.reason.clone()));
                warn!(message = %d.message_id, reason = %failure.reason, "undecodable message");
                let letter = DeadLetter {
                    reason: failure.reason.clone(),
                    class: failure.class,
                    attempts: vec![],
                    fence: None,
                    build_id: None,
                    trace: d.trace.clone(),
                };
                return self.settle_dead_letter(&d, &letter).await;
            }
        };
        let item = envelope.item;
        span.record("kiro.item", tracing::field::display(&item.id));
        if item.project.as_str() != d.group {
            // In-flight jobs are found by group and kept by project: one key only. A
            // message sent with another group is this message's fault alone.
            let reason = format!(
                "item {}: message group {} is not the item's project {} (a message must be sent with group = project)",
                kiro_protocol::ids::quote_for_display(item.id.as_str()),
                kiro_protocol::ids::quote_for_display(&d.group),
                kiro_protocol::ids::quote_for_display(item.project.as_str()),
            );
            span.set_status(Status::error(reason.clone()));
            warn!(message_id = %d.message_id, %reason, "message group is not the item's project");
            let letter = DeadLetter {
                reason,
                class: FailureClass::PermanentInput,
                attempts: vec![],
                fence: None,
                build_id: None,
                trace: d.trace.clone(),
            };
            return self.settle_dead_letter(&d, &letter).await;
        }
        self.dispatch_item(d, item, envelope.trace).await
    }

    async fn dispatch_item(
        &self,
        d: Delivery,
        item: WorkItem,
        trace: kiro_protocol::TraceContext,
    ) -> Dispatch {
        let mut settled = TickReport::default();
        let lease = match self
            .ports
            .leases
            .acquire(&item.project, &self.cfg.owner, self.cfg.lease_ttl)
            .await
        {
            Ok(l) => l,
            Err(LeaseError::Held {
                holder, expires_at, ..
            }) => {
                let wait = expires_at
                    .since(self.ports.clock.now())
                    .min(self.cfg.contention_delay)
                    .max(Duration::from_secs(1));
                info!(%holder, wait_ms = wait.as_millis() as u64, "project busy; message returned");
                self.release_quietly(&d, wait).await;
                settled.contention += 1;
                self.metric(Metric::count(names::LEASE_CONTENTION, 1));
                return Dispatch::Settled(settled);
            }
            Err(e) => {
                warn!(error = %e, "cannot take the lease; message returned");
                self.release_quietly(&d, Duration::from_secs(5)).await;
                settled.deferred += 1;
                return Dispatch::Settled(settled);
            }
        };
        let existing = match self.ports.leases.job(&item.project, &item.id).await {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "cannot read the job record; message returned");
                self.give_up_lease(&lease).await;
                self.release_quietly(&d, Duration::from_secs(5)).await;
                settled.deferred += 1;
                return Dispatch::Settled(settled);
            }
        };
        let now = self.ports.clock.now();
        let mut record = match existing {
            Some(mut r)
                if r.message_id == d.message_id
                    || (r.state.may_have_build()
                        && (r.build_id.is_some() || r.start.is_some())) =>
            {
                // A redelivery of the message we know, or a build (or a recorded intent)
                // to re-attach to.
                if r.state.is_final() {
                    return self.settle_known_final(d, lease, r).await;
                }
                r.message_id = d.message_id.clone();
                r
            }
            Some(mut r) => {
                // A new message for an item seen before (a replay, or the board re-queued
                // it): a fresh budget, history kept.
                r.message_id = d.message_id.clone();
                r.state = JobState::Pending;
                r.attempts = 0;
                r.build_id = None;
                r.last_failure = None;
                r.trace = trace.clone();
                r
            }
            None => JobRecord::new(
                item.project.clone(),
                item.id.clone(),
                d.message_id.clone(),
                lease.fence,
                trace.clone(),
                now,
            ),
        };
        record.fence = lease.fence;
        record.owner = Some(self.cfg.owner.clone());
        record.updated_at = now;

        // Re-attach: a build may be running for this item.
        if record.state.may_have_build() {
            let id = match record.build_id.clone() {
                Some(id) => id,
                // Intent recorded but no id: find the build the intent started, or replay
                // the recorded request (which starts it if it never started).
                None => match self.recover_intent(&item, &record).await {
                    Ok(id) => id,
                    Err(Recovery::Unknown(failure)) => {
                        return self.keep_intent(d, lease, record, failure).await;
                    }
                    Err(Recovery::NotStarted(failure)) => {
                        warn!(class = %failure.class, reason = %failure.reason, "the recorded build request was refused");
                        record.attempts = record.attempts.saturating_sub(1);
                        if let Some(last) = record.history.last_mut() {
                            last.failure = Some(failure.clone());
                            last.ended_at = Some(self.ports.clock.now());
                        }
                        let job = self.active(d, item, lease, record, BuildId::new(""));
                        return self.settle_failure(job, failure, false).await;
                    }
                },
            };
            record.state = JobState::Running;
            record.build_id = Some(id.clone());
            if let Some(last) = record.history.last_mut() {
                last.build_id.get_or_insert(id.clone());
            }
            if let Err(e) = self.ports.leases.record(&lease, &record).await {
                warn!(error = %e, "cannot record the re-attach; message returned");
                self.release_quietly(&d, Duration::from_secs(5)).await;
                settled.deferred += 1;
                return Dispatch::Settled(settled);
            }
            record_build(&id, &lease);
            info!(build = %id, fence = %lease.fence, "re-attached to a running build");
            return Dispatch::Active(Box::new(self.active(d, item, lease, record, id)), true);
        }
        self.start_build(d, item, lease, record).await
    }

    /// Record the intent, start the build, record its id.
    async fn start_build(
        &self,
        d: Delivery,
        item: WorkItem,
        lease: Lease,
        mut record: JobRecord,
    ) -> Dispatch {
        let mut settled = TickReport::default();
        let now = self.ports.clock.now();
        record.attempts += 1;
        record.state = JobState::Starting;
        record.build_id = None;
        record.history.push(AttemptRecord {
            attempt: record.attempts,
            fence: lease.fence,
            build_id: None,
            started_at: now,
            ended_at: None,
            failure: None,
        });
        // The exact request is recorded with the intent: whoever finds the intent without
        // a build id replays it unchanged.
        let req = self.build_request(&item, &record);
        record.start = Some(req.clone());
        if let Err(e) = self.ports.leases.record(&lease, &record).await {
            warn!(error = %e, "cannot record the intent; message returned");
            if !matches!(e, LeaseError::FenceLost { .. }) {
                self.give_up_lease(&lease).await;
            }
            self.release_quietly(&d, Duration::from_secs(5)).await;
            settled.deferred += 1;
            return Dispatch::Settled(settled);
        }
        match self.ports.builds.start(&req).await {
            Ok(id) => {
                record.state = JobState::Running;
                record.build_id = Some(id.clone());
                if let Some(last) = record.history.last_mut() {
                    last.build_id = Some(id.clone());
                }
                record.updated_at = self.ports.clock.now();
                if let Err(e) = self.ports.leases.record(&lease, &record).await {
                    // The build runs; whoever holds the lease next re-attaches through the
                    // request (and its idempotency key) recorded with the intent.
                    warn!(error = %e, build = %id, "cannot record the build id");
                }
                record_build(&id, &lease);
                Span::current().set_attribute(keys::ATTEMPT, i64::from(record.attempts));
                info!(build = %id, fence = %lease.fence, attempt = record.attempts, "build started");
                Dispatch::Active(Box::new(self.active(d, item, lease, record, id)), false)
            }
            Err(e) => {
                let failure = Failure::from(e);
                warn!(class = %failure.class, reason = %failure.reason, "cannot start the build");
                // A start that failed did not run: it does not count.
                record.attempts -= 1;
                if let Some(last) = record.history.last_mut() {
                    last.failure = Some(failure.clone());
                    last.ended_at = Some(self.ports.clock.now());
                }
                let job = self.active(d, item, lease, record, BuildId::new(""));
                self.settle_failure(job, failure, false).await
            }
        }
    }

    fn active(
        &self,
        delivery: Delivery,
        item: WorkItem,
        lease: Lease,
        record: JobRecord,
        build_id: BuildId,
    ) -> ActiveJob {
        let now = Instant::now();
        let confirmed = (self
            .cfg
            .lease_ttl
            .min(delivery.visible_again_at.since(self.ports.clock.now())))
        .saturating_sub(self.cfg.safety_margin);
        ActiveJob {
            delivery,
            item,
            lease,
            record,
            build_id,
            safe_until: now + confirmed,
            next_renew: now + self.cfg.renew_every,
            next_poll: now,
            // Called inside the delivery's `process` span.
            span: Span::current(),
        }
    }

    fn build_request(&self, item: &WorkItem, record: &JobRecord) -> BuildRequest {
        let mut env = self.cfg.build_env.clone();
        env.insert(build_env::ITEM.into(), item.id.to_string());
        env.insert(build_env::PROJECT.into(), item.project.to_string());
        env.insert(build_env::REPO.into(), item.repo.to_string());
        env.insert(build_env::BRANCH.into(), item.branch.to_string());
        env.insert(build_env::SPEC.into(), item.spec.to_string());
        env.insert(build_env::PR.into(), item.pr.0.to_string());
        env.insert(build_env::FENCE.into(), record.fence.to_string());
        env.insert(build_env::ATTEMPT.into(), record.attempts.to_string());
        // The worker continues the trace under this consumer's `process` span (or the
        // message's context when no span is recorded).
        let here = otel::inject(&Span::current());
        if let Some(tp) = here
            .traceparent
            .as_ref()
            .or(record.trace.traceparent.as_ref())
        {
            env.insert(build_env::TRACEPARENT.into(), tp.clone());
        }
        BuildRequest {
            project: item.project.clone(),
            item: item.id.clone(),
            idempotency_key: record.idempotency_key(),
            source_version: item.branch.clone(),
            env,
            timeout: self.cfg.build_timeout,
        }
    }

    /// The projects of the jobs matching `f`.
    fn projects_where(&self, f: impl Fn(&ActiveJob) -> bool) -> Vec<String> {
        self.jobs
            .iter()
            .filter(|(_, j)| f(j))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Renew the leases and extend the visibility of every job that is due; cancel the
    /// jobs whose deadline passed without a confirmed renewal.
    async fn supervise(&mut self, report: &mut TickReport) {
        let now = Instant::now();
        let due = self.projects_where(|j| j.next_renew <= now);
        if !due.is_empty() {
            let started = Instant::now();
            let receipts: Vec<_> = due
                .iter()
                .filter_map(|k| self.jobs.get(k))
                .map(|j| j.delivery.receipt.clone())
                .collect();
            let leases = self.ports.leases.clone();
            let ttl = self.cfg.lease_ttl;
            let renewals = join_all(due.iter().filter_map(|k| self.jobs.get(k)).map(|j| {
                let leases = leases.clone();
                let lease = j.lease.clone();
                async move { leases.renew(&lease, ttl).await }
            }));
            let (renewed, extended) = tokio::join!(
                renewals,
                self.ports.queue.extend(&receipts, self.cfg.visibility)
            );
            let extended: Vec<Option<bool>> = match extended {
                Ok(v) => v
                    .into_iter()
                    .map(|r| match r {
                        Ok(()) => Some(true),
                        Err(e) if e.class == FailureClass::FenceLost => Some(false),
                        Err(_) => None,
                    })
                    .collect(),
                Err(e) => {
                    warn!(error = %e, "visibility extension failed");
                    vec![None; due.len()]
                }
            };
            let mut fence_lost = Vec::new();
            for ((key, renewed), extended) in due.iter().zip(renewed).zip(extended) {
                let Some(job) = self.jobs.get_mut(key) else {
                    continue;
                };
                match (renewed, extended) {
                    (Ok(lease), Some(true)) => {
                        job.lease = lease;
                        let confirmed = self
                            .cfg
                            .lease_ttl
                            .min(self.cfg.visibility)
                            .saturating_sub(self.cfg.safety_margin);
                        job.safe_until = started + confirmed;
                        job.next_renew = started + self.cfg.renew_every;
                        debug!(project = %key, "heartbeat");
                        job.span.add_event(
                            "heartbeat",
                            vec![KeyValue::new(keys::FENCE, fence_value(&job.lease))],
                        );
                    }
                    (Err(LeaseError::FenceLost { .. }), _) | (_, Some(false)) => {
                        fence_lost.push(key.clone())
                    }
                    (Ok(lease), None) => {
                        job.lease = lease;
                        job.next_renew = Instant::now() + Duration::from_secs(1);
                    }
                    (Err(e), _) => {
                        job.span.in_scope(
                            || warn!(project = %key, error = %e, "lease renewal not confirmed"),
                        );
                        job.next_renew = Instant::now() + Duration::from_secs(1);
                    }
                }
            }
            for key in fence_lost {
                if let Some(job) = self.jobs.remove(&key) {
                    report.cancelled += 1;
                    self.cancel_job(job, true).await;
                }
            }
        }
        let now = Instant::now();
        let expired = self.projects_where(|j| j.safe_until <= now);
        for key in expired {
            if let Some(job) = self.jobs.remove(&key) {
                report.cancelled += 1;
                self.cancel_job(job, false).await;
            }
        }
    }

    /// Stop acting on a job. When its fence is known to be lost the build cannot push
    /// anyway, so it is stopped; otherwise it is left for whoever takes the project next.
    async fn cancel_job(&self, job: ActiveJob, fence_lost: bool) {
        let span = job.span.clone();
        span.set_status(Status::error("renewal not confirmed in time"));
        self.cancel_job_in(job, fence_lost).instrument(span).await;
    }

    async fn cancel_job_in(&self, job: ActiveJob, fence_lost: bool) {
        warn!(project = %job.item.project, item = %job.item.id, fence_lost, "job cancelled: renewal not confirmed in time");
        if fence_lost {
            if let Ok(Some(view)) = self.ports.leases.get(&job.item.project).await {
                // Stop the build only if nobody adopted it under a newer fence.
                let adopted = match self.ports.leases.job(&job.item.project, &job.item.id).await {
                    Ok(Some(r)) => {
                        r.fence == view.fence && r.build_id.as_ref() == Some(&job.build_id)
                    }
                    _ => false,
                };
                if adopted {
                    return;
                }
            }
            if let Err(e) = self.ports.builds.stop(&job.build_id).await {
                warn!(error = %e, build = %job.build_id, "cannot stop the build");
            }
        }
    }

    /// Ask for the status of every job whose poll is due (one batched call per 100).
    async fn poll(&mut self, report: &mut TickReport) {
        let now = Instant::now();
        let due: Vec<(String, BuildId)> = self
            .projects_where(|j| j.next_poll <= now)
            .into_iter()
            .filter_map(|k| self.jobs.get(&k).map(|j| (k, j.build_id.clone())))
            .collect();
        if due.is_empty() {
            return;
        }
        let mut statuses: HashMap<BuildId, BuildStatus> = HashMap::new();
        for chunk in due.chunks(100) {
            let ids: Vec<BuildId> = chunk.iter().map(|(_, id)| id.clone()).collect();
            match self.ports.builds.status(&ids).await {
                Ok(list) => statuses.extend(list.into_iter().map(|s| (s.id.clone(), s))),
                Err(e) => warn!(error = %e, "build status failed"),
            }
        }
        let mut finished = Vec::new();
        for (key, id) in due {
            let Some(job) = self.jobs.get_mut(&key) else {
                continue;
            };
            job.next_poll = Instant::now() + self.cfg.poll_every;
            match statuses.remove(&id) {
                Some(s) if s.state.is_finished() => {
                    if let Some(job) = self.jobs.remove(&key) {
                        finished.push((job, s));
                    }
                }
                Some(_) => {}
                None => warn!(build = %id, "build unknown to the runner"),
            }
        }
        let now = self.ports.clock.now();
        for (job, _) in &finished {
            self.last_settled.insert(job.delivery.group.clone(), now);
        }
        let settled = join_all(finished.into_iter().map(|(job, s)| self.finish(job, s))).await;
        let mut done = Vec::new();
        for d in settled {
            match d {
                Dispatch::Settled(r) => report.add(&r),
                Dispatch::Succeeded(receipt, lease, span) => done.push((receipt, lease, span)),
                Dispatch::Active(..) => {}
            }
        }
        self.ack_successes(done, report).await;
    }

    /// A build finished: settle the job.
    async fn finish(&self, mut job: ActiveJob, status: BuildStatus) -> Dispatch {
        // Created inside `process` (not with an explicit parent): the OpenTelemetry layer
        // takes a span only when it opens inside an item's span.
        let span = job
            .span
            .in_scope(|| info_span!("finish", kiro.build_id = %status.id));
        // Entered inside the `process` span too: a span ends when it is last exited, and
        // the item's processing ends with its settlement.
        let process = job.span.clone();
        async move {
            let outcome = outcome_of(&status);
            let now = self.ports.clock.now();
            job.record.coverage = outcome.coverage.or(job.record.coverage);
            if let Some(last) = job.record.history.last_mut() {
                last.ended_at = Some(now);
                last.failure = outcome.failure.clone();
            }
            self.finished_metrics(&job, outcome.failure.as_ref(), outcome.coverage);
            match outcome.failure {
                None => self.settle_success(job).await,
                Some(f) => {
                    info!(class = %f.class, reason = %f.reason, "build failed");
                    self.settle_failure(job, f, true).await
                }
            }
        }
        .instrument(span)
        .instrument(process)
        .await
    }

    async fn settle_success(&self, mut job: ActiveJob) -> Dispatch {
        let mut r = TickReport::default();
        job.record.state = JobState::Succeeded;
        job.record.last_failure = None;
        job.record.updated_at = self.ports.clock.now();
        if let Err(e) = self.ports.leases.record(&job.lease, &job.record).await {
            warn!(error = %e, "cannot record success; leaving the message for the next holder");
            r.deferred = 1;
            return Dispatch::Settled(r);
        }
        info!(attempts = job.record.attempts, "succeeded");
        Dispatch::Succeeded(job.delivery.receipt, Box::new(job.lease), job.span)
    }

    /// Ack the tick's successes in one batch (the record is already final, so a failed
    /// ack only means the redelivery is acked from the job record), then release their
    /// leases.
    async fn ack_successes(&self, done: Vec<(Receipt, Box<Lease>, Span)>, report: &mut TickReport) {
        if done.is_empty() {
            return;
        }
        report.succeeded += done.len();
        // One `settle` span per message (children of their `process` spans) around the
        // one batched call.
        let settles: Vec<Span> = done
            .iter()
            .map(|(_, _, process)| self.settle_span(process, "ack"))
            .collect();
        let receipts: Vec<Receipt> = done.iter().map(|(r, _, _)| r.clone()).collect();
        match self.ports.queue.ack_batch(&receipts).await {
            Ok(results) => {
                for (r, settle) in results.into_iter().zip(&settles) {
                    if let Err(e) = r {
                        settle.in_scope(|| {
                            warn!(error = %e, "cannot ack; the redelivery will be acked from the job record")
                        });
                    }
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot ack; the redeliveries will be acked from the job records")
            }
        }
        // The settle spans end with the ack (they are never entered, so they end when
        // closed): before their `process` spans, which end on their last exit below.
        drop(settles);
        join_all(
            done.iter()
                .map(|(_, lease, process)| self.give_up_lease(lease).instrument(process.clone())),
        )
        .await;
    }

    /// A `settle` span under `process`: how the message was settled (`ack`, `retry`,
    /// `dead_letter`).
    fn settle_span(&self, process: &Span, how: &'static str) -> Span {
        let span = process.in_scope(|| {
            info_span!(
                "settle",
                otel.name = %format!("settle {}", self.dest.name),
                kiro.settle = how,
            )
        });
        otel::set_messaging(&span, &self.dest, "settle", how);
        span
    }

    /// Retry with backoff or dead-letter, as the policy decides.
    async fn settle_failure(
        &self,
        mut job: ActiveJob,
        failure: Failure,
        counted: bool,
    ) -> Dispatch {
        let mut r = TickReport::default();
        if counted && !failure.class.burns_attempt() {
            job.record.attempts = job.record.attempts.saturating_sub(1);
        }
        job.record.last_failure = Some(failure.clone());
        job.record.updated_at = self.ports.clock.now();
        job.span
            .set_attribute(keys::FAILURE_CLASS, failure.class.as_str());
        match self.cfg.retry.decide(&failure, job.record.attempts) {
            Decision::Retry { delay } => {
                job.span.add_event(
                    "retry",
                    vec![
                        KeyValue::new(keys::FAILURE_CLASS, failure.class.as_str()),
                        KeyValue::new(keys::ATTEMPT, i64::from(job.record.attempts)),
                        KeyValue::new(
                            "delay_ms",
                            i64::try_from(delay.as_millis()).unwrap_or(i64::MAX),
                        ),
                    ],
                );
                job.record.state = JobState::Retrying;
                job.record.build_id = None;
                if let Err(e) = self.ports.leases.record(&job.lease, &job.record).await {
                    warn!(error = %e, "cannot record the retry; leaving the message for the next holder");
                    return Dispatch::Settled(r);
                }
                async {
                    self.release_quietly(&job.delivery, delay).await;
                    self.give_up_lease(&job.lease).await;
                }
                .instrument(self.settle_span(&job.span, "retry"))
                .await;
                info!(
                    delay_ms = delay.as_millis() as u64,
                    attempts = job.record.attempts,
                    "retry scheduled"
                );
                r.retried = 1;
                Dispatch::Settled(r)
            }
            Decision::DeadLetter { reason } => {
                job.record.state = JobState::DeadLettered;
                if let Err(e) = self.ports.leases.record(&job.lease, &job.record).await {
                    warn!(error = %e, "cannot record the dead letter; leaving the message for the next holder");
                    return Dispatch::Settled(r);
                }
                job.span.set_status(Status::error(reason.clone()));
                let letter = letter_for(&job.record, failure.class, reason);
                async {
                    let d = self.settle_dead_letter(&job.delivery, &letter).await;
                    self.give_up_lease(&job.lease).await;
                    d
                }
                .instrument(self.settle_span(&job.span, "dead_letter"))
                .await
            }
        }
    }

    /// A redelivered message whose job already ended: finish settling it.
    async fn settle_known_final(&self, d: Delivery, lease: Lease, r: JobRecord) -> Dispatch {
        let process = Span::current();
        let result = if r.state == JobState::Succeeded {
            info!("redelivered after success; acknowledging");
            async {
                if let Err(e) = self.ports.queue.ack(&d.receipt).await {
                    warn!(error = %e, "cannot ack");
                }
            }
            .instrument(self.settle_span(&process, "ack"))
            .await;
            Dispatch::Settled(TickReport::default())
        } else {
            let failure = r
                .last_failure
                .clone()
                .unwrap_or_else(|| Failure::new(FailureClass::Internal, "dead-lettered"));
            process.set_status(Status::error(failure.reason.clone()));
            let letter = letter_for(&r, failure.class, failure.reason);
            self.settle_dead_letter(&d, &letter)
                .instrument(self.settle_span(&process, "dead_letter"))
                .await
        };
        self.give_up_lease(&lease).await;
        result
    }

    async fn settle_dead_letter(&self, d: &Delivery, letter: &DeadLetter) -> Dispatch {
        let mut r = TickReport::default();
        match self.ports.queue.dead_letter(d, letter).await {
            Ok(()) => {
                warn!(message = %d.message_id, class = %letter.class, reason = %letter.reason, "dead-lettered");
                r.dead_lettered = 1;
                self.metric(Metric::count(names::DEAD_LETTERS, 1));
                if let (Some(board), Ok(env)) = (&self.ports.board, Envelope::decode(&d.body)) {
                    let note = format!("dead-lettered ({}): {}", letter.class, letter.reason);
                    if let Err(e) = board
                        .set_status(env.item.id.as_str(), ItemStatus::Failed, Some(&note))
                        .await
                    {
                        warn!(error = %e, "cannot mark the board item failed");
                    }
                }
            }
            Err(e) => warn!(error = %e, "cannot dead-letter; the message will come back"),
        }
        Dispatch::Settled(r)
    }

    async fn release_quietly(&self, d: &Delivery, delay: Duration) {
        if let Err(e) = self.ports.queue.release(&d.receipt, delay).await {
            warn!(error = %e, message = %d.message_id, "cannot give the message back; it returns after its visibility timeout");
        }
    }

    async fn give_up_lease(&self, lease: &Lease) {
        if let Err(e) = self.ports.leases.release(lease).await {
            debug!(error = %e, "lease release failed; it expires by itself");
        }
    }

    /// Hold scale-in protection while jobs are in flight: on when the engine goes from no
    /// job to some, off when it goes back to none, re-armed before it expires. A failed
    /// call is logged and tried again later; it never touches the jobs.
    async fn update_protection(&mut self) {
        let Some(protection) = self.ports.protection.clone() else {
            return;
        };
        let want = !self.jobs.is_empty();
        let now = Instant::now();
        let st = &mut self.protection;
        if st.retry_at.is_some_and(|t| t > now) {
            return;
        }
        let rearm = st.on && want && st.rearm_at.is_some_and(|t| t <= now);
        if st.on == want && !rearm {
            return;
        }
        match protection.set(want).await {
            Ok(()) => {
                if st.on != want {
                    info!(
                        protected = want,
                        jobs = self.jobs.len(),
                        "scale-in protection changed"
                    );
                }
                st.on = want;
                st.retry_at = None;
                st.rearm_at = if want {
                    protection.refresh_every().map(|d| now + d)
                } else {
                    None
                };
            }
            Err(e) => {
                warn!(error = %e, protected = want, "cannot change scale-in protection; trying again later");
                st.retry_at = Some(now + PROTECTION_RETRY);
            }
        }
    }

    /// Hand every job off: record `handoff`, make the message visible now, release the
    /// lease. Builds keep running; the next consumer re-attaches at once.
    #[instrument(skip_all, fields(jobs = self.jobs.len()))]
    pub async fn drain(&mut self) {
        self.draining = true;
        let jobs: Vec<ActiveJob> = self.jobs.drain().map(|(_, j)| j).collect();
        let ports = &self.ports;
        join_all(jobs.into_iter().map(|job| {
            let span = job.span.clone();
            hand_off(ports, job).instrument(span)
        }))
        .await;
        // Nothing is held any more: the task may be scaled in (a last try, even right
        // after a failed call).
        self.protection.retry_at = None;
        self.update_protection().await;
    }
}

/// Hand one job off (inside its `process` span): record `handoff`, make its message
/// visible now, release its lease.
async fn hand_off(ports: &Ports, mut job: ActiveJob) {
    job.span.add_event(
        "handoff",
        vec![KeyValue::new(keys::BUILD_ID, job.build_id.to_string())],
    );
    job.record.state = JobState::Handoff;
    job.record.owner = None;
    job.record.updated_at = ports.clock.now();
    match ports.leases.record(&job.lease, &job.record).await {
        Ok(()) => {
            if let Err(e) = ports
                .queue
                .release(&job.delivery.receipt, Duration::ZERO)
                .await
            {
                warn!(error = %e, "cannot make the message visible; it returns after its visibility timeout");
            }
            if let Err(e) = ports.leases.release(&job.lease).await {
                warn!(error = %e, "cannot release the lease; it expires by itself");
            }
            info!(project = %job.item.project, build = %job.build_id, "handed off");
        }
        Err(e) => {
            warn!(project = %job.item.project, error = %e, "handoff not recorded; the lease expires by itself")
        }
    }
}

/// A fence as a span attribute value.
fn fence_value(lease: &Lease) -> i64 {
    i64::try_from(lease.fence.0).unwrap_or(i64::MAX)
}

/// Put the build id and the fence on the current (`process`) span.
fn record_build(id: &BuildId, lease: &Lease) {
    let span = Span::current();
    span.set_attribute(keys::BUILD_ID, id.to_string());
    span.set_attribute(keys::FENCE, fence_value(lease));
}

/// The dead letter for a job: its history, fence, last build and trace context.
fn letter_for(record: &JobRecord, class: FailureClass, reason: String) -> DeadLetter {
    DeadLetter {
        reason,
        class,
        attempts: record.history.clone(),
        fence: Some(record.fence),
        build_id: record.history.last().and_then(|a| a.build_id.clone()),
        trace: record.trace.clone(),
    }
}

/// The outcome of a finished build: the worker's exported variables when it reported,
/// otherwise the build's own state.
pub fn outcome_of(status: &BuildStatus) -> WorkerOutcome {
    // The reason is stored in the job record and the dead letter and shown by the
    // console: whatever the build reported, it is redacted here.
    let mut outcome = reported_outcome(status);
    if let Some(f) = &mut outcome.failure {
        f.reason = kiro_protocol::redact::redact(&f.reason);
    }
    outcome
}

fn reported_outcome(status: &BuildStatus) -> WorkerOutcome {
    let reported = WorkerOutcome::from_vars(&status.exported);
    let worker_spoke = status
        .exported
        .contains_key(kiro_protocol::outcome::vars::OUTCOME);
    match status.state {
        BuildState::Succeeded => reported,
        _ if worker_spoke && reported.status == OutcomeStatus::Failed => reported,
        state => {
            let class = match state {
                BuildState::TimedOut => FailureClass::TimedOut,
                BuildState::Stopped => FailureClass::Stopped,
                _ => FailureClass::BuildFailed,
            };
            let why = status
                .message
                .clone()
                .unwrap_or_else(|| format!("build ended {state}"));
            WorkerOutcome {
                failure: Some(Failure::new(class, why)),
                status: OutcomeStatus::Failed,
                ..reported
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiro_protocol::Timestamp;

    #[test]
    fn a_reported_failure_reason_is_redacted_before_it_is_stored() {
        let token = "ghp_0123456789abcdefghijklmnop";
        let failed = WorkerOutcome::failure(Failure::new(
            FailureClass::BuildFailed,
            format!("cannot clone file:///x/{token}/calc"),
        ));
        let status = BuildStatus {
            id: BuildId::new("local:calc:1"),
            state: BuildState::Failed,
            phase: None,
            started_at: Timestamp(0),
            ended_at: Some(Timestamp(1)),
            exported: failed.to_vars(),
            log: None,
            message: None,
        };
        let reason = outcome_of(&status).failure.unwrap().reason;
        assert_eq!(reason, "cannot clone file:///x/[REDACTED]/calc");
        let crashed = BuildStatus {
            exported: Default::default(),
            message: Some(format!("phase BUILD failed: token {token}")),
            ..status
        };
        let reason = outcome_of(&crashed).failure.unwrap().reason;
        assert!(
            !reason.contains(token) && reason.contains("[REDACTED]"),
            "{reason}"
        );
    }
}
