//! Phase 2, dispatch: take each received delivery as far as a running build, or settle it.
//!
//! Decode (a bad envelope, or a group that is not the item's project, is dead-lettered as
//! permanent input), take the project's lease (contention gives the message back with a
//! delay and never burns an attempt), read the item's job record and either settle a
//! redelivered final job, re-attach to a build that may be running ([`reattach`]), or
//! record the intent and start a new build. A first delivery skips the read: its intent
//! is written only if the item has no record (one call fewer for a new item), and a
//! record found that way is read and judged as any other.
//!
//! Invariant: a build is started only by the holder of the project's lease, after the
//! intent (the exact build request) is recorded under its fence.

use super::observe::record_build;
use super::withdraw::{cancel_covers, moved_reason};
use super::{ActiveJob, Engine, HeldJob, TickReport};
use futures::future::join_all;
use kiro_protocol::ports::build::env as build_env;
use kiro_protocol::{
    BoardStanding, BuildId, BuildRequest, DeadLetter, Delivery, Envelope, Failure, FailureClass,
    JobRecord, JobState, Lease, LeaseError, Session, WorkItem,
};
use kiro_telemetry::metrics::{Metric, names};
use kiro_telemetry::otel::{self, keys};
use opentelemetry::trace::Status;
use reattach::Recovery;
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{Instrument, Span, info, warn};
use tracing_opentelemetry::OpenTelemetrySpanExt;

mod reattach;

/// How soon a message comes back when dispatch could not reach the lease store (taking
/// the lease, reading the job record, recording the intent or the re-attach). No attempt
/// is spent: a few seconds keep a failing store from being hammered by the same message
/// while a blip barely delays the project.
const STORE_RETRY_DELAY: Duration = Duration::from_secs(5);

/// The shortest delay before a message held up by lease contention comes back. The
/// holder's lease may run out any moment (or already has, by the clock's reading), but a
/// zero delay would hand the message straight back to the receive loop to spin on.
const MIN_CONTENTION_DELAY: Duration = Duration::from_secs(1);

/// Where an active job's build comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BuildOrigin {
    /// Started by this dispatch.
    Started,
    /// Re-attached to: started by an earlier holder (or recovered from its intent).
    Adopted,
}

/// How the intent of a new attempt is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Intent {
    /// The item had no record when it was read: create one, or find the one written since.
    Create,
    /// Over the record just read.
    Overwrite,
}

/// The result of dispatching one delivery.
enum Dispatch {
    /// The job runs a build; supervised from now on.
    Active(Box<ActiveJob>, BuildOrigin),
    /// Settled or given back without a running build: what it counts for.
    Settled(TickReport),
}

impl Engine {
    /// Dispatch a batch of deliveries at once; a delivery of a project with a job in
    /// flight here goes back to its queue at once.
    pub(super) async fn dispatch_all(
        &mut self,
        deliveries: Vec<Delivery>,
        report: &mut TickReport,
    ) {
        if deliveries.is_empty() {
            return;
        }
        let Some(session) = self.live_session().await else {
            // No confirmed session to take leases under: every message comes back soon.
            for d in &deliveries {
                report.deferred += 1;
                self.release_quietly(d, STORE_RETRY_DELAY).await;
            }
            return;
        };
        // Where the delivered items stand on the board: one read for the batch.
        let items: Vec<String> = deliveries
            .iter()
            .filter_map(|d| Envelope::decode(&d.body).ok())
            .map(|e| e.item.id.to_string())
            .collect();
        let standings = self.board_standings(items).await;
        let standings = &standings;
        let mut futures = Vec::new();
        for d in deliveries {
            if self.jobs.contains_key(d.group.as_str()) {
                // An earlier message of this project is still ours: give this one back; the
                // FIFO group keeps it behind the one in flight.
                report.deferred += 1;
                if let Err(e) = self.ports.queue.release(&d.receipt, Duration::ZERO).await {
                    warn!(error = %e, message_id = %d.message_id, "cannot give back a deferred message");
                }
                continue;
            }
            futures.push(self.dispatch(d, &session, standings));
        }
        for outcome in join_all(futures).await {
            match outcome {
                Dispatch::Active(job, origin) => {
                    match origin {
                        BuildOrigin::Adopted => report.adopted += 1,
                        BuildOrigin::Started => {
                            report.started += 1;
                            self.count_start(&job.held.delivery);
                        }
                    }
                    self.jobs.insert(job.held.item.project.to_string(), *job);
                }
                Dispatch::Settled(r) => report.add(&r),
            }
        }
    }

