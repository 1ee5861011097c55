//! The embedded queue's SQL: its rows and how they decode, and the statements each
//! operation is made of (receive, move to the dead-letter queue, quarantine, replay), each
//! run inside a transaction its caller owns.
//!
//! Invariant: nothing here opens or commits a transaction except [`immediate`], so every
//! port operation in the parent module stays one `BEGIN IMMEDIATE` transaction.

use super::config::{MAX_VISIBILITY, QueueConfig};
use crate::embedded::rows::RawRow;
use kiro_protocol::ids::{MessageGroup, quote_for_display};
use kiro_protocol::{
    DeadLetter, DeadLetterEntry, DedupId, Delivery, FailureClass, MessageId, PortError, Receipt,
    Timestamp, TraceContext,
};
use kiro_statedb::DbError;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use std::collections::BTreeMap;
use std::time::Duration;
// ---------------------------------------------------------------------------------------
// Rows and conversions
// ---------------------------------------------------------------------------------------

/// A row of `queue_messages`.
#[derive(Debug, Clone)]
pub(super) struct MsgRow {
    pub(super) id: String,
    pub(super) grp: String,
    pub(super) dedup: String,
    pub(super) body: String,
    pub(super) trace: String,
    pub(super) attributes: String,
    pub(super) sent_at: i64,
    pub(super) receive_count: i64,
}

pub(super) const MSG_NAMES: &[&str] = &[
    "id",
    "grp",
    "dedup",
    "body",
    "trace",
    "attributes",
    "sent_at",
    "receive_count",
];
pub(super) const MSG_COLUMNS: &str =
    "id, grp, dedup, body, trace, attributes, sent_at, receive_count";

/// Read message `seq` column by column: the row (always, losslessly) and what in it is
/// malformed (empty when the row is sound).
pub(super) fn read_msg(tx: &Transaction<'_>, seq: i64) -> Result<(MsgRow, Vec<String>), DbError> {
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
    if let Err(e) = MessageGroup::parse(&row.grp) {
        raw.problem("grp", e.to_string());
    }
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
pub(super) struct DlqRow {
    pub(super) seq: i64,
    pub(super) entry: DeadLetterEntry,
    pub(super) dedup: String,
    pub(super) trace: String,
    pub(super) attributes: String,
}

pub(super) const DLQ_NAMES: &[&str] = &[
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
pub(super) const DLQ_COLUMNS: &str = "seq, id, original_id, grp, dedup, body, trace, attributes, letter, \
     dead_lettered_at, receive_count";

/// A dead letter as stored. A record that cannot be read as one (a malformed column or
/// letter) is still listed, with a letter that says what is wrong, so the console shows
/// every dead letter and one bad row never hides the others.
pub(super) fn decode_dlq(mut raw: RawRow) -> DlqRow {
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
    // An unreadable group keeps the letter: the entry is listed in the `unreadable`
    // group with the stored value named in its reason.
    let (group, group_note) = match MessageGroup::parse(&grp) {
        Ok(g) => (g, None),
        Err(e) => (MessageGroup::unreadable(), Some(e.to_string())),
    };
    let mut letter = match serde_json::from_str::<DeadLetter>(&letter_text) {
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
    if let Some(note) = group_note {
        letter.reason = format!("{}; stored group unreadable: {note}", letter.reason);
    }
    DlqRow {
        seq,
        entry: DeadLetterEntry {
            id: MessageId::new(id),
            original_id: MessageId::new(original_id),
            group,
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

pub(super) fn immediate(c: &mut Connection) -> Result<Transaction<'_>, DbError> {
    Ok(c.transaction_with_behavior(TransactionBehavior::Immediate)?)
}

pub(super) fn count_u32(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

pub(super) fn new_id(prefix: &str, now: Timestamp) -> String {
    format!(
        "{prefix}-{:013}-{:016x}",
        now.millis().max(0),
        rand::random::<u64>()
    )
}

pub(super) fn fence_lost(what: &str) -> PortError {
    PortError::new(
        FailureClass::FenceLost,
        format!(
            "{what}: the receipt is no longer current (the message was received again or is gone)"
        ),
    )
}

pub(super) fn decode_json<T: serde::de::DeserializeOwned>(
    raw: &str,
    what: &str,
) -> Result<T, PortError> {
    serde_json::from_str(raw).map_err(|e| PortError::internal(format!("unreadable {what}: {e}")))
}

pub(super) fn encode_json<T: serde::Serialize>(v: &T) -> Result<String, PortError> {
    serde_json::to_string(v).map_err(|e| PortError::internal(format!("cannot encode: {e}")))
}

// ---------------------------------------------------------------------------------------
// Transaction bodies (all run inside one IMMEDIATE transaction)
// ---------------------------------------------------------------------------------------

/// Insert a message at the tail of its group and remember its dedup id.
#[allow(clippy::too_many_arguments)]
pub(super) fn insert_message(
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
pub(super) fn advance_head<G: rusqlite::ToSql + ?Sized>(
    tx: &Transaction<'_>,
    grp: &G,
) -> Result<(), DbError> {
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
pub(super) fn set_visibility(
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
pub(super) fn by_receipt(
    tx: &Transaction<'_>,
    receipt: &str,
) -> Result<Option<(i64, String, i64)>, DbError> {
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
pub(super) fn move_to_dlq(
    tx: &Transaction<'_>,
    seq: i64,
    letter: &DeadLetter,
    now: Timestamp,
) -> Result<(), DbError> {
    let (row, _) = read_msg(tx, seq)?;
    move_row_to_dlq(tx, seq, &row, letter, now)
}

/// Move message `seq`, already read as `row`, to the DLQ with `letter` and delete it.
pub(super) fn move_row_to_dlq(
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
    // The group whose head this message is (its own group column may be malformed and
    // name no group at all), else the group as stored (not as read).
    let head_of: Option<rusqlite::types::Value> = tx
        .prepare_cached("SELECT grp FROM queue_groups WHERE head_seq = ?1")
        .and_then(|mut s| s.query_row(params![seq], |r| r.get(0)).optional())?;
    let grp: rusqlite::types::Value = match head_of {
        Some(g) => g,
        None => tx
            .prepare_cached("SELECT grp FROM queue_messages WHERE seq = ?1")
            .and_then(|mut s| s.query_row(params![seq], |r| r.get(0)))?,
    };
    tx.prepare_cached("DELETE FROM queue_messages WHERE seq = ?1")
        .and_then(|mut s| s.execute(params![seq]))?;
    advance_head(tx, &grp)
}

/// Dead-letter a message whose stored row is malformed, as permanent-input with the
/// problems found, keeping its content as stored, so one bad row never stalls the queue.
pub(super) fn quarantine(
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
            quote_for_display(&row.grp),
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

pub(super) fn receive_tx(
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
                // Checked by `read_msg`: a row with an unreadable group is quarantined.
                group: MessageGroup::parse(&row.grp)
                    .map_err(|e| PortError::internal(e.to_string()))?,
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

pub(super) fn load_dlq(c: &Connection, limit: Option<usize>) -> Result<Vec<DlqRow>, DbError> {
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
pub(super) fn replay_one(
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
        row.entry.group.as_str(),
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
