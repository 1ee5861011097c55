//! The raw SQS calls behind the port — each one request through the shared `call` helper
//! (classified, retried by class) — and reading what SQS answers (system and message
//! attributes, trace context, per-entry batch results).
//!
//! Invariant: nothing here knows the receipt ledger; a call here is exactly one SQS
//! operation (plus its retries), so the port methods in [`super`] decide what is sent.

use super::{BATCH, SqsQueue, limits};
use crate::aws::call::{call, random_token};
use aws_sdk_sqs::error::BuildError;
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, ChangeMessageVisibilityBatchRequestEntry,
    DeleteMessageBatchRequestEntry, Message, MessageAttributeValue, MessageSystemAttributeName,
    MessageSystemAttributeNameForSends, MessageSystemAttributeValue, QueueAttributeName,
};
use kiro_protocol::ids::MessageGroup;
use kiro_protocol::{FailureClass, PortError, TraceContext};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// The entries of a batch call, each with its index as id (how [`entry_results`] finds
/// them back); an entry that cannot be built is an internal error naming `what`.
fn indexed<X, T>(
    items: &[X],
    what: &str,
    build: impl Fn(String, &X) -> Result<T, BuildError>,
) -> Result<Vec<T>, PortError> {
    items
        .iter()
        .enumerate()
        .map(|(i, x)| {
            build(i.to_string(), x).map_err(|e| PortError::internal(format!("{what}: {e}")))
        })
        .collect()
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
            let class = crate::aws::classify::class_of_code(&f.code).unwrap_or(if f.sender_fault {
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

/// Whole seconds for SQS, rounded up: a wait or visibility of 300 ms is 1 s, never 0
/// (`WaitTimeSeconds=0` is a short poll, `VisibilityTimeout=0` makes the message visible);
/// only zero is zero.
fn secs(d: Duration) -> i32 {
    let whole = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(whole).unwrap_or(i32::MAX)
}

fn string_attr(v: &str) -> Result<MessageAttributeValue, PortError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(v)
        .build()
        .map_err(|e| PortError::internal(format!("message attribute: {e}")))
}

fn new_attempt_id() -> String {
    format!("kiro-{}", random_token())
}

impl SqsQueue {
    pub(super) async fn send_raw(
        &self,
        queue_url: &str,
        body: &str,
        group: &str,
        dedup: &str,
        attributes: &BTreeMap<String, String>,
        xray: Option<&str>,
    ) -> Result<String, PortError> {
        limits::check_send(body, group, dedup, attributes)?;
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
        let out = call(&self.backoff, "sqs:SendMessage", |_| {
            self.client
                .send_message()
                .queue_url(queue_url)
                .message_body(body)
                .message_group_id(group)
                .message_deduplication_id(dedup)
                .set_message_attributes(Some(attrs.clone()))
                .set_message_system_attributes(sys.clone())
                .send()
        })
        .await?;
        out.message_id
            .ok_or_else(|| PortError::internal("sqs:SendMessage returned no message id".to_owned()))
    }

    pub(super) async fn receive_raw(
        &self,
        queue_url: &str,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Message>, PortError> {
        let mut attempt_id = new_attempt_id();
        let out = call(&self.backoff, "sqs:ReceiveMessage", |a| {
            if a.previous == Some(FailureClass::Throttled) {
                attempt_id = new_attempt_id();
            }
            self.client
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
                .receive_request_attempt_id(attempt_id.clone())
                .send()
        })
        .await?;
        Ok(out.messages.unwrap_or_default())
    }

    /// Change the visibility of up to 10 receipts in one call; one result per receipt.
    pub(super) async fn visibility_batch(
        &self,
        queue_url: &str,
        entries: &[(String, Duration)],
    ) -> Result<Vec<Result<(), PortError>>, PortError> {
        let built = indexed(entries, "visibility entry", |id, (receipt, vis)| {
            ChangeMessageVisibilityBatchRequestEntry::builder()
                .id(id)
                .receipt_handle(receipt)
                .visibility_timeout(secs(*vis))
                .build()
        })?;
        let out = call(&self.backoff, "sqs:ChangeMessageVisibilityBatch", |_| {
            self.client
                .change_message_visibility_batch()
                .queue_url(queue_url)
                .set_entries(Some(built.clone()))
                .send()
        })
        .await?;
        Ok(entry_results(
            entries.len(),
            out.failed,
            "sqs:ChangeMessageVisibilityBatch",
        ))
    }

    /// `DeleteMessageBatch` of at most 10 receipts; one result per receipt.
    pub(super) async fn delete_batch(
        &self,
        queue_url: &str,
        receipts: &[String],
    ) -> Result<Vec<Result<(), PortError>>, PortError> {
        let built = indexed(receipts, "delete entry", |id, receipt| {
            DeleteMessageBatchRequestEntry::builder()
                .id(id)
                .receipt_handle(receipt)
                .build()
        })?;
        let out = call(&self.backoff, "sqs:DeleteMessageBatch", |_| {
            self.client
                .delete_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(built.clone()))
                .send()
        })
        .await?;
        Ok(entry_results(
            receipts.len(),
            out.failed,
            "sqs:DeleteMessageBatch",
        ))
    }

    pub(super) async fn delete_raw(&self, queue_url: &str, receipt: &str) -> Result<(), PortError> {
        call(&self.backoff, "sqs:DeleteMessage", |_| {
            self.client
                .delete_message()
                .queue_url(queue_url)
                .receipt_handle(receipt)
                .send()
        })
        .await?;
        Ok(())
    }

    pub(super) async fn attributes(
        &self,
        queue_url: &str,
        names: &[QueueAttributeName],
    ) -> Result<HashMap<QueueAttributeName, String>, PortError> {
        let out = call(&self.backoff, "sqs:GetQueueAttributes", |_| {
            self.client
                .get_queue_attributes()
                .queue_url(queue_url)
                .set_attribute_names(Some(names.to_vec()))
                .send()
        })
        .await?;
        Ok(out.attributes.unwrap_or_default())
    }

    pub(super) async fn queue_arn(&self, url: &str) -> Result<String, PortError> {
        self.attributes(url, &[QueueAttributeName::QueueArn])
            .await?
            .remove(&QueueAttributeName::QueueArn)
            .ok_or_else(|| PortError::internal(format!("no QueueArn for {url}")))
    }
}

pub(super) fn sys_attr(m: &Message, name: MessageSystemAttributeName) -> Option<&str> {
    m.attributes
        .as_ref()
        .and_then(|a| a.get(&name))
        .map(String::as_str)
}

/// The message's group. SQS only accepts valid groups, so an unreadable one (an
/// emulator's fault) becomes [`MessageGroup::unreadable`], which the consumer
/// dead-letters as not its item's project; the raw value is logged here.
pub(super) fn group_of(m: &Message) -> MessageGroup {
    let raw = sys_attr(m, MessageSystemAttributeName::MessageGroupId).unwrap_or_default();
    MessageGroup::parse(raw).unwrap_or_else(|e| {
        tracing::warn!(message_id = ?m.message_id, error = %e, "message with an unreadable group");
        MessageGroup::unreadable()
    })
}

/// The queue's name: the last path segment of its URL.
pub(super) fn queue_name(url: &str) -> &str {
    url.trim_end_matches('/').rsplit('/').next().unwrap_or(url)
}

pub(super) fn message_attrs(m: &Message) -> BTreeMap<String, String> {
    m.message_attributes
        .iter()
        .flatten()
        .filter_map(|(k, v)| v.string_value.clone().map(|s| (k.clone(), s)))
        .collect()
}

pub(super) fn trace_of(m: &Message, attrs: &BTreeMap<String, String>) -> TraceContext {
    use kiro_protocol::ports::queue::attrs as a;
    TraceContext {
        traceparent: attrs.get(a::TRACEPARENT).cloned(),
        tracestate: attrs.get(a::TRACESTATE).cloned(),
        xray: sys_attr(m, MessageSystemAttributeName::AwsTraceHeader).map(str::to_owned),
    }
}

pub(super) fn attr_count(
    attrs: &HashMap<QueueAttributeName, String>,
    name: QueueAttributeName,
) -> u64 {
    attrs
        .get(&name)
        .and_then(|s| s.parse().ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::{queue_name, secs};
    use std::time::Duration;

    #[test]
    fn seconds_round_up_and_only_zero_is_zero() {
        assert_eq!(secs(Duration::ZERO), 0);
        assert_eq!(secs(Duration::from_millis(1)), 1);
        assert_eq!(secs(Duration::from_millis(50)), 1);
        assert_eq!(secs(Duration::from_millis(999)), 1);
        assert_eq!(secs(Duration::from_secs(1)), 1);
        assert_eq!(secs(Duration::from_millis(19_200)), 20);
        assert_eq!(secs(Duration::from_secs(20)), 20);
        assert_eq!(secs(Duration::from_secs(u64::MAX)), i32::MAX);
    }

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
