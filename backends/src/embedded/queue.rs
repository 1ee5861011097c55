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

use super::rows::RawRow;
use async_trait::async_trait;
use kiro_protocol::{
    Clock, DeadLetter, DeadLetterEntry, DedupId, Delivery, DlqSelection, FailureClass, MessageId,
    OutgoingMessage, PortError, QueueDepth, Receipt, ReplayReport, SendOutcome, Timestamp,
    TraceContext, WorkQueue,
};
use kiro_statedb::{DbError, EmbeddedDb};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::instrument;

/// The longest a message may stay invisible after one receive (SQS: 12 hours).
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);

/// How often `receive` looks again while it waits for a message.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Settings of an embedded queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// How long a received message stays invisible (default 30 s).
    pub visibility_timeout: Duration,
    /// How long a deduplication id is remembered (default 5 minutes).
    pub dedup_window: Duration,
    /// Redrive safety net: a message received more than this many times goes to the
    /// DLQ on its next receive instead of being delivered (default 100).
    pub max_receive_count: u32,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            visibility_timeout: Duration::from_secs(30),
            dedup_window: Duration::from_secs(5 * 60),
            max_receive_count: 100,
        }
    }
}

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

// ---------------------------------------------------------------------------------------
// Rows and conversions
// ---------------------------------------------------------------------------------------

/// A row of `queue_messages`.
#[derive(Debug, Clone)]
struct MsgRow {
    id: String,
    grp: String,
    dedup: String,
    body: String,
    trace: String,
    attributes: String,
    sent_at: i64,
    receive_count: i64,
}

const MSG_NAMES: &[&str] = &[
    "id",
    "grp",
    "dedup",
    "body",
    "trace",
    "attributes",
    "sent_at",
    "receive_count",
];
const MSG_COLUMNS: &str = "id, grp, dedup, body, trace, attributes, sent_at, receive_count";

/// Read message `seq` column by column: the row (always, losslessly) and what in it is
/// malformed (empty when the row is sound).
fn read_msg(tx: &Transaction<'_>, seq: i64) -> Result<(MsgRow, Vec<String>), DbError> {
    let mut raw = tx
        .prepare_cached(&format!(
            "SELECT {MSG_COLUMNS} FROM queue_messages WHERE seq = ?1"
        ))
        .and_then(|mut s| s.query_row(params![seq], |r| RawRow::read(r, MSG_NAMES)))?;
    let row = MsgRow {
        id: raw.text(0),
        grp: raw.text(1),
        dedup: raw.text(2),
        body: raw.text(3),
        trace: raw.text(4),
        attributes: raw.text(5),
        sent_at: raw.int(6),
        receive_count: raw.int(7),
    };
    if let Err(e) = serde_json::from_str::<TraceContext>(&row.trace) {
        raw.problem("trace", format!("not a trace context: {e}"));
    }
    if let Err(e) = serde_json::from_str::<BTreeMap<String, String>>(&row.attributes) {
        raw.problem(
            "attributes",
            format!("not a map of message attributes: {e}"),
        );
    }
    Ok((row, raw.problems().to_vec()))
}

/// A row of `queue_dlq`.
#[derive(Debug, Clone)]
struct DlqRow {
    seq: i64,
    entry: DeadLetterEntry,
    dedup: String,
    trace: String,
    attributes: String,
}

const DLQ_NAMES: &[&str] = &[
    "seq",
    "id",
    "original_id",
    "grp",
    "dedup",
    "body",
    "trace",
    "attributes",
    "letter",
    "dead_lettered_at",
    "receive_count",
];
const DLQ_COLUMNS: &str = "seq, id, original_id, grp, dedup, body, trace, attributes, letter, \
     dead_lettered_at, receive_count";

/// A dead letter as stored. A record that cannot be read as one (a malformed column or
/// letter) is still listed, with a letter that says what is wrong, so the console shows
/// every dead letter and one bad row never hides the others.
fn decode_dlq(mut raw: RawRow) -> DlqRow {
    let seq = raw.int(0);
    let id = raw.text(1);
    let original_id = raw.text(2);
    let grp = raw.text(3);
    let dedup = raw.text(4);
    let body = raw.text(5);
    let trace = raw.text(6);
    let attributes = raw.text(7);
    let letter_text = raw.text(8);
    let at = raw.int(9);
    let count = raw.int(10);
    let letter = match serde_json::from_str::<DeadLetter>(&letter_text) {
        Ok(letter) if raw.problems().is_empty() => letter,
        parsed => {
            if let Err(e) = parsed {
                raw.problem("letter", format!("not a dead letter: {e}"));
            }
            DeadLetter {
                reason: format!(
                    "malformed dead-letter record {id}: {}; stored letter: {letter_text}",
                    raw.problems().join("; ")
                ),
                class: FailureClass::Internal,
                attempts: Vec::new(),
                fence: None,
                build_id: None,
                trace: TraceContext::default(),
            }
        }
    };
    DlqRow {
        seq,
        entry: DeadLetterEntry {
            id: MessageId::new(id),
            original_id: MessageId::new(original_id),
            group: grp,
            body,
            letter,
            dead_lettered_at: Timestamp(at),
            receive_count: count_u32(count),
        },
        dedup,
        trace,
        attributes,
    }
}

