//! The `LeaseStore` contract suite: fencing, expiry with a skew bound, fenced writes
//! and the job records.
//!
//! Each check is a public async function taking only a [`LeaseHarness`];
//! [`lease_contract!`](crate::lease_contract) makes one test of each. A check asks for a
//! fresh, empty store and moves time only through [`LeaseHarness::advance`] (a manual
//! clock for the embedded store, a real sleep against an emulator).
//!
//! Invariant: the checks only use the port and panic with a message naming the broken
//! rule (compiled as ordinary code so other crates' tests can call it).

use async_trait::async_trait;
use kiro_protocol::{
    BuildId, Fence, ItemId, JobRecord, JobState, Lease, LeaseError, LeaseStore, MessageId,
    ProjectKey, Timestamp, TraceContext,
};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

/// What a lease-store adapter provides to run the suite.
#[async_trait]
pub trait LeaseHarness: Send + Sync {
    /// A new, empty store (every check calls this once).
    async fn store(&self) -> Arc<dyn LeaseStore>;
    /// Let `d` pass for the stores of this harness (manual clock or real sleep).
    async fn advance(&self, d: Duration);
    /// The clock-skew bound the stores apply to expiry.
    fn skew(&self) -> Duration;
    /// The lease duration the checks use (short against an emulator).
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

fn assert_held<T: Debug>(r: Result<T, LeaseError>, holder: &Lease, what: &str) {
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
                expires_at, holder.expires_at,
                "contract: {what}: names the expiry"
            );
        }
        other => panic!("contract: {what} should fail with Held, got {other:?}"),
    }
}

/// Every acquire bumps the fence: fences of a project strictly increase.
pub async fn fence_strictly_increases(h: &dyn LeaseHarness) {
    let s = h.store().await;
    let p = project("alpha");
    let mut last = Fence(0);
    for owner in ["a", "b", "a", "c"] {
        let l = ok(s.acquire(&p, owner, h.ttl()).await, "acquire");
        assert!(l.fence > last, "contract: fence {} after {last}", l.fence);
        assert_eq!(l.owner, owner);
        assert_eq!(l.project, p);
        last = l.fence;
        ok(s.release(&l).await, "release");
    }
    let other = ok(s.acquire(&project("beta"), "a", h.ttl()).await, "acquire");
    assert!(other.fence > Fence(0));
}

/// A held lease cannot be acquired; the error names the holder, its fence and expiry,
/// and the row is unchanged.
pub async fn held_lease_reports_holder(h: &dyn LeaseHarness) {
    let s = h.store().await;
    let p = project("alpha");
    let a = ok(s.acquire(&p, "owner-a", h.ttl()).await, "acquire");
    assert_held(s.acquire(&p, "owner-b", h.ttl()).await, &a, "acquire by b");
    assert_held(
        s.acquire(&p, "owner-a", h.ttl()).await,
        &a,
        "acquire again by a",
    );
    let view = ok(s.get(&p).await, "get").unwrap_or_else(|| panic!("contract: lease row exists"));
    assert_eq!(view.owner.as_deref(), Some("owner-a"));
    assert_eq!(view.fence, a.fence);
    assert_eq!(view.expires_at, a.expires_at);
    assert!(ok(s.get(&project("nobody")).await, "get").is_none());
}

/// An expired lease can be taken once the skew bound has also passed.
pub async fn expired_lease_can_be_taken_after_skew(h: &dyn LeaseHarness) {
    let s = h.store().await;
    let p = project("alpha");
    let a = ok(s.acquire(&p, "owner-a", h.ttl()).await, "acquire");
    h.advance(h.ttl()).await;
    if h.skew() > Duration::ZERO {
        assert_held(
            s.acquire(&p, "owner-b", h.ttl()).await,
            &a,
            "acquire inside the skew bound",
        );
    }
    h.advance(h.skew()).await;
    let b = ok(
        s.acquire(&p, "owner-b", h.ttl()).await,
        "acquire after expiry + skew",
    );
    assert!(b.fence > a.fence);
    let view = ok(s.get(&p).await, "get").unwrap_or_else(|| panic!("contract: lease row exists"));
    assert_eq!(view.owner.as_deref(), Some("owner-b"));
    assert_eq!(view.fence, b.fence);
}

/// Once someone else took the lease, the old holder can neither renew, release nor
/// record, and its failed writes change nothing.
pub async fn stale_fence_cannot_write(h: &dyn LeaseHarness) {
    let s = h.store().await;
    let p = project("alpha");
    let a = ok(s.acquire(&p, "owner-a", h.ttl()).await, "acquire");
    h.advance(h.ttl() + h.skew()).await;
    let b = ok(s.acquire(&p, "owner-b", h.ttl()).await, "takeover");
    assert_fence_lost(s.renew(&a, h.ttl()).await, a.fence, b.fence, "stale renew");
    assert_fence_lost(s.release(&a).await, a.fence, b.fence, "stale release");
    assert_fence_lost(
        s.record(&a, &job(&a, "item-1", 1_000)).await,
        a.fence,
        b.fence,
        "stale record",
    );
    assert!(
        ok(s.job(&p, &item("item-1")).await, "job").is_none(),
        "contract: a stale record must not be written"
    );
    let view = ok(s.get(&p).await, "get").unwrap_or_else(|| panic!("contract: lease row exists"));
    assert_eq!(view.owner.as_deref(), Some("owner-b"));
    assert_eq!(view.fence, b.fence);
    assert_eq!(view.expires_at, b.expires_at);
    assert_eq!(view.current_item, None);
    // The same owner name with an old fence is still stale.
    let a_again = ok(
        {
            ok(s.release(&b).await, "release b");
            s.acquire(&p, "owner-a", h.ttl()).await
        },
        "acquire again",
    );
    assert_fence_lost(
        s.renew(&a, h.ttl()).await,
        a.fence,
        a_again.fence,
        "renew with the owner's older fence",
    );
}

