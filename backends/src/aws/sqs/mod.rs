//! `WorkQueue` on an SQS FIFO queue with a FIFO dead-letter queue.
//!
//! Mapping:
//! - `send`: `SendMessage` with `MessageGroupId` = group, `MessageDeduplicationId` =
//!   dedup, the standard message attributes (`kiro.schema`, `traceparent`, `tracestate`)
//!   plus the caller's, and the `AWSTraceHeader` system attribute when the trace context
//!   has an X-Ray header;
//! - `receive`: one long-poll `ReceiveMessage` (≤ 10, wait ≤ 20 s, whole seconds rounded
//!   up so a sub-second wait never becomes a short poll; at most one message
//!   per group is delivered, later ones of the same group are made visible again) asking for
//!   ApproximateReceiveCount, SentTimestamp, MessageGroupId, MessageDeduplicationId,
//!   AWSTraceHeader and all message attributes. Every call has a `ReceiveRequestAttemptId`;
//!   a retry after a network error or a 5xx reuses it (so SQS returns the same messages
//!   instead of hiding them), a retry after throttling uses a new one, as AWS documents;
//! - `extend`: `ChangeMessageVisibilityBatch` in chunks of 10 (n receipts cost ⌈n/10⌉
//!   calls), one result per receipt, each request capped so a receipt never asks for more
//!   than the 12-hour total SQS allows (counted from this adapter's receive);
//! - `ack`: `DeleteMessage`; `release`: `ChangeMessageVisibility(delay)`;
//! - `dead_letter`: `SendMessage` to the FIFO DLQ (same group, body unchanged, dedup id
//!   `dl-<message id>-<receive count>`) with the [`DeadLetter`] record as JSON in the
//!   `kiro.dead-letter` message attribute and `kiro.original-id`, `kiro.dead-lettered-at`
//!   (epoch ms), `kiro.receive-count` beside it; then `DeleteMessage` on the main queue;
//! - `dlq_list` / `dlq_replay`: receive from the DLQ with a short visibility, then give
//!   every message not replayed back at once (`ChangeMessageVisibilityBatch` to 0), so
//!   listing loses nothing. FIFO delivery means a listing sees at most what one round of
//!   receives returns per group (up to 10 per call). Replay is one pass: it receives
//!   batches of 10 until the DLQ offers nothing new, sends each selected letter to the
//!   main queue in its group with a fresh dedup id (`replay-<dlq id>`) and then deletes it
//!   from the DLQ, one at a time, holding the others until the pass ends (about 2.2 calls
//!   per replayed letter, 0.2 per other letter);
//! - `dlq_purge`: `PurgeQueue` on the DLQ;
//! - `dlq_redrive`: `StartMessageMoveTask` from the DLQ to the main queue (asynchronous on
//!   AWS); returns the DLQ's approximate size when the task started;
//! - `depth`: `GetQueueAttributes` on both queues.
//!
//! Invariant — the local receipt ledger ([`ledger`]): SQS accepts a superseded receipt
//! handle for deletes and visibility changes ("succeeds but the message might not be
//! deleted"), so the adapter remembers the receipts it handed out. A receipt this process
//! has acked, released or dead-lettered, or whose message it has received again since,
//! fails with `fence-lost` locally and never reaches SQS. The ledger also remembers, per
//! receipt, when it was received (for the 12-hour budget) and, per deduplication id, the
//! message id of a send within the 5-minute window (a repeated send is answered as a
//! duplicate without calling SQS, exactly what SQS would do with it). Entries are pruned
//! after 12 hours. Receipts from other processes are passed to SQS unchanged.
//!
//! Files: this one holds the port (`send`, `receive`, `extend`, `ack`, `release`,
//! `depth`); [`client`] the raw SQS calls and message reading; [`ledger`] the receipts
//! and sends remembered; [`dlq`] the dead-letter operations; [`limits`] SQS's limits on
//! one message; `setup` the queue creation for tests and operators.

