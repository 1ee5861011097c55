//! `WorkQueue` on an SQS FIFO queue with a FIFO dead-letter queue.
//!
//! Mapping:
//! - `send`: `SendMessage` with `MessageGroupId` = group, `MessageDeduplicationId` =
//!   dedup, the standard message attributes (`kiro.schema`, `traceparent`, `tracestate`)
//!   plus the caller's, and the `AWSTraceHeader` system attribute when the trace context
//!   has an X-Ray header;
//! - `receive`: one long-poll `ReceiveMessage` (≤ 10, wait ≤ 20 s; at most one message
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
//!   receives returns per group (up to 10 per call). Replay sends each selected letter to
//!   the main queue in its group with a fresh dedup id (`replay-<dlq id>`), then deletes it
//!   from the DLQ;
//! - `dlq_purge`: `PurgeQueue` on the DLQ;
//! - `dlq_redrive`: `StartMessageMoveTask` from the DLQ to the main queue (asynchronous on
//!   AWS); returns the DLQ's approximate size when the task started;
//! - `depth`: `GetQueueAttributes` on both queues.
//!
//! Invariant — the local receipt ledger: SQS accepts a superseded receipt handle for
//! deletes and visibility changes ("succeeds but the message might not be deleted"), so
//! the adapter remembers the receipts it handed out. A receipt this process has acked,
//! released or dead-lettered, or whose message it has received again since, fails with
//! `fence-lost` locally and never reaches SQS. The ledger also remembers, per receipt,
//! when it was received (for the 12-hour budget) and, per deduplication id, the message
//! id of a send within the 5-minute window (a repeated send is answered as a duplicate
//! without calling SQS, exactly what SQS would do with it). Entries are pruned after
//! 12 hours. Receipts from other processes are passed to SQS unchanged.

use super::classify::classify;
use super::retry::{RetryPolicy, retry};
use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, ChangeMessageVisibilityBatchRequestEntry,
    DeleteMessageBatchRequestEntry, Message, MessageAttributeValue, MessageSystemAttributeName,
    MessageSystemAttributeNameForSends, MessageSystemAttributeValue, QueueAttributeName,
};
use kiro_protocol::ports::queue::standard_attributes;
use kiro_protocol::{
    Clock, DeadLetter, DeadLetterEntry, DedupId, Delivery, Destination, DlqSelection, FailureClass,
    MessageId, OutgoingMessage, PortError, QueueDepth, Receipt, ReplayReport, SendOutcome,
    Timestamp, TraceContext, WorkQueue,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::instrument;

/// SQS's limit on the total visibility of one receipt.
pub const MAX_TOTAL_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);
/// SQS's deduplication window.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(5 * 60);
/// Entries per batch call.
pub const BATCH: usize = 10;

/// Message attribute holding the dead-letter record (JSON).
pub const ATTR_DEAD_LETTER: &str = "kiro.dead-letter";
/// Message attribute holding the main-queue message id of a dead letter.
pub const ATTR_ORIGINAL_ID: &str = "kiro.original-id";
/// Message attribute holding when the message was dead-lettered (epoch ms).
pub const ATTR_DEAD_LETTERED_AT: &str = "kiro.dead-lettered-at";
/// Message attribute holding the receive count at the time of dead-lettering.
pub const ATTR_RECEIVE_COUNT: &str = "kiro.receive-count";

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

#[derive(Debug, Default)]
struct Ledger {
    /// Live receipts: receipt → (message id, received at).
    live: HashMap<String, (String, Timestamp)>,
    /// Latest live receipt per message id.
    latest: HashMap<String, String>,
    /// Receipts no longer current → when they were retired.
    retired: HashMap<String, Timestamp>,
    /// Dedup id → (message id, sent at).
    sent: HashMap<String, (String, Timestamp)>,
}

impl Ledger {
    fn prune(&mut self, now: Timestamp) {
        let old = now.minus(MAX_TOTAL_VISIBILITY);
        self.retired.retain(|_, t| *t > old);
        self.sent.retain(|_, (_, t)| now.since(*t) < DEDUP_WINDOW);
        let stale: Vec<String> = self
            .live
            .iter()
            .filter(|(_, (_, t))| *t <= old)
            .map(|(r, _)| r.clone())
            .collect();
        for r in stale {
            self.retire(&r, now);
        }
    }

