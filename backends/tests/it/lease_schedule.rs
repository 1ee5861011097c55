//! The session/fence property, run on both lease stores (embedded here via `lease.rs`,
//! DynamoDB on moto via `aws/dynamo.rs`): random schedules of open / renew-session /
//! acquire / record (current or stale fence) / handoff / crash / end / time passing, by
//! consumers whose clocks disagree by up to the skew bound.
//!
//! Each consumer has its own store instance (same database or table) reading its own
//! clock: real time plus a fixed offset in `[0, skew]`, so any two clocks differ by at
//! most the skew bound. A consumer *believes* it holds a project while it has that
//! project's lease in hand and its own clock is before its session's confirmed expiry —
//! what the engine's `safe_until` allows (the engine is stricter by a margin).
//!
//! Checked after every step:
//! - at most one consumer believes it holds a project, and that consumer's fence is the
//!   project's current fence with its session as the owner (as the store shows it);
//! - fences of a project strictly increase (and bump by one per acquire);
//! - a write (record, release) with a fence that is not current always fails and changes
//!   nothing; one with the current fence succeeds;
//! - the store's lease rows match the model's.

use kiro_backends::testing::contract::lease::job;
use kiro_protocol::{
    Clock, Fence, ItemId, JobRecord, JobState, Lease, LeaseError, LeaseStore, ManualClock,
    ProjectKey, Session, Timestamp,
};
use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Consumers in a schedule.
pub const CONSUMERS: usize = 3;
/// Projects in a schedule.
pub const PROJECTS: usize = 2;
/// The skew bound the stores are built with (milliseconds).
pub const SKEW_MS: u64 = 2_000;
/// Session duration (milliseconds).
pub const TTL_MS: u64 = 10_000;

#[derive(Debug, Clone)]
pub enum Op {
    /// Open a new session (when the consumer has none).
    Open {
        c: usize,
    },
    /// The heartbeat: one renewal of the consumer's session.
    Renew {
        c: usize,
    },
    Acquire {
        c: usize,
        p: usize,
    },
    /// Record a job under the lease in hand (`stale`: under an older lease of the
    /// consumer for that project).
    Record {
        c: usize,
        p: usize,
        stale: bool,
    },
    /// Drain one project: record `handoff`, release the lease.
    Handoff {
        c: usize,
        p: usize,
    },
    /// Hand everything off and end the session (a graceful stop).
    End {
        c: usize,
    },
    /// The process dies: session and leases forgotten, nothing released.
    Crash {
        c: usize,
    },
    /// Real time passes.
    Advance {
        ms: u64,
    },
}

pub fn op() -> impl Strategy<Value = Op> {
    let c = 0..CONSUMERS;
    let p = 0..PROJECTS;
    prop_oneof![
        2 => c.clone().prop_map(|c| Op::Open { c }),
        4 => c.clone().prop_map(|c| Op::Renew { c }),
        4 => (c.clone(), p.clone()).prop_map(|(c, p)| Op::Acquire { c, p }),
        3 => (c.clone(), p.clone(), any::<bool>())
            .prop_map(|(c, p, stale)| Op::Record { c, p, stale }),
        1 => (c.clone(), p.clone()).prop_map(|(c, p)| Op::Handoff { c, p }),
        1 => c.clone().prop_map(|c| Op::End { c }),
        1 => c.prop_map(|c| Op::Crash { c }),
        // Long steps let sessions lapse; short ones land inside the skew window, where
        // a lagging clock still trusts a session a leading clock sees expired.
        3 => (0..TTL_MS).prop_map(|ms| Op::Advance { ms }),
        3 => (0..SKEW_MS).prop_map(|ms| Op::Advance { ms }),
    ]
}

/// Per consumer clock offsets in `[0, SKEW_MS]`, often at the ends (the widest window in
/// which one clock sees a session expired that another still trusts).
pub fn offsets() -> impl Strategy<Value = Vec<u64>> {
    let offset = prop_oneof![Just(0), Just(SKEW_MS), 0..=SKEW_MS];
    proptest::collection::vec(offset, CONSUMERS)
}

