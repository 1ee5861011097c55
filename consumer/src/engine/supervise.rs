//! Phase 3, supervise: keep the jobs in flight safe to act on.
//!
//! First the session's heartbeat (`session.rs`): one renewal keeps every project lease of
//! this consumer, and losing the session cancels every job. Then, for every job whose
//! renewal is due, extend the message visibility (one batched call); a confirmed extension
//! moves the job's monotonic `safe_until` deadline.
//!
//! Invariant: the engine never acts on a job past its `safe_until` or its session's: such
//! a job is cancelled (the engine stops acting on it, and lets its lease go), and its build
//! is stopped only when its fence is known lost and the current holder has not adopted
//! the build.

use super::observe::fence_value;
use super::{ActiveJob, Engine, TickReport};
use kiro_protocol::{BuildStanding, FailureClass, build_standing};
use kiro_telemetry::otel::keys;
use opentelemetry::KeyValue;
use opentelemetry::trace::Status;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{Instrument, debug, warn};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Why a job is cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CancelReason {
    /// `safe_until` passed without a confirmed renewal; the fence may still be ours.
    Unconfirmed,
    /// The lease or the message is known to belong to someone else now.
    FenceLost,
}

/// How soon an unconfirmed extension is tried again. The job has only until `safe_until`
/// to get a confirmed one, so retries are frequent; one second bounds them to one
/// extension per job per second.
const RENEW_RETRY: Duration = Duration::from_secs(1);

impl Engine {
    /// Beat the session, extend the visibility of every job that is due; cancel the jobs
    /// whose deadline passed without a confirmed renewal.
    pub(super) async fn supervise(&mut self, report: &mut TickReport) {
        self.beat(report).await;
        let now = Instant::now();
        let due = self.projects_where(|j| j.next_renew <= now);
        if !due.is_empty() {
            let started = Instant::now();
            let receipts: Vec<_> = due
                .iter()
                .filter_map(|k| self.jobs.get(k))
                .map(|j| j.held.delivery.receipt.clone())
                .collect();
            let extended = self
                .ports
                .queue
                .extend(&receipts, self.cfg.visibility)
                .await;
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
            for (key, extended) in due.iter().zip(extended) {
                let Some(job) = self.jobs.get_mut(key) else {
                    continue;
                };
                match extended {
                    Some(true) => {
                        let confirmed = self.cfg.visibility.saturating_sub(self.cfg.safety_margin);
                        job.safe_until = started + confirmed;
                        job.next_renew = started + self.cfg.renew_every;
                        debug!(project = %key, "heartbeat");
                        job.held.span.add_event(
                            "heartbeat",
                            vec![KeyValue::new(keys::FENCE, fence_value(&job.held.lease))],
                        );
                    }
                    Some(false) => fence_lost.push(key.clone()),
                    None => {
                        job.held.span.in_scope(
                            || warn!(project = %key, "visibility extension not confirmed"),
                        );
                        job.next_renew = Instant::now() + RENEW_RETRY;
                    }
                }
            }
            self.cancel_jobs(fence_lost, CancelReason::FenceLost, report)
                .await;
        }
        let now = Instant::now();
        let expired = self.projects_where(|j| j.safe_until <= now);
        self.cancel_jobs(expired, CancelReason::Unconfirmed, report)
            .await;
    }

    /// Stop acting on the jobs of `projects` (see [`cancel_job`](Self::cancel_job)); their
    /// leases are let go of at the next beat.
    pub(super) async fn cancel_jobs(
        &mut self,
        projects: Vec<String>,
        reason: CancelReason,
        report: &mut TickReport,
    ) {
        for key in projects {
            if let Some(job) = self.jobs.remove(&key) {
                report.cancelled += 1;
                self.cancel_job(job, reason).await;
            }
        }
    }

    /// Stop acting on a job. When its fence is known to be lost the build cannot push
    /// anyway, so it is stopped; otherwise it is left for whoever takes the project next.
    async fn cancel_job(&self, job: ActiveJob, reason: CancelReason) {
        let span = job.held.span.clone();
        span.set_status(Status::error("renewal not confirmed in time"));
        self.cancel_job_in(job, reason).instrument(span).await;
    }

    async fn cancel_job_in(&self, job: ActiveJob, reason: CancelReason) {
        let fence_lost = reason == CancelReason::FenceLost;
        warn!(project = %job.held.item.project, item = %job.held.item.id, fence_lost, "job cancelled: renewal not confirmed in time");
        if fence_lost {
            // Stop the build unless it may still act (its lease is held under this job's
            // fence, or the current holder adopted it) or it was handed off with the lease
            // free (the next holder re-attaches). A build a newer holder has not recorded
            // yet, or lost, is stopped, and so is one whose standing cannot be read.
            let item = &job.held.item;
            let standing = build_standing(
                &*self.ports.leases,
                &item.project,
                &item.id,
                job.held.lease.fence,
                Some(&job.build_id),
            )
            .await;
            match standing {
                Ok(BuildStanding::MayAct) => return,
                // In transit with the lease free: the holder that adopted it handed it
                // off, and the next holder will re-attach to it (issue 11.1).
                Ok(BuildStanding::InTransit)
                    if matches!(
                        self.ports.leases.get(&item.project).await,
                        Ok(Some(view)) if view.owner.is_none()
                    ) =>
                {
                    return;
                }
                _ => {}
            }
            if let Err(e) = self.ports.builds.stop(&job.build_id).await {
                warn!(error = %e, build = %job.build_id, "cannot stop the build");
            }
        }
    }
}
