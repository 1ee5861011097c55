//! The embedded lease store: the contract suite, restart survival, two processes on one
//! file, and the session/fence property over random schedules with clock skew
//! (`lease_schedule.rs`).

use async_trait::async_trait;
use kiro_backends::embedded::{EmbeddedDb, SqliteLeaseStore};
use kiro_backends::testing::contract::lease::{LeaseHarness, job};
use kiro_protocol::{
    Clock, Fence, ItemId, JobState, LeaseError, LeaseStore, ManualClock, ProjectKey,
};
use proptest::prelude::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tempfile::TempDir;

const SKEW: Duration = Duration::from_secs(2);

#[derive(Debug)]
struct Embedded {
    clock: ManualClock,
    dirs: Mutex<Vec<TempDir>>,
}

impl Embedded {
    fn new() -> Self {
        Embedded {
            clock: ManualClock::default(),
            dirs: Mutex::new(Vec::new()),
        }
    }
}

#[async_trait]
impl LeaseHarness for Embedded {
    async fn store(&self) -> Arc<dyn LeaseStore> {
        let dir = tempfile::tempdir().unwrap();
        let db = EmbeddedDb::open_dir(dir.path()).unwrap();
        self.dirs.lock().unwrap().push(dir);
        Arc::new(SqliteLeaseStore::new(db, Arc::new(self.clock.clone()), SKEW).unwrap())
    }

    async fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }

    fn skew(&self) -> Duration {
        SKEW
    }
}

mod contract_suite {
    use super::*;

    kiro_backends::lease_contract!(Embedded::new());

    /// The suite again with no skew bound: an expired lease can be taken at once.
    mod without_skew {
        use super::*;

        #[derive(Debug)]
        struct NoSkew(Embedded);

        #[async_trait]
        impl LeaseHarness for NoSkew {
            async fn store(&self) -> Arc<dyn LeaseStore> {
                let dir = tempfile::tempdir().unwrap();
                let db = EmbeddedDb::open_dir(dir.path()).unwrap();
                self.0.dirs.lock().unwrap().push(dir);
                Arc::new(
                    SqliteLeaseStore::new(db, Arc::new(self.0.clock.clone()), Duration::ZERO)
                        .unwrap(),
                )
            }
            async fn advance(&self, d: Duration) {
                self.0.clock.advance(d);
            }
            fn skew(&self) -> Duration {
                Duration::ZERO
            }
        }

        kiro_backends::lease_contract!(NoSkew(Embedded::new()));
    }
}

fn open(dir: &TempDir, clock: &ManualClock) -> SqliteLeaseStore {
    let db = EmbeddedDb::open_dir(dir.path()).unwrap();
    SqliteLeaseStore::new(db, Arc::new(clock.clone()), SKEW).unwrap()
}

fn project(p: &str) -> ProjectKey {
    ProjectKey::parse(p).unwrap()
}

#[tokio::test]
async fn sessions_leases_and_job_records_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let p = project("alpha");
    let ttl = Duration::from_secs(60);
    let (session, lease, record) = {
        let s = open(&dir, &clock);
        let session = s.open_session("owner-a", ttl).await.unwrap();
        let lease = s.acquire(&p, &session).await.unwrap();
        let mut record = job(&lease, "item-1", clock.now().millis());
        record.state = JobState::Running;
        s.record(&lease, &record).await.unwrap();
        (session, lease, record)
    };
    let s = open(&dir, &clock);
    let b = s.open_session("owner-b", ttl).await.unwrap();
    assert!(matches!(
        s.acquire(&p, &b).await,
        Err(LeaseError::Held { ref holder, fence, .. }) if holder == "owner-a" && fence == lease.fence
    ));
    assert_eq!(
        s.job(&p, &ItemId::parse("item-1").unwrap()).await.unwrap(),
        Some(record)
    );
    let view = s.get(&p).await.unwrap().unwrap();
    assert_eq!(view.current_item, Some(ItemId::parse("item-1").unwrap()));
    let renewed = s.renew_session(&session, ttl).await.unwrap();
    assert_eq!(renewed.id, session.id);
}

/// Many contenders in two "processes" (separate connections on one file) race for one
/// project: at every moment at most one holds it and fences never repeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_race_for_one_project() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let stores = [open(&dir, &clock), open(&dir, &clock)];
    let holder: Arc<Mutex<Option<String>>> = Arc::default();
    let fences: Arc<Mutex<Vec<Fence>>> = Arc::default();
    let mut tasks = Vec::new();
    for n in 0..6 {
        let s = stores[n % 2].clone();
        let holder = holder.clone();
        let fences = fences.clone();
        tasks.push(tokio::spawn(async move {
            let me = format!("owner-{n}");
            let session = s.open_session(&me, Duration::from_secs(600)).await.unwrap();
            let mut wins = 0;
            while wins < 5 {
                match s.acquire(&project("alpha"), &session).await {
                    Ok(lease) => {
                        {
                            let mut h = holder.lock().unwrap();
                            assert!(h.is_none(), "{me} acquired while {h:?} holds it");
                            *h = Some(me.clone());
                        }
                        fences.lock().unwrap().push(lease.fence);
                        tokio::task::yield_now().await;
                        *holder.lock().unwrap() = None;
                        s.release(&lease).await.unwrap();
                        wins += 1;
                    }
                    Err(LeaseError::Held { .. }) => tokio::task::yield_now().await,
                    Err(e) => panic!("{e}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut fences = fences.lock().unwrap().clone();
    assert_eq!(fences.len(), 30);
    let sorted = {
        let mut f = fences.clone();
        f.sort();
        f.dedup();
        f
    };
    assert_eq!(sorted.len(), 30, "fences are never reused");
    fences.sort();
    assert_eq!(fences.first(), Some(&Fence(1)));
    assert_eq!(fences.last(), Some(&Fence(30)));
}

/// The consumers' stores of one schedule: one SQLite file, one store per consumer clock.
fn embedded_world(dir: &TempDir, offsets: &[u64]) -> lease_schedule::World {
    let clocks = lease_schedule::clocks(1_000_000, offsets);
    let stores = clocks
        .iter()
        .map(|c| {
            let db = EmbeddedDb::open_dir(dir.path()).unwrap();
            let skew = Duration::from_millis(lease_schedule::SKEW_MS);
            Arc::new(SqliteLeaseStore::new(db, Arc::new(c.clone()), skew).unwrap())
                as Arc<dyn LeaseStore>
        })
        .collect();
    lease_schedule::World {
        stores,
        clocks,
        prefix: String::new(),
    }
}

use super::lease_schedule;

#[tokio::test]
async fn a_takeover_waits_out_the_skew_window() {
    let dir = tempfile::tempdir().unwrap();
    let (offsets, ops) = lease_schedule::skew_window();
    lease_schedule::run(embedded_world(&dir, &offsets), ops).await;
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn sessions_keep_one_believed_holder_per_project_and_fences_safe(
        offsets in lease_schedule::offsets(),
        ops in proptest::collection::vec(lease_schedule::op(), 1..80),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        rt.block_on(lease_schedule::run(embedded_world(&dir, &offsets), ops));
    }
}
