//! The embedded FIFO queue: SQS FIFO semantics in SQLite transactions.
//!
//! Owns the tables `queue_messages` (the main queue), `queue_groups` (one row per
//! non-empty message group: its head message and when that head is available),
//! `queue_dedup` (deduplication ids with their expiry) and `queue_dlq` (the dead-letter
//! queue).
//!
//! Invariants:
//! - only the **head** (lowest sequence number) of a group is ever delivered, so
//!   messages of a group are delivered in send order and a group is blocked while its
//!   head is in flight or delayed. One receive returns at most one message per group
//!   (the simplest correct choice: a consumer never has to serialise a batch itself);
//!   several groups may be served by one receive, oldest head first;
//! - every state change is one `BEGIN IMMEDIATE` transaction, so several processes may
//!   share the database file and a crash never leaves a half-done change (a dead letter
//!   is written and its message deleted together; a replayed letter is re-sent and
//!   removed from the DLQ together);
//! - a receipt is unique per receive; `ack`, `extend`, `release` and `dead_letter` match
//!   on the current receipt only, so a stale one fails with `FenceLost` and changes
//!   nothing. `release` retires the receipt (the message is given back);
//! - a deduplication id is remembered for the dedup window even after its message is
//!   deleted;
//! - visibility (from `receive`, `extend` or `release`) never reaches beyond 12 hours
//!   after the receive that issued the receipt (SQS's cap); longer requests are capped.

