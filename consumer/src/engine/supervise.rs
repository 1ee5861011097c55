//! Phase 3, supervise: keep the jobs in flight safe to act on.
//!
//! Two confirmations keep a job safe, each on its own schedule:
//! - **the lease** ([`Engine::renew_leases`]): every job whose renewal is due (each
//!   `renew_every`) renews its project's lease; a confirmed renewal moves the job's
//!   `lease_until`;
//! - **the message's visibility** ([`Engine::extend_visibility`]): on one beat for the
//!   whole consumer, when the job with the least visibility left has a third of the
//!   visibility timeout left, EVERY receipt in flight is extended, in batches of 10
//!   (`ChangeMessageVisibilityBatch` on SQS). After a beat all receipts share one
//!   deadline, and a job received later has a later one, so beats come every two thirds
//!   of the visibility timeout and carry ⌈jobs/10⌉ calls, whatever the arrivals. A
//!   receipt whose extension was not confirmed is retried on its own, soon.
//!
//! A job's `safe_until` is the earlier of the two confirmed deadlines less the safety
//! margin; both only move forward, so it is monotonic.
//!
//! Invariant: the engine never acts on a job past its `safe_until`: such a job is
//! cancelled (the engine stops acting on it), and its build is stopped only when its
//! fence is known lost and the current holder has not adopted the build.

use super::observe::fence_value;
use super::{ActiveJob, Engine, TickReport};
use futures::future::join_all;
use kiro_protocol::{BuildStanding, FailureClass, LeaseError, build_standing};
use kiro_telemetry::otel::keys;
use opentelemetry::KeyValue;
use opentelemetry::trace::Status;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{Instrument, debug, warn};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Why a job is cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CancelReason {
    /// `safe_until` passed without a confirmed renewal; the fence may still be ours.
    Unconfirmed,
    /// The lease or the message is known to belong to someone else now.
    FenceLost,
}

/// How soon an unconfirmed renewal or extension is tried again. The job has only until
/// `safe_until` to get it confirmed, so retries are frequent; one second bounds them to
/// one renewal and one extension per job per second.
const RENEW_RETRY: Duration = Duration::from_secs(1);

impl Engine {
    /// Renew the leases that are due, extend the visibility of every receipt on the beat,
    /// and cancel the jobs whose fence is lost or whose deadline passed without a
    /// confirmation.
    pub(super) async fn supervise(&mut self, report: &mut TickReport) {
        let mut lost = self.renew_leases().await;
        for key in self.extend_visibility().await {
            if !lost.contains(&key) {
                lost.push(key);
            }
        }
        self.cancel_jobs(lost, CancelReason::FenceLost, report)
            .await;
        let now = Instant::now();
        let expired = self.projects_where(|j| j.safe_until <= now);
        self.cancel_jobs(expired, CancelReason::Unconfirmed, report)
            .await;
    }

    /// When supervision next has something to do for `job`: its lease renewal, a retried
    /// extension, or its `safe_until`. (The visibility beat is
    /// [`next_visibility_beat`](Self::next_visibility_beat).)
    pub(super) fn supervision_due(job: &ActiveJob) -> Instant {
        let t = job.next_renew.min(job.safe_until);
        job.extend_retry.map_or(t, |r| t.min(r))
    }

    /// When the visibility beat comes: when the receipt with the least visibility left
    /// (among those not waiting for a retry) has a third of the visibility timeout left.
    pub(super) fn next_visibility_beat(&self) -> Option<Instant> {
        let third = self.cfg.visibility / 3;
        self.jobs
            .values()
            .filter(|j| j.extend_retry.is_none())
            .map(|j| {
                j.visible_until
                    .checked_sub(third)
                    .unwrap_or(j.visible_until)
            })
            .min()
    }

    /// Renew the lease of every job whose renewal is due (one conditional write each,
    /// concurrently); a confirmed renewal moves the job's `lease_until`. Returns the
    /// projects whose fence is lost.
    async fn renew_leases(&mut self) -> Vec<String> {
        let now = Instant::now();
        let due = self.projects_where(|j| j.next_renew <= now);
        if due.is_empty() {
            return Vec::new();
        }
        let started = Instant::now();
        let leases = self.ports.leases.clone();
        let ttl = self.cfg.lease_ttl;
        let renewed = join_all(due.iter().filter_map(|k| self.jobs.get(k)).map(|j| {
            let leases = leases.clone();
            let lease = j.held.lease.clone();
            async move { leases.renew(&lease, ttl).await }
        }))
        .await;
        let margin = self.cfg.safety_margin;
        let mut lost = Vec::new();
        for (key, renewed) in due.iter().zip(renewed) {
            let Some(job) = self.jobs.get_mut(key) else {
                continue;
            };
            match renewed {
                Ok(lease) => {
                    job.held.lease = lease;
                    job.lease_until = job.lease_until.max(started + ttl);
                    job.refresh_safe_until(margin);
                    job.next_renew = started + self.cfg.renew_every;
                    debug!(project = %key, "heartbeat");
                    job.held.span.add_event(
                        "heartbeat",
                        vec![KeyValue::new(keys::FENCE, fence_value(&job.held.lease))],
                    );
                }
                Err(LeaseError::FenceLost { .. }) => lost.push(key.clone()),
                Err(e) => {
                    job.held.span.in_scope(
                        || warn!(project = %key, error = %e, "lease renewal not confirmed"),
                    );
                    job.next_renew = Instant::now() + RENEW_RETRY;
                }
            }
        }
        lost
    }

    /// On the beat, extend the visibility of every receipt in flight (one call per 10);
    /// between beats, only the receipts whose last extension was not confirmed and whose
    /// retry is due. A confirmed extension moves the job's `visible_until`. Returns the
    /// projects whose message is known to be someone else's now.
    async fn extend_visibility(&mut self) -> Vec<String> {
        let now = Instant::now();
        let beat = self.next_visibility_beat().is_some_and(|t| t <= now);
        let due = if beat {
            self.projects_where(|_| true)
        } else {
            self.projects_where(|j| j.extend_retry.is_some_and(|t| t <= now))
        };
        if due.is_empty() {
            return Vec::new();
        }
        let started = Instant::now();
        let receipts: Vec<_> = due
            .iter()
            .filter_map(|k| self.jobs.get(k))
            .map(|j| j.held.delivery.receipt.clone())
            .collect();
        let visibility = self.cfg.visibility;
        let extended: Vec<Option<bool>> = match self.ports.queue.extend(&receipts, visibility).await
        {
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
        let margin = self.cfg.safety_margin;
        let mut lost = Vec::new();
        for (key, extended) in due.iter().zip(extended) {
            let Some(job) = self.jobs.get_mut(key) else {
                continue;
            };
            match extended {
                Some(true) => {
                    job.visible_until = job.visible_until.max(started + visibility);
                    job.extend_retry = None;
                    job.refresh_safe_until(margin);
                }
                Some(false) => lost.push(key.clone()),
                None => {
                    job.held
                        .span
                        .in_scope(|| warn!(project = %key, "visibility extension not confirmed"));
                    job.extend_retry = Some(Instant::now() + RENEW_RETRY);
                }
            }
        }
        lost
    }

    /// Stop acting on the jobs of `projects` (see [`cancel_job`](Self::cancel_job)).
    async fn cancel_jobs(
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
