//! The `WorkQueue` contract suite: the SQS FIFO semantics every queue adapter must keep.
//!
//! Each check is a public async function taking only a [`QueueHarness`];
//! [`queue_contract!`](crate::queue_contract) makes one test of each. A check asks the
//! harness for a fresh, empty queue, so checks never see each other's messages, and it
//! moves time only through [`QueueHarness::advance`] (a manual clock for the embedded
//! queue, a real sleep against an emulator), in multiples of the harness's visibility
//! timeout.
//!
//! Invariant: the checks only use the port, never an adapter's internals, and they
//! panic with a message naming the broken rule (this module is a test suite compiled as
//! ordinary code so other crates' tests can call it).

use async_trait::async_trait;
use kiro_protocol::{
    DeadLetter, DeadLetterEntry, DedupId, Delivery, DlqSelection, FailureClass, MessageId,
    OutgoingMessage, PortError, ProjectKey, ReplayProgress, TraceContext, WorkQueue,
};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

/// What a queue adapter provides to run the suite.
#[async_trait]
pub trait QueueHarness: Send + Sync {
    /// A new, empty queue (every check calls this once).
    async fn queue(&self) -> Arc<dyn WorkQueue>;
    /// Let `d` pass for the queues of this harness (manual clock or real sleep).
    async fn advance(&self, d: Duration);
    /// The visibility timeout the queues apply on receive.
    fn visibility_timeout(&self) -> Duration;
    /// The deduplication window of the queues.
    fn dedup_window(&self) -> Duration {
        Duration::from_secs(5 * 60)
    }
    /// How long a receive waits (for a message that should be there, or to be sure
    /// nothing comes). Zero for the embedded queue; a second or two against an emulator.
    fn receive_wait(&self) -> Duration {
        Duration::ZERO
    }
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Unwrap a result in a check, naming the step on failure.
fn ok<T, E: Debug>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("contract: {what} failed: {e:?}"),
    }
}

/// Assert that a port call failed with `FenceLost`.
fn assert_fence_lost<T: Debug>(r: Result<T, PortError>, what: &str) {
    match r {
        Err(e) if e.class == FailureClass::FenceLost => {}
        other => panic!("contract: {what} should fail with fence-lost, got {other:?}"),
    }
}

/// A message with no trace context and no attributes.
pub fn message(group: &str, dedup: &str, body: &str) -> OutgoingMessage {
    OutgoingMessage {
        body: body.to_owned(),
        group: ok(ProjectKey::parse(group), "parse group"),
        dedup: DedupId::new(dedup),
        trace: TraceContext::default(),
        attributes: BTreeMap::new(),
    }
}

/// A dead letter with `class` and `reason`.
pub fn letter(class: FailureClass, reason: &str) -> DeadLetter {
    DeadLetter {
        reason: reason.to_owned(),
        class,
        attempts: Vec::new(),
        fence: None,
        build_id: None,
        trace: TraceContext::default(),
    }
}

async fn send(q: &dyn WorkQueue, group: &str, body: &str) {
    let out = ok(q.send(message(group, body, body)).await, "send");
    assert!(
        !out.duplicate,
        "contract: fresh dedup id {body} reported as duplicate"
    );
}

async fn recv(h: &dyn QueueHarness, q: &dyn WorkQueue, max: usize) -> Vec<Delivery> {
    ok(q.receive(max, h.receive_wait()).await, "receive")
}

/// Receive exactly one message and check its body.
async fn recv_one(h: &dyn QueueHarness, q: &dyn WorkQueue, body: &str) -> Delivery {
    let mut got = recv(h, q, 1).await;
    assert_eq!(
        got.iter().map(|d| d.body.as_str()).collect::<Vec<_>>(),
        [body],
        "contract: expected to receive {body}"
    );
    got.remove(0)
}

async fn recv_none(h: &dyn QueueHarness, q: &dyn WorkQueue, why: &str) {
    let got = recv(h, q, 10).await;
    assert!(
        got.is_empty(),
        "contract: nothing should be delivered ({why}), got {:?}",
        got.iter().map(|d| &d.body).collect::<Vec<_>>()
    );
}