    fn received(&mut self, receipt: &str, message_id: &str, now: Timestamp) {
        if let Some(prev) = self
            .latest
            .insert(message_id.to_owned(), receipt.to_owned())
            && prev != receipt
        {
            self.live.remove(&prev);
            self.retired.insert(prev, now);
        }
        self.live
            .insert(receipt.to_owned(), (message_id.to_owned(), now));
    }

    fn retire(&mut self, receipt: &str, now: Timestamp) {
        if let Some((id, _)) = self.live.remove(receipt)
            && self.latest.get(&id).map(String::as_str) == Some(receipt)
        {
            self.latest.remove(&id);
        }
        self.retired.insert(receipt.to_owned(), now);
    }

    fn is_retired(&self, receipt: &str) -> bool {
        self.retired.contains_key(receipt)
    }
}

/// `WorkQueue` over an SQS FIFO queue and its FIFO DLQ.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    settings: SqsSettings,
    clock: Arc<dyn Clock>,
    policy: RetryPolicy,
    ledger: Arc<Mutex<Ledger>>,
}

fn stale(receipt: &str) -> PortError {
    let short: String = receipt.chars().take(12).collect();
    PortError::new(
        FailureClass::FenceLost,
        format!("receipt {short}… is no longer current"),
    )
}

/// One result per batch entry: `Ok` unless SQS listed the entry (by its index id) as failed.
fn entry_results(
    n: usize,
    failed: Vec<BatchResultErrorEntry>,
    op: &str,
) -> Vec<Result<(), PortError>> {
    let mut results: Vec<Result<(), PortError>> = vec![Ok(()); n];
    for f in failed {
        let Ok(i) = f.id.parse::<usize>() else {
            continue;
        };
        if let Some(slot) = results.get_mut(i) {
            let class = super::classify::class_of_code(&f.code).unwrap_or(if f.sender_fault {
                FailureClass::PermanentInput
            } else {
                FailureClass::Transient
            });
            *slot = Err(PortError::new(
                class,
                format!(
                    "{op} entry failed with {}: {}",
                    f.code,
                    f.message.unwrap_or_default()
                ),
            ));
        }
    }
    results
}

fn secs(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

fn string_attr(v: &str) -> Result<MessageAttributeValue, PortError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(v)
        .build()
        .map_err(|e| PortError::internal(format!("message attribute: {e}")))
}