mod client;
mod dlq;
mod ledger;
pub mod limits;
#[cfg(any(test, feature = "testing"))]
mod setup;

pub use dlq::{ATTR_DEAD_LETTER, ATTR_DEAD_LETTERED_AT, ATTR_ORIGINAL_ID, ATTR_RECEIVE_COUNT};
#[cfg(any(test, feature = "testing"))]
pub use setup::create_queues;

use super::retry::CallBackoff;
use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use client::{attr_count, group_of, message_attrs, queue_name, sys_attr, trace_of};
use kiro_protocol::ports::queue::standard_attributes;
use kiro_protocol::{
    Clock, DeadLetter, DedupId, Delivery, Destination, DlqListing, DlqSelection, FailureClass,
    MessageId, OutgoingMessage, PortError, QueueDepth, Receipt, ReplayProgress, ReplayReport,
    SendOutcome, Timestamp, WorkQueue,
};
use ledger::Ledger;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::instrument;

/// SQS's limit on the total visibility of one receipt.
pub const MAX_TOTAL_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);
/// SQS's deduplication window.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(5 * 60);
/// Entries per batch call.
pub const BATCH: usize = 10;

/// Where the queues are and how they behave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsSettings {
    pub queue_url: String,
    pub dlq_url: String,
    /// Visibility applied on receive.
    pub visibility_timeout: Duration,
    /// Visibility of DLQ messages while they are listed or replayed.
    pub list_visibility: Duration,
}

impl SqsSettings {
    pub fn new(queue_url: impl Into<String>, dlq_url: impl Into<String>) -> Self {
        SqsSettings {
            queue_url: queue_url.into(),
            dlq_url: dlq_url.into(),
            visibility_timeout: Duration::from_secs(60),
            list_visibility: Duration::from_secs(30),
        }
    }
}

/// `WorkQueue` over an SQS FIFO queue and its FIFO DLQ.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    settings: SqsSettings,
    clock: Arc<dyn Clock>,
    backoff: CallBackoff,
    ledger: Arc<Mutex<Ledger>>,
}

impl SqsQueue {
    /// A queue adapter on `client` (built from [`super::settings::sdk_config`], or a
    /// mocked client in tests).
    pub fn new(client: Client, settings: SqsSettings, clock: Arc<dyn Clock>) -> Self {
        SqsQueue {
            client,
            settings,
            clock,
            backoff: CallBackoff::default(),
            ledger: Arc::new(Mutex::new(Ledger::default())),
        }
    }

    /// A queue adapter reaching SQS as `aws` says (what the binaries' wiring calls, so
    /// no AWS SDK type appears outside this crate).
    pub async fn connect(
        aws: &super::settings::AwsSettings,
        settings: SqsSettings,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let config = super::settings::sdk_config(aws).await;
        SqsQueue::new(Client::new(&config), settings, clock)
    }

    /// The same adapter with another backoff for its calls.
    pub fn with_backoff(mut self, backoff: CallBackoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The client, for operators' helpers (queue creation in tests).
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        match self.ledger.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn check_current(&self, receipt: &Receipt) -> Result<(), PortError> {
        self.ledger().check(receipt.as_str())
    }
}

#[async_trait]
impl WorkQueue for SqsQueue {
    fn destination(&self) -> Destination {
        Destination {
            system: "aws_sqs",
            name: queue_name(&self.settings.queue_url).to_owned(),
        }
    }

    #[instrument(skip_all, fields(group = %msg.group, dedup = %msg.dedup))]
    async fn send(&self, msg: OutgoingMessage) -> Result<SendOutcome, PortError> {
        let now = self.clock.now();
        {
            let mut l = self.ledger();
            l.prune(now);
            if let Some(id) = l.sent_as(msg.dedup.as_str()) {
                return Ok(SendOutcome {
                    message_id: MessageId::new(id),
                    duplicate: true,
                });
            }
        }
        let mut attrs = standard_attributes(&msg.trace);
        attrs.extend(msg.attributes.clone());
        let id = self
            .send_raw(
                &self.settings.queue_url,
                &msg.body,
                msg.group.as_str(),
                msg.dedup.as_str(),
                &attrs,
                msg.trace.xray.as_deref(),
            )
            .await?;
        self.ledger().sent(msg.dedup.as_str(), &id, now);
        Ok(SendOutcome {
            message_id: MessageId::new(id),
            duplicate: false,
        })
    }

