//! `LeaseStore` contract checks on job records: round trip and listing, create-once,
//! record-and-release in one write, and `cancel` (fencing out the holder of the item's
//! job, leaving another item's live job alone).
//!
//! Invariant: as for the whole suite ([`super`]), only the port is used and a failure
//! names the broken rule.

use super::*;

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
