//! Phase 4, settle: poll every running build in one round per `poll_every` (one batched
//! status call per 100 ids) and settle finished jobs — ack on success; otherwise the
//! [`RetryPolicy`](crate::RetryPolicy) decides between a delayed retry (the message stays
//! in flight, so the project's order holds) and an explicit dead letter with reason, class
//! and attempt history. Dispatch settles here too when a delivery ends before a build runs.
//!
//! Invariant: a final state is recorded (fence-conditionally) before the message is
//! settled, so a crash in between is repaired by the next delivery.

use super::{ActiveJob, Engine, HeldJob, TickReport};
use crate::policy::Decision;
use futures::future::join_all;
use kiro_protocol::{
    BuildId, BuildState, BuildStatus, DeadLetter, Delivery, Envelope, Failure, FailureClass,
    ItemStatus, JobRecord, JobState, Lease, LeaseError, OutcomeStatus, Receipt, WorkItem,
    WorkerOutcome,
};
use kiro_telemetry::metric::{PROJECT_DIMENSION, Unit};
use kiro_telemetry::metrics::{Metric, names};
use kiro_telemetry::otel::keys;
use opentelemetry::KeyValue;
use opentelemetry::trace::Status;
use std::collections::HashMap;
use tokio::time::Instant;
use tracing::{Instrument, Span, debug, info, info_span, warn};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// How a finished build's job was settled.
enum Finished {
    /// What it counts for (nothing when the settlement must be repeated).
    Settled(TickReport),
    /// Success recorded and the lease released with it; the message is acked in one
    /// batch with the tick's other successes.
    Succeeded(Receipt, Span),
}