/// A fixed schedule through the skew window: consumer 0's clock lags consumer 1's by the
/// whole bound; consumer 1 tries to take consumer 0's project when, by its own clock, the
/// session expired but the skew bound has not passed (refused: consumer 0 still trusts
/// it), then again once it has (taken, and consumer 0's next renewal is refused).
pub fn skew_window() -> (Vec<u64>, Vec<Op>) {
    let offsets = vec![0, SKEW_MS, 0];
    let ops = vec![
        Op::Open { c: 0 },
        Op::Acquire { c: 0, p: 0 },
        Op::Advance {
            ms: TTL_MS - SKEW_MS / 2,
        },
        Op::Open { c: 1 },
        Op::Acquire { c: 1, p: 0 },
        Op::Record {
            c: 0,
            p: 0,
            stale: false,
        },
        Op::Advance { ms: SKEW_MS },
        Op::Acquire { c: 1, p: 0 },
        Op::Record {
            c: 0,
            p: 0,
            stale: true,
        },
        Op::Record {
            c: 1,
            p: 0,
            stale: false,
        },
        Op::Renew { c: 0 },
        Op::Acquire { c: 0, p: 1 },
    ];
    (offsets, ops)
}

/// One consumer as the model sees it.
#[derive(Debug, Default)]
struct Consumer {
    session: Option<Session>,
    /// Sessions opened so far (ids are never reused).
    opened: usize,
    held: HashMap<usize, Lease>,
    /// Leases this consumer held before, per project (for stale writes).
    old: HashMap<usize, Lease>,
}

/// A consumer's stores and clocks: `stores[c]` reads `clocks[c]`.
pub struct World {
    pub stores: Vec<Arc<dyn LeaseStore>>,
    pub clocks: Vec<ManualClock>,
    /// Prefix of the ids used (keeps runs apart on one table).
    pub prefix: String,
}

/// The clocks of a world: real time `start` plus each consumer's offset.
pub fn clocks(start: i64, offsets: &[u64]) -> Vec<ManualClock> {
    offsets
        .iter()
        .map(|o| ManualClock::new(Timestamp(start + i64::try_from(*o).unwrap_or(0))))
        .collect()
}

fn lost(r: &Result<impl std::fmt::Debug, LeaseError>) -> bool {
    matches!(r, Err(LeaseError::FenceLost { .. }))
}

