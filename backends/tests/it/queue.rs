//! The embedded FIFO queue: the contract suite, restart survival, two processes on one
//! file, and a state-machine property test against an in-memory model.

use async_trait::async_trait;
use kiro_backends::embedded::{EmbeddedDb, QueueConfig, SqliteQueue};
use kiro_backends::testing::contract::queue::{self as contract, QueueHarness, message};
use kiro_protocol::ids::MessageGroup;
use kiro_protocol::{
    Clock, Delivery, FailureClass, ManualClock, MessageId, Receipt, Timestamp, WorkQueue,
};
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tempfile::TempDir;

/// Fresh queues in fresh temporary directories, all on one manual clock.
#[derive(Debug)]
struct Embedded {
    clock: ManualClock,
    config: QueueConfig,
    dirs: Mutex<Vec<TempDir>>,
}

impl Embedded {
    fn new() -> Self {
        Embedded {
            clock: ManualClock::default(),
            config: QueueConfig::default(),
            dirs: Mutex::new(Vec::new()),
        }
    }
}

#[async_trait]
impl QueueHarness for Embedded {
    async fn queue(&self) -> Arc<dyn WorkQueue> {
        let dir = tempfile::tempdir().unwrap();
        let db = EmbeddedDb::open_dir(dir.path()).unwrap();
        self.dirs.lock().unwrap().push(dir);
        Arc::new(SqliteQueue::new(db, Arc::new(self.clock.clone()), self.config).unwrap())
    }

    async fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }

    fn visibility_timeout(&self) -> Duration {
        self.config.visibility_timeout
    }

    fn dedup_window(&self) -> Duration {
        self.config.dedup_window
    }
}

mod contract_suite {
    use super::*;

    kiro_backends::queue_contract!(Embedded::new());
}

fn open(dir: &TempDir, clock: &ManualClock) -> SqliteQueue {
    let db = EmbeddedDb::open_dir(dir.path()).unwrap();
    SqliteQueue::new(db, Arc::new(clock.clone()), QueueConfig::default()).unwrap()
}

fn bodies(ds: &[Delivery]) -> Vec<&str> {
    ds.iter().map(|d| d.body.as_str()).collect()
}

#[tokio::test]
async fn messages_in_flight_state_dedup_and_dead_letters_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let (b1, dup_id) = {
        let q = open(&dir, &clock);
        q.send(message("alpha", "a1", "a1")).await.unwrap();
        q.send(message("alpha", "a2", "a2")).await.unwrap();
        let first_b = q.send(message("beta", "b1", "b1")).await.unwrap();
        q.send(message("gamma", "g1", "g1")).await.unwrap();
        let got = q.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(bodies(&got), ["a1", "b1", "g1"]);
        let g1 = got.iter().find(|d| d.body == "g1").unwrap();
        q.dead_letter(g1, &contract::letter(FailureClass::TestsFailed, "red"))
            .await
            .unwrap();
        let b1 = got.iter().find(|d| d.body == "b1").unwrap().clone();
        (b1, first_b.message_id)
    };
    // The process is gone; a new one opens the same file.
    let q = open(&dir, &clock);
    assert!(
        q.receive(10, Duration::ZERO).await.unwrap().is_empty(),
        "a1 and b1 are still in flight after the restart"
    );
    let dup = q.send(message("beta", "b1", "b1 again")).await.unwrap();
    assert!(dup.duplicate);
    assert_eq!(dup.message_id, dup_id);
    let dlq = q.dlq_list(10).await.unwrap().entries;
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].letter.reason, "red");
    // A receipt issued before the restart is still current.
    q.ack(&b1.receipt).await.unwrap();
    clock.advance(Duration::from_secs(31));
    let again = q.receive(10, Duration::ZERO).await.unwrap();
    assert_eq!(bodies(&again), ["a1"]);
    assert_eq!(again[0].receive_count, 2);
    let depth = q.depth().await.unwrap();
    assert_eq!(
        (depth.visible, depth.in_flight, depth.dead_letters),
        (1, 1, 1)
    );
}

