//! The dead-letter side of the queue: moving a message to the FIFO DLQ with its
//! [`DeadLetter`] record, and listing, replaying, redriving and purging the DLQ.
//!
//! Invariant: listing and replaying lose nothing — every DLQ message received and not
//! replayed is given back (visible again at once; should that call fail, once the list
//! visibility ends), and a replayed letter is deleted from the DLQ only after its send to
//! the main queue succeeded.

use super::client::{attr_count, group_of, message_attrs, sys_attr, trace_of};
use super::{BATCH, SqsQueue, limits};
use crate::aws::call::call;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};
use kiro_protocol::ports::queue::standard_attributes;
use kiro_protocol::{
    DeadLetter, DeadLetterEntry, Delivery, DlqListing, DlqSelection, FailureClass, MessageId,
    PortError, ReplayReport, Timestamp,
};
use std::time::Duration;

/// Message attribute holding the dead-letter record (JSON).
pub const ATTR_DEAD_LETTER: &str = "kiro.dead-letter";
/// Message attribute holding the main-queue message id of a dead letter.
pub const ATTR_ORIGINAL_ID: &str = "kiro.original-id";
/// Message attribute holding when the message was dead-lettered (epoch ms).
pub const ATTR_DEAD_LETTERED_AT: &str = "kiro.dead-lettered-at";
/// Message attribute holding the receive count at the time of dead-lettering.
pub const ATTR_RECEIVE_COUNT: &str = "kiro.receive-count";

impl SqsQueue {
    /// `WorkQueue::dead_letter`: send to the DLQ with the letter, then delete from the
    /// main queue.
    pub(super) async fn move_to_dlq(
        &self,
        delivery: &Delivery,
        letter: &DeadLetter,
    ) -> Result<(), PortError> {
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
        let json = limits::letter_that_fits(&delivery.body, &attrs, ATTR_DEAD_LETTER, letter)?;
        attrs.insert(ATTR_DEAD_LETTER.to_owned(), json);
        let dedup = format!("dl-{}-{}", delivery.message_id, delivery.receive_count);
        self.send_raw(
            &self.settings.dlq_url,
            &delivery.body,
            delivery.group.as_str(),
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

    /// `WorkQueue::dlq_list`: take what the DLQ offers and give it all back. A FIFO DLQ
    /// offers only the first letters of each group (the rest wait until those are
    /// deleted), so the listing compares what it saw with the queue's count and says
    /// plainly when, and behind which groups, letters remain unseen.
    pub(super) async fn list_dlq(&self, limit: usize) -> Result<DlqListing, PortError> {
        let total = self.dlq_size().await?;
        let taken = self.dlq_take(limit).await?;
        let msgs: Vec<&Message> = taken.iter().map(|(m, _)| m).collect();
        self.dlq_give_back(&msgs).await?;
        let entries: Vec<DeadLetterEntry> = taken.into_iter().map(|(_, e)| e).collect();
        if entries.len() >= limit {
            return Ok(DlqListing::limited(entries, total, limit));
        }
        let more = total.saturating_sub(entries.len() as u64);
        if more == 0 {
            return Ok(DlqListing::complete(entries));
        }
        let partial = Some(behind_groups(&entries, more));
        Ok(DlqListing {
            entries,
            more,
            partial,
        })
    }

    /// `WorkQueue::dlq_replay`: send the selected letters to the main queue, give back
    /// the rest. A round deletes what it replayed, which lets the DLQ hand out the next
    /// letters of those groups, so rounds repeat while they replay something and letters
    /// remain unseen; what the last round could not reach is reported as unexamined.
    pub(super) async fn replay_dlq(
        &self,
        selection: &DlqSelection,
        dry_run: bool,
    ) -> Result<ReplayReport, PortError> {
        let mut report = ReplayReport {
            dry_run,
            ..Default::default()
        };
        loop {
            let size = self.dlq_size().await?;
            let replayed = report.replayed.len();
            let seen = self.replay_round(selection, &mut report).await?;
            // Another round only when this one replayed something and letters were left
            // unseen (waiting behind a group's first ones).
            if dry_run || report.replayed.len() == replayed || seen as u64 >= size {
                report.unexamined = size.saturating_sub(seen as u64);
                return Ok(report);
            }
        }
    }

    /// One round of [`replay_dlq`](Self::replay_dlq): returns how many letters it saw.
    async fn replay_round(
        &self,
        selection: &DlqSelection,
        report: &mut ReplayReport,
    ) -> Result<usize, PortError> {
        let now = self.clock.now();
        let taken = self.dlq_take(usize::MAX).await?;
        let mut give_back: Vec<&Message> = Vec::new();
        let mut failure: Option<PortError> = None;
        for (m, e) in &taken {
            if !selection.matches(e, now) || failure.is_some() {
                give_back.push(m);
                continue;
            }
            report.selected.push(e.id.clone());
            if report.dry_run {
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
                    e.group.as_str(),
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
            None => Ok(taken.len()),
        }
    }

    /// `WorkQueue::dlq_redrive`: start a message move task from the DLQ to the main queue.
    pub(super) async fn redrive_dlq(&self) -> Result<u64, PortError> {
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
        let out = call(&self.backoff, "sqs:StartMessageMoveTask", |_| {
            self.client
                .start_message_move_task()
                .source_arn(&source)
                .destination_arn(&destination)
                .send()
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
    pub(super) async fn purge_dlq(&self) -> Result<u64, PortError> {
        let waiting = self.dlq_size().await?;
        call(&self.backoff, "sqs:PurgeQueue", |_| {
            self.client
                .purge_queue()
                .queue_url(&self.settings.dlq_url)
                .send()
        })
        .await?;
        tracing::info!(messages = waiting, "DLQ purged");
        Ok(waiting)
    }

    /// SQS's approximate number of messages in the DLQ, visible or not.
    pub(super) async fn dlq_size(&self) -> Result<u64, PortError> {
        let attrs = self
            .attributes(
                &self.settings.dlq_url,
                &[
                    QueueAttributeName::ApproximateNumberOfMessages,
                    QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                ],
            )
            .await?;
        Ok(
            attr_count(&attrs, QueueAttributeName::ApproximateNumberOfMessages)
                + attr_count(
                    &attrs,
                    QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                ),
        )
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
}

/// Why a FIFO DLQ listing of `entries` misses `more` letters, naming the groups seen
/// (the letters missing wait behind some of them).
fn behind_groups(entries: &[DeadLetterEntry], more: u64) -> String {
    let mut groups: Vec<(&str, usize)> = Vec::new();
    for e in entries {
        match groups.iter_mut().find(|(g, _)| *g == e.group.as_str()) {
            Some((_, n)) => *n += 1,
            None => groups.push((e.group.as_str(), 1)),
        }
    }
    let named: Vec<String> = groups
        .iter()
        .map(|(g, n)| format!("{g} ({n} listed)"))
        .collect();
    format!(
        "about {more} more dead letter(s) wait unseen: a FIFO dead-letter queue hands out a \
         group's later letters only once its earlier ones are deleted, and these groups \
         are listed only up to their first letters: {}. Nothing was moved. Replaying a \
         group (`kiro-consumer dlq replay --project <group>`) reaches all of its letters.",
        named.join(", ")
    )
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
        group: group_of(m),
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
