//! One heartbeat per consumer (issue 13.2): the engine renews its session once per beat
//! however many jobs run, losing the session cancels every job, and the leases of a
//! consumer that stopped are free at once.

use crate::support::*;
use kiro_backends::testing::Spy;
use kiro_protocol::*;
use std::sync::Arc;
use std::time::Duration;

async fn pass(d: Duration) {
    tokio::time::sleep(d).await;
}

const PROJECTS: [&str; 6] = ["alpha", "beta", "gamma", "delta", "eps", "zeta"];

/// One engine with a job in each of `PROJECTS`, its lease store behind a spy.
async fn six_jobs(h: &Harness) -> (kiro_consumer::Engine, Arc<Spy<SqliteLeaseStoreRef>>) {
    for (n, p) in PROJECTS.iter().enumerate() {
        h.send(&format!("I-{n}"), p).await;
    }
    let spy = Arc::new(Spy::new(h.leases.clone()));
    let mut e = h.engine_with(Harness::config("c1"), spy.clone());
    let r = e.tick(Duration::ZERO).await;
    assert_eq!(r.started, PROJECTS.len(), "{r:?}");
    (e, spy)
}

type SqliteLeaseStoreRef = kiro_backends::embedded::SqliteLeaseStore;

#[tokio::test(start_paused = true)]
async fn n_jobs_cost_one_session_renewal_per_beat_not_n() {
    let h = Harness::new();
    let (mut e, spy) = six_jobs(&h).await;
    assert_eq!(spy.calls("open_session"), 1);
    assert_eq!(spy.calls("acquire"), PROJECTS.len());
    // Ten beats (renew_every = 10 s), ticking every second as the run loop may.
    for _ in 0..100 {
        pass(Duration::from_secs(1)).await;
        let r = e.tick(Duration::ZERO).await;
        assert_eq!(r.cancelled, 0, "{r:?}");
    }
    assert_eq!(e.active_count(), PROJECTS.len());
    assert_eq!(
        spy.calls("renew_session"),
        10,
        "one renewal per beat for all six jobs"
    );
    let writes: usize = spy
        .tally()
        .iter()
        .filter(|(m, _)| !matches!(**m, "get" | "job" | "jobs" | "session"))
        .map(|(_, c)| c.calls)
        .sum();
    assert_eq!(
        writes,
        1 + PROJECTS.len() + 2 * PROJECTS.len() + 10,
        "open, acquires, intent and build id per job, one renewal per beat: {:?}",
        spy.tally()
    );
    // The leases outlived their first expiry many times over without a write of their own.
    let session = e.active_projects();
    for p in &session {
        let view = h.leases.get(&ProjectKey::parse(p).unwrap()).await.unwrap();
        assert!(
            view.is_some_and(|v| v.owner.as_deref() == Some("c1")),
            "{p}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_idle_consumer_renews_nothing() {
    let h = Harness::new();
    let spy = Arc::new(Spy::new(h.leases.clone()));
    let mut e = h.engine_with(Harness::config("c1"), spy.clone());
    for _ in 0..60 {
        pass(Duration::from_secs(1)).await;
        e.tick(Duration::ZERO).await;
    }
    assert!(spy.tally().is_empty(), "{:?}", spy.tally());
}

#[tokio::test(start_paused = true)]
async fn a_lost_session_cancels_every_job_and_frees_the_projects_not_taken() {
    let h = Harness::new();
    let (mut e, _spy) = six_jobs(&h).await;
    // The consumer pauses past its session's expiry and the skew bound; another takes
    // one project over, without adopting its build.
    pass(LEASE_TTL + Duration::from_secs(2)).await;
    let thief = acquire_as(
        &*h.leases,
        &ProjectKey::parse("alpha").unwrap(),
        "thief",
        LEASE_TTL,
    )
    .await
    .unwrap();
    assert!(
        h.leases.session("c1").await.unwrap().unwrap().ended,
        "the takeover ended c1's session"
    );
    let r = e.tick(Duration::ZERO).await;
    assert_eq!(r.cancelled, PROJECTS.len(), "{r:?}");
    assert_eq!(e.active_count(), 0);
    // No build is stopped: alpha's was taken from under it, but its record still names
    // it, so it is in transit for the thief to re-attach; the others keep running for
    // whoever takes their projects next, which is at once: their leases were let go of.
    assert!(h.runner.stopped().is_empty(), "{:?}", h.runner.stopped());
    for p in &PROJECTS[1..] {
        let view = h
            .leases
            .get(&ProjectKey::parse(p).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(view.owner, None, "{p}: released");
    }
    let alpha = h.leases.get(&thief.project).await.unwrap().unwrap();
    assert_eq!((alpha.owner, alpha.fence), (Some(thief.owner), thief.fence));
    // When the messages come back, c1 re-attaches under a new session.
    pass(Duration::from_secs(61)).await;
    let r = e.tick(Duration::ZERO).await;
    assert!(r.adopted >= PROJECTS.len() - 1, "{r:?}");
    let view = h
        .leases
        .get(&ProjectKey::parse("beta").unwrap())
        .await
        .unwrap()
        .unwrap();
    let owner = view.owner.unwrap();
    assert!(owner.starts_with("c1/"), "a new session: {owner}");
}

#[tokio::test(start_paused = true)]
async fn a_drained_consumer_ends_its_session_and_its_builds_are_taken_over_at_once() {
    let h = Harness::new();
    let (mut e, _spy) = six_jobs(&h).await;
    e.drain().await;
    assert!(h.leases.session("c1").await.unwrap().unwrap().ended);
    let mut next = h.engine("c2");
    let r = next.tick(Duration::ZERO).await;
    assert_eq!(r.adopted, PROJECTS.len(), "{r:?}");
    assert_eq!(h.runner.starts(), PROJECTS.len(), "no second build");
}

/// The lease-store calls of one build (issue 13's per-build cost): a first delivery is
/// taken, recorded, started, recorded and settled in five calls — its record is created
/// with the intent (no read first) and the last record releases the lease (no separate
/// release). A retry's redelivery reads the record it finds.
#[tokio::test(start_paused = true)]
async fn a_build_costs_acquire_create_build_id_and_one_settling_write() {
    let h = Harness::new();
    h.send("A-1", "alpha").await;
    let spy = Arc::new(Spy::new(h.leases.clone()));
    let mut e = h.engine_with(Harness::config("c1"), spy.clone());
    assert_eq!(e.tick(Duration::ZERO).await.started, 1);
    h.runner.succeed("A-1");
    pass(Duration::from_secs(11)).await;
    assert_eq!(e.tick(Duration::ZERO).await.succeeded, 1);
    let calls = |m: &str| spy.calls(m);
    assert_eq!(
        (
            calls("acquire"),
            calls("record_new"),
            calls("record"),
            calls("record_and_release")
        ),
        (1, 1, 1, 1),
        "{:?}",
        spy.tally()
    );
    assert_eq!(
        (calls("job"), calls("release")),
        (0, 0),
        "{:?}",
        spy.tally()
    );
    let job = h.job("alpha", "A-1").await;
    assert_eq!(job.state, JobState::Succeeded);
    let lease = h
        .leases
        .get(&ProjectKey::parse("alpha").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lease.owner, None, "the settling write released the lease");

    // A failure that is retried: its redelivery is no first delivery, so its record is
    // read (and the attempt count it holds goes on).
    h.send("B-1", "beta").await;
    assert_eq!(e.tick(Duration::ZERO).await.started, 1);
    h.runner.fail("B-1", FailureClass::Transient);
    pass(Duration::from_secs(11)).await;
    assert_eq!(e.tick(Duration::ZERO).await.retried, 1);
    let lease = h
        .leases
        .get(&ProjectKey::parse("beta").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lease.owner, None, "the retry's record released the lease");
    let reads = calls("job");
    pass(Duration::from_secs(3600)).await;
    assert_eq!(e.tick(Duration::ZERO).await.started, 1, "the retry starts");
    assert_eq!(calls("job"), reads + 1, "a redelivery reads its record");
    assert_eq!(h.job("beta", "B-1").await.attempts, 2);
}