/// Two queue handles with their own connections on one file behave like two consumer
/// processes: a group's messages are never in flight twice, order holds per group,
/// and every message is delivered exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_never_deliver_one_group_concurrently() {
    const GROUPS: usize = 12;
    const PER_GROUP: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let producer = open(&dir, &clock);
    for n in 0..PER_GROUP {
        for g in 0..GROUPS {
            let body = format!("g{g}-{n}");
            producer
                .send(message(&format!("g{g}"), &body, &body))
                .await
                .unwrap();
        }
    }
    let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
    let seen: Arc<Mutex<BTreeMap<String, Vec<String>>>> = Arc::default();
    let mut workers = Vec::new();
    for _ in 0..2 {
        let q = open(&dir, &clock);
        let in_flight = in_flight.clone();
        let seen = seen.clone();
        workers.push(tokio::spawn(async move {
            let mut idle = 0;
            while idle < 20 {
                let got = q.receive(3, Duration::ZERO).await.unwrap();
                if got.is_empty() {
                    idle += 1;
                    tokio::task::yield_now().await;
                    continue;
                }
                idle = 0;
                for d in &got {
                    assert!(
                        in_flight.lock().unwrap().insert(d.group.to_string()),
                        "group {} delivered while in flight",
                        d.group
                    );
                    seen.lock()
                        .unwrap()
                        .entry(d.group.to_string())
                        .or_default()
                        .push(d.body.clone());
                }
                tokio::task::yield_now().await;
                for d in got {
                    in_flight.lock().unwrap().remove(d.group.as_str());
                    q.ack(&d.receipt).await.unwrap();
                }
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), GROUPS);
    for (g, got) in seen.iter() {
        let want: Vec<String> = (0..PER_GROUP).map(|n| format!("{g}-{n}")).collect();
        assert_eq!(got, &want, "group {g} in order, each once");
    }
    assert!(producer.depth().await.unwrap().is_idle());
}

#[tokio::test]
async fn ten_thousand_messages_over_a_thousand_groups_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let q = open(&dir, &clock);
    for n in 0..10 {
        for g in 0..1000 {
            let body = format!("{g}:{n}");
            q.send(message(&format!("g{g}"), &body, &body))
                .await
                .unwrap();
        }
    }
    let started = std::time::Instant::now();
    let mut next: HashMap<String, usize> = HashMap::new();
    let mut receives = 0usize;
    let mut done = 0usize;
    while done < 10_000 {
        let got = q.receive(10, Duration::ZERO).await.unwrap();
        receives += 1;
        assert!(!got.is_empty(), "messages remain, so some group is free");
        for d in got {
            let n: usize = d.body.split(':').nth(1).unwrap().parse().unwrap();
            let want = next.entry(d.group.to_string()).or_default();
            assert_eq!(n, *want, "group {} in order", d.group);
            *want += 1;
            q.ack(&d.receipt).await.unwrap();
            done += 1;
        }
    }
    eprintln!(
        "10,000 messages / 1,000 groups: {receives} receives + 10,000 acks in {:?}",
        started.elapsed()
    );
    assert!(q.depth().await.unwrap().is_idle());
}

// ---------------------------------------------------------------------------------------
// State-machine property test
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Send { group: u8, dedup: u8 },
    Receive { max: usize },
    Ack { pick: usize },
    Release { pick: usize, delay_secs: u64 },
    Extend { pick: usize, secs: u64 },
    Advance { secs: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..3, 0u8..8).prop_map(|(group, dedup)| Op::Send { group, dedup }),
        4 => (1usize..4).prop_map(|max| Op::Receive { max }),
        3 => any::<usize>().prop_map(|pick| Op::Ack { pick }),
        1 => (any::<usize>(), 0u64..40).prop_map(|(pick, delay_secs)| Op::Release { pick, delay_secs }),
        1 => (any::<usize>(), 0u64..90).prop_map(|(pick, secs)| Op::Extend { pick, secs }),
        2 => prop_oneof![0u64..40, 100u64..200].prop_map(|secs| Op::Advance { secs }),
    ]
}

/// One message as the model knows it.
#[derive(Debug, Clone)]
struct ModelMsg {
    id: MessageId,
    body: String,
    receipt: Option<Receipt>,
    visible_at: Timestamp,
    receive_count: u32,
}

#[derive(Debug, Default)]
struct Model {
    /// Per group, the undeleted messages in send order.
    groups: BTreeMap<String, Vec<ModelMsg>>,
    /// dedup id → (first message id, expiry).
    dedup: HashMap<String, (MessageId, Timestamp)>,
}

impl Model {
    fn find(&mut self, receipt: &Receipt) -> Option<(String, usize)> {
        self.groups.iter().find_map(|(g, msgs)| {
            msgs.iter()
                .position(|m| m.receipt.as_ref() == Some(receipt))
                .map(|i| (g.clone(), i))
        })
    }

    fn available_groups(&self, now: Timestamp) -> usize {
        self.groups
            .values()
            .filter(|m| m.first().is_some_and(|h| h.visible_at <= now))
            .count()
    }
}

