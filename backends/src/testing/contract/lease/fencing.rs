//! `LeaseStore` contract checks on fencing: fences strictly increase, a held lease names
//! its holder, an expired one is taken only after the skew bound, and a stale or
//! released lease can write nothing.
//!
//! Invariant: as for the whole suite ([`super`]), only the port is used and a failure
//! names the broken rule.

use super::*;

/// Every acquire bumps the fence: fences of a project strictly increase.
pub async fn fence_strictly_increases(h: &dyn LeaseHarness) {
    let s = h.store().await;
    let p = project("alpha");
    let sessions = [
        open(&*s, h, "a").await,
        open(&*s, h, "b").await,
        open(&*s, h, "c").await,
    ];
    let mut last = Fence(0);
    for n in [0, 1, 0, 2] {
        let l = ok(s.acquire(&p, &sessions[n]).await, "acquire");
        assert!(l.fence > last, "contract: fence {} after {last}", l.fence);
        assert_eq!(l.owner, sessions[n].id);
        assert_eq!(l.project, p);
        last = l.fence;
        ok(s.release(&l).await, "release");
    }
    let other = ok(s.acquire(&project("beta"), &sessions[0]).await, "acquire");
    assert!(other.fence > Fence(0));
}

/// A lease held by a live session cannot be acquired, not even by that session; the error
/// names the holder, its fence and its session's expiry, and the row is unchanged.
pub async fn held_lease_reports_holder(h: &dyn LeaseHarness) {
    let s = h.store().await;
    let p = project("alpha");
    let sa = open(&*s, h, "owner-a").await;
    let sb = open(&*s, h, "owner-b").await;
    let a = ok(s.acquire(&p, &sa).await, "acquire");
    assert_held(s.acquire(&p, &sb).await, &a, &sa, "acquire by b");
    assert_held(s.acquire(&p, &sa).await, &a, &sa, "acquire again by a");
    let view = ok(s.get(&p).await, "get").unwrap_or_else(|| panic!("contract: lease row exists"));
    assert_eq!(view.owner.as_deref(), Some("owner-a"));
    assert_eq!(view.fence, a.fence);
    assert!(ok(s.get(&project("nobody")).await, "get").is_none());
}

/// A lease of an expired session can be taken once the skew bound has also passed; the
/// takeover ends the old session, which can then never be renewed.
pub async fn expired_lease_can_be_taken_after_skew(h: &dyn LeaseHarness) {
    let s = h.store().await;
    let p = project("alpha");
    let sa = open(&*s, h, "owner-a").await;
    let a = ok(s.acquire(&p, &sa).await, "acquire");
    h.advance(h.ttl()).await;
    let sb = open(&*s, h, "owner-b").await;
    if h.skew() > Duration::ZERO {
        assert_held(
            s.acquire(&p, &sb).await,
            &a,
            &sa,
            "acquire inside the skew bound",
        );
    }
    h.advance(h.skew()).await;
    let sb = ok(s.renew_session(&sb, h.ttl()).await, "renew b");
    let b = ok(s.acquire(&p, &sb).await, "acquire after expiry + skew");
    assert!(b.fence > a.fence);
    let view = ok(s.get(&p).await, "get").unwrap_or_else(|| panic!("contract: lease row exists"));
    assert_eq!(view.owner.as_deref(), Some("owner-b"));
    assert_eq!(view.fence, b.fence);
    let old = ok(s.session("owner-a").await, "session").unwrap_or_else(|| panic!("row"));
    assert!(old.ended, "contract: a takeover ends the holder's session");
    assert_session_lost(
        s.renew_session(&sa, h.ttl()).await,
        &sa,
        "renew of a session that lost a lease",
    );
}

/// Once someone else took the lease, the old holder can neither release nor record, and
/// its failed writes change nothing.
pub async fn stale_fence_cannot_write(h: &dyn LeaseHarness) {
    let s = h.store().await;
    let p = project("alpha");
    let sa = open(&*s, h, "owner-a").await;
    let a = ok(s.acquire(&p, &sa).await, "acquire");
    h.advance(h.ttl() + h.skew()).await;
    let sb = open(&*s, h, "owner-b").await;
    let b = ok(s.acquire(&p, &sb).await, "takeover");
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
    assert_eq!(view.current_item, None);
    // The same holder name with an old fence is still stale: b hands the project back
    // to a's new session; a's old lease still cannot write.
    ok(s.release(&b).await, "release b");
    let sa2 = open(&*s, h, "owner-a2").await;
    let a2 = ok(s.acquire(&p, &sa2).await, "acquire again");
    assert_fence_lost(
        s.release(&a).await,
        a.fence,
        a2.fence,
        "release with an older fence",
    );
}

/// A released lease can be acquired at once, without waiting for expiry.
pub async fn release_lets_next_acquire_at_once(h: &dyn LeaseHarness) {
    let s = h.store().await;
    let p = project("alpha");
    let sa = ok(
        s.open_session("owner-a", Duration::from_secs(3600)).await,
        "open",
    );
    let sb = open(&*s, h, "owner-b").await;
    let a = ok(s.acquire(&p, &sa).await, "acquire");
    ok(s.release(&a).await, "release");
    let view = ok(s.get(&p).await, "get").unwrap_or_else(|| panic!("contract: lease row exists"));
    assert_eq!(view.owner, None, "contract: a released lease has no owner");
    assert_eq!(view.fence, a.fence);
    let b = ok(s.acquire(&p, &sb).await, "acquire after release");
    assert!(b.fence > a.fence);
}

/// A released lease cannot be released again or recorded under.
pub async fn released_lease_cannot_be_written(h: &dyn LeaseHarness) {
    let s = h.store().await;
    let p = project("alpha");
    let sa = open(&*s, h, "owner-a").await;
    let a = ok(s.acquire(&p, &sa).await, "acquire");
    ok(s.release(&a).await, "release");
    assert_fence_lost(s.release(&a).await, a.fence, a.fence, "release twice");
    assert_fence_lost(
        s.record(&a, &job(&a, "i", 1)).await,
        a.fence,
        a.fence,
        "record after release",
    );
}