async fn ack(q: &dyn WorkQueue, d: &Delivery) {
    ok(q.ack(&d.receipt).await, "ack");
}

fn all() -> DlqSelection {
    DlqSelection {
        all: true,
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------

/// Messages of one group are delivered in send order, one at a time.
pub async fn per_group_order(h: &dyn QueueHarness) {
    let q = h.queue().await;
    for b in ["order-1", "order-2", "order-3", "order-4"] {
        send(&*q, "alpha", b).await;
    }
    for b in ["order-1", "order-2", "order-3", "order-4"] {
        let d = recv_one(h, &*q, b).await;
        assert_eq!(d.group, "alpha");
        assert_eq!(d.receive_count, 1, "contract: first delivery counts 1");
        ack(&*q, &d).await;
    }
    recv_none(h, &*q, "queue drained").await;
}

/// While a message is in flight, nothing else of its group is delivered.
pub async fn group_blocked_while_in_flight(h: &dyn QueueHarness) {
    let q = h.queue().await;
    send(&*q, "alpha", "blocked-1").await;
    send(&*q, "alpha", "blocked-2").await;
    let d1 = recv_one(h, &*q, "blocked-1").await;
    recv_none(h, &*q, "blocked-1 is in flight").await;
    ack(&*q, &d1).await;
    let d2 = recv_one(h, &*q, "blocked-2").await;
    ack(&*q, &d2).await;
}

/// An in-flight message blocks only its own group.
pub async fn other_groups_not_blocked(h: &dyn QueueHarness) {
    let q = h.queue().await;
    send(&*q, "alpha", "a-1").await;
    send(&*q, "alpha", "a-2").await;
    send(&*q, "beta", "b-1").await;
    let a1 = recv_one(h, &*q, "a-1").await;
    let got = recv(h, &*q, 10).await;
    let bodies: Vec<_> = got.iter().map(|d| d.body.as_str()).collect();
    assert_eq!(
        bodies,
        ["b-1"],
        "contract: beta is free while alpha is blocked"
    );
    ack(&*q, &a1).await;
    ack(&*q, &got[0]).await;
    recv_one(h, &*q, "a-2").await;
}

/// When the visibility timeout lapses the message comes back: same id, higher receive
/// count, new receipt.
pub async fn visibility_expiry_redelivers(h: &dyn QueueHarness) {
    let q = h.queue().await;
    send(&*q, "alpha", "vis-1").await;
    send(&*q, "alpha", "vis-2").await;
    let first = recv_one(h, &*q, "vis-1").await;
    h.advance(h.visibility_timeout() + Duration::from_secs(1))
        .await;
    let second = recv_one(h, &*q, "vis-1").await;
    assert_eq!(second.message_id, first.message_id);
    assert_eq!(second.receive_count, first.receive_count + 1);
    assert_ne!(
        second.receipt, first.receipt,
        "contract: receipts differ per receive"
    );
    assert!(second.visible_again_at > first.visible_again_at);
    ack(&*q, &second).await;
    recv_one(h, &*q, "vis-2").await;
}

/// `extend` keeps a message invisible for the new visibility, counted from now.
pub async fn extend_keeps_message_invisible(h: &dyn QueueHarness) {
    let q = h.queue().await;
    let vt = h.visibility_timeout();
    send(&*q, "alpha", "ext-1").await;
    let d = recv_one(h, &*q, "ext-1").await;
    h.advance(vt / 2).await;
    let res = ok(
        q.extend(std::slice::from_ref(&d.receipt), vt * 3).await,
        "extend",
    );
    assert_eq!(res.len(), 1);
    ok(res.into_iter().next().unwrap_or(Ok(())), "extend entry");
    h.advance(vt).await;
    recv_none(h, &*q, "extended past the original timeout").await;
    ack(&*q, &d).await;
    let res = ok(
        q.extend(std::slice::from_ref(&d.receipt), vt).await,
        "extend after ack",
    );
    assert_eq!(res.len(), 1);
    for r in res {
        assert_fence_lost(r, "extend with a deleted message's receipt");
    }
}

/// A receipt from an earlier receive can neither ack, extend, release nor dead-letter,
/// and the failed call leaves the current delivery alone.
pub async fn stale_receipt_fails_and_changes_nothing(h: &dyn QueueHarness) {
    let q = h.queue().await;
    send(&*q, "alpha", "stale-1").await;
    let old = recv_one(h, &*q, "stale-1").await;
    h.advance(h.visibility_timeout() + Duration::from_secs(1))
        .await;
    let current = recv_one(h, &*q, "stale-1").await;
    assert_fence_lost(q.ack(&old.receipt).await, "ack with a stale receipt");
    assert_fence_lost(
        q.release(&old.receipt, Duration::ZERO).await,
        "release with a stale receipt",
    );
    let ext = ok(
        q.extend(std::slice::from_ref(&old.receipt), h.visibility_timeout())
            .await,
        "extend",
    );
    for r in ext {
        assert_fence_lost(r, "extend with a stale receipt");
    }
    assert_fence_lost(
        q.dead_letter(&old, &letter(FailureClass::Internal, "stale"))
            .await,
        "dead-letter with a stale receipt",
    );
    recv_none(h, &*q, "the current delivery is still in flight").await;
    assert!(
        ok(q.dlq_list(10).await, "dlq_list").entries.is_empty(),
        "contract: a stale dead-letter must not write the DLQ"
    );
    ack(&*q, &current).await;
    assert_fence_lost(q.ack(&current.receipt).await, "ack twice");
}

/// `ack_batch` deletes every current receipt (more than one batch of 10 of them) and
/// answers `fence-lost` for a stale one, entry by entry.
pub async fn ack_batch_settles_each_receipt(h: &dyn QueueHarness) {
    let q = h.queue().await;
    let groups: Vec<String> = (0..12).map(|i| format!("batch-{i}")).collect();
    for g in &groups {
        send(&*q, g, &format!("{g}-m")).await;
    }
    let mut got = Vec::new();
    for _ in 0..10 {
        got.extend(recv(h, &*q, 10).await);
        if got.len() >= groups.len() {
            break;
        }
    }
    assert_eq!(
        got.len(),
        groups.len(),
        "contract: one message per group received"
    );
    let mut receipts: Vec<_> = got.iter().map(|d| d.receipt.clone()).collect();
    // A receipt already settled stands among the current ones.
    ack(&*q, &got[0]).await;
    receipts.rotate_left(1);
    let results = ok(q.ack_batch(&receipts).await, "ack_batch");
    assert_eq!(
        results.len(),
        receipts.len(),
        "contract: one result per receipt"
    );
    for r in &results[..results.len() - 1] {
        assert!(
            r.is_ok(),
            "contract: a current receipt is acked in a batch: {r:?}"
        );
    }
    assert_fence_lost(
        results[results.len() - 1].clone(),
        "ack_batch with a settled receipt",
    );
    recv_none(h, &*q, "every message was deleted").await;
}

/// A deduplication id is remembered within the window, even after its message was
/// deleted; the duplicate send returns the first message's id.
pub async fn dedup_holds_after_delete(h: &dyn QueueHarness) {
    let q = h.queue().await;
    let first = ok(q.send(message("alpha", "dedup-x", "one")).await, "send");
    assert!(!first.duplicate);
    let again = ok(q.send(message("alpha", "dedup-x", "two")).await, "send");
    assert!(again.duplicate, "contract: same dedup id is a duplicate");
    assert_eq!(again.message_id, first.message_id);
    let d = recv_one(h, &*q, "one").await;
    ack(&*q, &d).await;
    let after = ok(q.send(message("alpha", "dedup-x", "three")).await, "send");
    assert!(after.duplicate, "contract: dedup holds after the delete");
    assert_eq!(after.message_id, first.message_id);
    recv_none(h, &*q, "duplicates are not enqueued").await;
}

/// After the dedup window the same id is accepted again.
pub async fn dedup_expires_after_window(h: &dyn QueueHarness) {
    let q = h.queue().await;
    let first = ok(q.send(message("alpha", "dedup-y", "one")).await, "send");
    h.advance(h.dedup_window() + Duration::from_secs(1)).await;
    let later = ok(q.send(message("alpha", "dedup-y", "two")).await, "send");
    assert!(!later.duplicate, "contract: dedup window is over");
    assert_ne!(later.message_id, first.message_id);
}

/// `release` gives a message back, visible again after the delay; the group stays
/// blocked meanwhile so order is kept. A zero delay makes it visible at once.
pub async fn release_with_delay(h: &dyn QueueHarness) {
    let q = h.queue().await;
    let delay = h.visibility_timeout();
    send(&*q, "alpha", "rel-1").await;
    send(&*q, "alpha", "rel-2").await;
    let d = recv_one(h, &*q, "rel-1").await;
    ok(q.release(&d.receipt, delay).await, "release");
    recv_none(h, &*q, "released with a delay; the group keeps its order").await;
    h.advance(delay + Duration::from_secs(1)).await;
    let again = recv_one(h, &*q, "rel-1").await;
    assert_eq!(again.receive_count, 2);
    ack(&*q, &again).await;
    let d2 = recv_one(h, &*q, "rel-2").await;
    ok(q.release(&d2.receipt, Duration::ZERO).await, "release now");
    let d2b = recv_one(h, &*q, "rel-2").await;
    assert_eq!(d2b.receive_count, 2);
    assert_fence_lost(q.ack(&d2.receipt).await, "ack with a released receipt");
    ack(&*q, &d2b).await;
}

/// `dead_letter` moves the message to the DLQ with its letter; the list shows it;
/// a dry-run replay changes nothing; a replay puts letters back in their group, in
/// dead-letter order, behind what is already queued.
pub async fn dead_letter_list_and_replay(h: &dyn QueueHarness) {
    let q = h.queue().await;
    for b in ["dl-1", "dl-2", "dl-3"] {
        send(&*q, "alpha", b).await;
    }
    let l1 = letter(FailureClass::TestsFailed, "tests failed");
    let l2 = letter(FailureClass::PermanentInput, "bad branch");
    let d1 = recv_one(h, &*q, "dl-1").await;
    ok(q.dead_letter(&d1, &l1).await, "dead_letter");
    let d2 = recv_one(h, &*q, "dl-2").await;
    ok(q.dead_letter(&d2, &l2).await, "dead_letter");
    assert_fence_lost(q.ack(&d1.receipt).await, "ack after dead-letter");

    let list = ok(q.dlq_list(10).await, "dlq_list").entries;
    assert_eq!(list.len(), 2, "contract: two dead letters");
    assert_eq!(list[0].body, "dl-1");
    assert_eq!(list[0].original_id, d1.message_id);
    assert_eq!(list[0].group, "alpha");
    assert_eq!(list[0].letter, l1);
    assert_eq!(list[0].receive_count, 1);
    assert_eq!(list[1].body, "dl-2");
    assert_eq!(list[1].letter, l2);
    assert_eq!(ok(q.depth().await, "depth").dead_letters, 2);
    assert_eq!(
        ok(q.dlq_list(1).await, "dlq_list").entries.len(),
        1,
        "limit"
    );

    let dry = ok(q.dlq_replay(&all(), true).await, "dry-run replay");
    assert!(dry.dry_run);
    assert_eq!(
        dry.selected,
        list.iter().map(|e| e.id.clone()).collect::<Vec<_>>()
    );
    assert!(
        dry.replayed.is_empty(),
        "contract: a dry run replays nothing"
    );
    assert_eq!(ok(q.dlq_list(10).await, "dlq_list").entries, list);

    let none = ok(
        q.dlq_replay(&DlqSelection::default(), false).await,
        "empty replay",
    );
    assert!(none.selected.is_empty() && none.replayed.is_empty());

    let rep = ok(q.dlq_replay(&all(), false).await, "replay");
    assert!(!rep.dry_run);
    assert_eq!(rep.replayed.len(), 2);
    assert!(ok(q.dlq_list(10).await, "dlq_list").entries.is_empty());
    for b in ["dl-3", "dl-1", "dl-2"] {
        let d = recv_one(h, &*q, b).await;
        assert_eq!(d.group, "alpha");
        ack(&*q, &d).await;
    }
    recv_none(h, &*q, "all replayed messages processed").await;
}

/// A selection replays only what it matches; the empty selection matches nothing.
pub async fn replay_selection_and_dry_run(h: &dyn QueueHarness) {
    let q = h.queue().await;
    send(&*q, "alpha", "sel-a").await;
    send(&*q, "beta", "sel-b").await;
    for d in recv(h, &*q, 10).await {
        let class = if d.group == "alpha" {
            FailureClass::TestsFailed
        } else {
            FailureClass::PermanentInput
        };
        ok(q.dead_letter(&d, &letter(class, "x")).await, "dead_letter");
    }
    assert_eq!(ok(q.dlq_list(10).await, "dlq_list").entries.len(), 2);
    let by_project = DlqSelection {
        project: Some(ok(ProjectKey::parse("beta"), "parse project")),
        ..Default::default()
    };
    let dry = ok(q.dlq_replay(&by_project, true).await, "dry run");
    assert_eq!(dry.selected.len(), 1);
    assert_eq!(ok(q.dlq_list(10).await, "dlq_list").entries.len(), 2);
    let rep = ok(q.dlq_replay(&by_project, false).await, "replay beta");
    assert_eq!(rep.replayed.len(), 1);
    let left = ok(q.dlq_list(10).await, "dlq_list").entries;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].group, "alpha");
    let d = recv_one(h, &*q, "sel-b").await;
    ack(&*q, &d).await;
    let by_class = DlqSelection {
        class: Some(FailureClass::TestsFailed),
        ..Default::default()
    };
    let rep = ok(q.dlq_replay(&by_class, false).await, "replay by class");
    assert_eq!(rep.replayed.len(), 1);
    recv_one(h, &*q, "sel-a").await;
}

