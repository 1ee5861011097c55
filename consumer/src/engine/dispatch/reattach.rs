//! Recovering an intent recorded without a build id (a consumer crashed between
//! "intent recorded" and "build id recorded").
//!
//! The intent carries the exact build request (`JobRecord::start`). Recovery first asks
//! the runner for a build already started with the request's idempotency key (CodeBuild
//! forgets a token after 5 minutes, so an old intent is found by the key the build carries
//! in its environment), and only if none is found replays the recorded request unchanged:
//! the runner answers a replay within the token's window with the build it started, and
//! starts the build if it never started.
//!
//! Invariant: recovery never starts a second build for one intent. When the runner's
//! answer leaves it unknown whether the intent's build runs (the lookup failed, the
//! replay was throttled or refused as a parameter mismatch), the intent is kept as it is
//! and the message comes back later without spending an attempt; only a replay refused
//! for a reason that proves nothing started (a non-retryable class) settles the attempt
//! as a failed start.

use crate::engine::{Engine, HeldJob, TickReport};
use kiro_protocol::{BuildId, Failure, JobRecord, WorkItem};
use tracing::{info, warn};

/// Why an intent could not be turned into a build id now.
pub(super) enum Recovery {
    /// The intent's build may or may not run: keep the intent and come back later.
    Unknown(Failure),
    /// The runner refused the recorded request for a reason that cannot change: nothing
    /// started.
    NotStarted(Failure),
}

impl Engine {
    /// The build of `record`'s recorded intent: found by its key, or the answer to the
    /// replayed request.
    pub(super) async fn recover_intent(
        &self,
        item: &WorkItem,
        record: &JobRecord,
    ) -> Result<BuildId, Recovery> {
        // A record written before requests were recorded: rebuild the request (a runner
        // may refuse it as a mismatch, which keeps the intent until the key expires).
        let req = match &record.start {
            Some(r) => r.clone(),
            None => self.build_request(item, record),
        };
        let since = record
            .history
            .last()
            .map_or(record.updated_at, |a| a.started_at);
        match self.ports.builds.find(&req.idempotency_key, since).await {
            Ok(Some(id)) => {
                info!(build = %id, key = %req.idempotency_key, "found the intent's build by its key");
                return Ok(id);
            }
            Ok(None) => {}
            Err(e) => return Err(Recovery::Unknown(Failure::from(e))),
        }
        match self.ports.builds.start(&req).await {
            Ok(id) => Ok(id),
            Err(e) => {
                let failure = Failure::from(e);
                if failure.class.is_retryable() {
                    Err(Recovery::Unknown(failure))
                } else {
                    Err(Recovery::NotStarted(failure))
                }
            }
        }
    }

    /// Leave the intent as it is (its request, its attempt) and give the message back
    /// after a backoff delay; the attempt is not counted again.
    pub(super) async fn keep_intent(&self, mut job: HeldJob, failure: Failure) -> TickReport {
        let delay = self.cfg.retry.delay(job.record.attempts.max(1));
        warn!(
            class = %failure.class,
            reason = %failure.reason,
            delay_ms = delay.as_millis() as u64,
            "cannot tell whether the recorded intent's build runs; intent kept, message returned"
        );
        job.record.last_failure = Some(failure);
        if let Err(e) = self.record_last(&job).await {
            warn!(error = %e, "cannot record the kept intent");
        }
        self.release_quietly(&job.delivery, delay).await;
        TickReport {
            deferred: 1,
            ..TickReport::default()
        }
    }
}
