//! Phase 3, supervise: keep the jobs in flight safe to act on.
//!
//! Two confirmations keep a job safe, each on its own schedule:
//! - **the lease**: one beat per consumer (`session.rs`, each `renew_every`) renews the
//!   consumer's session, which holds every project lease of the consumer; a confirmed
//!   renewal moves every job's `lease_until`, and a lost session cancels every job;
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
//! cancelled (the engine stops acting on it, and lets its lease go at the next beat), and
//! its build is stopped only when its fence is known lost and the current holder has not
//! adopted the build.

use super::{ActiveJob, Engine, TickReport};
use kiro_protocol::{BuildStanding, FailureClass, build_standing};
use opentelemetry::trace::Status;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{Instrument, warn};
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
/// to get it confirmed, so retries are frequent; one second bounds them to one extension
/// per job per second.
const RENEW_RETRY: Duration = Duration::from_secs(1);

impl Engine {
    /// Beat the session when due, extend the visibility of every receipt on the beat,
    /// and cancel the jobs whose fence is lost or whose deadline passed without a
    /// confirmation.
    pub(super) async fn supervise(&mut self, report: &mut TickReport) {
        self.beat(report).await;
        let lost = self.extend_visibility().await;
        self.cancel_jobs(lost, CancelReason::FenceLost, report)
            .await;
        let now = Instant::now();
        let expired = self.projects_where(|j| j.safe_until <= now);
        self.cancel_jobs(expired, CancelReason::Unconfirmed, report)
            .await;
    }

    /// When supervision next has something to do for `job`: a retried extension, or its
    /// `safe_until`. (The beats are [`next_beat`](Self::next_beat) and
    /// [`next_visibility_beat`](Self::next_visibility_beat).)
    pub(super) fn supervision_due(job: &ActiveJob) -> Instant {
        job.extend_retry
            .map_or(job.safe_until, |r| job.safe_until.min(r))
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
            // Stop the build only when it can no longer be anyone's: the job record names
            // another build (or none). A build that may still act, or is in transit (the
            // record still names it and a newer holder has not recorded it yet, or the
            // lease is between holders), is left for the holder that re-attaches: the
            // worker does nothing fenced until then (`build_standing`), and stopping it
            // would make the re-attach find a stopped build and spend an attempt. A build
            // whose standing cannot be read is stopped.
            let item = &job.held.item;
            let standing = build_standing(
                &*self.ports.leases,
                &item.project,
                &item.id,
                job.held.lease.fence,
                Some(&job.build_id),
            )
            .await;
            if matches!(
                standing,
                Ok(BuildStanding::MayAct | BuildStanding::InTransit)
            ) {
                return;
            }
            if let Err(e) = self.ports.builds.stop(&job.build_id).await {
                warn!(error = %e, build = %job.build_id, "cannot stop the build");
            }
        }
    }
}
