//! `WorkQueue` contract checks on the dead-letter queue: `dead_letter`, listing
//! (complete, or saying how many more and why), replay (selection, dry run, every
//! letter of a group, a replay stopped midway), redrive and purge.
//!
//! Invariant: as for the whole suite ([`super`]), only the port is used and a failure
//! names the broken rule; no letter is ever lost or duplicated by a check's steps.

use super::*;

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
