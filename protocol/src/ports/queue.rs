//! `WorkQueue`: a FIFO queue with message groups, visibility, deduplication and an
//! explicit dead-letter queue — the semantics of SQS FIFO.
//!
//! Contract (checked by `kiro_backends::testing::contract::queue`):
//! - messages of one group are delivered in send order, and while one message of a group
//!   is in flight no other message of that group is delivered;
//! - a send whose deduplication id was seen in the last 5 minutes is accepted but not
//!   enqueued again (even if the first message was already deleted);
//! - a received message is invisible for the visibility timeout, which `extend` resets
//!   from now; when it lapses the message is delivered again with a higher receive count
//!   and a new receipt;
//! - `ack`, `extend` and `release` with a receipt that is no longer current fail with
//!   [`FailureClass::FenceLost`](crate::FailureClass::FenceLost) and change nothing;
//! - `dead_letter` moves a message to the DLQ with its reason and removes it from the
//!   queue; replay puts it back in its group with a fresh deduplication id, one letter
//!   at a time (sent to the main queue, then removed from the DLQ), telling a
//!   [`ReplayProgress`] about each, so a replay stopped midway leaves every letter either
//!   still dead-lettered or back in its group.

use crate::clock::Timestamp;
use crate::failure::{FailureClass, PortError};
use crate::ids::{BuildId, DedupId, Fence, MessageGroup, MessageId, ProjectKey, Receipt};
use crate::job::AttemptRecord;
use crate::trace::TraceContext;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

pub use crate::ids::{FIFO_ID_MAX, check_fifo_id, is_fifo_id_char};

/// Message attribute names shared by every queue adapter.
pub mod attrs {
    pub const SCHEMA_VERSION: &str = "kiro.schema";
    pub const TRACEPARENT: &str = "traceparent";
    pub const TRACESTATE: &str = "tracestate";
}

/// A message to send.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingMessage {
    pub body: String,
    pub group: ProjectKey,
    pub dedup: DedupId,
    pub trace: TraceContext,
    pub attributes: BTreeMap<String, String>,
}

/// The result of a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendOutcome {
    pub message_id: MessageId,
    /// True when the deduplication id was seen within the window: nothing new was enqueued
    /// and `message_id` is the first message's id.
    pub duplicate: bool,
}

/// One delivery of a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub message_id: MessageId,
    pub receipt: Receipt,
    pub body: String,
    /// The group as the queue reports it: the consumer checks it against the item's
    /// project inside (a message sent by hand may carry any group).
    pub group: MessageGroup,
    pub dedup: DedupId,
    pub trace: TraceContext,
    pub attributes: BTreeMap<String, String>,
    /// How many times the message has been received, this time included.
    pub receive_count: u32,
    pub sent_at: Timestamp,
    /// When this delivery's visibility lapses (as the queue computed it on receive).
    pub visible_again_at: Timestamp,
}

/// What the consumer says about a message it dead-letters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub reason: String,
    pub class: FailureClass,
    #[serde(default)]
    pub attempts: Vec<AttemptRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<Fence>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_id: Option<BuildId>,
    #[serde(default)]
    pub trace: TraceContext,
}

/// A message in the dead-letter queue.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterEntry {
    /// The id of the message in the DLQ (what operators select by).
    pub id: MessageId,
    /// The id it had in the main queue.
    pub original_id: MessageId,
    pub group: MessageGroup,
    pub body: String,
    pub letter: DeadLetter,
    pub dead_lettered_at: Timestamp,
    pub receive_count: u32,
}

impl DeadLetterEntry {
    /// Whether `id` names this letter: its id in the DLQ or the one it had in the queue.
    pub fn is_named(&self, id: &str) -> bool {
        self.id.as_str() == id || self.original_id.as_str() == id
    }

    /// The letter named `id` in `entries` (see [`DeadLetterEntry::is_named`]).
    pub fn find<'a>(entries: &'a [DeadLetterEntry], id: &str) -> Option<&'a DeadLetterEntry> {
        entries.iter().find(|e| e.is_named(id))
    }
}

/// Which dead letters to replay. Criteria combine with AND; `all` must be set to select
/// everything when no other criterion is given (so an empty selection selects nothing).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DlqSelection {
    pub ids: Vec<MessageId>,
    /// Only letters of this project's group.
    pub project: Option<ProjectKey>,
    pub class: Option<FailureClass>,
    /// Only letters dead-lettered at least this long ago.
    pub older_than: Option<Duration>,
    pub all: bool,
}