fn immediate(c: &mut Connection) -> Result<Transaction<'_>, DbError> {
    Ok(c.transaction_with_behavior(TransactionBehavior::Immediate)?)
}

fn count_u32(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

fn new_id(prefix: &str, now: Timestamp) -> String {
    format!(
        "{prefix}-{:013}-{:016x}",
        now.millis().max(0),
        rand::random::<u64>()
    )
}

fn fence_lost(what: &str) -> PortError {
    PortError::new(
        FailureClass::FenceLost,
        format!(
            "{what}: the receipt is no longer current (the message was received again or is gone)"
        ),
    )
}

fn decode_json<T: serde::de::DeserializeOwned>(raw: &str, what: &str) -> Result<T, PortError> {
    serde_json::from_str(raw).map_err(|e| PortError::internal(format!("unreadable {what}: {e}")))
}

fn encode_json<T: serde::Serialize>(v: &T) -> Result<String, PortError> {
    serde_json::to_string(v).map_err(|e| PortError::internal(format!("cannot encode: {e}")))
}

// ---------------------------------------------------------------------------------------
// Transaction bodies (all run inside one IMMEDIATE transaction)
// ---------------------------------------------------------------------------------------

/// Insert a message at the tail of its group and remember its dedup id.
#[allow(clippy::too_many_arguments)]
fn insert_message(
    tx: &Transaction<'_>,
    grp: &str,
    dedup: &str,
    body: &str,
    trace: &str,
    attributes: &str,
    now: Timestamp,
    dedup_window: Duration,
) -> Result<MessageId, DbError> {
    let id = new_id("m", now);
    tx.prepare_cached(
        "INSERT INTO queue_messages (id, grp, dedup, body, trace, attributes, sent_at, visible_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
    )
    .and_then(|mut s| s.execute(params![id, grp, dedup, body, trace, attributes, now.0]))?;
    let seq = tx.last_insert_rowid();
    tx.prepare_cached(
        "INSERT OR REPLACE INTO queue_dedup (dedup, message_id, expires_at) VALUES (?1, ?2, ?3)",
    )
    .and_then(|mut s| s.execute(params![dedup, id, now.plus(dedup_window).0]))?;
    tx.prepare_cached(
        "INSERT INTO queue_groups (grp, head_seq, available_at) VALUES (?1, ?2, ?3)
         ON CONFLICT(grp) DO NOTHING",
    )
    .and_then(|mut s| s.execute(params![grp, seq, now.0]))?;
    Ok(MessageId::new(id))
}

/// After the head of `grp` was deleted: point the group at its next message, or drop it.
fn advance_head<G: rusqlite::ToSql + ?Sized>(tx: &Transaction<'_>, grp: &G) -> Result<(), DbError> {
    let next: Option<(i64, i64)> = tx
        .prepare_cached(
            "SELECT seq, visible_at FROM queue_messages WHERE grp = ?1 ORDER BY seq LIMIT 1",
        )
        .and_then(|mut s| {
            s.query_row(params![grp], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })?;
    match next {
        Some((seq, visible_at)) => tx
            .prepare_cached(
                "UPDATE queue_groups SET head_seq = ?2, available_at = ?3 WHERE grp = ?1",
            )
            .and_then(|mut s| s.execute(params![grp, seq, visible_at])),
        None => tx
            .prepare_cached("DELETE FROM queue_groups WHERE grp = ?1")
            .and_then(|mut s| s.execute(params![grp])),
    }?;
    Ok(())
}

/// Set when the (head) message `seq` of `grp` becomes visible, and its receipt.
fn set_visibility(
    tx: &Transaction<'_>,
    seq: i64,
    grp: &str,
    visible_at: i64,
    receipt: Option<&str>,
) -> Result<(), DbError> {
    tx.prepare_cached("UPDATE queue_messages SET visible_at = ?2, receipt = ?3 WHERE seq = ?1")
        .and_then(|mut s| s.execute(params![seq, visible_at, receipt]))?;
    tx.prepare_cached("UPDATE queue_groups SET available_at = ?2 WHERE grp = ?1")
        .and_then(|mut s| s.execute(params![grp, visible_at]))?;
    Ok(())
}

/// The message holding `receipt`: (seq, group, received_at).
fn by_receipt(tx: &Transaction<'_>, receipt: &str) -> Result<Option<(i64, String, i64)>, DbError> {
    tx.prepare_cached("SELECT seq, grp, received_at FROM queue_messages WHERE receipt = ?1")
        .and_then(|mut s| {
            s.query_row(params![receipt], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                ))
            })
            .optional()
        })
        .map_err(DbError::from)
}