use async_trait::async_trait;
use kiro_protocol::{
    Clock, DeadLetter, Delivery, Destination, DlqListing, DlqSelection, MessageId, OutgoingMessage,
    PortError, QueueDepth, Receipt, ReplayProgress, ReplayReport, SendOutcome, Timestamp,
    WorkQueue,
};
use kiro_statedb::EmbeddedDb;
use rusqlite::{OptionalExtension, params};
use std::sync::Arc;
use std::time::Duration;
use tracing::instrument;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS queue_messages (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    grp           TEXT NOT NULL,
    dedup         TEXT NOT NULL,
    body          TEXT NOT NULL,
    trace         TEXT NOT NULL,
    attributes    TEXT NOT NULL,
    sent_at       INTEGER NOT NULL,
    visible_at    INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt       TEXT,
    received_at   INTEGER
);
CREATE INDEX IF NOT EXISTS queue_messages_group ON queue_messages(grp, seq);
CREATE INDEX IF NOT EXISTS queue_messages_visible ON queue_messages(visible_at);
CREATE UNIQUE INDEX IF NOT EXISTS queue_messages_receipt ON queue_messages(receipt);
CREATE TABLE IF NOT EXISTS queue_groups (
    grp          TEXT PRIMARY KEY,
    head_seq     INTEGER NOT NULL,
    available_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_groups_available ON queue_groups(available_at, head_seq);
CREATE TABLE IF NOT EXISTS queue_dedup (
    dedup      TEXT PRIMARY KEY,
    message_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_dedup_expiry ON queue_dedup(expires_at);
CREATE TABLE IF NOT EXISTS queue_dlq (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    original_id      TEXT NOT NULL,
    grp              TEXT NOT NULL,
    dedup            TEXT NOT NULL,
    body             TEXT NOT NULL,
    trace            TEXT NOT NULL,
    attributes       TEXT NOT NULL,
    letter           TEXT NOT NULL,
    dead_lettered_at INTEGER NOT NULL,
    receive_count    INTEGER NOT NULL
);
"#;

/// The embedded [`WorkQueue`].
#[derive(Debug, Clone)]
pub struct SqliteQueue {
    db: EmbeddedDb,
    clock: Arc<dyn Clock>,
    config: QueueConfig,
}

impl SqliteQueue {
    /// Create the queue's tables if needed and return a handle on them.
    pub fn new(
        db: EmbeddedDb,
        clock: Arc<dyn Clock>,
        config: QueueConfig,
    ) -> Result<Self, PortError> {
        db.migrate(SCHEMA)?;
        Ok(SqliteQueue { db, clock, config })
    }

    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// One non-waiting receive attempt.
    async fn try_receive(&self, max: usize) -> Result<Vec<Delivery>, PortError> {
        let now = self.clock.now();
        let config = self.config;
        self.db
            .call(move |c| {
                let tx = immediate(c)?;
                let out = receive_tx(&tx, max, now, &config)?;
                tx.commit()?;
                Ok(out)
            })
            .await
    }
}

mod config;
mod store;

pub use config::{MAX_VISIBILITY, POLL_INTERVAL, QueueConfig};
use store::*;

#[async_trait]
impl WorkQueue for SqliteQueue {
    fn destination(&self) -> Destination {
        Destination {
            system: "kiro_sqlite",
            name: "work".to_owned(),
        }
    }

    #[instrument(skip_all, fields(group = %msg.group, dedup = %msg.dedup))]
    async fn send(&self, msg: OutgoingMessage) -> Result<SendOutcome, PortError> {
        let now = self.clock.now();
        let window = self.config.dedup_window;
        let trace = encode_json(&msg.trace)?;
        let attributes = encode_json(&msg.attributes)?;
        self.db
            .call(move |c| {
                let tx = immediate(c)?;
                tx.prepare_cached("DELETE FROM queue_dedup WHERE expires_at <= ?1")
                    .and_then(|mut s| s.execute(params![now.0]))?;
                let seen: Option<String> = tx
                    .prepare_cached("SELECT message_id FROM queue_dedup WHERE dedup = ?1")
                    .and_then(|mut s| {
                        s.query_row(params![msg.dedup.as_str()], |r| r.get(0))
                            .optional()
                    })?;
                if let Some(first) = seen {
                    return Ok(SendOutcome {
                        message_id: MessageId::new(first),
                        duplicate: true,
                    });
                }
                let id = insert_message(
                    &tx,
                    msg.group.as_str(),
                    msg.dedup.as_str(),
                    &msg.body,
                    &trace,
                    &attributes,
                    now,
                    window,
                )?;
                tx.commit()?;
                Ok(SendOutcome {
                    message_id: id,
                    duplicate: false,
                })
            })
            .await
    }

    #[instrument(skip_all, fields(max, wait_ms = wait.as_millis() as u64))]
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, PortError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let got = self.try_receive(max).await?;
            if !got.is_empty() {
                return Ok(got);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(got);
            }
            tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
        }
    }

    #[instrument(skip_all, fields(receipts = receipts.len()))]
    async fn extend(
        &self,
        receipts: &[Receipt],
        visibility: Duration,
    ) -> Result<Vec<Result<(), PortError>>, PortError> {
        let now = self.clock.now();
        let receipts: Vec<String> = receipts.iter().map(|r| r.as_str().to_owned()).collect();
        self.db
            .call(move |c| {
                let tx = immediate(c)?;
                let mut out = Vec::with_capacity(receipts.len());
                for receipt in &receipts {
                    match by_receipt(&tx, receipt)? {
                        None => out.push(Err(fence_lost("extend"))),
                        Some((seq, grp, received_at)) => {
                            let cap = Timestamp(received_at).plus(MAX_VISIBILITY);
                            let visible_at = now.plus(visibility).min(cap);
                            set_visibility(&tx, seq, &grp, visible_at.0, Some(receipt))?;
                            out.push(Ok(()));
                        }
                    }
                }
                tx.commit()?;
                Ok(out)
            })
            .await
    }

    #[instrument(skip_all)]
    async fn ack(&self, receipt: &Receipt) -> Result<(), PortError> {
        let receipt = receipt.as_str().to_owned();
        self.db
            .call(move |c| {
                let tx = immediate(c)?;
                let (seq, grp, _) = by_receipt(&tx, &receipt)?.ok_or_else(|| fence_lost("ack"))?;
                tx.prepare_cached("DELETE FROM queue_messages WHERE seq = ?1")
                    .and_then(|mut s| s.execute(params![seq]))?;
                advance_head(&tx, &grp)?;
                Ok(tx.commit()?)
            })
            .await
    }

    #[instrument(skip_all, fields(delay_ms = delay.as_millis() as u64))]
    async fn release(&self, receipt: &Receipt, delay: Duration) -> Result<(), PortError> {
        let now = self.clock.now();
        let receipt = receipt.as_str().to_owned();
        self.db
            .call(move |c| {
                let tx = immediate(c)?;
                let (seq, grp, received_at) =
                    by_receipt(&tx, &receipt)?.ok_or_else(|| fence_lost("release"))?;
                let cap = Timestamp(received_at).plus(MAX_VISIBILITY);
                let visible_at = now.plus(delay).min(cap);
                set_visibility(&tx, seq, &grp, visible_at.0, None)?;
                Ok(tx.commit()?)
            })
            .await
    }

    #[instrument(skip_all, fields(message_id = %delivery.message_id, group = %delivery.group, class = %letter.class))]
    async fn dead_letter(&self, delivery: &Delivery, letter: &DeadLetter) -> Result<(), PortError> {
        let now = self.clock.now();
        let receipt = delivery.receipt.as_str().to_owned();
        let letter = letter.clone();
        self.db
            .call(move |c| {
                let tx = immediate(c)?;
                let (seq, _, _) =
                    by_receipt(&tx, &receipt)?.ok_or_else(|| fence_lost("dead_letter"))?;
                move_to_dlq(&tx, seq, &letter, now)?;
                Ok(tx.commit()?)
            })
            .await
    }

    async fn dlq_list(&self, limit: usize) -> Result<DlqListing, PortError> {
        self.db
            .call(move |c| {
                let tx = c.transaction()?;
                let entries = load_dlq(&tx, Some(limit))?
                    .into_iter()
                    .map(|r| r.entry)
                    .collect();
                let total: i64 =
                    tx.query_row("SELECT COUNT(*) FROM queue_dlq", [], |r| r.get(0))?;
                Ok(DlqListing::limited(
                    entries,
                    u64::try_from(total).unwrap_or(0),
                    limit,
                ))
            })
            .await
    }

    #[instrument(skip_all, fields(dry_run))]
    async fn dlq_replay_with(
        &self,
        selection: &DlqSelection,
        dry_run: bool,
        progress: &mut dyn ReplayProgress,
    ) -> Result<ReplayReport, PortError> {
        let now = self.clock.now();
        let window = self.config.dedup_window;
        let selection = selection.clone();
        // One read sees every letter; each replay is then its own transaction, so a
        // replay stopped between two letters has moved exactly those reported.
        let rows: Vec<DlqRow> = self
            .db
            .call(move |c| {
                Ok(load_dlq(c, None)?
                    .into_iter()
                    .filter(|r| selection.matches(&r.entry, now))
                    .collect())
            })
            .await?;
        let mut report = ReplayReport {
            selected: rows.iter().map(|r| r.entry.id.clone()).collect(),
            replayed: Vec::new(),
            dry_run,
            unexamined: 0,
        };
        if dry_run {
            return Ok(report);
        }
        for row in rows {
            progress.before(&row.entry).await;
            let (row, id) = self
                .db
                .call(move |c| {
                    let id = replay_one(c, &row, now, window)?;
                    Ok((row, id))
                })
                .await?;
            if let Some(id) = id {
                progress.replayed(&row.entry, &id);
                report.replayed.push(id);
            }
        }
        Ok(report)
    }

    async fn dlq_redrive(&self) -> Result<u64, PortError> {
        let all = DlqSelection {
            all: true,
            ..Default::default()
        };
        let report = self.dlq_replay(&all, false).await?;
        Ok(u64::try_from(report.replayed.len()).unwrap_or(u64::MAX))
    }

    #[instrument(skip_all)]
    async fn dlq_purge(&self) -> Result<u64, PortError> {
        self.db
            .call(move |c| {
                let tx = immediate(c)?;
                let n = tx.execute("DELETE FROM queue_dlq", [])?;
                tx.commit()?;
                Ok(u64::try_from(n).unwrap_or(u64::MAX))
            })
            .await
    }

    async fn depth(&self) -> Result<QueueDepth, PortError> {
        let now = self.clock.now();
        self.db
            .call(move |c| {
                let (visible, in_flight, delayed): (i64, i64, i64) = c
                    .prepare_cached(
                        "SELECT
                           COALESCE(SUM(visible_at <= ?1), 0),
                           COALESCE(SUM(visible_at > ?1 AND receipt IS NOT NULL), 0),
                           COALESCE(SUM(visible_at > ?1 AND receipt IS NULL), 0)
                         FROM queue_messages",
                    )
                    .and_then(|mut s| {
                        s.query_row(params![now.0], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    })?;
                let dead: i64 = c.query_row("SELECT COUNT(*) FROM queue_dlq", [], |r| r.get(0))?;
                let u = |n: i64| u64::try_from(n).unwrap_or(0);
                Ok(QueueDepth {
                    visible: u(visible),
                    in_flight: u(in_flight),
                    delayed: u(delayed),
                    dead_letters: u(dead),
                })
            })
            .await
    }
}

#[cfg(test)]
mod tests;