    /// A build started for `d`: the started metric and, for a first delivery, the
    /// dispatch latency (message visible → build started).
    fn count_start(&mut self, d: &Delivery) {
        self.metric(Metric::count(names::BUILDS_STARTED, 1));
        let visible = self
            .last_settled
            .get(d.group.as_str())
            .map_or(d.sent_at, |t| (*t).max(d.sent_at));
        let latency = self.ports.clock.now().since(visible);
        let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        if d.receive_count == 1 {
            self.metric(Metric::millis(names::DISPATCH_LATENCY, latency_ms));
            if self.stats.dispatch_latency_ms.len() < 1_000_000 {
                self.stats.dispatch_latency_ms.push(latency_ms);
            }
        }
    }

    /// Take one delivery as far as a running build, or settle it.
    async fn dispatch(
        &self,
        d: Delivery,
        session: &Session,
        standings: &HashMap<String, BoardStanding>,
    ) -> Dispatch {
        let decoded = Envelope::decode(&d.body);
        // The message attributes carry the context; the envelope keeps a copy (for a
        // queue that lost the attributes, e.g. a hand-made replay).
        let trace = match &decoded {
            Ok(e) if d.trace.is_empty() => &e.trace,
            _ => &d.trace,
        };
        let span = self.process_span(&d, trace);
        self.dispatch_in(d, decoded, span.clone(), session, standings)
            .instrument(span)
            .await
    }

    async fn dispatch_in(
        &self,
        d: Delivery,
        decoded: Result<Envelope, kiro_protocol::EnvelopeError>,
        span: Span,
        session: &Session,
        standings: &HashMap<String, BoardStanding>,
    ) -> Dispatch {
        let envelope = match decoded {
            Ok(e) => e,
            Err(e) => {
                let failure = Failure::from(e);
                warn!(message_id = %d.message_id, reason = %failure.reason, "undecodable message");
                return self.reject(&d, &span, failure).await;
            }
        };
        let item = envelope.item;
        span.record("kiro.item", tracing::field::display(&item.id));
        if !d.group.is_project(&item.project) {
            // In-flight jobs are found by group and kept by project: one key only. A
            // message sent with another group is this message's fault alone.
            let reason = format!(
                "item {}: message group {} is not the item's project {} (a message must be sent with group = project)",
                kiro_protocol::ids::quote_for_display(item.id.as_str()),
                kiro_protocol::ids::quote_for_display(d.group.as_str()),
                kiro_protocol::ids::quote_for_display(item.project.as_str()),
            );
            warn!(message_id = %d.message_id, %reason, "message group is not the item's project");
            let failure = Failure::new(FailureClass::PermanentInput, reason);
            return self.reject(&d, &span, failure).await;
        }
        let standing = standings.get(item.id.as_str()).cloned();
        self.dispatch_item(d, item, envelope.trace, session, standing)
            .await
    }

    /// Dead-letter a message that never becomes a job (no lease, no record, no attempt).
    async fn reject(&self, d: &Delivery, span: &Span, failure: Failure) -> Dispatch {
        span.set_status(Status::error(failure.reason.clone()));
        let letter = DeadLetter {
            reason: failure.reason,
            class: failure.class,
            attempts: vec![],
            fence: None,
            build_id: None,
            trace: d.trace.clone(),
        };
        Dispatch::Settled(self.settle_dead_letter(d, &letter).await)
    }

    /// Give the message back soon: the lease store could not be reached. Nothing is spent.
    async fn store_unreachable(&self, d: &Delivery) -> Dispatch {
        self.release_quietly(d, STORE_RETRY_DELAY).await;
        Dispatch::Settled(TickReport {
            deferred: 1,
            ..TickReport::default()
        })
    }

    async fn dispatch_item(
        &self,
        d: Delivery,
        item: WorkItem,
        trace: kiro_protocol::TraceContext,
        session: &Session,
        standing: Option<BoardStanding>,
    ) -> Dispatch {
        let lease = match self.ports.leases.acquire(&item.project, session).await {
            Ok(l) => {
                self.note_lease(&l);
                l
            }
            Err(LeaseError::Held {
                holder, expires_at, ..
            }) => {
                let wait = expires_at
                    .since(self.ports.clock.now())
                    .min(self.cfg.contention_delay)
                    .max(MIN_CONTENTION_DELAY);
                info!(%holder, wait_ms = wait.as_millis() as u64, "project busy; message returned");
                self.release_quietly(&d, wait).await;
                self.metric(Metric::count(names::LEASE_CONTENTION, 1));
                return Dispatch::Settled(TickReport {
                    contention: 1,
                    ..TickReport::default()
                });
            }
            Err(e) => {
                warn!(error = %e, "cannot take the lease; message returned");
                return self.store_unreachable(&d).await;
            }
        };
        // A first delivery is most likely of a new item: its record is created with the
        // intent, without reading it first (one call fewer per build). When the item has a
        // record after all, the create writes nothing and the record is read and judged
        // like any other.
        // (A card that left the active statuses is judged with the record, below.)
        let moved = standing.as_ref().is_some_and(BoardStanding::moved_away);
        if d.receive_count <= 1 && !moved {
            let record = self.own_record(
                JobRecord::new(
                    item.project.clone(),
                    item.id.clone(),
                    d.message_id.clone(),
                    lease.fence,
                    trace,
                    self.ports.clock.now(),
                ),
                &lease,
            );
            let job = self.held(d, item, lease, record);
            return self.start_build(job, Intent::Create).await;
        }
        self.judge_record(d, item, trace, lease, standing).await
    }