impl Engine {
    /// When the round is due, ask for the status of every running build (one batched
    /// call per 100 ids). The first job is polled at once; the rounds then follow every
    /// `poll_every`, and a job that starts between them joins the next one.
    pub(super) async fn poll(&mut self, report: &mut TickReport) {
        let now = Instant::now();
        if self.jobs.is_empty() {
            self.next_poll = None;
            return;
        }
        let round = *self.next_poll.get_or_insert(now);
        if round > now {
            return;
        }
        let next = round + self.cfg.poll_every;
        self.next_poll = Some(if next > now {
            next
        } else {
            now + self.cfg.poll_every
        });
        let due: Vec<(String, BuildId)> = self
            .jobs
            .iter()
            .map(|(k, j)| (k.clone(), j.build_id.clone()))
            .collect();
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
            if !self.jobs.contains_key(&key) {
                continue;
            }
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
            self.last_settled
                .insert(job.held.delivery.group.to_string(), now);
        }
        let settled = join_all(finished.into_iter().map(|(job, s)| self.finish(job, s))).await;
        let mut done = Vec::new();
        for d in settled {
            match d {
                Finished::Settled(r) => report.add(&r),
                Finished::Succeeded(receipt, span) => done.push((receipt, span)),
            }
        }
        self.ack_successes(done, report).await;
        // The builds still running: withdraw those whose card left the active statuses.
        self.withdraw_moved(report).await;
    }

    /// A build finished: settle the job.
    async fn finish(&self, job: ActiveJob, status: BuildStatus) -> Finished {
        let mut job = job.held;
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
            if let Some(secs) = outcome.agent_seconds {
                job.record.agent_seconds = job.record.agent_seconds.saturating_add(secs);
                self.metric(
                    Metric::new(names::AGENT_MINUTES, secs as f64 / 60.0, Unit::Count)
                        .with_dimension(PROJECT_DIMENSION, job.item.project.as_str()),
                );
            }
            job.record.end_attempt(outcome.failure.as_ref(), now);
            self.finished_metrics(&job, outcome.failure.as_ref(), outcome.coverage);
            match outcome.failure {
                None => self.settle_success(job).await,
                Some(f) => {
                    info!(class = %f.class, reason = %f.reason, "build failed");
                    Finished::Settled(self.settle_failure(job, f).await)
                }
            }
        }
        .instrument(span)
        .instrument(process)
        .await
    }

    async fn settle_success(&self, mut job: HeldJob) -> Finished {
        job.record.state = JobState::Succeeded;
        job.record.last_failure = None;
        job.record.updated_at = self.ports.clock.now();
        // The record is final before the ack, and the lease goes with it: the message in
        // flight keeps its group (and so the project) from everyone else until the ack, and
        // a redelivery after a lost ack is acked from the record.
        if let Err(e) = self.record_last(&job).await {
            if matches!(e, LeaseError::FenceLost { .. })
                && let Some(r) = self.ack_if_cancelled(&job).await
            {
                return Finished::Settled(r);
            }
            warn!(error = %e, "cannot record success; leaving the message for the next holder");
            return Finished::Settled(TickReport {
                deferred: 1,
                ..TickReport::default()
            });
        }
        info!(attempts = job.record.attempts, "succeeded");
        Finished::Succeeded(job.delivery.receipt, job.span)
    }

    /// Ack the tick's successes in one batch (the record is already final and the lease
    /// released with it, so a failed ack only means the redelivery is acked from the job
    /// record).
    async fn ack_successes(&self, done: Vec<(Receipt, Span)>, report: &mut TickReport) {
        if done.is_empty() {
            return;
        }
        report.succeeded += done.len();
        // One `settle` span per message (children of their `process` spans) around the
        // one batched call.
        let settles: Vec<Span> = done
            .iter()
            .map(|(_, process)| self.settle_span(process, "ack"))
            .collect();
        let receipts: Vec<Receipt> = done.iter().map(|(r, _)| r.clone()).collect();
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
        // closed): before their `process` spans, which end on their last exit, here.
        drop(settles);
        for (_, process) in &done {
            process.in_scope(|| debug!("settled"));
        }
    }

    /// Retry with backoff or dead-letter, as the policy decides.
    /// The attempt is already settled in the record (counted or given back).
    pub(super) async fn settle_failure(&self, mut job: HeldJob, failure: Failure) -> TickReport {
        let mut r = TickReport::default();
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
                if let Err(e) = self.record_last(&job).await {
                    if matches!(e, LeaseError::FenceLost { .. })
                        && let Some(r) = self.ack_if_cancelled(&job).await
                    {
                        return r;
                    }
                    warn!(error = %e, "cannot record the retry; leaving the message for the next holder");
                    return r;
                }
                self.release_quietly(&job.delivery, delay)
                    .instrument(self.settle_span(&job.span, "retry"))
                    .await;
                info!(
                    delay_ms = delay.as_millis() as u64,
                    attempts = job.record.attempts,
                    "retry scheduled"
                );
                r.retried = 1;
                r
            }
            Decision::DeadLetter { reason } => {
                job.record.state = JobState::DeadLettered;
                if let Err(e) = self.record_last(&job).await {
                    if matches!(e, LeaseError::FenceLost { .. })
                        && let Some(r) = self.ack_if_cancelled(&job).await
                    {
                        return r;
                    }
                    warn!(error = %e, "cannot record the dead letter; leaving the message for the next holder");
                    return r;
                }
                job.span.set_status(Status::error(reason.clone()));
                let letter = letter_for(&job.record, failure.class, reason);
                self.settle_dead_letter(&job.delivery, &letter)
                    .instrument(self.settle_span(&job.span, "dead_letter"))
                    .await
            }
        }
    }

    /// A redelivered message whose job already ended: finish settling it.
    pub(super) async fn settle_known_final(
        &self,
        d: Delivery,
        lease: Lease,
        r: JobRecord,
    ) -> TickReport {
        let process = Span::current();
        if r.state == JobState::Cancelled {
            info!("redelivered after a cancel; acknowledging");
            return self.ack_cancelled(&d, &lease).await;
        }
        let result = if r.state == JobState::Succeeded {
            info!("redelivered after success; acknowledging");
            async {
                if let Err(e) = self.ports.queue.ack(&d.receipt).await {
                    warn!(error = %e, "cannot ack");
                }
            }
            .instrument(self.settle_span(&process, "ack"))
            .await;
            TickReport::default()
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

    pub(super) async fn settle_dead_letter(&self, d: &Delivery, letter: &DeadLetter) -> TickReport {
        let mut r = TickReport::default();
        match self.ports.queue.dead_letter(d, letter).await {
            Ok(()) => {
                warn!(message_id = %d.message_id, class = %letter.class, reason = %letter.reason, "dead-lettered");
                r.dead_lettered = 1;
                self.metric(Metric::count(names::DEAD_LETTERS, 1));
                let Ok(env) = Envelope::decode(&d.body) else {
                    // A message that is no work item has no card and no pull request.
                    return r;
                };
                if let Some(board) = &self.ports.board {
                    let note = format!("dead-lettered ({}): {}", letter.class, letter.reason);
                    let mark =
                        board.set_status(env.item.id.as_str(), ItemStatus::Failed, Some(&note));
                    if let Err(e) = self.forge_call("marking the board item failed", mark).await {
                        warn!(error = %e, "cannot mark the board item failed");
                    }
                }
                self.announce(&env.item, letter, d.message_id.as_str())
                    .await;
            }
            Err(e) => warn!(error = %e, "cannot dead-letter; the message will come back"),
        }
        r
    }

    /// Tell the item's assignees that it failed for good: a new comment on its pull
    /// request that mentions them (best effort: a failure is logged; the dead letter and
    /// the board's Failed mark already hold the news).
    async fn announce(&self, item: &WorkItem, letter: &DeadLetter, message_id: &str) {
        let Some(pulls) = &self.ports.pulls else {
            return;
        };
        let comment = crate::announce::final_failure(item, letter, message_id);
        let post = pulls.comment(&item.repo, item.pr, &comment);
        match self.forge_call("announcing the final failure", post).await {
            Ok(()) => info!(
                assignees = item.assignees.len(),
                "final failure announced on the pull request"
            ),
            Err(e) => warn!(error = %e, "cannot announce the final failure on the pull request"),
        }
    }
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
