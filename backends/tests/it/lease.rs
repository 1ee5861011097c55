//! The embedded lease store: the contract suite, restart survival, two processes on one
//! file, and a state-machine property test against an in-memory model.

use async_trait::async_trait;
use kiro_backends::embedded::{EmbeddedDb, SqliteLeaseStore};
use kiro_backends::testing::contract::lease::{LeaseHarness, job};
use kiro_protocol::{
    Clock, Fence, ItemId, JobRecord, JobState, Lease, LeaseError, LeaseStore, ManualClock,
    ProjectKey, Timestamp,
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
async fn leases_and_job_records_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let p = project("alpha");
    let (lease, record) = {
        let s = open(&dir, &clock);
        let lease = s
            .acquire(&p, "owner-a", Duration::from_secs(60))
            .await
            .unwrap();
        let mut record = job(&lease, "item-1", clock.now().millis());
        record.state = JobState::Running;
        s.record(&lease, &record).await.unwrap();
        (lease, record)
    };
    let s = open(&dir, &clock);
    assert!(matches!(
        s.acquire(&p, "owner-b", Duration::from_secs(60)).await,
        Err(LeaseError::Held { ref holder, fence, .. }) if holder == "owner-a" && fence == lease.fence
    ));
    assert_eq!(
        s.job(&p, &ItemId::parse("item-1").unwrap()).await.unwrap(),
        Some(record)
    );
    let view = s.get(&p).await.unwrap().unwrap();
    assert_eq!(view.current_item, Some(ItemId::parse("item-1").unwrap()));
    let renewed = s.renew(&lease, Duration::from_secs(60)).await.unwrap();
    assert_eq!(renewed.fence, lease.fence);
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
            let mut wins = 0;
            while wins < 5 {
                match s
                    .acquire(&project("alpha"), &me, Duration::from_secs(600))
                    .await
                {
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

// ---------------------------------------------------------------------------------------
// State-machine property test
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Acquire { owner: usize, ttl: u64 },
    Renew { owner: usize, ttl: u64, stale: bool },
    Release { owner: usize, stale: bool },
    Record { owner: usize, stale: bool },
    Advance { secs: u64 },
}

const OWNERS: usize = 3;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..OWNERS, 1u64..20).prop_map(|(owner, ttl)| Op::Acquire { owner, ttl }),
        2 => (0..OWNERS, 1u64..20, any::<bool>())
            .prop_map(|(owner, ttl, stale)| Op::Renew { owner, ttl, stale }),
        1 => (0..OWNERS, any::<bool>()).prop_map(|(owner, stale)| Op::Release { owner, stale }),
        2 => (0..OWNERS, any::<bool>()).prop_map(|(owner, stale)| Op::Record { owner, stale }),
        3 => (0u64..15).prop_map(|secs| Op::Advance { secs }),
    ]
}

/// The lease row as the model knows it.
#[derive(Debug, Clone)]
struct Row {
    owner: Option<String>,
    fence: Fence,
    expires_at: Timestamp,
}

