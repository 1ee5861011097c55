//! `WorkQueue` contract checks on delivery: per-group order and blocking, visibility
//! (expiry, `extend`), receipts (stale ones fail and change nothing, `ack_batch` entry
//! by entry) and `release` with a delay.
//!
//! Invariant: as for the whole suite ([`super`]), only the port is used and a failure
//! names the broken rule.

use super::*;

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
