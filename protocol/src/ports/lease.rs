//! `LeaseStore`: consumer sessions, per-project leases held by a session, with monotonic
//! fencing tokens, and the job records.
//!
//! A consumer renews ONE row, its [`Session`], per heartbeat; every project lease it holds
//! lives exactly as long as that session, with no renewal of its own.
//!
//! Contract (checked by `kiro_backends::testing::contract::lease`):
//! - `open_session` creates a session row that did not exist (an id is never reused);
//!   `renew_session` moves its expiry to `ttl` from now and succeeds while the session is
//!   not ended — even past its expiry, as long as none of its leases was taken over;
//!   `end_session` ends it; a session that was ended (by its owner, or by a takeover)
//!   can never be renewed again: `SessionLost`;
//! - a session is **live** while its row exists, is not ended, and
//!   `expires_at + skew > now` (the store's clock-skew bound);
//! - `acquire` succeeds only when the project is free: no row, released, or held by a
//!   session that is not live; every successful acquire bumps the fence by one in the same
//!   atomic write, so fences are strictly increasing per project; a takeover (the holder's
//!   session exists but expired beyond the skew bound) ends the holder's session in that
//!   same atomic write, so its next renewal fails for good;
//! - a failed acquire reports the current holder (with its session's expiry) and never
//!   changes a row;
//! - `acquire` does not judge the caller's own session: the caller acquires only while
//!   its session is confirmed (the engine's `safe_until`);
//! - `release` and `record` succeed only while the caller's fence is still the current one
//!   (and its session still the owner); a stale fence can never write;
//! - a write whose result is unknown is re-read before the adapter answers, so callers
//!   see either success or a definite error;
//! - `cancel` writes an item's `cancelled` record without holding the lease: when the
//!   item may be the one the lease works on, it bumps the fence by one and releases the
//!   lease in the same atomic write (so every fence taken before is stale, and a build
//!   started under one never acts again), and it leaves the lease alone only while the
//!   lease's current item is ANOTHER item whose record is not final (that job runs; the
//!   cancelled item's message waits behind it in the project's group). It never ends a
//!   session: the holder keeps its other leases.

use crate::clock::Timestamp;
use crate::failure::{FailureClass, PortError};
use crate::ids::{Fence, ItemId, ProjectKey};
use crate::job::{JobRecord, JobState};
use async_trait::async_trait;
use serde::Serialize;
use std::time::Duration;
use thiserror::Error;

/// A consumer's session, as its owner last confirmed it: every lease it holds lives as
/// long as this row does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Unique per session (never reused); the `owner` of the leases it holds.
    pub id: String,
    /// When the session expires unless renewed (the store's clock at the renewal + ttl).
    pub expires_at: Timestamp,
}

/// A session row as anyone can read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionView {
    pub id: String,
    pub expires_at: Timestamp,
    /// Ended by its owner or by a takeover of one of its leases: it can never be renewed.
    pub ended: bool,
}

/// A held lease: the project, the session holding it and the fence of this hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub project: ProjectKey,
    /// The holding session's id.
    pub owner: String,
    pub fence: Fence,
}

/// The lease row as anyone can read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseView {
    pub project: ProjectKey,
    /// The holding session's id; `None` when released.
    pub owner: Option<String>,
    pub fence: Fence,
    /// The item whose job record was last written under this lease.
    pub current_item: Option<ItemId>,
}

/// What [`LeaseStore::cancel`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cancellation {
    /// The fence the `cancelled` record was written under (the lease row's after the
    /// write).
    pub fence: Fence,
    /// Whether the fence was bumped (and the lease released).
    pub bumped: bool,
}