impl DlqSelection {
    /// Whether `e` is selected at time `now`.
    pub fn matches(&self, e: &DeadLetterEntry, now: Timestamp) -> bool {
        let any_criterion = !self.ids.is_empty()
            || self.project.is_some()
            || self.class.is_some()
            || self.older_than.is_some();
        if !any_criterion && !self.all {
            return false;
        }
        (self.ids.is_empty() || self.ids.contains(&e.id) || self.ids.contains(&e.original_id))
            && self.project.as_ref().is_none_or(|p| e.group.is_project(p))
            && self.class.is_none_or(|c| c == e.letter.class)
            && self
                .older_than
                .is_none_or(|d| now.since(e.dead_lettered_at) >= d)
    }
}

/// What `dlq_list` could show: the letters in dead-letter order, and how many more the
/// queue holds (as far as it can tell) with the reason they are not shown.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DlqListing {
    pub entries: Vec<DeadLetterEntry>,
    /// Letters the queue holds beyond `entries` (0 when the listing is complete).
    pub more: u64,
    /// Why the listing is partial, in words an operator can act on; `None` when `more`
    /// is 0.
    pub partial: Option<String>,
}

impl DlqListing {
    /// A complete listing of `entries`.
    pub fn complete(entries: Vec<DeadLetterEntry>) -> Self {
        DlqListing {
            entries,
            more: 0,
            partial: None,
        }
    }

    /// `entries`, read with `limit`, out of `total` letters the queue holds: partial
    /// (because of the limit) when `total` is more than was listed.
    pub fn limited(entries: Vec<DeadLetterEntry>, total: u64, limit: usize) -> Self {
        let more = total.saturating_sub(entries.len() as u64);
        let partial = (more > 0).then(|| {
            format!(
                "the listing stops at the limit of {limit}; {more} more dead letter(s) follow (raise --limit to see them)"
            )
        });
        DlqListing {
            entries,
            more,
            partial,
        }
    }

    /// Whether every letter the queue holds is in `entries`.
    pub fn is_complete(&self) -> bool {
        self.more == 0
    }
}

/// What a replay did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    pub selected: Vec<MessageId>,
    /// Ids of the new messages in the main queue (empty in a dry run).
    pub replayed: Vec<MessageId>,
    pub dry_run: bool,
    /// Letters the queue holds that this replay could not examine (on an SQS FIFO DLQ,
    /// those waiting behind a group's unselected letters); 0 when every letter was seen.
    pub unexamined: u64,
}

/// Told about a replay as it goes: where the caller may pause (a rate limit) and what
/// has been replayed so far (audit lines, a progress bar). A replay that is stopped
/// (its future dropped, in a pause or anywhere else) has replayed exactly the letters
/// reported to [`replayed`](Self::replayed), plus at most the one being sent.
#[async_trait]
pub trait ReplayProgress: Send {
    /// Called before `entry` is sent back to the main queue; a rate limit waits here.
    async fn before(&mut self, entry: &DeadLetterEntry);
    /// `entry` is back in the main queue as `new_id` and gone from the dead-letter queue.
    fn replayed(&mut self, entry: &DeadLetterEntry, new_id: &MessageId);
}

/// Progress nobody watches: no pause, nothing told.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

#[async_trait]
impl ReplayProgress for NoProgress {
    async fn before(&mut self, _: &DeadLetterEntry) {}
    fn replayed(&mut self, _: &DeadLetterEntry, _: &MessageId) {}
}

/// Message counts, as far as the queue can tell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueueDepth {
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
    pub dead_letters: u64,
}

impl QueueDepth {
    /// Nothing waiting, running or delayed in the main queue.
    pub fn is_idle(&self) -> bool {
        self.visible == 0 && self.in_flight == 0 && self.delayed == 0
    }
}

/// How a queue is named in traces (the OpenTelemetry messaging conventions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// `messaging.system`: `aws_sqs`, or `kiro_sqlite` for the embedded queue.
    pub system: &'static str,
    /// `messaging.destination.name`: the queue's name.
    pub name: String,
}

