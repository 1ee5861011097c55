//! Cancellation: withdraw the items whose cards left the board's active statuses, and
//! acknowledge the messages of items an operator cancelled (`kiro-consumer cancel`).
//!
//! Detection costs one board read per received batch (dispatch, before a build starts)
//! and one per `board_every` for all running builds ([`Board::statuses`]: one file read on
//! the embedded board, one GraphQL `nodes` query per 100 items on GitHub), never one per
//! build. A board that cannot be read withdraws nothing (logged; the next round reads
//! again). An item not on the board at all is left alone: only a card in a column outside
//! this system's statuses ([`BoardStanding::moved_away`]) withdraws it.
//!
//! Invariant: a withdrawn job's record is written `cancelled` through
//! [`LeaseStore::cancel`](kiro_protocol::LeaseStore::cancel), which bumps the project's
//! fence in the same atomic write, BEFORE its build is stopped and its message
//! acknowledged: a crash in between leaves a final record that the redelivery settles
//! (acknowledged, never built again), and the build can no longer act from the moment
//! the record is written. The card is never moved.

use super::{ActiveJob, Engine, HeldJob, TickReport};
use kiro_protocol::{
    Board, BoardStanding, BuildId, Delivery, Failure, FailureClass, JobRecord, JobState, Lease,
};
use kiro_telemetry::metrics::{Metric, names};
use std::collections::HashMap;
use tokio::time::Instant;
use tracing::{Instrument, info, warn};

/// Why a job is withdrawn: where its card went, as the note in the record says it (the
/// column's name is board text: quoted, escaped and cut).
pub(super) fn moved_reason(standing: &BoardStanding) -> String {
    match standing {
        BoardStanding::Away(column) => format!(
            "cancelled: the card was moved to {}",
            kiro_protocol::ids::quote_for_display(column)
        ),
        BoardStanding::On(None) => "cancelled: the card's status was cleared".to_owned(),
        _ => "cancelled: the card was moved out of the active statuses".to_owned(),
    }
}

/// Whether a `cancelled` record covers delivery `d`: it is this message's, or it was
/// written after the message was sent (an operator cancelled a queued item). A message
/// sent after the cancel (the card was moved back to ready) starts afresh.
pub(super) fn cancel_covers(record: &JobRecord, d: &Delivery) -> bool {
    record.state == JobState::Cancelled
        && (record.message_id == d.message_id || record.updated_at >= d.sent_at)
}

impl Engine {
    /// Where `items` stand on the board, in one read (empty without a board, or when it
    /// cannot be read).
    pub(super) async fn board_standings(
        &self,
        items: Vec<String>,
    ) -> HashMap<String, BoardStanding> {
        let Some(board) = &self.ports.board else {
            return HashMap::new();
        };
        if items.is_empty() {
            return HashMap::new();
        }
        let read = self.forge_call("reading the board", Board::statuses(&**board, &items));
        match read.await {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "cannot read the board; no item is withdrawn this round");
                HashMap::new()
            }
        }
    }

    /// The poll round's check, when `board_every` has passed since the last one:
    /// withdraw every running job whose card left the active statuses (one board read
    /// for all of them).
    pub(super) async fn withdraw_moved(&mut self, report: &mut TickReport) {
        if self.ports.board.is_none() || self.jobs.is_empty() {
            return;
        }
        if let Some(every) = self.cfg.board_every {
            let now = Instant::now();
            if self.next_board_read.is_some_and(|t| t > now) {
                return;
            }
            self.next_board_read = Some(now + every);
        }
        let items: Vec<String> = self
            .jobs
            .values()
            .map(|j| j.held.item.id.to_string())
            .collect();
        let standings = self.board_standings(items).await;
        let moved = self.projects_where(|j| {
            standings
                .get(j.held.item.id.as_str())
                .is_some_and(BoardStanding::moved_away)
        });
        for key in moved {
            let Some(job) = self.jobs.remove(&key) else {
                continue;
            };
            let ActiveJob { held, build_id, .. } = job;
            let reason = standings
                .get(held.item.id.as_str())
                .map_or_else(|| moved_reason(&BoardStanding::Absent), moved_reason);
            let span = held.span.clone();
            let r = self
                .withdraw(held, Some(build_id), reason)
                .instrument(span)
                .await;
            report.add(&r);
        }
    }

    /// Withdraw `job`: record it `cancelled` (fence bumped), stop `build`, acknowledge
    /// the message, let the lease go.
    pub(super) async fn withdraw(
        &self,
        mut job: HeldJob,
        build: Option<BuildId>,
        reason: String,
    ) -> TickReport {
        let now = self.ports.clock.now();
        let failure = Failure::new(FailureClass::Stopped, reason.clone());
        if build.is_some() {
            job.record.end_attempt(Some(&failure), now);
        }
        job.record.state = JobState::Cancelled;
        job.record.last_failure = Some(failure);
        job.record.updated_at = now;
        if let Err(e) = self.ports.leases.cancel(&job.record).await {
            // Nothing was written: the message comes back and is looked at again.
            warn!(error = %e, "cannot record the cancellation; the message comes back");
            self.release_quietly(&job.delivery, std::time::Duration::from_secs(5))
                .await;
            self.give_up_lease(&job.lease).await;
            return TickReport {
                deferred: 1,
                ..TickReport::default()
            };
        }
        if let Some(id) = &build
            && let Err(e) = self.ports.builds.stop(id).await
        {
            // Its fence is stale: it can no longer push or report.
            warn!(error = %e, build = %id, "cannot stop the cancelled item's build");
        }
        info!(%reason, build = ?build.as_ref().map(BuildId::as_str), "item cancelled; card left where it is");
        self.ack_cancelled(&job.delivery, &job.lease).await
    }

    /// The job's record write found its fence lost: when that is because the item was
    /// cancelled (`kiro-consumer cancel` bumped the fence), acknowledge its message —
    /// neither a retry nor a dead letter — and let the lease go. `None`: not cancelled.
    pub(super) async fn ack_if_cancelled(&self, job: &HeldJob) -> Option<TickReport> {
        let record = match self.ports.leases.job(&job.item.project, &job.item.id).await {
            Ok(Some(r)) => r,
            Ok(None) => return None,
            Err(e) => {
                warn!(error = %e, "cannot read the job record after a lost fence");
                return None;
            }
        };
        if !cancel_covers(&record, &job.delivery) {
            return None;
        }
        info!("the item was cancelled; acknowledging its message");
        Some(self.ack_cancelled(&job.delivery, &job.lease).await)
    }

    /// Acknowledge a cancelled item's message and let its lease go (the cancel already
    /// released it: the store answers fence-lost and the lease is forgotten).
    pub(super) async fn ack_cancelled(&self, d: &Delivery, lease: &Lease) -> TickReport {
        if let Err(e) = self.ports.queue.ack(&d.receipt).await {
            warn!(error = %e, "cannot ack; the redelivery is acknowledged from the job record");
        }
        self.give_up_lease(lease).await;
        self.metric(Metric::count(names::ITEMS_CANCELLED, 1));
        TickReport {
            withdrawn: 1,
            ..TickReport::default()
        }
    }
}