/// How many times a store re-reads and tries again when the lease row changed between
/// `cancel`'s read and its conditional write.
pub const CANCEL_TRIES: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LeaseError {
    /// A live session holds the lease (`expires_at`: that session's expiry).
    #[error("lease for {project} is held by {holder} (fence {fence}) until {expires_at}")]
    Held {
        project: ProjectKey,
        holder: String,
        fence: Fence,
        expires_at: Timestamp,
    },
    /// The caller's fence is no longer current: it must stop acting.
    #[error("fence {mine} for {project} is no longer current (current: {current:?})")]
    FenceLost {
        project: ProjectKey,
        mine: Fence,
        current: Option<Fence>,
    },
    /// The session was ended (by its owner, or because one of its leases was taken over
    /// after it expired): none of its leases may be acted on any more.
    #[error("session {session} is ended; its leases are lost")]
    SessionLost { session: String },
    #[error(transparent)]
    Port(#[from] PortError),
}

impl LeaseError {
    pub fn class(&self) -> FailureClass {
        match self {
            LeaseError::Held { .. } => FailureClass::Contention,
            LeaseError::FenceLost { .. } | LeaseError::SessionLost { .. } => {
                FailureClass::FenceLost
            }
            LeaseError::Port(p) => p.class,
        }
    }
}

#[async_trait]
pub trait LeaseStore: Send + Sync + std::fmt::Debug {
    /// Open a new session `id` for `ttl`; an id that was ever used is refused
    /// (`PermanentInput`).
    async fn open_session(&self, id: &str, ttl: Duration) -> Result<Session, LeaseError>;
    /// Move the session's expiry to `ttl` from now: one write keeps every lease it holds.
    /// `SessionLost` once it was ended.
    async fn renew_session(&self, session: &Session, ttl: Duration) -> Result<Session, LeaseError>;
    /// End the session (its leases become free to take at once); ending it twice is fine.
    async fn end_session(&self, session: &Session) -> Result<(), LeaseError>;
    /// A session row, if any.
    async fn session(&self, id: &str) -> Result<Option<SessionView>, PortError>;
    /// Take the project's lease for `session`, bumping the fence.
    async fn acquire(&self, project: &ProjectKey, session: &Session) -> Result<Lease, LeaseError>;
    /// Give the lease up at once (the next acquire need not wait for expiry).
    async fn release(&self, lease: &Lease) -> Result<(), LeaseError>;
    /// The project's lease row, if any.
    async fn get(&self, project: &ProjectKey) -> Result<Option<LeaseView>, PortError>;
    /// Write a job record, conditional on `lease.fence` being current.
    async fn record(&self, lease: &Lease, job: &JobRecord) -> Result<(), LeaseError>;
    /// Write the first record of an item the store holds no record of, conditional on
    /// `lease.fence` being current: `Ok(false)`, with nothing written, when the item has a
    /// record (the caller reads it and decides again). Lets a first delivery skip the read.
    async fn record_new(&self, lease: &Lease, job: &JobRecord) -> Result<bool, LeaseError>;
    /// Write the last record of this hold and give the lease up, in one atomic write
    /// conditional on `lease.fence` being current: whoever takes the lease next finds the
    /// record written. Releasing a lease already released under the same fence with the
    /// same record is a success (a retry of a write whose answer was lost).
    async fn record_and_release(&self, lease: &Lease, job: &JobRecord) -> Result<(), LeaseError>;
    /// One job record.
    async fn job(
        &self,
        project: &ProjectKey,
        item: &ItemId,
    ) -> Result<Option<JobRecord>, PortError>;
    /// Every job record (operators).
    async fn jobs(&self) -> Result<Vec<JobRecord>, PortError>;
    /// Cancel `job.item` (an operator's `kiro-consumer cancel`, or a consumer that saw its
    /// card moved away): write `job` (its state `cancelled`) with the fence set to the one
    /// written under, bumping the fence and releasing the lease in the same atomic write
    /// unless another item's live job holds the lease (see the module's contract). Not
    /// conditional on any holder: the fence bump is what makes every earlier holder stale.
    /// A lease row that keeps changing under it is `Contention` after [`CANCEL_TRIES`].
    async fn cancel(&self, job: &JobRecord) -> Result<Cancellation, LeaseError>;
}

/// Whether `cancel` must bump the fence: the lease may be working on `item` — no row yet,
/// `current_item` is `item` or none, or the current item's record (`current`) is missing
/// or final. The one place both stores take this decision from.
pub fn cancel_bumps(
    row_current_item: Option<&str>,
    item: &ItemId,
    current: Option<&JobRecord>,
) -> bool {
    match row_current_item {
        None => true,
        Some(c) if c == item.as_str() => true,
        Some(_) => current.is_none_or(|r| r.state.is_final()),
    }
}

/// Whether `fence` is still the current, held fence of `project` (used by the worker
/// right before a fenced side effect).
pub async fn fence_is_current(
    store: &dyn LeaseStore,
    project: &ProjectKey,
    fence: Fence,
) -> Result<bool, PortError> {
    Ok(store
        .get(project)
        .await?
        .is_some_and(|v| v.fence == fence && v.owner.is_some()))
}

/// Where a build started under some fence stands, for its fenced side effects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildStanding {
    /// The build may act now: the lease is held under its fence, or the holder adopted it.
    MayAct,
    /// Handed over, adoption pending: the job record still names this build as the item's
    /// running build, but the lease is between holders (handed off and not yet taken, or
    /// taken under a new fence whose holder has not recorded the re-attach yet) — or the
    /// record holds the intent this build was started from, under its fence, without its
    /// id (its starter died before recording it; the next holder recovers it). The
    /// build must wait (bounded) for adoption or a definite loss — acting now could race
    /// a new holder, and giving up now throws away work that is about to be adopted.
    InTransit,
    /// Lost for good: the record names another build or a final state, or there is no
    /// lease. The build must never act.
    Lost,
}