/// Move message `seq` to the DLQ with `letter` and delete it (the caller's transaction
/// makes both one change).
fn move_to_dlq(
    tx: &Transaction<'_>,
    seq: i64,
    letter: &DeadLetter,
    now: Timestamp,
) -> Result<(), DbError> {
    let (row, _) = read_msg(tx, seq)?;
    move_row_to_dlq(tx, seq, &row, letter, now)
}

/// Move message `seq`, already read as `row`, to the DLQ with `letter` and delete it.
fn move_row_to_dlq(
    tx: &Transaction<'_>,
    seq: i64,
    row: &MsgRow,
    letter: &DeadLetter,
    now: Timestamp,
) -> Result<(), DbError> {
    let letter_json = encode_json(letter)?;
    tx.prepare_cached(
        "INSERT INTO queue_dlq (id, original_id, grp, dedup, body, trace, attributes, letter,
                                dead_lettered_at, receive_count)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )
    .and_then(|mut s| {
        s.execute(params![
            new_id("d", now),
            row.id,
            row.grp,
            row.dedup,
            row.body,
            row.trace,
            row.attributes,
            letter_json,
            now.0,
            row.receive_count
        ])
    })?;
    // The group as stored (not as read: a malformed group column reads differently).
    let grp: rusqlite::types::Value = tx
        .prepare_cached("SELECT grp FROM queue_messages WHERE seq = ?1")
        .and_then(|mut s| s.query_row(params![seq], |r| r.get(0)))?;
    tx.prepare_cached("DELETE FROM queue_messages WHERE seq = ?1")
        .and_then(|mut s| s.execute(params![seq]))?;
    advance_head(tx, &grp)
}

/// Dead-letter a message whose stored row is malformed, as permanent-input with the
/// problems found, keeping its content as stored, so one bad row never stalls the queue.
fn quarantine(
    tx: &Transaction<'_>,
    seq: i64,
    row: &MsgRow,
    problems: &[String],
    now: Timestamp,
) -> Result<(), DbError> {
    let letter = DeadLetter {
        reason: format!(
            "malformed message {} in group {}: {}; quarantined by receive (its stored content is kept here)",
            row.id,
            row.grp,
            problems.join("; ")
        ),
        class: FailureClass::PermanentInput,
        attempts: Vec::new(),
        fence: None,
        build_id: None,
        trace: TraceContext::default(),
    };
    tracing::warn!(message_id = %row.id, group = %row.grp, problems = %problems.join("; "),
        "malformed message quarantined to the dead-letter queue");
    move_row_to_dlq(tx, seq, row, &letter, now)
}

