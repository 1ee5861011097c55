//! The `LeaseStore` contract suite: sessions (one renewal keeps every lease), fencing,
//! takeover of an expired session's leases with a skew bound, fenced writes and the job
//! records.
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
    BuildId, FailureClass, Fence, ItemId, JobRecord, JobState, Lease, LeaseError, LeaseStore,
    MessageId, ProjectKey, Session, Timestamp, TraceContext,
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

/// Job records round-trip; `record` sets the lease's current item; `jobs` lists all
/// records ordered by project, then last update.
pub async fn record_job_jobs_round_trip(h: &dyn LeaseHarness) {
    let s = h.store().await;
    let pa = project("alpha");
    let pb = project("beta");
    let sa = open(&*s, h, "owner-a").await;
    let sb = open(&*s, h, "owner-b").await;
    let la = ok(s.acquire(&pa, &sa).await, "acquire");
    let lb = ok(s.acquire(&pb, &sb).await, "acquire");
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

/// `record_new` writes only a record the item does not have yet: the second create
/// writes nothing and says so; a stale or released lease cannot create.
pub async fn record_new_creates_only_once(h: &dyn LeaseHarness) {
    let s = h.store().await;
    let p = project("alpha");
    let sa = open(&*s, h, "owner-a").await;
    let a = ok(s.acquire(&p, &sa).await, "acquire");
    let first = job(&a, "item-1", 1_000);
    assert!(
        ok(s.record_new(&a, &first).await, "create"),
        "contract: the first create writes"
    );
    assert_eq!(
        ok(s.job(&p, &item("item-1")).await, "job"),
        Some(first.clone())
    );
    let mut second = job(&a, "item-1", 2_000);
    second.state = JobState::Running;
    assert!(
        !ok(s.record_new(&a, &second).await, "create again"),
        "contract: a create over a record writes nothing"
    );
    assert_eq!(
        ok(s.job(&p, &item("item-1")).await, "job"),
        Some(first),
        "contract: the record a create found is unchanged"
    );
    let view = ok(s.get(&p).await, "get").unwrap_or_else(|| panic!("contract: lease row exists"));
    assert_eq!(view.current_item, Some(item("item-1")));
    // A holder whose fence moved cannot create, even a record nobody has.
    h.advance(h.ttl() + h.skew()).await;
    let sb = open(&*s, h, "owner-b").await;
    let b = ok(s.acquire(&p, &sb).await, "takeover");
    assert_fence_lost(
        s.record_new(&a, &job(&a, "item-2", 3_000)).await,
        a.fence,
        b.fence,
        "stale create",
    );
    assert!(
        ok(s.job(&p, &item("item-2")).await, "job").is_none(),
        "contract: a stale create writes nothing"
    );
}

/// `record_and_release` writes the record and frees the lease in one write: the next
/// acquire needs no wait and finds the record; the released holder can write no more; a
/// stale holder can neither write nor release.
pub async fn record_and_release_is_one_write(h: &dyn LeaseHarness) {
    let s = h.store().await;
    let p = project("alpha");
    let sa = open(&*s, h, "owner-a").await;
    let sb = open(&*s, h, "owner-b").await;
    let a = ok(s.acquire(&p, &sa).await, "acquire");
    let mut last = job(&a, "item-1", 1_000);
    last.state = JobState::Succeeded;
    ok(s.record_and_release(&a, &last).await, "record and release");
    let view = ok(s.get(&p).await, "get").unwrap_or_else(|| panic!("contract: lease row exists"));
    assert_eq!(view.owner, None, "contract: the lease is released");
    assert_eq!(
        view.fence, a.fence,
        "contract: a release does not move the fence"
    );
    assert_eq!(view.current_item, Some(item("item-1")));
    assert_eq!(
        ok(s.job(&p, &item("item-1")).await, "job"),
        Some(last.clone())
    );
    assert_fence_lost(
        s.record(&a, &job(&a, "item-1", 2_000)).await,
        a.fence,
        a.fence,
        "record after record_and_release",
    );
    // Taken at once by another session (no expiry to wait for); the old holder's
    // record-and-release changes nothing.
    let b = ok(s.acquire(&p, &sb).await, "acquire after record_and_release");
    assert!(b.fence > a.fence);
    let mut stale = job(&a, "item-1", 3_000);
    stale.state = JobState::DeadLettered;
    assert_fence_lost(
        s.record_and_release(&a, &stale).await,
        a.fence,
        b.fence,
        "stale record_and_release",
    );
    assert_eq!(ok(s.job(&p, &item("item-1")).await, "job"), Some(last));
    let view = ok(s.get(&p).await, "get").unwrap_or_else(|| panic!("contract: lease row exists"));
    assert_eq!(
        view.owner.as_deref(),
        Some("owner-b"),
        "contract: b still holds it"
    );
}

/// `record` of `item_id` as the `cancelled` state, as an operator or a consumer writes it.
fn cancelled(lease: &Lease, item_id: &str, at: i64) -> JobRecord {
    let mut j = job(lease, item_id, at);
    j.state = JobState::Cancelled;
    j
}

/// `cancel` of the item the lease works on bumps the fence by one and releases the lease
/// in the same write: the holder's fence is stale for every write (record, release), the
/// project is free at once, the record is `cancelled` under the new fence, and the
/// holder's session and its other leases are untouched.
pub async fn cancel_bumps_the_fence_and_fences_out_the_holder(h: &dyn LeaseHarness) {
    let s = h.store().await;
    let (p, q) = (project("alpha"), project("beta"));
    let a = open(&*s, h, "owner-a").await;
    let lp = ok(s.acquire(&p, &a).await, "acquire");
    let lq = ok(s.acquire(&q, &a).await, "acquire other");
    let mut running = job(&lp, "a-1", 1_000);
    running.state = JobState::Running;
    running.build_id = Some(BuildId::new("build:1"));
    ok(s.record(&lp, &running).await, "record");
    let done = ok(s.cancel(&cancelled(&lp, "a-1", 2_000)).await, "cancel");
    assert!(
        done.bumped,
        "contract: cancel of the lease's item bumps the fence"
    );
    assert_eq!(
        done.fence,
        Fence(lp.fence.0 + 1),
        "contract: by exactly one"
    );
    let view = ok(s.get(&p).await, "get").unwrap_or_else(|| panic!("contract: row exists"));
    assert_eq!(
        (view.owner, view.fence, view.current_item),
        (None, done.fence, Some(item("a-1"))),
        "contract: cancel releases the lease under the bumped fence"
    );
    let got = ok(s.job(&p, &item("a-1")).await, "job")
        .unwrap_or_else(|| panic!("contract: the cancelled record exists"));
    assert_eq!(
        (got.state, got.fence),
        (JobState::Cancelled, done.fence),
        "contract: the record is cancelled under the new fence"
    );
    assert_fence_lost(
        s.record(&lp, &running).await,
        lp.fence,
        done.fence,
        "a record by the holder after the cancel",
    );
    assert_fence_lost(
        s.release(&lp).await,
        lp.fence,
        done.fence,
        "a release by the holder after the cancel",
    );
    assert_eq!(
        ok(s.job(&p, &item("a-1")).await, "job").map(|j| j.state),
        Some(JobState::Cancelled),
        "contract: a stale write after the cancel changed nothing"
    );
    ok(
        s.renew_session(&a, h.ttl()).await,
        "the holder's session lives on",
    );
    ok(
        s.record(&lq, &job(&lq, "b-1", 3_000)).await,
        "its other lease still writes",
    );
    let b = open(&*s, h, "owner-b").await;
    let next = ok(s.acquire(&p, &b).await, "the project is free at once");
    assert_eq!(
        next.fence,
        Fence(done.fence.0 + 1),
        "contract: fences keep increasing"
    );
    // A project never leased: the row is created under fence 1 and is free.
    let r = project("gamma");
    let fresh = Lease {
        project: r.clone(),
        owner: "operator".into(),
        fence: Fence(0),
    };
    let first = ok(
        s.cancel(&cancelled(&fresh, "c-1", 4_000)).await,
        "cancel unleased",
    );
    assert_eq!((first.fence, first.bumped), (Fence(1), true));
    assert_eq!(ok(s.acquire(&r, &b).await, "acquire after").fence, Fence(2));
}

/// `cancel` of an item queued behind ANOTHER item's live job leaves the lease alone (that
/// job's holder keeps writing); once that job's record is final, a cancel bumps again.
pub async fn cancel_leaves_another_items_live_job_alone(h: &dyn LeaseHarness) {
    let s = h.store().await;
    let p = project("alpha");
    let a = open(&*s, h, "owner-a").await;
    let lp = ok(s.acquire(&p, &a).await, "acquire");
    let mut running = job(&lp, "a-1", 1_000);
    running.state = JobState::Running;
    ok(s.record(&lp, &running).await, "record");
    let queued = ok(
        s.cancel(&cancelled(&lp, "a-2", 2_000)).await,
        "cancel queued",
    );
    assert_eq!(
        (queued.bumped, queued.fence),
        (false, lp.fence),
        "contract: another item's live job keeps its fence"
    );
    assert_eq!(
        ok(s.job(&p, &item("a-2")).await, "job").map(|j| (j.state, j.fence)),
        Some((JobState::Cancelled, lp.fence))
    );
    let mut succeeded = running.clone();
    succeeded.state = JobState::Succeeded;
    ok(s.record(&lp, &succeeded).await, "the holder still writes");
    let view = ok(s.get(&p).await, "get").unwrap_or_else(|| panic!("contract: row exists"));
    assert_eq!(
        view.owner.as_deref(),
        Some(a.id.as_str()),
        "contract: still held"
    );
    let after = ok(
        s.cancel(&cancelled(&lp, "a-3", 3_000)).await,
        "cancel after final",
    );
    assert!(
        after.bumped,
        "contract: with the current item final, the holder may be taking the cancelled one: bump"
    );
    assert_fence_lost(
        s.record(&lp, &job(&lp, "a-3", 4_000)).await,
        lp.fence,
        after.fence,
        "an intent written after the cancel",
    );
}