async fn run_lease_ops(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let s = open(&dir, &clock);
    let p = project("alpha");
    let item = ItemId::parse("item").unwrap();
    let mut row: Option<Row> = None;
    // The lease each owner last obtained (possibly stale); None after its release.
    let mut hands: Vec<Option<Lease>> = vec![None; OWNERS];
    // The lease an owner had before its current one (kept to try stale writes with).
    let mut old: Vec<Option<Lease>> = vec![None; OWNERS];
    // The lease to write with: the one in hand, or (when `stale`, or none is in hand)
    // the previous one.
    let pick = |hands: &[Option<Lease>], old: &[Option<Lease>], owner: usize, stale: bool| {
        if stale {
            old[owner].clone().or_else(|| hands[owner].clone())
        } else {
            hands[owner].clone().or_else(|| old[owner].clone())
        }
    };
    let mut last_fence = Fence(0);
    let mut last_record: Option<JobRecord> = None;
    let mut writes = 0i64;
    for op in ops {
        let now = clock.now();
        let current = |row: &Option<Row>, l: &Lease| {
            row.as_ref()
                .is_some_and(|r| r.fence == l.fence && r.owner.as_deref() == Some(l.owner.as_str()))
        };
        match op {
            Op::Acquire { owner, ttl } => {
                let name = format!("o{owner}");
                let res = s.acquire(&p, &name, Duration::from_secs(ttl)).await;
                let free = match &row {
                    None => true,
                    Some(r) => r.owner.is_none() || r.expires_at.plus(SKEW) <= now,
                };
                if free {
                    let lease = res.unwrap();
                    assert!(lease.fence > last_fence, "fences strictly increase");
                    assert_eq!(
                        lease.fence.0,
                        row.as_ref().map_or(1, |r| r.fence.0 + 1),
                        "acquire bumps by one"
                    );
                    last_fence = lease.fence;
                    row = Some(Row {
                        owner: Some(name),
                        fence: lease.fence,
                        expires_at: lease.expires_at,
                    });
                    if let Some(prev) = hands[owner].replace(lease) {
                        old[owner] = Some(prev);
                    }
                } else {
                    let r = row.as_ref().unwrap();
                    match res {
                        Err(LeaseError::Held {
                            holder,
                            fence,
                            expires_at,
                            ..
                        }) => {
                            assert_eq!(Some(holder), r.owner.clone());
                            assert_eq!((fence, expires_at), (r.fence, r.expires_at));
                        }
                        other => panic!("expected Held, got {other:?}"),
                    }
                }
            }
            Op::Renew { owner, ttl, stale } => {
                let Some(l) = pick(&hands, &old, owner, stale) else {
                    continue;
                };
                let res = s.renew(&l, Duration::from_secs(ttl)).await;
                if current(&row, &l) {
                    let renewed = res.unwrap();
                    assert_eq!(renewed.expires_at, now.plus(Duration::from_secs(ttl)));
                    if let Some(r) = row.as_mut() {
                        r.expires_at = renewed.expires_at;
                    }
                    hands[owner] = Some(renewed);
                } else {
                    assert!(matches!(res, Err(LeaseError::FenceLost { .. })), "{res:?}");
                }
            }
            Op::Release { owner, stale } => {
                let Some(l) = pick(&hands, &old, owner, stale) else {
                    continue;
                };
                let res = s.release(&l).await;
                if current(&row, &l) {
                    res.unwrap();
                    if let Some(r) = row.as_mut() {
                        r.owner = None;
                        r.expires_at = now;
                    }
                    old[owner] = hands[owner].take();
                } else {
                    assert!(matches!(res, Err(LeaseError::FenceLost { .. })), "{res:?}");
                }
            }
            Op::Record { owner, stale } => {
                let Some(l) = pick(&hands, &old, owner, stale) else {
                    continue;
                };
                writes += 1;
                let mut record = job(&l, "item", writes);
                record.attempts = u32::try_from(writes).unwrap();
                let res = s.record(&l, &record).await;
                if current(&row, &l) {
                    res.unwrap();
                    last_record = Some(record);
                } else {
                    assert!(matches!(res, Err(LeaseError::FenceLost { .. })), "{res:?}");
                }
                assert_eq!(
                    s.job(&p, &item).await.unwrap(),
                    last_record,
                    "a stale fence never writes"
                );
            }
            Op::Advance { secs } => clock.advance(Duration::from_secs(secs)),
        }
        // The store agrees with the model.
        let view = s.get(&p).await.unwrap();
        match (&view, &row) {
            (None, None) => {}
            (Some(v), Some(r)) => {
                assert_eq!(
                    (&v.owner, v.fence, v.expires_at),
                    (&r.owner, r.fence, r.expires_at)
                );
            }
            other => panic!("store and model disagree: {other:?}"),
        }
        // At most one owner holds a lease that is current and unexpired.
        let now = clock.now();
        let live = hands
            .iter()
            .flatten()
            .filter(|l| l.expires_at > now && current(&row, l))
            .count();
        assert!(live <= 1, "{live} owners hold an unexpired current lease");
        // And no stale lease in hand is unexpired while another owner holds it.
        let unexpired = hands
            .iter()
            .flatten()
            .filter(|l| l.expires_at > now)
            .count();
        assert!(
            unexpired <= 1,
            "{unexpired} owners think they hold the lease"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn leases_match_the_fencing_model(ops in proptest::collection::vec(op(), 1..60)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run_lease_ops(ops));
    }
}