    #[instrument(skip_all, fields(max))]
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, PortError> {
        let vis = self.settings.visibility_timeout;
        let messages = self
            .receive_raw(&self.settings.queue_url, max, wait, vis)
            .await?;
        // One message per group, like the embedded queue: SQS may return several messages
        // of one group in one receive; the later ones are given back at once (their group
        // stays blocked by the first, so order holds; their receive count goes up by one,
        // which is why attempts are counted in the job record, not here).
        let mut groups = std::collections::HashSet::new();
        let mut extra = Vec::new();
        let mut first = Vec::with_capacity(messages.len());
        for m in messages {
            let group = sys_attr(&m, MessageSystemAttributeName::MessageGroupId)
                .unwrap_or_default()
                .to_owned();
            if groups.insert(group) {
                first.push(m);
            } else if let Some(r) = m.receipt_handle.clone() {
                extra.push((r, Duration::ZERO));
            }
        }
        for chunk in extra.chunks(BATCH) {
            for r in self
                .visibility_batch(&self.settings.queue_url, chunk)
                .await?
            {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "could not give back a same-group message");
                }
            }
        }
        let now = self.clock.now();
        let mut ledger = self.ledger();
        ledger.prune(now);
        let mut out = Vec::with_capacity(first.len());
        for m in first {
            let (Some(id), Some(receipt)) = (m.message_id.clone(), m.receipt_handle.clone()) else {
                continue;
            };
            ledger.received(&receipt, &id, now);
            let attributes = message_attrs(&m);
            out.push(Delivery {
                trace: trace_of(&m, &attributes),
                message_id: MessageId::new(id),
                receipt: Receipt::new(receipt),
                body: m.body.clone().unwrap_or_default(),
                group: group_of(&m),
                dedup: DedupId::new(
                    sys_attr(&m, MessageSystemAttributeName::MessageDeduplicationId)
                        .unwrap_or_default(),
                ),
                receive_count: sys_attr(&m, MessageSystemAttributeName::ApproximateReceiveCount)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(1),
                sent_at: sys_attr(&m, MessageSystemAttributeName::SentTimestamp)
                    .and_then(|s| s.parse().ok())
                    .map(Timestamp)
                    .unwrap_or(now),
                visible_again_at: now.plus(vis),
                attributes,
            });
        }
        Ok(out)
    }

    #[instrument(skip_all, fields(receipts = receipts.len()))]
    async fn extend(
        &self,
        receipts: &[Receipt],
        visibility: Duration,
    ) -> Result<Vec<Result<(), PortError>>, PortError> {
        let now = self.clock.now();
        let mut results: Vec<Option<Result<(), PortError>>> = vec![None; receipts.len()];
        let mut todo: Vec<(usize, String, Duration)> = Vec::new();
        {
            let ledger = self.ledger();
            for (i, r) in receipts.iter().enumerate() {
                if let Err(e) = ledger.check(r.as_str()) {
                    results[i] = Some(Err(e));
                    continue;
                }
                let left = ledger.visibility_left(r.as_str(), now);
                if left.as_secs() == 0 {
                    results[i] = Some(Err(PortError::new(
                        FailureClass::TimedOut,
                        "the receipt's 12-hour visibility budget is spent",
                    )));
                    continue;
                }
                todo.push((i, r.as_str().to_owned(), visibility.min(left)));
            }
        }
        for chunk in todo.chunks(BATCH) {
            let entries: Vec<(String, Duration)> =
                chunk.iter().map(|(_, r, v)| (r.clone(), *v)).collect();
            let res = self
                .visibility_batch(&self.settings.queue_url, &entries)
                .await?;
            for ((i, _, _), r) in chunk.iter().zip(res) {
                results[*i] = Some(r);
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(PortError::internal("no result for receipt"))))
            .collect())
    }

    #[instrument(skip_all)]
    async fn ack(&self, receipt: &Receipt) -> Result<(), PortError> {
        self.check_current(receipt)?;
        self.delete_raw(&self.settings.queue_url, receipt.as_str())
            .await?;
        self.ledger().retire(receipt.as_str(), self.clock.now());
        Ok(())
    }

    #[instrument(skip_all, fields(receipts = receipts.len()))]
    async fn ack_batch(
        &self,
        receipts: &[Receipt],
    ) -> Result<Vec<Result<(), PortError>>, PortError> {
        let mut results: Vec<Option<Result<(), PortError>>> = vec![None; receipts.len()];
        let mut todo: Vec<(usize, String)> = Vec::new();
        for (i, r) in receipts.iter().enumerate() {
            match self.check_current(r) {
                Ok(()) => todo.push((i, r.as_str().to_owned())),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        for chunk in todo.chunks(BATCH) {
            let handles: Vec<String> = chunk.iter().map(|(_, r)| r.clone()).collect();
            let res = self
                .delete_batch(&self.settings.queue_url, &handles)
                .await?;
            let now = self.clock.now();
            for ((i, handle), r) in chunk.iter().zip(res) {
                if r.is_ok() {
                    self.ledger().retire(handle, now);
                }
                results[*i] = Some(r);
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(PortError::internal("receipt not processed"))))
            .collect())
    }

    #[instrument(skip_all, fields(delay_s = delay.as_secs()))]
    async fn release(&self, receipt: &Receipt, delay: Duration) -> Result<(), PortError> {
        self.check_current(receipt)?;
        let res = self
            .visibility_batch(
                &self.settings.queue_url,
                &[(receipt.as_str().to_owned(), delay.min(MAX_TOTAL_VISIBILITY))],
            )
            .await?;
        for r in res {
            r?;
        }
        self.ledger().retire(receipt.as_str(), self.clock.now());
        Ok(())
    }

    #[instrument(skip_all, fields(message_id = %delivery.message_id, class = %letter.class))]
    async fn dead_letter(&self, delivery: &Delivery, letter: &DeadLetter) -> Result<(), PortError> {
        self.move_to_dlq(delivery, letter).await
    }

    #[instrument(skip_all, fields(limit))]
    async fn dlq_list(&self, limit: usize) -> Result<DlqListing, PortError> {
        self.list_dlq(limit).await
    }

    #[instrument(skip_all, fields(dry_run))]
    async fn dlq_replay_with(
        &self,
        selection: &DlqSelection,
        dry_run: bool,
        progress: &mut dyn ReplayProgress,
    ) -> Result<ReplayReport, PortError> {
        self.replay_dlq(selection, dry_run, progress).await
    }

    #[instrument(skip_all)]
    async fn dlq_redrive(&self) -> Result<u64, PortError> {
        self.redrive_dlq().await
    }

    #[instrument(skip_all)]
    async fn dlq_purge(&self) -> Result<u64, PortError> {
        self.purge_dlq().await
    }

    #[instrument(skip_all)]
    async fn depth(&self) -> Result<QueueDepth, PortError> {
        let main = self
            .attributes(
                &self.settings.queue_url,
                &[
                    QueueAttributeName::ApproximateNumberOfMessages,
                    QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                    QueueAttributeName::ApproximateNumberOfMessagesDelayed,
                ],
            )
            .await?;
        let dead_letters = self.dlq_size().await?;
        Ok(QueueDepth {
            visible: attr_count(&main, QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: attr_count(
                &main,
                QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            ),
            delayed: attr_count(
                &main,
                QueueAttributeName::ApproximateNumberOfMessagesDelayed,
            ),
            dead_letters,
        })
    }
}