/// Dead-letter `n` messages of `group` (bodies `{group}-0`, `{group}-1`, …), in order.
async fn dead_letter_many(h: &dyn QueueHarness, q: &dyn WorkQueue, group: &str, n: usize) {
    for i in 0..n {
        send(q, group, &format!("{group}-{i}")).await;
    }
    for i in 0..n {
        let d = recv_one(h, q, &format!("{group}-{i}")).await;
        ok(
            q.dead_letter(&d, &letter(FailureClass::TestsFailed, "red"))
                .await,
            "dead_letter",
        );
    }
}

/// A listing shows every dead letter, or says how many more the queue holds and why,
/// without moving or reordering any (an SQS FIFO DLQ hands out only a group's first
/// letters while they are held). A limit below the count is reported as such.
pub async fn dlq_listing_is_complete_or_says_so(h: &dyn QueueHarness) {
    let q = h.queue().await;
    dead_letter_many(h, &*q, "alpha", 25).await;
    dead_letter_many(h, &*q, "beta", 3).await;
    for _ in 0..2 {
        let listing = ok(q.dlq_list(100).await, "dlq_list");
        assert_eq!(
            listing.entries.len() as u64 + listing.more,
            28,
            "contract: listed + more = every dead letter ({listing:?})"
        );
        let alpha: Vec<&str> = listing
            .entries
            .iter()
            .filter(|e| e.group == "alpha")
            .map(|e| e.body.as_str())
            .collect();
        let want: Vec<String> = (0..alpha.len()).map(|i| format!("alpha-{i}")).collect();
        assert_eq!(
            alpha, want,
            "contract: a group's letters listed in order, from its first"
        );
        match &listing.partial {
            None => assert_eq!(listing.more, 0, "contract: a partial listing says why"),
            Some(why) => {
                assert!(
                    listing.more > 0,
                    "contract: partial only when letters are missing"
                );
                assert!(
                    why.contains("alpha"),
                    "contract: the reason names the group: {why}"
                );
            }
        }
    }
    let limited = ok(q.dlq_list(5).await, "dlq_list with a limit");
    assert_eq!(limited.entries.len(), 5);
    assert_eq!(
        limited.more, 23,
        "contract: more counts what the limit left out"
    );
    let why = limited.partial.unwrap_or_default();
    assert!(
        why.contains("limit"),
        "contract: the reason names the limit: {why}"
    );
    assert_eq!(
        ok(q.depth().await, "depth").dead_letters,
        28,
        "nothing moved"
    );
}