fn new_attempt_id() -> String {
    format!(
        "kiro-{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    )
}

impl SqsQueue {
    /// A queue adapter on `client` (built from [`super::settings::sdk_config`], or a
    /// mocked client in tests).
    pub fn new(client: Client, settings: SqsSettings, clock: Arc<dyn Clock>) -> Self {
        SqsQueue {
            client,
            settings,
            clock,
            policy: RetryPolicy::default(),
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

    /// The same adapter with another retry policy.
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
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
        if self.ledger().is_retired(receipt.as_str()) {
            return Err(stale(receipt.as_str()));
        }
        Ok(())
    }

    async fn send_raw(
        &self,
        queue_url: &str,
        body: &str,
        group: &str,
        dedup: &str,
        attributes: &BTreeMap<String, String>,
        xray: Option<&str>,
    ) -> Result<String, PortError> {
        super::sqs_limits::check_send(body, group, dedup, attributes)?;
        let mut attrs = HashMap::new();
        for (k, v) in attributes {
            attrs.insert(k.clone(), string_attr(v)?);
        }
        let sys = match xray {
            Some(h) => Some(HashMap::from([(
                MessageSystemAttributeNameForSends::AwsTraceHeader,
                MessageSystemAttributeValue::builder()
                    .data_type("String")
                    .string_value(h)
                    .build()
                    .map_err(|e| PortError::internal(format!("system attribute: {e}")))?,
            )])),
            None => None,
        };
        let out = retry(&self.policy, |_| {
            let req = self
                .client
                .send_message()
                .queue_url(queue_url)
                .message_body(body)
                .message_group_id(group)
                .message_deduplication_id(dedup)
                .set_message_attributes(Some(attrs.clone()))
                .set_message_system_attributes(sys.clone());
            async move {
                req.send()
                    .await
                    .map_err(|e| classify("sqs:SendMessage", &e))
            }
        })
        .await?;
        out.message_id
            .ok_or_else(|| PortError::internal("sqs:SendMessage returned no message id".to_owned()))
    }

    async fn receive_raw(
        &self,
        queue_url: &str,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Message>, PortError> {
        let attempt_id = Mutex::new(new_attempt_id());
        let out = retry(&self.policy, |a| {
            let id = {
                let mut g = match attempt_id.lock() {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
                if a.previous == Some(FailureClass::Throttled) {
                    *g = new_attempt_id();
                }
                g.clone()
            };
            let req = self
                .client
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(max.clamp(1, BATCH) as i32)
                .wait_time_seconds(secs(wait).min(20))
                .visibility_timeout(secs(visibility))
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
                .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
                .message_system_attribute_names(MessageSystemAttributeName::MessageDeduplicationId)
                .message_system_attribute_names(MessageSystemAttributeName::AwsTraceHeader)
                .message_attribute_names("All")
                .receive_request_attempt_id(id);
            async move {
                req.send()
                    .await
                    .map_err(|e| classify("sqs:ReceiveMessage", &e))
            }
        })
        .await?;
        Ok(out.messages.unwrap_or_default())
    }

    /// Change the visibility of up to 10 receipts in one call; one result per receipt.
    async fn visibility_batch(
        &self,
        queue_url: &str,
        entries: &[(String, Duration)],
    ) -> Result<Vec<Result<(), PortError>>, PortError> {
        let mut built = Vec::with_capacity(entries.len());
        for (i, (receipt, vis)) in entries.iter().enumerate() {
            built.push(
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(receipt)
                    .visibility_timeout(secs(*vis))
                    .build()
                    .map_err(|e| PortError::internal(format!("visibility entry: {e}")))?,
            );
        }
        let out = retry(&self.policy, |_| {
            let req = self
                .client
                .change_message_visibility_batch()
                .queue_url(queue_url)
                .set_entries(Some(built.clone()));
            async move {
                req.send()
                    .await
                    .map_err(|e| classify("sqs:ChangeMessageVisibilityBatch", &e))
            }
        })
        .await?;
        Ok(entry_results(
            entries.len(),
            out.failed,
            "sqs:ChangeMessageVisibilityBatch",
        ))
    }

    /// `DeleteMessageBatch` of at most 10 receipts; one result per receipt.
    async fn delete_batch(
        &self,
        queue_url: &str,
        receipts: &[String],
    ) -> Result<Vec<Result<(), PortError>>, PortError> {
        let mut built = Vec::with_capacity(receipts.len());
        for (i, receipt) in receipts.iter().enumerate() {
            built.push(
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(receipt)
                    .build()
                    .map_err(|e| PortError::internal(format!("delete entry: {e}")))?,
            );
        }
        let out = retry(&self.policy, |_| {
            let req = self
                .client
                .delete_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(built.clone()));
            async move {
                req.send()
                    .await
                    .map_err(|e| classify("sqs:DeleteMessageBatch", &e))
            }
        })
        .await?;
        Ok(entry_results(
            receipts.len(),
            out.failed,
            "sqs:DeleteMessageBatch",
        ))
    }

    async fn delete_raw(&self, queue_url: &str, receipt: &str) -> Result<(), PortError> {
        retry(&self.policy, |_| {
            let req = self
                .client
                .delete_message()
                .queue_url(queue_url)
                .receipt_handle(receipt);
            async move {
                req.send()
                    .await
                    .map_err(|e| classify("sqs:DeleteMessage", &e))
            }
        })
        .await?;
        Ok(())
    }

    async fn attributes(
        &self,
        queue_url: &str,
        names: &[QueueAttributeName],
    ) -> Result<HashMap<QueueAttributeName, String>, PortError> {
        let out = retry(&self.policy, |_| {
            let req = self
                .client
                .get_queue_attributes()
                .queue_url(queue_url)
                .set_attribute_names(Some(names.to_vec()));
            async move {
                req.send()
                    .await
                    .map_err(|e| classify("sqs:GetQueueAttributes", &e))
            }
        })
        .await?;
        Ok(out.attributes.unwrap_or_default())
    }

    /// Receive what the DLQ offers (up to `limit`), invisible for the list visibility.
    async fn dlq_take(&self, limit: usize) -> Result<Vec<(Message, DeadLetterEntry)>, PortError> {
        let mut got = Vec::new();
        while got.len() < limit {
            let batch = self
                .receive_raw(
                    &self.settings.dlq_url,
                    (limit - got.len()).min(BATCH),
                    Duration::ZERO,
                    self.settings.list_visibility,
                )
                .await?;
            if batch.is_empty() {
                break;
            }
            for m in batch {
                let entry = dead_letter_entry(&m);
                got.push((m, entry));
            }
        }
        Ok(got)
    }

    /// Make DLQ messages visible again at once.
    async fn dlq_give_back(&self, messages: &[&Message]) -> Result<(), PortError> {
        let receipts: Vec<(String, Duration)> = messages
            .iter()
            .filter_map(|m| m.receipt_handle.clone())
            .map(|r| (r, Duration::ZERO))
            .collect();
        for chunk in receipts.chunks(BATCH) {
            for r in self.visibility_batch(&self.settings.dlq_url, chunk).await? {
                r?;
            }
        }
        Ok(())
    }

    async fn queue_arn(&self, url: &str) -> Result<String, PortError> {
        self.attributes(url, &[QueueAttributeName::QueueArn])
            .await?
            .remove(&QueueAttributeName::QueueArn)
            .ok_or_else(|| PortError::internal(format!("no QueueArn for {url}")))
    }
}

fn sys_attr(m: &Message, name: MessageSystemAttributeName) -> Option<&str> {
    m.attributes
        .as_ref()
        .and_then(|a| a.get(&name))
        .map(String::as_str)
}

/// The queue's name: the last path segment of its URL.
fn queue_name(url: &str) -> &str {
    url.trim_end_matches('/').rsplit('/').next().unwrap_or(url)
}

fn message_attrs(m: &Message) -> BTreeMap<String, String> {
    m.message_attributes
        .iter()
        .flatten()
        .filter_map(|(k, v)| v.string_value.clone().map(|s| (k.clone(), s)))
        .collect()
}

fn trace_of(m: &Message, attrs: &BTreeMap<String, String>) -> TraceContext {
    use kiro_protocol::ports::queue::attrs as a;
    TraceContext {
        traceparent: attrs.get(a::TRACEPARENT).cloned(),
        tracestate: attrs.get(a::TRACESTATE).cloned(),
        xray: sys_attr(m, MessageSystemAttributeName::AwsTraceHeader).map(str::to_owned),
    }
}

fn dead_letter_entry(m: &Message) -> DeadLetterEntry {
    let attrs = message_attrs(m);
    let letter = attrs
        .get(ATTR_DEAD_LETTER)
        .and_then(|j| serde_json::from_str::<DeadLetter>(j).ok())
        .unwrap_or_else(|| DeadLetter {
            reason: "moved by the queue's redrive policy".to_owned(),
            class: FailureClass::Internal,
            attempts: Vec::new(),
            fence: None,
            build_id: None,
            trace: trace_of(m, &attrs),
        });
    let id = m.message_id.clone().unwrap_or_default();
    DeadLetterEntry {
        original_id: MessageId::new(attrs.get(ATTR_ORIGINAL_ID).cloned().unwrap_or(id.clone())),
        id: MessageId::new(id),
        group: sys_attr(m, MessageSystemAttributeName::MessageGroupId)
            .unwrap_or_default()
            .to_owned(),
        body: m.body.clone().unwrap_or_default(),
        letter,
        dead_lettered_at: attrs
            .get(ATTR_DEAD_LETTERED_AT)
            .and_then(|s| s.parse().ok())
            .or_else(|| {
                sys_attr(m, MessageSystemAttributeName::SentTimestamp).and_then(|s| s.parse().ok())
            })
            .map(Timestamp)
            .unwrap_or(Timestamp::ZERO),
        receive_count: attrs
            .get(ATTR_RECEIVE_COUNT)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
    }
}

fn attr_count(attrs: &HashMap<QueueAttributeName, String>, name: QueueAttributeName) -> u64 {
    attrs
        .get(&name)
        .and_then(|s| s.parse().ok())
        .unwrap_or_default()
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
            if let Some((id, _)) = l.sent.get(msg.dedup.as_str()) {
                return Ok(SendOutcome {
                    message_id: MessageId::new(id.clone()),
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
        self.ledger()
            .sent
            .insert(msg.dedup.as_str().to_owned(), (id.clone(), now));
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
                group: sys_attr(&m, MessageSystemAttributeName::MessageGroupId)
                    .unwrap_or_default()
                    .to_owned(),
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
                if ledger.is_retired(r.as_str()) {
                    results[i] = Some(Err(stale(r.as_str())));
                    continue;
                }
                let used = ledger
                    .live
                    .get(r.as_str())
                    .map(|(_, at)| now.since(*at))
                    .unwrap_or_default();
                let left = MAX_TOTAL_VISIBILITY.saturating_sub(used);
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

    #[instrument(skip_all, fields(message = %delivery.message_id, class = %letter.class))]
    async fn dead_letter(&self, delivery: &Delivery, letter: &DeadLetter) -> Result<(), PortError> {
        self.check_current(&delivery.receipt)?;
        let now = self.clock.now();
        let mut attrs = standard_attributes(&delivery.trace);
        attrs.insert(
            ATTR_ORIGINAL_ID.to_owned(),
            delivery.message_id.as_str().to_owned(),
        );
        attrs.insert(ATTR_DEAD_LETTERED_AT.to_owned(), now.millis().to_string());
        attrs.insert(
            ATTR_RECEIVE_COUNT.to_owned(),
            delivery.receive_count.to_string(),
        );
        // The letter is shortened if the message would not fit otherwise (a full history
        // on a large body): a dead letter must never fail for its size.
        let json =
            super::sqs_limits::letter_that_fits(&delivery.body, &attrs, ATTR_DEAD_LETTER, letter)?;
        attrs.insert(ATTR_DEAD_LETTER.to_owned(), json);
        let dedup = format!("dl-{}-{}", delivery.message_id, delivery.receive_count);
        self.send_raw(
            &self.settings.dlq_url,
            &delivery.body,
            &delivery.group,
            &dedup,
            &attrs,
            delivery.trace.xray.as_deref(),
        )
        .await?;
        self.delete_raw(&self.settings.queue_url, delivery.receipt.as_str())
            .await?;
        self.ledger().retire(delivery.receipt.as_str(), now);
        Ok(())
    }

    #[instrument(skip_all, fields(limit))]
    async fn dlq_list(&self, limit: usize) -> Result<Vec<DeadLetterEntry>, PortError> {
        let taken = self.dlq_take(limit).await?;
        let msgs: Vec<&Message> = taken.iter().map(|(m, _)| m).collect();
        self.dlq_give_back(&msgs).await?;
        Ok(taken.into_iter().map(|(_, e)| e).collect())
    }

    #[instrument(skip_all, fields(dry_run))]
    async fn dlq_replay(
        &self,
        selection: &DlqSelection,
        dry_run: bool,
    ) -> Result<ReplayReport, PortError> {
        let now = self.clock.now();
        let taken = self.dlq_take(usize::MAX).await?;
        let mut report = ReplayReport {
            dry_run,
            ..Default::default()
        };
        let mut give_back: Vec<&Message> = Vec::new();
        let mut failure: Option<PortError> = None;
        for (m, e) in &taken {
            if !selection.matches(e, now) || failure.is_some() {
                give_back.push(m);
                continue;
            }
            report.selected.push(e.id.clone());
            if dry_run {
                give_back.push(m);
                continue;
            }
            let mut attrs = message_attrs(m);
            for k in [
                ATTR_DEAD_LETTER,
                ATTR_ORIGINAL_ID,
                ATTR_DEAD_LETTERED_AT,
                ATTR_RECEIVE_COUNT,
            ] {
                attrs.remove(k);
            }
            let dedup = format!("replay-{}", e.id);
            let sent = self
                .send_raw(
                    &self.settings.queue_url,
                    &e.body,
                    &e.group,
                    &dedup,
                    &attrs,
                    e.letter.trace.xray.as_deref(),
                )
                .await;
            match sent {
                Ok(id) => {
                    report.replayed.push(MessageId::new(id));
                    if let Some(r) = &m.receipt_handle
                        && let Err(err) = self.delete_raw(&self.settings.dlq_url, r).await
                    {
                        failure = Some(err);
                    }
                }
                Err(err) => {
                    give_back.push(m);
                    failure = Some(err);
                }
            }
        }
        self.dlq_give_back(&give_back).await?;
        match failure {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    #[instrument(skip_all)]
    async fn dlq_redrive(&self) -> Result<u64, PortError> {
        let waiting = attr_count(
            &self
                .attributes(
                    &self.settings.dlq_url,
                    &[QueueAttributeName::ApproximateNumberOfMessages],
                )
                .await?,
            QueueAttributeName::ApproximateNumberOfMessages,
        );
        if waiting == 0 {
            return Ok(0);
        }
        let source = self.queue_arn(&self.settings.dlq_url).await?;
        let destination = self.queue_arn(&self.settings.queue_url).await?;
        let out = retry(&self.policy, |_| {
            let req = self
                .client
                .start_message_move_task()
                .source_arn(&source)
                .destination_arn(&destination);
            async move {
                req.send()
                    .await
                    .map_err(|e| classify("sqs:StartMessageMoveTask", &e))
            }
        })
        .await?;
        tracing::info!(
            task = out.task_handle.as_deref().unwrap_or(""),
            messages = waiting,
            "DLQ redrive started"
        );
        Ok(waiting)
    }

    /// `PurgeQueue` on the DLQ; the count is SQS's approximate number of messages just
    /// before (SQS deletes asynchronously, within 60 seconds).
    #[instrument(skip_all)]
    async fn dlq_purge(&self) -> Result<u64, PortError> {
        let attrs = self
            .attributes(
                &self.settings.dlq_url,
                &[
                    QueueAttributeName::ApproximateNumberOfMessages,
                    QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                ],
            )
            .await?;
        let waiting = attr_count(&attrs, QueueAttributeName::ApproximateNumberOfMessages)
            + attr_count(
                &attrs,
                QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            );
        retry(&self.policy, |_| {
            let req = self.client.purge_queue().queue_url(&self.settings.dlq_url);
            async move { req.send().await.map_err(|e| classify("sqs:PurgeQueue", &e)) }
        })
        .await?;
        tracing::info!(messages = waiting, "DLQ purged");
        Ok(waiting)
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
        let dlq = self
            .attributes(
                &self.settings.dlq_url,
                &[
                    QueueAttributeName::ApproximateNumberOfMessages,
                    QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                ],
            )
            .await?;
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
            dead_letters: attr_count(&dlq, QueueAttributeName::ApproximateNumberOfMessages)
                + attr_count(
                    &dlq,
                    QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                ),
        })
    }
}

/// Create a FIFO queue and its FIFO DLQ named `<name>.fifo` and `<name>-dlq.fifo`
/// (tests and operators); returns their URLs. The redrive policy's `maxReceiveCount`
/// is a high safety net: dead-lettering is explicit.
#[cfg(any(test, feature = "testing"))]
pub async fn create_queues(client: &Client, name: &str) -> Result<(String, String), PortError> {
    let dlq = client
        .create_queue()
        .queue_name(format!("{name}-dlq.fifo"))
        .attributes(QueueAttributeName::FifoQueue, "true")
        .send()
        .await
        .map_err(|e| classify("sqs:CreateQueue", &e))?;
    let dlq_url = dlq.queue_url.unwrap_or_default();
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| classify("sqs:GetQueueAttributes", &e))?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .unwrap_or_default();
    let policy = serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 100});
    let main = client
        .create_queue()
        .queue_name(format!("{name}.fifo"))
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::RedrivePolicy, policy.to_string())
        .send()
        .await
        .map_err(|e| classify("sqs:CreateQueue", &e))?;
    Ok((main.queue_url.unwrap_or_default(), dlq_url))
}

#[cfg(test)]
mod tests {
    use super::queue_name;

    #[test]
    fn the_queue_name_is_the_last_segment_of_its_url() {
        assert_eq!(
            queue_name("https://sqs.eu-west-1.amazonaws.com/123456789012/kiro-work.fifo"),
            "kiro-work.fifo"
        );
        assert_eq!(queue_name("http://127.0.0.1:5000/123/q.fifo/"), "q.fifo");
        assert_eq!(queue_name("q"), "q");
    }
}
