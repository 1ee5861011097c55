//! The `WorkQueue` contract suite: the SQS FIFO semantics every queue adapter must keep.
//!
//! Each check is a public async function taking only a [`QueueHarness`];
//! [`queue_contract!`](crate::queue_contract) makes one test of each. A check asks the
//! harness for a fresh, empty queue, so checks never see each other's messages, and it
//! moves time only through [`QueueHarness::advance`] (a manual clock for the embedded
//! queue, a real sleep against an emulator), in multiples of the harness's visibility
//! timeout.
//!
//! Files: this one holds the harness and the helpers; the checks are in `delivery.rs`,
//! `sending.rs` and `dead_letters.rs`, by concept, and all are re-exported here.
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

mod dead_letters;
mod delivery;
mod sending;

pub use dead_letters::*;
pub use delivery::*;
pub use sending::*;

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