/// Replaying a project reaches every one of its letters, in order, however many wait
/// behind the first ones, and leaves the other groups' letters in place.
pub async fn replay_reaches_every_letter_of_a_group(h: &dyn QueueHarness) {
    let q = h.queue().await;
    dead_letter_many(h, &*q, "alpha", 25).await;
    dead_letter_many(h, &*q, "beta", 3).await;
    let alpha = DlqSelection {
        project: Some(ok(ProjectKey::parse("alpha"), "parse project")),
        ..Default::default()
    };
    let rep = ok(q.dlq_replay(&alpha, false).await, "replay alpha");
    assert_eq!(
        rep.replayed.len(),
        25,
        "contract: every alpha letter replayed: {rep:?}"
    );
    let left = ok(q.dlq_list(100).await, "dlq_list");
    assert_eq!(left.entries.len() as u64 + left.more, 3);
    assert!(left.entries.iter().all(|e| e.group == "beta"), "{left:?}");
    for i in 0..25 {
        let d = recv_one(h, &*q, &format!("alpha-{i}")).await;
        ack(&*q, &d).await;
    }
}

/// Replay progress that records each letter as it lands and, before sending letter
/// `stop_at` (counted from 0), says so on `stopped` and waits forever.
struct StopAt {
    stop_at: usize,
    before: usize,
    landed: Vec<(MessageId, MessageId)>,
    stopped: Option<tokio::sync::oneshot::Sender<()>>,
}