/// A released lease can be acquired at once, without waiting for expiry.
pub async fn release_lets_next_acquire_at_once(h: &dyn LeaseHarness) {
    let s = h.store().await;
    let p = project("alpha");
    let a = ok(
        s.acquire(&p, "owner-a", Duration::from_secs(3600)).await,
        "acquire",
    );
    ok(s.release(&a).await, "release");
    let view = ok(s.get(&p).await, "get").unwrap_or_else(|| panic!("contract: lease row exists"));
    assert_eq!(view.owner, None, "contract: a released lease has no owner");
    assert_eq!(view.fence, a.fence);
    let b = ok(
        s.acquire(&p, "owner-b", h.ttl()).await,
        "acquire after release",
    );
    assert!(b.fence > a.fence);
}

/// `renew` moves the expiry; a renew after expiry works while nobody took the lease.
pub async fn renew_extends_and_survives_expiry_until_taken(h: &dyn LeaseHarness) {
    let s = h.store().await;
    let p = project("alpha");
    let ttl = h.ttl();
    let a = ok(s.acquire(&p, "owner-a", ttl).await, "acquire");
    h.advance(ttl / 2).await;
    let a2 = ok(s.renew(&a, ttl).await, "renew");
    assert!(a2.expires_at > a.expires_at);
    assert_eq!(a2.fence, a.fence);
    h.advance(ttl / 2 + h.skew()).await;
    // Past the first expiry (+ skew) but not the renewed one.
    assert_held(
        s.acquire(&p, "owner-b", ttl).await,
        &a2,
        "acquire of a renewed lease",
    );
    h.advance(ttl).await;
    let a3 = ok(
        s.renew(&a2, ttl).await,
        "renew after expiry, nobody took it",
    );
    assert_eq!(a3.fence, a.fence);
    assert_held(
        s.acquire(&p, "owner-b", ttl).await,
        &a3,
        "acquire after late renew",
    );
}

/// A released lease cannot be renewed or recorded under.
pub async fn released_lease_cannot_be_renewed(h: &dyn LeaseHarness) {
    let s = h.store().await;
    let p = project("alpha");
    let a = ok(s.acquire(&p, "owner-a", h.ttl()).await, "acquire");
    ok(s.release(&a).await, "release");
    assert_fence_lost(
        s.renew(&a, h.ttl()).await,
        a.fence,
        a.fence,
        "renew after release",
    );
    assert_fence_lost(s.release(&a).await, a.fence, a.fence, "release twice");
    assert_fence_lost(
        s.record(&a, &job(&a, "i", 1)).await,
        a.fence,
        a.fence,
        "record after release",
    );
}

/// Job records round-trip; `record` sets the lease's current item; `jobs` lists all
/// records ordered by project, then last update.
pub async fn record_job_jobs_round_trip(h: &dyn LeaseHarness) {
    let s = h.store().await;
    let pa = project("alpha");
    let pb = project("beta");
    let la = ok(s.acquire(&pa, "owner-a", h.ttl()).await, "acquire");
    let lb = ok(s.acquire(&pb, "owner-b", h.ttl()).await, "acquire");
    let j_b = job(&lb, "b-1", 1_000);
    let j_a2 = job(&la, "a-2", 2_000);
    let mut j_a1 = job(&la, "a-1", 3_000);
    j_a1.state = JobState::Running;
    j_a1.build_id = Some(BuildId::new("build:1"));
    j_a1.attempts = 1;
    j_a1.coverage = Some(81.5);
    ok(s.record(&lb, &j_b).await, "record");
    ok(s.record(&la, &j_a2).await, "record");
    ok(s.record(&la, &j_a1).await, "record");
    assert_eq!(
        ok(s.job(&pa, &item("a-1")).await, "job"),
        Some(j_a1.clone())
    );
    assert_eq!(ok(s.job(&pb, &item("b-1")).await, "job"), Some(j_b.clone()));
    assert!(ok(s.job(&pb, &item("a-1")).await, "job").is_none());
    let view = ok(s.get(&pa).await, "get").unwrap_or_else(|| panic!("contract: lease row exists"));
    assert_eq!(view.current_item, Some(item("a-1")));
    assert_eq!(
        ok(s.jobs().await, "jobs"),
        vec![j_a2.clone(), j_a1.clone(), j_b.clone()],
        "contract: jobs ordered by project then updated_at"
    );
    // Overwrite a record.
    let mut j_a2b = j_a2.clone();
    j_a2b.state = JobState::Succeeded;
    j_a2b.updated_at = Timestamp(4_000);
    ok(s.record(&la, &j_a2b).await, "record again");
    assert_eq!(
        ok(s.job(&pa, &item("a-2")).await, "job"),
        Some(j_a2b.clone())
    );
    let view = ok(s.get(&pa).await, "get").unwrap_or_else(|| panic!("contract: lease row exists"));
    assert_eq!(view.current_item, Some(item("a-2")));
    assert_eq!(
        ok(s.jobs().await, "jobs"),
        vec![j_a1, j_a2b, j_b],
        "contract: jobs reordered by the new update time"
    );
    // Records survive the lease's release.
    ok(s.release(&la).await, "release");
    assert_eq!(ok(s.jobs().await, "jobs").len(), 3);
}
