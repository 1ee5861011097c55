//! `WorkQueue` contract checks on what a send carries and how it is counted:
//! deduplication within (and after) the window, trace context and attributes on the
//! round trip, and `depth`.
//!
//! Invariant: as for the whole suite ([`super`]), only the port is used and a failure
//! names the broken rule.

use super::*;

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
