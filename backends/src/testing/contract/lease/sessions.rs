//! `LeaseStore` contract checks on sessions: one renewal keeps every lease of a session,
//! a session's life (open, renew, end), and a holder without a session row.
//!
//! Invariant: as for the whole suite ([`super`]), only the port is used and a failure
//! names the broken rule.

use super::*;

/// One `renew_session` keeps every lease of the session: past the first expiry (+ skew)
/// none of them can be taken; a renewal after expiry still works while none was taken.
pub async fn one_renewal_keeps_every_lease(h: &dyn LeaseHarness) {
    let s = h.store().await;
    let ttl = h.ttl();
    let sa = open(&*s, h, "owner-a").await;
    let projects = [project("alpha"), project("beta"), project("gamma")];
    let mut leases = Vec::new();
    for p in &projects {
        leases.push(ok(s.acquire(p, &sa).await, "acquire"));
    }
    h.advance(ttl / 2).await;
    let sa2 = ok(s.renew_session(&sa, ttl).await, "renew");
    assert!(sa2.expires_at > sa.expires_at);
    assert_eq!(sa2.id, sa.id);
    let view = ok(s.session("owner-a").await, "session").unwrap_or_else(|| panic!("row"));
    assert_eq!((view.expires_at, view.ended), (sa2.expires_at, false));
    h.advance(ttl / 2 + h.skew()).await;
    // Past the first expiry (+ skew) but not the renewed one.
    let sb = open(&*s, h, "owner-b").await;
    for (p, l) in projects.iter().zip(&leases) {
        assert_held(
            s.acquire(p, &sb).await,
            l,
            &sa2,
            "acquire of a renewed session's lease",
        );
    }
    h.advance(ttl).await;
    let sa3 = ok(
        s.renew_session(&sa2, ttl).await,
        "renew after expiry, nothing taken",
    );
    let sb = ok(s.renew_session(&sb, ttl).await, "renew b");
    for (p, l) in projects.iter().zip(&leases) {
        assert_held(
            s.acquire(p, &sb).await,
            l,
            &sa3,
            "acquire after a late renewal",
        );
        ok(
            s.record(l, &job(l, "item", 1)).await,
            "record under a kept lease",
        );
    }
}

/// A session's life: ids are never reused, `end_session` ends it (twice is fine), an
/// ended session is never renewed again, and its leases are free at once.
pub async fn session_lifecycle(h: &dyn LeaseHarness) {
    let s = h.store().await;
    let sa = open(&*s, h, "owner-a").await;
    match s.open_session("owner-a", h.ttl()).await {
        Err(e) => assert_eq!(e.class(), FailureClass::PermanentInput, "{e}"),
        Ok(_) => panic!("contract: a session id is used once"),
    }
    assert!(ok(s.session("nobody").await, "session").is_none());
    let p = project("alpha");
    let a = ok(s.acquire(&p, &sa).await, "acquire");
    ok(s.end_session(&sa).await, "end");
    ok(s.end_session(&sa).await, "end twice");
    let view = ok(s.session("owner-a").await, "session").unwrap_or_else(|| panic!("row"));
    assert!(view.ended);
    assert_session_lost(s.renew_session(&sa, h.ttl()).await, &sa, "renew after end");
    assert!(
        s.open_session("owner-a", h.ttl()).await.is_err(),
        "contract: an ended id is not reopened"
    );
    let ghost = Session {
        id: "never-opened".into(),
        expires_at: sa.expires_at,
    };
    assert_session_lost(
        s.end_session(&ghost).await,
        &ghost,
        "end of an unknown session",
    );
    // The ended session's lease is free at once.
    let sb = open(&*s, h, "owner-b").await;
    let b = ok(s.acquire(&p, &sb).await, "acquire from an ended session");
    assert!(b.fence > a.fence);
}

/// A lease row whose holder has no session row (written before sessions existed) is
/// judged by the row's own expiry; taking it over writes that holder an ended session.
pub async fn a_holder_without_a_session_row_is_judged_by_its_row(h: &dyn LeaseHarness) {
    let s = h.store().await;
    let p = project("alpha");
    let probe = open(&*s, h, "probe").await;
    let ghost = Session {
        id: "old-consumer".into(),
        expires_at: probe.expires_at,
    };
    let old = ok(s.acquire(&p, &ghost).await, "acquire without a session row");
    let sb = open(&*s, h, "owner-b").await;
    assert_held(
        s.acquire(&p, &sb).await,
        &old,
        &ghost,
        "acquire before the row expired",
    );
    h.advance(h.ttl() + h.skew()).await;
    let sb = ok(s.renew_session(&sb, h.ttl()).await, "renew b");
    let b = ok(
        s.acquire(&p, &sb).await,
        "takeover after the row's expiry + skew",
    );
    assert!(b.fence > old.fence);
    let tomb = ok(s.session("old-consumer").await, "session").unwrap_or_else(|| panic!("row"));
    assert!(tomb.ended, "contract: the old holder's id is ended");
    assert!(
        s.open_session("old-consumer", h.ttl()).await.is_err(),
        "contract: the old holder's id is not opened later"
    );
}
