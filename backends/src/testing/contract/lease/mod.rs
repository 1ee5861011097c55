//! The `LeaseStore` contract suite: sessions (one renewal keeps every lease), fencing,
//! takeover of an expired session's leases with a skew bound, fenced writes and the job
//! records.
//!
//! Each check is a public async function taking only a [`LeaseHarness`];
//! [`lease_contract!`](crate::lease_contract) makes one test of each. A check asks for a
//! fresh, empty store and moves time only through [`LeaseHarness::advance`] (a manual
//! clock for the embedded store, a real sleep against an emulator).
//!
//! Files: this one holds the harness and the helpers; the checks are in `fencing.rs`,
//! `sessions.rs` and `records.rs`, by concept, and all are re-exported here.
//!
//! Invariant: the checks only use the port and panic with a message naming the broken
//! rule (compiled as ordinary code so other crates' tests can call it).

use async_trait::async_trait;
use kiro_protocol::{
    BuildId, FailureClass, Fence, ItemId, JobRecord, JobState, Lease, LeaseError, LeaseStore,
    MessageId, ProjectKey, Session, Timestamp, TraceContext,
};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

mod fencing;
mod records;
mod sessions;

pub use fencing::*;
pub use records::*;
pub use sessions::*;

/// What a lease-store adapter provides to run the suite.
#[async_trait]
pub trait LeaseHarness: Send + Sync {
    /// A new, empty store (every check calls this once).
    async fn store(&self) -> Arc<dyn LeaseStore>;
    /// Let `d` pass for the stores of this harness (manual clock or real sleep).
    async fn advance(&self, d: Duration);
    /// The clock-skew bound the stores apply to expiry.
    fn skew(&self) -> Duration;
    /// The session duration the checks use (short against an emulator).
    fn ttl(&self) -> Duration {
        Duration::from_secs(30)
    }
}

fn ok<T, E: Debug>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("contract: {what} failed: {e:?}"),
    }
}

fn project(p: &str) -> ProjectKey {
    ok(ProjectKey::parse(p), "parse project")
}

fn item(i: &str) -> ItemId {
    ok(ItemId::parse(i), "parse item")
}

/// A job record for `item` written under `lease` at `at`.
pub fn job(lease: &Lease, item_id: &str, at: i64) -> JobRecord {
    let mut j = JobRecord::new(
        lease.project.clone(),
        item(item_id),
        MessageId::new(format!("m-{item_id}")),
        lease.fence,
        TraceContext::default(),
        Timestamp(at),
    );
    j.owner = Some(lease.owner.clone());
    j
}

fn assert_fence_lost<T: Debug>(r: Result<T, LeaseError>, mine: Fence, current: Fence, what: &str) {
    match r {
        Err(LeaseError::FenceLost {
            mine: m,
            current: c,
            ..
        }) => {
            assert_eq!(
                m, mine,
                "contract: {what}: FenceLost names the caller's fence"
            );
            assert_eq!(
                c,
                Some(current),
                "contract: {what}: FenceLost names the current fence"
            );
        }
        other => panic!("contract: {what} should fail with FenceLost, got {other:?}"),
    }
}

/// `r` is `Held`, naming `holder`'s session, its fence and the session's expiry.
fn assert_held<T: Debug>(r: Result<T, LeaseError>, holder: &Lease, session: &Session, what: &str) {
    match r {
        Err(LeaseError::Held {
            holder: who,
            fence,
            expires_at,
            ..
        }) => {
            assert_eq!(who, holder.owner, "contract: {what}: names the holder");
            assert_eq!(fence, holder.fence, "contract: {what}: names the fence");
            assert_eq!(
                expires_at, session.expires_at,
                "contract: {what}: names the holder session's expiry"
            );
        }
        other => panic!("contract: {what} should fail with Held, got {other:?}"),
    }
}

fn assert_session_lost<T: Debug>(r: Result<T, LeaseError>, session: &Session, what: &str) {
    match r {
        Err(LeaseError::SessionLost { session: id }) => {
            assert_eq!(id, session.id, "contract: {what}: names the session");
        }
        other => panic!("contract: {what} should fail with SessionLost, got {other:?}"),
    }
}

/// Open session `id` for the harness's ttl.
async fn open(s: &dyn LeaseStore, h: &dyn LeaseHarness, id: &str) -> Session {
    ok(s.open_session(id, h.ttl()).await, "open session")
}