#[async_trait]
impl ReplayProgress for StopAt {
    async fn before(&mut self, _: &DeadLetterEntry) {
        assert_eq!(
            self.before,
            self.landed.len(),
            "contract: a letter is told as landed before the next one is sent"
        );
        if self.before == self.stop_at
            && let Some(tx) = self.stopped.take()
        {
            let _ = tx.send(());
            std::future::pending::<()>().await;
        }
        self.before += 1;
    }
    fn replayed(&mut self, e: &DeadLetterEntry, new_id: &MessageId) {
        self.landed.push((e.id.clone(), new_id.clone()));
    }
}

/// A replay tells its progress about each letter as it lands, in dead-letter order; a
/// replay stopped between two letters (its future dropped, as Ctrl-C does) leaves every
/// letter either still dead-lettered or back in its group: never both, never neither.
pub async fn a_stopped_replay_leaves_each_letter_in_one_queue(h: &dyn QueueHarness) {
    let q = h.queue().await;
    dead_letter_many(h, &*q, "alpha", 5).await;
    let listed = ok(q.dlq_list(10).await, "dlq_list").entries;
    assert_eq!(listed.len(), 5, "contract: five dead letters listed");
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut progress = StopAt {
        stop_at: 2,
        before: 0,
        landed: Vec::new(),
        stopped: Some(tx),
    };
    let everything = all();
    tokio::select! {
        r = q.dlq_replay_with(&everything, false, &mut progress) => {
            panic!("contract: the replay should have waited before its third letter: {r:?}")
        }
        _ = rx => {}
    }
    let told: Vec<&MessageId> = progress.landed.iter().map(|(id, _)| id).collect();
    let first: Vec<&MessageId> = listed[..2].iter().map(|e| &e.id).collect();
    assert_eq!(
        told, first,
        "contract: the first two letters told, in order"
    );
    assert_eq!(
        ok(q.depth().await, "depth").dead_letters,
        3,
        "contract: the letters not replayed are still dead-lettered"
    );
    for (i, (_, new_id)) in progress.landed.iter().enumerate() {
        let d = recv_one(h, &*q, &format!("alpha-{i}")).await;
        assert_eq!(
            &d.message_id, new_id,
            "contract: the told id is the new message's"
        );
        ack(&*q, &d).await;
    }
    recv_none(
        h,
        &*q,
        "only the two letters told are back in the main queue",
    )
    .await;
}