#[async_trait]
pub trait WorkQueue: Send + Sync + std::fmt::Debug {
    /// How this queue is named in traces.
    fn destination(&self) -> Destination;
    async fn send(&self, msg: OutgoingMessage) -> Result<SendOutcome, PortError>;
    /// Up to `max` messages, waiting up to `wait` for the first one.
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, PortError>;
    /// Make each message invisible for `visibility` from now. One result per receipt.
    async fn extend(
        &self,
        receipts: &[Receipt],
        visibility: Duration,
    ) -> Result<Vec<Result<(), PortError>>, PortError>;
    /// Delete the message: it is done.
    async fn ack(&self, receipt: &Receipt) -> Result<(), PortError>;
    /// Delete several messages; one result per receipt. Adapters with a batch call (SQS
    /// `DeleteMessageBatch`, 10 per call) override this; the default acks one by one.
    async fn ack_batch(
        &self,
        receipts: &[Receipt],
    ) -> Result<Vec<Result<(), PortError>>, PortError> {
        let mut out = Vec::with_capacity(receipts.len());
        for r in receipts {
            out.push(self.ack(r).await);
        }
        Ok(out)
    }
    /// Give the message back, visible again after `delay`.
    async fn release(&self, receipt: &Receipt, delay: Duration) -> Result<(), PortError>;
    /// Send the message to the dead-letter queue with `letter`, then delete it.
    async fn dead_letter(&self, delivery: &Delivery, letter: &DeadLetter) -> Result<(), PortError>;
    /// Read up to `limit` dead letters without removing or reordering anything; the
    /// listing says how many more there are and why they are not shown (a limit, or a
    /// queue that cannot reach them without moving them).
    async fn dlq_list(&self, limit: usize) -> Result<DlqListing, PortError>;
    /// Put selected dead letters back into their groups with fresh deduplication ids, in
    /// one pass over the dead-letter queue: each letter is sent to the main queue, then
    /// removed from the DLQ, then reported to `progress` (a dry run sends nothing and
    /// reports nothing). The cost is linear in the letters the queue holds.
    async fn dlq_replay_with(
        &self,
        selection: &DlqSelection,
        dry_run: bool,
        progress: &mut dyn ReplayProgress,
    ) -> Result<ReplayReport, PortError>;
    /// [`dlq_replay_with`](Self::dlq_replay_with) with nobody watching.
    async fn dlq_replay(
        &self,
        selection: &DlqSelection,
        dry_run: bool,
    ) -> Result<ReplayReport, PortError> {
        self.dlq_replay_with(selection, dry_run, &mut NoProgress)
            .await
    }
    /// Move everything in the dead-letter queue back; returns how many moved.
    async fn dlq_redrive(&self) -> Result<u64, PortError>;
    /// Delete every dead letter; returns how many were deleted (as far as the queue can
    /// tell). Adapters override this; the default refuses (an `Input` error), so a queue
    /// that cannot purge never silently keeps its letters.
    async fn dlq_purge(&self) -> Result<u64, PortError> {
        Err(PortError::input(
            "this queue cannot purge its dead-letter queue",
        ))
    }
    async fn depth(&self) -> Result<QueueDepth, PortError>;
}

/// The standard attributes every adapter sends with a message.
pub fn standard_attributes(trace: &TraceContext) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert(
        attrs::SCHEMA_VERSION.to_owned(),
        crate::SCHEMA_VERSION.to_string(),
    );
    if let Some(tp) = &trace.traceparent {
        m.insert(attrs::TRACEPARENT.to_owned(), tp.clone());
    }
    if let Some(ts) = &trace.tracestate {
        m.insert(attrs::TRACESTATE.to_owned(), ts.clone());
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(group: &str, class: FailureClass, at: i64) -> DeadLetterEntry {
        DeadLetterEntry {
            id: MessageId::new("d1"),
            original_id: MessageId::new("m1"),
            group: MessageGroup::parse(group).unwrap(),
            body: String::new(),
            letter: DeadLetter {
                reason: "r".into(),
                class,
                attempts: vec![],
                fence: None,
                build_id: None,
                trace: TraceContext::default(),
            },
            dead_lettered_at: Timestamp(at),
            receive_count: 1,
        }
    }

    #[test]
    fn empty_selection_selects_nothing_unless_all() {
        let e = entry("p", FailureClass::TestsFailed, 0);
        assert!(!DlqSelection::default().matches(&e, Timestamp(0)));
        assert!(
            DlqSelection {
                all: true,
                ..Default::default()
            }
            .matches(&e, Timestamp(0))
        );
    }

    #[test]
    fn find_by_either_id() {
        let entries = vec![entry("p", FailureClass::TestsFailed, 0)];
        assert!(DeadLetterEntry::find(&entries, "d1").is_some());
        assert!(DeadLetterEntry::find(&entries, "m1").is_some());
        assert!(DeadLetterEntry::find(&entries, "x").is_none());
    }

    #[test]
    fn criteria_combine() {
        let e = entry("p", FailureClass::TestsFailed, 1_000);
        let sel = DlqSelection {
            project: Some(ProjectKey::parse("p").unwrap()),
            class: Some(FailureClass::TestsFailed),
            older_than: Some(Duration::from_secs(1)),
            ..Default::default()
        };
        assert!(!sel.matches(&e, Timestamp(1_500)));
        assert!(sel.matches(&e, Timestamp(2_000)));
        let other = DlqSelection {
            project: Some(ProjectKey::parse("q").unwrap()),
            ..Default::default()
        };
        assert!(!other.matches(&e, Timestamp(2_000)));
        let by_id = DlqSelection {
            ids: vec![MessageId::new("m1")],
            ..Default::default()
        };
        assert!(by_id.matches(&e, Timestamp(0)));
    }
}
