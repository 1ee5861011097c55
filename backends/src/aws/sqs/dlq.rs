//! The dead-letter side of the queue: moving a message to the FIFO DLQ with its
//! [`DeadLetter`] record, and listing, replaying, redriving and purging the DLQ.
//!
//! Invariant: listing and replaying lose nothing — every DLQ message received and not
//! replayed is given back (visible again at once; should that call fail, once the list
//! visibility ends), and a replayed letter is deleted from the DLQ only after its send to
//! the main queue succeeded. A replay is one pass over the DLQ whatever its size (each
//! letter received once, or once more per list visibility it is held beyond).

use super::client::{attr_count, group_of, message_attrs, sys_attr, trace_of};
use super::{BATCH, SqsQueue, limits};
use crate::aws::call::call;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};
use kiro_protocol::ports::queue::standard_attributes;
use kiro_protocol::{
    DeadLetter, DeadLetterEntry, Delivery, DlqListing, DlqSelection, FailureClass, MessageId,
    PortError, ReplayProgress, ReplayReport, Timestamp,
};
use std::collections::HashMap;
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

    /// `WorkQueue::dlq_replay_with`: one pass over the DLQ. Receive a batch (hidden for
    /// the list visibility), replay each selected letter of it in turn (send it to the
    /// main queue, delete it from the DLQ, tell `progress`), hold the others, and receive
    /// again until the DLQ offers nothing new; then give every held letter back at once.
    /// Deleting a replayed letter lets the FIFO DLQ hand out the next letters of its
    /// group, so the pass reaches every letter not waiting behind a held (unselected)
    /// one; those are reported as unexamined. A letter costs a tenth of a receive, a send
    /// and a delete (replayed) or two tenths of a call (held): linear in the DLQ's size.
    ///
    /// Stopped midway (an error, or the future dropped), the pass leaves every letter it
    /// has not replayed in the DLQ (a held one visible again at once, or when its list
    /// visibility ends); only a failed delete after a successful send leaves a letter in
    /// both queues, and the error says so.
    pub(super) async fn replay_dlq(
        &self,
        selection: &DlqSelection,
        dry_run: bool,
        progress: &mut dyn ReplayProgress,
    ) -> Result<ReplayReport, PortError> {
        let size = self.dlq_size().await?;
        let mut pass = ReplayPass {
            report: ReplayReport {
                dry_run,
                ..Default::default()
            },
            held: Vec::new(),
            seen: HashMap::new(),
        };
        let outcome = self.replay_pass(selection, &mut pass, progress).await;
        self.give_back_held(&pass.held).await;
        outcome?;
        pass.report.unexamined = size.saturating_sub(pass.seen.len() as u64);
        Ok(pass.report)
    }

    /// The receive loop of [`replay_dlq`](Self::replay_dlq); what it does not replay
    /// ends up in `pass.held`, even when it fails.
    async fn replay_pass(
        &self,
        selection: &DlqSelection,
        pass: &mut ReplayPass,
        progress: &mut dyn ReplayProgress,
    ) -> Result<(), PortError> {
        let now = self.clock.now();
        loop {
            let batch = self
                .receive_raw(
                    &self.settings.dlq_url,
                    BATCH,
                    Duration::ZERO,
                    self.settings.list_visibility,
                )
                .await?;
            if batch.is_empty() {
                return Ok(());
            }
            let mut batch = batch.into_iter();
            while let Some(m) = batch.next() {
                let e = dead_letter_entry(&m);
                if let Some(&at) = pass.seen.get(e.id.as_str()) {
                    // Held for longer than the list visibility and received again: only
                    // the newest receipt gives it back.
                    if let Some(i) = at {
                        pass.held[i] = m;
                    }
                    continue;
                }
                let chosen = selection.matches(&e, now);
                if chosen {
                    pass.report.selected.push(e.id.clone());
                }
                if !chosen || pass.report.dry_run {
                    pass.hold(e.id.as_str(), m);
                    continue;
                }
                match self.replay_letter(&m, &e, progress).await {
                    Ok(new_id) => {
                        pass.seen.insert(e.id.as_str().to_owned(), None);
                        progress.replayed(&e, &new_id);
                        pass.report.replayed.push(new_id);
                    }
                    Err(err) => {
                        pass.hold(e.id.as_str(), m);
                        for rest in batch {
                            let id = m_id(&rest);
                            pass.hold(&id, rest);
                        }
                        return Err(err);
                    }
                }
            }
        }
    }

    /// Give back what a replay held. A letter held beyond its list visibility is visible
    /// again already and SQS may refuse its old receipt: a refusal is logged, never an
    /// error, since the letter is in the DLQ either way (visible now, or when its list
    /// visibility ends), and the replay itself succeeded.
    async fn give_back_held(&self, held: &[Message]) {
        let receipts: Vec<(String, Duration)> = held
            .iter()
            .filter_map(|m| m.receipt_handle.clone())
            .map(|r| (r, Duration::ZERO))
            .collect();
        let mut refused = 0usize;
        for chunk in receipts.chunks(BATCH) {
            match self.visibility_batch(&self.settings.dlq_url, chunk).await {
                Ok(results) => refused += results.iter().filter(|r| r.is_err()).count(),
                Err(_) => refused += chunk.len(),
            }
        }
        if refused > 0 {
            tracing::warn!(
                letters = refused,
                "dead letters not given back at once; they are visible again when their \
                 list visibility ends"
            );
        }
    }

    /// Send one dead letter to the main queue in its group (dedup id `replay-<dlq id>`,
    /// the dead-letter attributes dropped), then delete it from the DLQ.
    async fn replay_letter(
        &self,
        m: &Message,
        e: &DeadLetterEntry,
        progress: &mut dyn ReplayProgress,
    ) -> Result<MessageId, PortError> {
        progress.before(e).await;
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
        let id = self
            .send_raw(
                &self.settings.queue_url,
                &e.body,
                e.group.as_str(),
                &dedup,
                &attrs,
                e.letter.trace.xray.as_deref(),
            )
            .await?;
        if let Some(r) = &m.receipt_handle {
            self.delete_raw(&self.settings.dlq_url, r)
                .await
                .map_err(|err| {
                    PortError::new(
                        err.class,
                        format!(
                            "dead letter {} was sent back as {id} but is still in the \
                             dead-letter queue (replaying it again within 5 minutes \
                             sends nothing twice): {}",
                            e.id, err.message
                        ),
                    )
                })?;
        }
        Ok(MessageId::new(id))
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

/// What one replay pass has done so far.
struct ReplayPass {
    report: ReplayReport,
    /// Letters received and not replayed (their latest receipt), to give back.
    held: Vec<Message>,
    /// Every letter id received: its place in `held`, or `None` once replayed.
    seen: HashMap<String, Option<usize>>,
}

impl ReplayPass {
    fn hold(&mut self, id: &str, m: Message) {
        self.seen.insert(id.to_owned(), Some(self.held.len()));
        self.held.push(m);
    }
}

/// A DLQ message's id (empty if SQS gave none).
fn m_id(m: &Message) -> String {
    m.message_id.clone().unwrap_or_default()
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