/// Redrive moves every dead letter back and reports how many.
pub async fn redrive_moves_everything(h: &dyn QueueHarness) {
    let q = h.queue().await;
    send(&*q, "alpha", "rd-a").await;
    send(&*q, "beta", "rd-b").await;
    for d in recv(h, &*q, 10).await {
        ok(
            q.dead_letter(&d, &letter(FailureClass::AgentFailed, "agent"))
                .await,
            "dead_letter",
        );
    }
    assert_eq!(ok(q.dlq_redrive().await, "redrive"), 2);
    assert!(ok(q.dlq_list(10).await, "dlq_list").entries.is_empty());
    let mut bodies: Vec<_> = recv(h, &*q, 10).await.into_iter().map(|d| d.body).collect();
    bodies.sort();
    assert_eq!(bodies, ["rd-a", "rd-b"]);
    assert_eq!(ok(q.dlq_redrive().await, "empty redrive"), 0);
}

/// Purge deletes every dead letter, reports how many, and leaves the main queue alone.
pub async fn purge_deletes_every_dead_letter(h: &dyn QueueHarness) {
    let q = h.queue().await;
    send(&*q, "alpha", "pg-a").await;
    send(&*q, "beta", "pg-b").await;
    send(&*q, "gamma", "pg-c").await;
    for d in recv(h, &*q, 10).await {
        if d.body == "pg-c" {
            ok(q.release(&d.receipt, Duration::ZERO).await, "release");
            continue;
        }
        ok(
            q.dead_letter(&d, &letter(FailureClass::TestsFailed, "tests"))
                .await,
            "dead_letter",
        );
    }
    assert_eq!(ok(q.dlq_list(10).await, "dlq_list").entries.len(), 2);
    assert_eq!(ok(q.dlq_purge().await, "purge"), 2, "contract: purge count");
    assert!(
        ok(q.dlq_list(10).await, "dlq_list").entries.is_empty(),
        "contract: the DLQ is empty after a purge"
    );
    recv_one(h, &*q, "pg-c").await;
    assert!(
        ok(q.dlq_replay(&all(), false).await, "replay after purge")
            .replayed
            .is_empty(),
        "contract: nothing to replay after a purge"
    );
}