/// Where a build started under `fence` for `item` (with id `build_id`, when the runner
/// names it) stands: see [`BuildStanding`].
///
/// May act while the lease is held and either its fence is still `fence`, or the current
/// holder has *adopted* this build (after a takeover the new holder re-attaches to the
/// running build by recording its id in the item's job record under the new fence). A
/// build nobody adopted can never act; while the record still names it as running and
/// the lease is between holders, it is in transit.
pub async fn build_standing(
    store: &dyn LeaseStore,
    project: &ProjectKey,
    item: &ItemId,
    fence: Fence,
    build_id: Option<&crate::ids::BuildId>,
) -> Result<BuildStanding, PortError> {
    let Some(view) = store.get(project).await? else {
        return Ok(BuildStanding::Lost);
    };
    if view.owner.is_some() && view.fence == fence {
        return Ok(BuildStanding::MayAct);
    }
    let Some(build_id) = build_id else {
        // Without its own id a build cannot be recognised in the record.
        return Ok(BuildStanding::Lost);
    };
    let Some(job) = store.job(project, item).await? else {
        return Ok(BuildStanding::Lost);
    };
    let names_this_build = job.build_id.as_ref() == Some(build_id) && job.state.may_have_build();
    // An intent without its build id, recorded under this build's own fence: the build
    // started from it and its starter died before recording the id. The next holder
    // recovers it by its key (or replays the request, which answers with this build) and
    // records it; until then it is in transit. Only a record naming this build lets it act.
    let its_intent =
        job.build_id.is_none() && job.state == JobState::Starting && job.fence == fence;
    if its_intent {
        return Ok(BuildStanding::InTransit);
    }
    Ok(match (names_this_build, view.owner.is_some()) {
        (false, _) => BuildStanding::Lost,
        (true, true) if job.fence == view.fence => BuildStanding::MayAct,
        // Taken under a newer fence, re-attach not recorded yet.
        (true, true) if job.fence < view.fence => BuildStanding::InTransit,
        (true, true) => BuildStanding::Lost,
        // Handed off (or expired and released): the next holder will re-attach.
        (true, false) => BuildStanding::InTransit,
    })
}

/// Whether a build started under `fence` may still perform fenced side effects (push,
/// edit the pull request) for `item` right now ([`build_standing`] is
/// [`BuildStanding::MayAct`]).
pub async fn build_may_act(
    store: &dyn LeaseStore,
    project: &ProjectKey,
    item: &ItemId,
    fence: Fence,
    build_id: Option<&crate::ids::BuildId>,
) -> Result<bool, PortError> {
    Ok(build_standing(store, project, item, fence, build_id).await? == BuildStanding::MayAct)
}