fn receive_tx(
    tx: &Transaction<'_>,
    max: usize,
    now: Timestamp,
    config: &QueueConfig,
) -> Result<Vec<Delivery>, DbError> {
    let mut out = Vec::new();
    let mut delivered = std::collections::HashSet::new();
    let max_count = i64::from(config.max_receive_count);
    loop {
        let want = max.saturating_sub(out.len());
        if want == 0 {
            break;
        }
        let heads: Vec<i64> = tx
            .prepare_cached(
                "SELECT head_seq FROM queue_groups WHERE available_at <= ?1
                 ORDER BY head_seq LIMIT ?2",
            )
            .and_then(|mut s| {
                s.query_map(
                    params![now.0, i64::try_from(want).unwrap_or(i64::MAX)],
                    |r| r.get(0),
                )?
                .collect::<rusqlite::Result<Vec<i64>>>()
            })?;
        if heads.is_empty() {
            break;
        }
        let mut moved_any = false;
        for seq in heads {
            if !delivered.insert(seq) {
                // Delivered by this very receive (possible only with a zero
                // visibility timeout): never hand out one message twice at once.
                continue;
            }
            let (row, problems) = read_msg(tx, seq)?;
            if !problems.is_empty() {
                quarantine(tx, seq, &row, &problems, now)?;
                moved_any = true;
                continue;
            }
            if row.receive_count >= max_count {
                let letter = DeadLetter {
                    reason: format!("exceeded max receive count {}", config.max_receive_count),
                    class: FailureClass::Internal,
                    attempts: Vec::new(),
                    fence: None,
                    build_id: None,
                    trace: decode_json(&row.trace, "trace context").unwrap_or_default(),
                };
                tracing::warn!(message_id = %row.id, group = %row.grp, receive_count = row.receive_count,
                    "message exceeded the max receive count: dead-lettered");
                move_to_dlq(tx, seq, &letter, now)?;
                moved_any = true;
                continue;
            }
            let receive_count = row.receive_count + 1;
            let receipt = format!("{}.r{receive_count}.{:016x}", row.id, rand::random::<u64>());
            let visible_at = now.plus(config.visibility_timeout.min(MAX_VISIBILITY));
            tx.prepare_cached(
                "UPDATE queue_messages SET receive_count = ?2, received_at = ?3 WHERE seq = ?1",
            )
            .and_then(|mut s| s.execute(params![seq, receive_count, now.0]))?;
            set_visibility(tx, seq, &row.grp, visible_at.0, Some(&receipt))?;
            let trace: TraceContext = decode_json(&row.trace, "trace context")?;
            let attributes: BTreeMap<String, String> =
                decode_json(&row.attributes, "message attributes")?;
            out.push(Delivery {
                message_id: MessageId::new(row.id),
                receipt: Receipt::new(receipt),
                body: row.body,
                group: row.grp,
                dedup: DedupId::new(row.dedup),
                trace,
                attributes,
                receive_count: count_u32(receive_count),
                sent_at: Timestamp(row.sent_at),
                visible_again_at: visible_at,
            });
        }
        if !moved_any {
            // Every head found was delivered; the groups just served are now
            // unavailable, so a second look could only find groups beyond `want`.
            break;
        }
    }
    Ok(out)
}

fn load_dlq(c: &Connection, limit: Option<usize>) -> Result<Vec<DlqRow>, DbError> {
    let limit = limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
    let raws = c
        .prepare_cached(&format!(
            "SELECT {DLQ_COLUMNS} FROM queue_dlq ORDER BY seq LIMIT ?1"
        ))
        .and_then(|mut s| {
            s.query_map(params![limit], |r| RawRow::read(r, DLQ_NAMES))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })?;
    Ok(raws.into_iter().map(decode_dlq).collect())
}

/// Re-send one dead letter into its group with a fresh dedup id and remove it from the
/// DLQ, in one transaction. `None` when another process replayed it first.
fn replay_one(
    c: &mut Connection,
    row: &DlqRow,
    now: Timestamp,
    dedup_window: Duration,
) -> Result<Option<MessageId>, DbError> {
    let tx = immediate(c)?;
    let removed = tx
        .prepare_cached("DELETE FROM queue_dlq WHERE seq = ?1")
        .and_then(|mut s| s.execute(params![row.seq]))?;
    if removed == 0 {
        return Ok(None);
    }
    let dedup = format!("{}.replay.{}", row.dedup, row.seq);
    let id = insert_message(
        &tx,
        &row.entry.group,
        &dedup,
        &row.entry.body,
        &row.trace,
        &row.attributes,
        now,
        dedup_window,
    )?;
    tx.commit()?;
    Ok(Some(id))
}

#[async_trait]
impl WorkQueue for SqliteQueue {
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

    async fn dlq_list(&self, limit: usize) -> Result<Vec<DeadLetterEntry>, PortError> {
        self.db
            .call(move |c| {
                Ok(load_dlq(c, Some(limit))?
                    .into_iter()
                    .map(|r| r.entry)
                    .collect())
            })
            .await
    }