/// `depth` counts visible, in-flight (or delayed) and dead-lettered messages.
pub async fn depth_counts(h: &dyn QueueHarness) {
    let q = h.queue().await;
    assert!(ok(q.depth().await, "depth").is_idle());
    send(&*q, "alpha", "dp-a1").await;
    send(&*q, "alpha", "dp-a2").await;
    send(&*q, "beta", "dp-b1").await;
    let depth = ok(q.depth().await, "depth");
    assert_eq!(depth.visible, 3);
    assert_eq!(depth.in_flight + depth.delayed, 0);
    let got = recv(h, &*q, 10).await;
    assert_eq!(got.len(), 2, "contract: one message per free group");
    let depth = ok(q.depth().await, "depth");
    assert_eq!((depth.visible, depth.in_flight), (1, 2));
    ok(
        q.release(&got[0].receipt, h.visibility_timeout()).await,
        "release",
    );
    let depth = ok(q.depth().await, "depth");
    assert_eq!(depth.in_flight + depth.delayed, 2);
    ok(
        q.dead_letter(&got[1], &letter(FailureClass::Internal, "x"))
            .await,
        "dead_letter",
    );
    let depth = ok(q.depth().await, "depth");
    assert_eq!(depth.dead_letters, 1);
    assert_eq!(depth.visible + depth.in_flight + depth.delayed, 2);
    assert!(!depth.is_idle());
}

/// Trace context and attributes travel with the message.
pub async fn trace_and_attributes_round_trip(h: &dyn QueueHarness) {
    let q = h.queue().await;
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut msg = message("alpha", "tr-1", "{\"k\":\"v\"}");
    msg.trace = TraceContext::from_traceparent(tp).unwrap_or_default();
    msg.attributes.insert("kiro.schema".into(), "1".into());
    let sent = ok(q.send(msg).await, "send");
    let d = recv_one(h, &*q, "{\"k\":\"v\"}").await;
    assert_eq!(d.message_id, sent.message_id);
    assert_eq!(d.dedup, DedupId::new("tr-1"));
    assert_eq!(d.trace.traceparent.as_deref(), Some(tp));
    assert_eq!(
        d.attributes.get("kiro.schema").map(String::as_str),
        Some("1")
    );
    assert!(d.visible_again_at > d.sent_at);
}
