//! This consumer's session: the one lease-store row its heartbeat renews.
//!
//! Every project lease this consumer holds is held by its session and lives exactly as
//! long as the session does, so ONE `renew_session` per beat keeps them all, however many
//! jobs run (issue 13.2). This file owns the session state (the session, its confirmed
//! deadline `safe_until`, its next beat) and the registry of the leases taken, which
//! lets go of every lease no job holds any more.
//!
//! Invariants:
//! - the engine acquires only under a session whose `safe_until` has not passed;
//! - when the session is lost — the store says `SessionLost` (one of its leases was taken
//!   over, or it was ended), or no renewal was confirmed before `safe_until` — every job is
//!   cancelled as for a lost fence, and the next dispatch opens a new session;
//! - a lease of a live session never expires by itself, so a lease taken and held by no
//!   job (settled, cancelled, or a dispatch that gave up) is released, retried at each beat
//!   until the store confirms it (released, or already someone else's).

use super::observe::fence_value;
use super::supervise::CancelReason;
use super::{Engine, HeldJob, TickReport};
use kiro_protocol::{FailureClass, Lease, LeaseError, Session};
use kiro_telemetry::otel::keys;
use opentelemetry::KeyValue;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{debug, warn};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// How soon an unconfirmed session renewal is tried again (the session has only until
/// `safe_until`, tens of seconds with the defaults).
const RENEW_RETRY: Duration = Duration::from_secs(1);

/// Sessions a consumer tries to open before it gives up for this tick (an id already used,
/// e.g. a fixed `--owner` across restarts, is retried with a random suffix).
const OPEN_TRIES: usize = 3;

/// The session as this consumer last confirmed it.
#[derive(Debug, Clone)]
pub(super) struct SessionState {
    pub(super) session: Session,
    /// The last confirmed renewal's (or the open's) start plus the lease TTL: the session
    /// may expire after this instant. Every job's `lease_until` follows it.
    pub(super) lease_until: Instant,
    pub(super) next_renew: Instant,
}

impl SessionState {
    /// Past this instant, stop acting on every job.
    fn safe_until(&self, margin: Duration) -> Instant {
        self.lease_until
            .checked_sub(margin)
            .unwrap_or(self.lease_until)
    }
}

impl Engine {
    /// The session to acquire under: the current one while it is confirmed, else (with no
    /// job in flight) the current one renewed or a new one. `None`: no session can be
    /// confirmed now (the store is unreachable, or jobs still wait to be cancelled).
    pub(super) async fn live_session(&mut self) -> Option<Session> {
        let now = Instant::now();
        let margin = self.cfg.safety_margin;
        if let Some(state) = &self.session {
            if state.safe_until(margin) > now {
                return Some(state.session.clone());
            }
            if !self.jobs.is_empty() {
                // Supervision cancels them first; no new lease under a lapsed session.
                return None;
            }
            // Idle: the session was let lapse (no beat without jobs); renew it while it
            // is not ended, else open another.
            let session = state.session.clone();
            match self.renew(&session).await {
                Ok(()) => return self.session.as_ref().map(|s| s.session.clone()),
                Err(LeaseError::SessionLost { .. }) => self.session = None,
                Err(e) => {
                    warn!(error = %e, "cannot renew the session");
                    return None;
                }
            }
        }
        let mut id = self.cfg.owner.clone();
        for _ in 0..OPEN_TRIES {
            let started = Instant::now();
            match self
                .ports
                .leases
                .open_session(&id, self.cfg.lease_ttl)
                .await
            {
                Ok(session) => {
                    debug!(session = %session.id, "session opened");
                    self.session = Some(SessionState {
                        session: session.clone(),
                        lease_until: started + self.cfg.lease_ttl,
                        next_renew: started + self.cfg.renew_every,
                    });
                    return Some(session);
                }
                Err(e) if e.class() == FailureClass::PermanentInput => {
                    id = format!(
                        "{}/{:06x}",
                        self.cfg.owner,
                        rand::random::<u32>() & 0xff_ffff
                    );
                }
                Err(e) => {
                    warn!(error = %e, "cannot open a session");
                    return None;
                }
            }
        }
        None
    }

    /// How far the session's leases are confirmed (`None` without a session).
    pub(super) fn session_lease_until(&self) -> Option<Instant> {
        self.session.as_ref().map(|s| s.lease_until)
    }

    /// One renewal of `session`; a confirmed one moves the session's and every job's
    /// `lease_until` (so their `safe_until`) and the next beat.
    async fn renew(&mut self, session: &Session) -> Result<(), LeaseError> {
        let started = Instant::now();
        let renewed = self
            .ports
            .leases
            .renew_session(session, self.cfg.lease_ttl)
            .await?;
        let lease_until = started + self.cfg.lease_ttl;
        if let Some(state) = self.session.as_mut() {
            state.session = renewed;
            state.lease_until = state.lease_until.max(lease_until);
            state.next_renew = started + self.cfg.renew_every;
        }
        let margin = self.cfg.safety_margin;
        for job in self.jobs.values_mut() {
            job.lease_until = job.lease_until.max(lease_until);
            job.refresh_safe_until(margin);
            job.held.span.add_event(
                "heartbeat",
                vec![KeyValue::new(keys::FENCE, fence_value(&job.held.lease))],
            );
        }
        Ok(())
    }