    #[instrument(skip_all, fields(dry_run))]
    async fn dlq_replay(
        &self,
        selection: &DlqSelection,
        dry_run: bool,
    ) -> Result<ReplayReport, PortError> {
        let now = self.clock.now();
        let window = self.config.dedup_window;
        let selection = selection.clone();
        self.db
            .call(move |c| {
                let rows: Vec<DlqRow> = load_dlq(c, None)?
                    .into_iter()
                    .filter(|r| selection.matches(&r.entry, now))
                    .collect();
                let mut report = ReplayReport {
                    selected: rows.iter().map(|r| r.entry.id.clone()).collect(),
                    replayed: Vec::new(),
                    dry_run,
                };
                if dry_run {
                    return Ok(report);
                }
                for row in &rows {
                    if let Some(id) = replay_one(c, row, now, window)? {
                        report.replayed.push(id);
                    }
                }
                Ok(report)
            })
            .await
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
mod tests {
    use super::*;
    use kiro_protocol::{ManualClock, ProjectKey};

    fn msg(group: &str, dedup: &str, body: &str) -> OutgoingMessage {
        OutgoingMessage {
            body: body.into(),
            group: ProjectKey::parse(group).unwrap(),
            dedup: DedupId::new(dedup),
            trace: TraceContext::default(),
            attributes: BTreeMap::new(),
        }
    }

    fn open(dir: &tempfile::TempDir, clock: &ManualClock, config: QueueConfig) -> SqliteQueue {
        let db = EmbeddedDb::open_dir(dir.path()).unwrap();
        SqliteQueue::new(db, Arc::new(clock.clone()), config).unwrap()
    }

    #[tokio::test]
    async fn exceeding_max_receive_count_dead_letters_automatically() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::default();
        let q = open(
            &dir,
            &clock,
            QueueConfig {
                max_receive_count: 2,
                ..Default::default()
            },
        );
        q.send(msg("p", "a", "A")).await.unwrap();
        q.send(msg("p", "b", "B")).await.unwrap();
        for n in 1..=2 {
            let got = q.receive(10, Duration::ZERO).await.unwrap();
            assert_eq!(got.len(), 1);
            assert_eq!((got[0].body.as_str(), got[0].receive_count), ("A", n));
            clock.advance(Duration::from_secs(31));
        }
        // The third receive moves A to the DLQ and delivers B in the same call.
        let got = q.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].body, "B");
        let dlq = q.dlq_list(10).await.unwrap();
        assert_eq!(dlq.len(), 1);
        assert_eq!(dlq[0].body, "A");
        assert_eq!(dlq[0].letter.class, FailureClass::Internal);
        assert_eq!(dlq[0].letter.reason, "exceeded max receive count 2");
        assert_eq!(dlq[0].receive_count, 2);
    }

    #[tokio::test]
    async fn visibility_is_capped_at_twelve_hours_after_the_receive() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::default();
        let q = open(&dir, &clock, QueueConfig::default());
        q.send(msg("p", "a", "A")).await.unwrap();
        let d = q.receive(1, Duration::ZERO).await.unwrap().remove(0);
        clock.advance(Duration::from_secs(11 * 3600));
        let r = q
            .extend(
                std::slice::from_ref(&d.receipt),
                Duration::from_secs(5 * 3600),
            )
            .await
            .unwrap();
        assert!(r[0].is_ok());
        clock.advance(Duration::from_secs(3600) - Duration::from_millis(1));
        assert!(q.receive(1, Duration::ZERO).await.unwrap().is_empty());
        clock.advance(Duration::from_millis(1));
        let again = q.receive(1, Duration::ZERO).await.unwrap();
        assert_eq!(
            again.len(),
            1,
            "visible again exactly 12 h after the receive"
        );
        assert_eq!(again[0].receive_count, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn receive_waits_for_a_message_with_paused_time() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::default();
        let q = open(&dir, &clock, QueueConfig::default());
        let started = tokio::time::Instant::now();
        assert!(
            q.receive(1, Duration::from_secs(2))
                .await
                .unwrap()
                .is_empty()
        );
        assert!(started.elapsed() >= Duration::from_secs(2));
        let q2 = q.clone();
        let sender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            q2.send(msg("p", "a", "A")).await.unwrap();
        });
        let got = q.receive(1, Duration::from_secs(20)).await.unwrap();
        assert_eq!(got.len(), 1);
        sender.await.unwrap();
    }

    #[tokio::test]
    async fn one_receive_serves_many_groups_but_one_message_per_group() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::default();
        let q = open(&dir, &clock, QueueConfig::default());
        for g in ["a", "b", "c"] {
            for n in 0..3 {
                q.send(msg(g, &format!("{g}{n}"), &format!("{g}{n}")))
                    .await
                    .unwrap();
            }
        }
        let got = q.receive(10, Duration::ZERO).await.unwrap();
        let bodies: Vec<_> = got.iter().map(|d| d.body.as_str()).collect();
        assert_eq!(bodies, ["a0", "b0", "c0"]);
        let depth = q.depth().await.unwrap();
        assert_eq!((depth.visible, depth.in_flight, depth.delayed), (6, 3, 0));
    }
}