/// Run one schedule against `world`; panics naming the broken property.
pub async fn run(world: World, ops: Vec<Op>) {
    let World {
        stores,
        clocks,
        prefix,
    } = world;
    let ttl = Duration::from_millis(TTL_MS);
    let projects: Vec<ProjectKey> = (0..PROJECTS)
        .map(|p| ProjectKey::parse(&format!("{prefix}p{p}")).unwrap())
        .collect();
    let item = ItemId::parse("item").unwrap();
    let mut cs: Vec<Consumer> = (0..CONSUMERS).map(|_| Consumer::default()).collect();
    // The model of each lease row: (owner, fence); None before the first acquire.
    let mut rows: Vec<Option<(Option<String>, Fence)>> = vec![None; PROJECTS];
    let mut records: Vec<Option<JobRecord>> = vec![None; PROJECTS];
    let mut writes = 0i64;
    let current = |rows: &[Option<(Option<String>, Fence)>], p: usize, l: &Lease| {
        rows[p]
            .as_ref()
            .is_some_and(|(o, f)| *f == l.fence && o.as_deref() == Some(l.owner.as_str()))
    };
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Open { c } => {
                if cs[c].session.is_none() {
                    let id = format!("{prefix}c{c}-{}", cs[c].opened);
                    cs[c].opened += 1;
                    cs[c].session = Some(stores[c].open_session(&id, ttl).await.unwrap());
                }
            }
            Op::Renew { c } => {
                let Some(s) = cs[c].session.clone() else {
                    continue;
                };
                match stores[c].renew_session(&s, ttl).await {
                    Ok(s) => cs[c].session = Some(s),
                    Err(LeaseError::SessionLost { .. }) => {
                        // The engine cancels every job of a lost session.
                        let held: Vec<_> = cs[c].held.drain().collect();
                        cs[c].old.extend(held);
                        cs[c].session = None;
                    }
                    Err(e) => panic!("step {step}: renew: {e}"),
                }
            }
            Op::Acquire { c, p } => {
                let Some(s) = cs[c].session.clone() else {
                    continue;
                };
                if cs[c].held.contains_key(&p) {
                    continue;
                }
                match stores[c].acquire(&projects[p], &s).await {
                    Ok(l) => {
                        let before = rows[p].as_ref().map_or(Fence(0), |r| r.1);
                        assert_eq!(
                            l.fence.0,
                            before.0 + 1,
                            "step {step}: fences strictly increase, by one per acquire"
                        );
                        assert_eq!(l.owner, s.id);
                        rows[p] = Some((Some(s.id.clone()), l.fence));
                        cs[c].held.insert(p, l);
                    }
                    Err(LeaseError::Held { holder, fence, .. }) => {
                        let row = rows[p].as_ref().expect("held implies a row");
                        assert_eq!(
                            (Some(holder), fence),
                            row.clone(),
                            "step {step}: Held names the row's holder"
                        );
                    }
                    Err(e) => panic!("step {step}: acquire: {e}"),
                }
            }
            Op::Record { c, p, stale } => {
                let lease = if stale {
                    cs[c].old.get(&p).or_else(|| cs[c].held.get(&p))
                } else {
                    cs[c].held.get(&p).or_else(|| cs[c].old.get(&p))
                };
                let Some(lease) = lease.cloned() else {
                    continue;
                };
                writes += 1;
                let mut record = job(&lease, "item", writes);
                record.attempts = u32::try_from(writes).unwrap();
                let res = stores[c].record(&lease, &record).await;
                if current(&rows, p, &lease) {
                    res.unwrap_or_else(|e| panic!("step {step}: a current fence writes: {e}"));
                    records[p] = Some(record);
                } else {
                    assert!(
                        lost(&res),
                        "step {step}: a stale fence never writes: {res:?}"
                    );
                }
                assert_eq!(
                    stores[c].job(&projects[p], &item).await.unwrap(),
                    records[p],
                    "step {step}: the record is the last one written under a current fence"
                );
            }
            Op::Handoff { c, p } => {
                if let Some(l) = cs[c].held.remove(&p) {
                    hand_off(&*stores[c], &clocks[c], &l, &rows, p, step).await;
                    if current(&rows, p, &l) {
                        rows[p] = Some((None, l.fence));
                    }
                    cs[c].old.insert(p, l);
                }
            }
            Op::End { c } => {
                let held: Vec<_> = cs[c].held.drain().collect();
                for (p, l) in held {
                    hand_off(&*stores[c], &clocks[c], &l, &rows, p, step).await;
                    if current(&rows, p, &l) {
                        rows[p] = Some((None, l.fence));
                    }
                    cs[c].old.insert(p, l);
                }
                if let Some(s) = cs[c].session.take() {
                    stores[c].end_session(&s).await.unwrap();
                }
            }
            Op::Crash { c } => {
                let held: Vec<_> = cs[c].held.drain().collect();
                cs[c].old.extend(held);
                cs[c].session = None;
            }
            Op::Advance { ms } => {
                for clock in &clocks {
                    clock.advance(Duration::from_millis(ms));
                }
            }
        }
        // The store's rows match the model.
        for (p, key) in projects.iter().enumerate() {
            let view = stores[0].get(key).await.unwrap();
            let seen = view.map(|v| (v.owner, v.fence));
            assert_eq!(seen, rows[p], "step {step}: the lease row of {key}");
        }
        // At most one consumer believes it holds a project, and its fence is current.
        for (p, key) in projects.iter().enumerate() {
            let believers: Vec<usize> = (0..CONSUMERS)
                .filter(|&c| {
                    let now = clocks[c].now();
                    cs[c].held.contains_key(&p)
                        && cs[c].session.as_ref().is_some_and(|s| now < s.expires_at)
                })
                .collect();
            assert!(
                believers.len() <= 1,
                "step {step}: consumers {believers:?} all believe they hold {key}"
            );
            if let Some(&c) = believers.first() {
                assert!(
                    current(&rows, p, &cs[c].held[&p]),
                    "step {step}: consumer {c} believes it holds {key} but its fence is not current"
                );
            }
        }
    }
}

/// Record `handoff` under `l` and release it: both succeed exactly when `l` is current.
async fn hand_off(
    store: &dyn LeaseStore,
    clock: &ManualClock,
    l: &Lease,
    rows: &[Option<(Option<String>, Fence)>],
    p: usize,
    step: usize,
) {
    let is_current = rows[p]
        .as_ref()
        .is_some_and(|(o, f)| *f == l.fence && o.as_deref() == Some(l.owner.as_str()));
    let mut record = job(l, "handoff", clock.now().millis());
    record.state = JobState::Handoff;
    let recorded = store.record(l, &record).await;
    let released = store.release(l).await;
    if is_current {
        recorded.unwrap_or_else(|e| panic!("step {step}: handoff record: {e}"));
        released.unwrap_or_else(|e| panic!("step {step}: handoff release: {e}"));
    } else {
        assert!(
            lost(&recorded),
            "step {step}: stale handoff record: {recorded:?}"
        );
        assert!(lost(&released), "step {step}: stale release: {released:?}");
    }
}