async fn run_queue_ops(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let config = QueueConfig::default();
    let q = open(&dir, &clock);
    let vt = config.visibility_timeout;
    let mut model = Model::default();
    // Every delivery handed out so far (current or stale).
    let mut held: Vec<Delivery> = Vec::new();
    let mut first_deliveries: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut sent_order: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut counter = 0;
    for op in ops {
        let now = clock.now();
        match op {
            Op::Send { group, dedup } => {
                counter += 1;
                let (g, dd, body) = (
                    format!("g{group}"),
                    format!("d{dedup}"),
                    format!("m{counter}"),
                );
                let out = q.send(message(&g, &dd, &body)).await.unwrap();
                match model.dedup.get(&dd) {
                    Some((first, exp)) if *exp > now => {
                        assert!(out.duplicate, "{dd} was sent within the window");
                        assert_eq!(&out.message_id, first);
                    }
                    _ => {
                        assert!(!out.duplicate, "{dd} is not in the window");
                        model
                            .dedup
                            .insert(dd, (out.message_id.clone(), now.plus(config.dedup_window)));
                        model.groups.entry(g.clone()).or_default().push(ModelMsg {
                            id: out.message_id,
                            body: body.clone(),
                            receipt: None,
                            visible_at: now,
                            receive_count: 0,
                        });
                        sent_order.entry(g).or_default().push(body);
                    }
                }
            }
            Op::Receive { max } => {
                let got = q.receive(max, Duration::ZERO).await.unwrap();
                let expected = model.available_groups(now).min(max);
                assert_eq!(got.len(), expected, "one message per available group");
                let mut groups_seen = HashSet::new();
                for d in got {
                    assert!(
                        groups_seen.insert(d.group.to_string()),
                        "one per group per receive"
                    );
                    let head = model
                        .groups
                        .get_mut(d.group.as_str())
                        .and_then(|m| m.first_mut())
                        .expect("a delivered group has messages");
                    assert_eq!(d.message_id, head.id, "only the group's head is delivered");
                    assert!(head.visible_at <= now, "the head was not in flight");
                    assert_eq!(d.body, head.body);
                    head.receive_count += 1;
                    assert_eq!(d.receive_count, head.receive_count);
                    assert_ne!(Some(&d.receipt), head.receipt.as_ref());
                    head.receipt = Some(d.receipt.clone());
                    head.visible_at = now.plus(vt);
                    assert_eq!(d.visible_again_at, head.visible_at);
                    if d.receive_count == 1 {
                        first_deliveries
                            .entry(d.group.to_string())
                            .or_default()
                            .push(d.body.clone());
                    }
                    held.push(d);
                }
            }
            Op::Ack { pick } => {
                if held.is_empty() {
                    continue;
                }
                let d = held[pick % held.len()].clone();
                let res = q.ack(&d.receipt).await;
                match model.find(&d.receipt) {
                    Some((g, i)) => {
                        res.unwrap();
                        model.groups.get_mut(&g).unwrap().remove(i);
                    }
                    None => assert_eq!(res.unwrap_err().class, FailureClass::FenceLost),
                }
            }
            Op::Release { pick, delay_secs } => {
                if held.is_empty() {
                    continue;
                }
                let d = held[pick % held.len()].clone();
                let res = q.release(&d.receipt, Duration::from_secs(delay_secs)).await;
                match model.find(&d.receipt) {
                    Some((g, i)) => {
                        res.unwrap();
                        let m = &mut model.groups.get_mut(&g).unwrap()[i];
                        m.receipt = None;
                        m.visible_at = now.plus(Duration::from_secs(delay_secs));
                    }
                    None => assert_eq!(res.unwrap_err().class, FailureClass::FenceLost),
                }
            }
            Op::Extend { pick, secs } => {
                if held.is_empty() {
                    continue;
                }
                let d = held[pick % held.len()].clone();
                let res = q
                    .extend(std::slice::from_ref(&d.receipt), Duration::from_secs(secs))
                    .await
                    .unwrap()
                    .remove(0);
                match model.find(&d.receipt) {
                    Some((g, i)) => {
                        res.unwrap();
                        model.groups.get_mut(&g).unwrap()[i].visible_at =
                            now.plus(Duration::from_secs(secs));
                    }
                    None => assert_eq!(res.unwrap_err().class, FailureClass::FenceLost),
                }
            }
            Op::Advance { secs } => clock.advance(Duration::from_secs(secs)),
        }
        // Never two in-flight messages of one group: only a head may be invisible.
        for msgs in model.groups.values() {
            for m in msgs.iter().skip(1) {
                assert!(m.visible_at <= clock.now() && m.receipt.is_none());
            }
        }
        let depth = q.depth().await.unwrap();
        let total: usize = model.groups.values().map(Vec::len).sum();
        assert_eq!(
            depth.visible + depth.in_flight + depth.delayed,
            total as u64,
            "depth matches the model"
        );
    }
    // First deliveries of each group follow send order.
    for (g, firsts) in &first_deliveries {
        let sent = &sent_order[g];
        assert_eq!(firsts.as_slice(), &sent[..firsts.len()], "group {g}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn queue_matches_the_fifo_model(ops in proptest::collection::vec(op(), 1..60)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run_queue_ops(ops));
    }
}

/// Corrupt one column of the message whose body is `body`, as a hand edit, a bug in an
/// older version or a disk problem could.
fn corrupt(dir: &TempDir, body: &str, column: &str, value: rusqlite::types::Value) {
    let c = rusqlite::Connection::open(dir.path().join("kiro.db")).unwrap();
    let n = c
        .execute(
            &format!("UPDATE queue_messages SET {column} = ?1 WHERE body = ?2"),
            rusqlite::params![value, body],
        )
        .unwrap();
    assert_eq!(n, 1, "{body} not found");
}

/// One malformed row must not stall the queue: a receive quarantines it (dead-letters it
/// as permanent-input with a reason naming the message and the column) and goes on
/// delivering the other groups, and the row's raw content is kept in the DLQ.
#[tokio::test]
async fn a_malformed_row_is_quarantined_and_the_other_groups_go_on() {
    use rusqlite::types::Value;
    let cases: [(&str, Value); 6] = [
        ("grp", Value::Text("a b".into())),
        ("grp", Value::Text(String::new())),
        ("trace", Value::Text("{not json".into())),
        ("attributes", Value::Text("[1,2]".into())),
        ("attributes", Value::Integer(7)),
        ("body", Value::Blob(vec![0xff, 0xfe, 0x00])),
    ];
    for (column, value) in cases {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::default();
        let q = open(&dir, &clock);
        q.send(message("alpha", "a1", "a1")).await.unwrap();
        q.send(message("alpha", "a2", "a2")).await.unwrap();
        q.send(message("beta", "b1", "b1")).await.unwrap();
        corrupt(&dir, "a1", column, value.clone());
        let got = q.receive(10, Duration::ZERO).await.unwrap_or_else(|e| {
            panic!("receive failed with a malformed {column} ({value:?}): {e}")
        });
        let mut got = bodies(&got);
        got.sort_unstable();
        assert_eq!(
            got,
            ["a2", "b1"],
            "malformed {column}: the rest is delivered"
        );
        let dlq = q.dlq_list(10).await.unwrap().entries;
        assert_eq!(dlq.len(), 1, "malformed {column}: quarantined");
        assert_eq!(dlq[0].letter.class, FailureClass::PermanentInput);
        assert!(
            dlq[0].letter.reason.contains(column) && dlq[0].letter.reason.contains("malformed"),
            "the reason names the column: {}",
            dlq[0].letter.reason
        );
        if column == "grp" {
            // Listed (nothing lost) in a group that says so; the reason names the value.
            assert_eq!(dlq[0].group, MessageGroup::unreadable());
        } else {
            assert_eq!(dlq[0].group, "alpha");
        }
    }
}

/// One unreadable dead-letter record must not hide the others from `dlq list`: it is
/// listed with a letter naming what is wrong and the stored text kept.
#[tokio::test]
async fn an_unreadable_dead_letter_is_listed_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let q = open(&dir, &clock);
    q.send(message("alpha", "a1", "a1")).await.unwrap();
    q.send(message("beta", "b1", "b1")).await.unwrap();
    for d in q.receive(10, Duration::ZERO).await.unwrap() {
        q.dead_letter(&d, &contract::letter(FailureClass::TestsFailed, "red"))
            .await
            .unwrap();
    }
    let c = rusqlite::Connection::open(dir.path().join("kiro.db")).unwrap();
    c.execute(
        "UPDATE queue_dlq SET letter = 'oops' WHERE body = 'a1'",
        rusqlite::params![],
    )
    .unwrap();
    let dlq = q
        .dlq_list(10)
        .await
        .expect("one bad record must not fail the listing")
        .entries;
    assert_eq!(dlq.len(), 2);
    let bad = dlq.iter().find(|e| e.body == "a1").unwrap();
    assert_eq!(bad.letter.class, FailureClass::Internal);
    assert!(
        bad.letter.reason.contains("column `letter`") && bad.letter.reason.contains("oops"),
        "{}",
        bad.letter.reason
    );
    let good = dlq.iter().find(|e| e.body == "b1").unwrap();
    assert_eq!(good.letter.reason, "red");
}