    /// Read the item's job record and go on from it: settle a redelivered final job,
    /// re-attach to a build that may be running, or start a new attempt.
    async fn judge_record(
        &self,
        d: Delivery,
        item: WorkItem,
        trace: kiro_protocol::TraceContext,
        lease: Lease,
        standing: Option<BoardStanding>,
    ) -> Dispatch {
        let existing = match self.ports.leases.job(&item.project, &item.id).await {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "cannot read the job record; message returned");
                self.give_up_lease(&lease).await;
                return self.store_unreachable(&d).await;
            }
        };
        let now = self.ports.clock.now();
        if let Some(r) = &existing
            && cancel_covers(r, &d)
        {
            // Cancelled while queued (or a redelivery of a cancelled job): acknowledged,
            // never built.
            info!("the item was cancelled; acknowledging its message");
            return Dispatch::Settled(self.ack_cancelled(&d, &lease).await);
        }
        let record = match existing {
            Some(mut r)
                if r.message_id == d.message_id
                    || (r.state.may_have_build()
                        && (r.build_id.is_some() || r.start.is_some())) =>
            {
                // A redelivery of the message we know, or a build (or a recorded intent)
                // to re-attach to.
                if r.state.is_final() {
                    return Dispatch::Settled(self.settle_known_final(d, lease, r).await);
                }
                r.message_id = d.message_id.clone();
                r
            }
            Some(mut r) => {
                // A new message for an item seen before (a replay, or the board re-queued
                // it): a fresh budget, history kept.
                r.message_id = d.message_id.clone();
                r.state = JobState::Pending;
                r.reset_attempts();
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
        let record = self.own_record(record, &lease);
        let job = self.held(d, item, lease, record);
        if let Some(standing) = standing.filter(BoardStanding::moved_away) {
            // The card left the active statuses while the item was queued (or handed
            // over): cancel before any build starts, and stop the one that may run.
            let build = job
                .record
                .build_id
                .clone()
                .filter(|_| job.record.state.may_have_build());
            return Dispatch::Settled(self.withdraw(job, build, moved_reason(&standing)).await);
        }
        if job.record.state.may_have_build() {
            self.re_attach(job).await
        } else if job
            .record
            .budget_spent(Some(self.cfg.item_agent_budget.as_secs()))
        {
            self.refuse_spent(job).await
        } else {
            self.start_build(job, Intent::Overwrite).await
        }
    }

    /// `record` as written under `lease` by this consumer, now.
    fn own_record(&self, mut record: JobRecord, lease: &Lease) -> JobRecord {
        record.fence = lease.fence;
        record.owner = Some(self.cfg.owner.clone());
        record.updated_at = self.ports.clock.now();
        record
    }

    /// The item's agent budget is spent: no new attempt; dead-lettered `budget-spent`.
    async fn refuse_spent(&self, job: HeldJob) -> Dispatch {
        let used = job.record.agent_seconds;
        let reason = format!(
            "item {}: the agent used {}m{:02}s across its attempts, the item's budget is {} (--item-agent-budget, KIRO_ITEM_AGENT_BUDGET); no new attempt is started",
            kiro_protocol::ids::quote_for_display(job.item.id.as_str()),
            used / 60,
            used % 60,
            humantime::format_duration(self.cfg.item_agent_budget),
        );
        warn!(%reason, "agent budget spent");
        let failure = Failure::new(FailureClass::BudgetSpent, reason);
        Dispatch::Settled(self.settle_failure(job, failure).await)
    }

    /// Re-attach: a build may be running for this item, the one the record names or the
    /// one its recorded intent started.
    async fn re_attach(&self, mut job: HeldJob) -> Dispatch {
        let id = match job.record.build_id.clone() {
            Some(id) => id,
            // Intent recorded but no id: find the build the intent started, or replay
            // the recorded request (which starts it if it never started).
            None => match self.recover_intent(&job.item, &job.record).await {
                Ok(id) => id,
                Err(Recovery::Unknown(failure)) => {
                    return Dispatch::Settled(self.keep_intent(job, failure).await);
                }
                Err(Recovery::NotStarted(failure)) => {
                    warn!(class = %failure.class, reason = %failure.reason, "the recorded build request was refused");
                    return self.settle_not_started(job, failure).await;
                }
            },
        };
        job.record.attach_build(id.clone());
        if let Err(e) = self.ports.leases.record(&job.lease, &job.record).await {
            warn!(error = %e, "cannot record the re-attach; message returned");
            return self.store_unreachable(&job.delivery).await;
        }
        record_build(&id, &job.lease);
        info!(build = %id, fence = %job.lease.fence, "re-attached to a running build");
        Dispatch::Active(Box::new(self.active(job, id)), BuildOrigin::Adopted)
    }

    /// Record the intent, start the build, record its id.
    async fn start_build(&self, mut job: HeldJob, intent: Intent) -> Dispatch {
        let now = self.ports.clock.now();
        job.record.count_attempt(job.lease.fence, now);
        job.record.state = JobState::Starting;
        job.record.build_id = None;
        // The exact request is recorded with the intent: whoever finds the intent without
        // a build id replays it unchanged.
        let req = self.build_request(&job.item, &job.record);
        job.record.start = Some(req.clone());
        let written = match intent {
            Intent::Create => self.ports.leases.record_new(&job.lease, &job.record).await,
            Intent::Overwrite => self
                .ports
                .leases
                .record(&job.lease, &job.record)
                .await
                .map(|()| true),
        };
        match written {
            Ok(true) => {}
            Ok(false) => {
                // The item has a record: read it and judge from it (boxed: this calls back
                // into `judge_record`, which may start a build again, by overwriting). The
                // card was not seen to move (else the create was not tried).
                let trace = job.record.trace.clone();
                let judged = self.judge_record(job.delivery, job.item, trace, job.lease, None);
                return Box::pin(judged).await;
            }
            Err(e) => {
                warn!(error = %e, "cannot record the intent; message returned");
                if !matches!(e, LeaseError::FenceLost { .. }) {
                    self.give_up_lease(&job.lease).await;
                }
                return self.store_unreachable(&job.delivery).await;
            }
        }
        match self.ports.builds.start(&req).await {
            Ok(id) => {
                job.record.attach_build(id.clone());
                job.record.updated_at = self.ports.clock.now();
                if let Err(e) = self.ports.leases.record(&job.lease, &job.record).await {
                    // The build runs; whoever holds the lease next re-attaches through the
                    // request (and its idempotency key) recorded with the intent.
                    warn!(error = %e, build = %id, "cannot record the build id");
                }
                record_build(&id, &job.lease);
                let attempt = job.record.attempts;
                Span::current().set_attribute(keys::ATTEMPT, i64::from(attempt));
                info!(build = %id, fence = %job.lease.fence, attempt, "build started");
                Dispatch::Active(Box::new(self.active(job, id)), BuildOrigin::Started)
            }
            Err(e) => {
                let failure = Failure::from(e);
                warn!(class = %failure.class, reason = %failure.reason, "cannot start the build");
                self.settle_not_started(job, failure).await
            }
        }
    }

    /// The attempt's build never started (a start that failed did not run): it does not
    /// count; retry or dead-letter as the policy decides.
    async fn settle_not_started(&self, mut job: HeldJob, failure: Failure) -> Dispatch {
        job.record
            .attempt_not_started(&failure, self.ports.clock.now());
        Dispatch::Settled(self.settle_failure(job, failure).await)
    }

    /// Called inside the delivery's `process` span.
    fn held(&self, delivery: Delivery, item: WorkItem, lease: Lease, record: JobRecord) -> HeldJob {
        HeldJob {
            delivery,
            item,
            lease,
            record,
            span: Span::current(),
        }
    }

    /// Supervise `job`, whose build is `build_id`, from now on: its deadline is the earlier
    /// of what its session and its message's visibility confirm, less the safety margin.
    fn active(&self, job: HeldJob, build_id: BuildId) -> ActiveJob {
        let now = Instant::now();
        let visible_for = job.delivery.visible_again_at.since(self.ports.clock.now());
        // The lease lives as long as the session: confirmed as far as the session is.
        let lease_until = self.session_lease_until().unwrap_or(now);
        let visible_until = now + visible_for;
        let confirmed = lease_until.min(visible_until);
        ActiveJob {
            held: job,
            build_id,
            safe_until: confirmed.checked_sub(self.cfg.safety_margin).unwrap_or(now),
            lease_until,
            visible_until,
            extend_retry: None,
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
        if let Some(t) = self.cfg.build_timeout {
            // The worker keeps its own limits inside the build's.
            env.insert(
                kiro_protocol::env::BUILD_TIMEOUT.into(),
                humantime::format_duration(t).to_string(),
            );
        }
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
}
