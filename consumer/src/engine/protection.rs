//! Phase 5, protection: hold scale-in protection while any job is in flight (on at 0 → 1
//! job, off at → 0, re-armed before it expires).
//!
//! Invariant: protection failures are logged and retried later, never fatal, and never
//! touch the jobs.

use super::Engine;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{info, warn};

/// How long to wait before asking again after a protection call failed.
const PROTECTION_RETRY: Duration = Duration::from_secs(15);

/// What the engine knows of its scale-in protection.
#[derive(Debug, Default)]
pub(super) struct ProtectionState {
    /// Protection was last confirmed on.
    on: bool,
    /// When protection must be re-armed (it expires by itself).
    rearm_at: Option<Instant>,
    /// After a failed call: no new call before this.
    retry_at: Option<Instant>,
}

impl Engine {
    /// After a drain: nothing is held any more, so the task may be scaled in. A last
    /// try, even right after a failed call.
    pub(super) async fn release_protection(&mut self) {
        self.protection.retry_at = None;
        self.update_protection().await;
    }

    /// When [`update_protection`](Self::update_protection) next has something to do
    /// without a change in the jobs: a retry after a failed call, or a re-arm.
    pub(super) fn protection_due(&self) -> Option<Instant> {
        self.ports.protection.as_ref()?;
        let st = &self.protection;
        let want = !self.jobs.is_empty();
        if st.on != want {
            return st.retry_at;
        }
        if want {
            st.rearm_at.max(st.retry_at)
        } else {
            None
        }
    }

    /// Hold scale-in protection while jobs are in flight: on when the engine goes from no
    /// job to some, off when it goes back to none, re-armed before it expires. A failed
    /// call is logged and tried again later; it never touches the jobs.
    pub(super) async fn update_protection(&mut self) {
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
}
