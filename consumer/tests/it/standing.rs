//! Where a build stands for its fenced side effects across a SIGTERM handoff: it may act
//! while its consumer holds the lease, is *in transit* (not lost) between the handoff and
//! the next consumer's re-attach — including after the next consumer took a new fence but
//! before it recorded the re-attach — may act again once adopted, and is lost for good
//! only when the record no longer names it.

use crate::support::{FlakyLeases, Harness, LEASE_TTL, VISIBILITY, acquire_as};
use kiro_protocol::{BuildStanding, LeaseStore, build_standing};
use std::time::Duration;

#[tokio::test(start_paused = true)]
async fn a_handed_off_build_is_in_transit_until_adopted_then_may_act() {
    let h = Harness::new();
    h.send("A-1", "alpha").await;
    let mut first = h.engine("c1");
    first.tick(Duration::ZERO).await;
    let job = h.job("alpha", "A-1").await;
    let fence1 = job.fence;
    let build = h.runner.builds_of("A-1")[0].id.clone();
    let standing = async |fence| {
        build_standing(&*h.leases, &job.project, &job.item, fence, Some(&build))
            .await
            .unwrap()
    };
    assert_eq!(standing(fence1).await, BuildStanding::MayAct);

    first.drain().await;
    assert_eq!(
        standing(fence1).await,
        BuildStanding::InTransit,
        "handed off, nobody holds the lease yet"
    );

    // The next consumer has taken the lease (a new fence) but not recorded the re-attach.
    let taken = acquire_as(&*h.leases, &job.project, "c2", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(taken.fence > fence1);
    assert_eq!(standing(fence1).await, BuildStanding::InTransit);
    h.leases.release(&taken).await.unwrap();

    // A consumer re-attaches: the build may act again under its old fence.
    let mut next = h.engine("c3");
    let r = next.tick(Duration::ZERO).await;
    assert_eq!(r.adopted, 1, "{r:?}");
    assert_eq!(standing(fence1).await, BuildStanding::MayAct);
    assert_eq!(h.runner.starts(), 1, "no second build");

    // A build the record does not name is lost for good, whatever its fence.
    let stranger = kiro_protocol::BuildId::new("local:alpha:999");
    let lost = build_standing(&*h.leases, &job.project, &job.item, fence1, Some(&stranger))
        .await
        .unwrap();
    assert_eq!(lost, BuildStanding::Lost);
}

/// A consumer killed between starting a build and recording its id leaves the intent
/// (the exact request, no build id) under its fence. The next holder recovers that
/// build by its key; until it has recorded the adoption, the build — started from the
/// intent under that fence — is in transit, not lost (found by the fault suite,
/// `tests/it/fault/`: the build was refused its push and the item's attempt repeated).
#[tokio::test(start_paused = true)]
async fn a_build_whose_id_was_never_recorded_is_in_transit_until_recovered() {
    let h = Harness::new();
    h.send("A-1", "alpha").await;
    let flaky = std::sync::Arc::new(FlakyLeases::new(h.leases.clone()));
    *flaky.fail_record_of.lock().unwrap() = Some(kiro_protocol::JobState::Running);
    let mut first = h.engine_with(Harness::config("c1"), flaky);
    first.tick(Duration::ZERO).await;
    drop(first); // killed: no drain
    let job = h.job("alpha", "A-1").await;
    assert_eq!(job.state, kiro_protocol::JobState::Starting);
    assert_eq!(job.build_id, None, "the build id was never recorded");
    let fence1 = job.fence;
    let build = h.runner.builds_of("A-1")[0].id.clone();
    let standing = async |fence| {
        build_standing(&*h.leases, &job.project, &job.item, fence, Some(&build))
            .await
            .unwrap()
    };
    assert_eq!(
        standing(fence1).await,
        BuildStanding::MayAct,
        "its lease still holds"
    );

    // The lease runs out; the next consumer takes it (a new fence), not yet recovered.
    tokio::time::sleep(LEASE_TTL + Duration::from_secs(2)).await;
    let taken = acquire_as(&*h.leases, &job.project, "c2", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(taken.fence > fence1);
    assert_eq!(standing(fence1).await, BuildStanding::InTransit);
    h.leases.release(&taken).await.unwrap();
    assert_eq!(standing(fence1).await, BuildStanding::InTransit);

    // A consumer recovers it by its key and records it: the build may act again.
    tokio::time::sleep(VISIBILITY).await;
    let mut next = h.engine("c3");
    let r = next.tick(Duration::ZERO).await;
    assert_eq!(r.adopted, 1, "{r:?}");
    assert_eq!(standing(fence1).await, BuildStanding::MayAct);
    assert_eq!(h.runner.starts(), 1, "no second build");

    // An intent of an older fence names no build of a newer one.
    let stranger = kiro_protocol::BuildId::new("in-memory:alpha:999");
    let lost = build_standing(&*h.leases, &job.project, &job.item, fence1, Some(&stranger))
        .await
        .unwrap();
    assert_eq!(lost, BuildStanding::Lost);
}