    /// The heartbeat: while jobs run (or leases wait to be let go), renew the session
    /// when its beat is due — one write for all of them. A definite loss cancels every
    /// job as a lost fence; a session not confirmed before `safe_until` cancels every job
    /// as unconfirmed. Then let go of the leases no job holds.
    pub(super) async fn beat(&mut self, report: &mut TickReport) {
        let busy = !self.jobs.is_empty() || !self.orphan_leases().is_empty();
        if let Some(state) = self.session.clone()
            && busy
            && state.next_renew <= Instant::now()
        {
            match self.renew(&state.session).await {
                Ok(()) => debug!(session = %state.session.id, "heartbeat"),
                Err(e @ LeaseError::SessionLost { .. }) => {
                    warn!(error = %e, "session lost: every job is cancelled");
                    self.lose_session(CancelReason::FenceLost, report).await;
                }
                Err(e) => {
                    warn!(error = %e, "session renewal not confirmed");
                    if let Some(s) = self.session.as_mut() {
                        s.next_renew = Instant::now() + RENEW_RETRY;
                    }
                }
            }
        }
        let margin = self.cfg.safety_margin;
        if !self.jobs.is_empty()
            && self
                .session
                .as_ref()
                .is_none_or(|s| s.safe_until(margin) <= Instant::now())
        {
            warn!("session not confirmed in time: every job is cancelled");
            self.lose_session(CancelReason::Unconfirmed, report).await;
        }
        self.let_go_of_orphans().await;
    }

    /// Cancel every job and forget the session (the next dispatch opens another).
    async fn lose_session(&mut self, reason: CancelReason, report: &mut TickReport) {
        let all = self.projects_where(|_| true);
        self.cancel_jobs(all, reason, report).await;
        self.session = None;
    }

    /// When the session's next beat is due (none while idle).
    pub(super) fn next_beat(&self) -> Option<Instant> {
        if self.jobs.is_empty() {
            return None;
        }
        self.session.as_ref().map(|s| s.next_renew)
    }

    /// Remember a lease taken, until it is let go of.
    pub(super) fn note_lease(&self, lease: &Lease) {
        if let Ok(mut held) = self.leases_taken.lock() {
            held.insert(lease.project.to_string(), lease.clone());
        }
    }

    /// Give a lease up; forgotten once the store confirms it is no longer ours.
    pub(super) async fn give_up_lease(&self, lease: &Lease) {
        match self.ports.leases.release(lease).await {
            Ok(()) | Err(LeaseError::FenceLost { .. }) => self.forget_lease(lease),
            Err(e) => debug!(error = %e, "lease release failed; retried at the next beat"),
        }
    }

    /// Write the hold's last job record and give its lease up, in one write (one call
    /// instead of two). Whatever fails is left as a failed record write leaves it: the
    /// lease is still taken, and the next beat lets go of it as an orphan.
    pub(super) async fn record_last(&self, job: &HeldJob) -> Result<(), LeaseError> {
        let res = self
            .ports
            .leases
            .record_and_release(&job.lease, &job.record)
            .await;
        if matches!(res, Ok(()) | Err(LeaseError::FenceLost { .. })) {
            self.forget_lease(&job.lease);
        }
        res
    }

    /// The lease is no longer ours (released, or lost): stop tracking it.
    fn forget_lease(&self, lease: &Lease) {
        if let Ok(mut held) = self.leases_taken.lock()
            && held.get(lease.project.as_str()) == Some(lease)
        {
            held.remove(lease.project.as_str());
        }
    }

    /// Leases taken that no job in flight holds.
    fn orphan_leases(&self) -> Vec<Lease> {
        let Ok(held) = self.leases_taken.lock() else {
            return Vec::new();
        };
        held.iter()
            .filter(|(k, l)| self.jobs.get(*k).is_none_or(|j| j.held.lease != **l))
            .map(|(_, l)| l.clone())
            .collect()
    }

    async fn let_go_of_orphans(&self) {
        for lease in self.orphan_leases() {
            self.give_up_lease(&lease).await;
        }
    }

    /// At shutdown, after the handoffs: end the session, so every lease it still holds is
    /// free at once (when it cannot be ended, let go of them one by one).
    pub(super) async fn end_session(&mut self) {
        let ended = match self.session.take() {
            Some(state) => match self.ports.leases.end_session(&state.session).await {
                Ok(()) => true,
                Err(e) => {
                    warn!(error = %e, "cannot end the session; releasing its leases one by one");
                    false
                }
            },
            None => false,
        };
        if !ended {
            self.let_go_of_orphans().await;
        }
        if let Ok(mut held) = self.leases_taken.lock() {
            held.clear();
        }
    }
}
