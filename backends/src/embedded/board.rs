//! `EmbeddedBoard`: the `Board` port over a board file plus a status overlay in SQLite.
//!
//! The file is the human's: it is re-read on every call (so edits show up at once) and
//! never rewritten. Status changes go to the `board_status` table of the state database
//! and overlay the file's status.
//!
//! Invariant: an overlay row holds only while the item's `updated_at` in the file is the
//! one it was written against — editing an item's `updated_at` in the file hands the item
//! back to the file's status (that is how a human re-queues an item, and the new
//! `updated_at` gives it a new deduplication id). Notes are one line, redacted, and
//! bounded before they are stored. `statuses` is one file read and one overlay read
//! for any number of items; `set_status_from` compares the effective status and writes
//! the overlay in one SQLite transaction (a file edit landing between the file's read and
//! that transaction is the only window).

use super::board_file::{self as file, BoardFile, FileItem};
use super::file_backed::FileBacked;
use async_trait::async_trait;
use kiro_protocol::ids::quote_for_display;
use kiro_protocol::redact::redact;
use kiro_protocol::{
    Board, BoardItem, BoardStanding, Clock, ItemStatus, PortError, StatusChange, Timestamp,
};
use kiro_statedb::{DbError, EmbeddedDb};
use rusqlite::params;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use tracing::{info, instrument, warn};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS board_status (
    item_id         TEXT PRIMARY KEY,
    status          TEXT NOT NULL,
    note            TEXT,
    item_updated_at TEXT NOT NULL,
    updated_at      INTEGER NOT NULL
);
";

/// Notes longer than this are cut (with an ellipsis).
pub const MAX_NOTE_CHARS: usize = 1000;

/// One item with its effective status, as operators see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardEntry {
    /// The raw item from the file.
    pub item: BoardItem,
    /// The effective status; `None` when the file names a status this system does not
    /// know and no overlay applies (such an item is never ready).
    pub status: Option<ItemStatus>,
    /// The `status` value written in the file.
    pub file_status: String,
    /// The note of the last status change, if any.
    pub note: Option<String>,
    /// When the status last changed through the port (`None`: the file's status).
    pub changed_at: Option<Timestamp>,
    /// The item's line in the board file.
    pub line: u64,
}

#[derive(Debug, Clone)]
struct Overlay {
    status: ItemStatus,
    note: Option<String>,
    item_updated_at: String,
    updated_at: Timestamp,
}

/// The embedded board.
#[derive(Debug, Clone)]
pub struct EmbeddedBoard {
    base: FileBacked,
}

impl EmbeddedBoard {
    /// Open the board over `board_file`, creating the overlay table. The file is parsed
    /// once here so a broken file is reported at start-up.
    pub fn open(board_file: &Path, db: EmbeddedDb) -> Result<Self, PortError> {
        Ok(EmbeddedBoard {
            base: FileBacked::open(board_file, db, SCHEMA)?,
        })
    }

    /// Use `clock` for the time of status changes.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.base.clock = clock;
        self
    }

    /// The board file's path.
    pub fn file(&self) -> &Path {
        &self.base.file
    }

    /// Every item in file order, with its effective status and note.
    pub async fn items(&self) -> Result<Vec<BoardEntry>, PortError> {
        let file = file::load(&self.base.file).await?;
        let overlays = self.overlays().await?;
        Ok(file
            .items
            .into_iter()
            .map(|fi| entry(fi, &overlays))
            .collect())
    }

    /// One item's entry, `None` if the file has no such item.
    pub async fn entry(&self, id: &str) -> Result<Option<BoardEntry>, PortError> {
        Ok(self.items().await?.into_iter().find(|e| e.item.id == id))
    }

    /// One item's effective status; `None` if the item is unknown or its file status is
    /// not one this system knows.
    pub async fn status_of(&self, id: &str) -> Result<Option<ItemStatus>, PortError> {
        Ok(self.entry(id).await?.and_then(|e| e.status))
    }

    async fn overlays(&self) -> Result<HashMap<String, Overlay>, PortError> {
        self.base.db
            .call(|c| {
                let mut stmt = c
                    .prepare(
                        "SELECT item_id, status, note, item_updated_at, updated_at FROM board_status",
                    )?;
                let rows = stmt
                    .query_map([], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, Option<String>>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, i64>(4)?,
                        ))
                    })?;
                let mut out = HashMap::new();
                for row in rows {
                    let (id, status, note, item_updated_at, at) = row?;
                    let Some(status) = file::parse_status(&status) else {
                        warn!(item = %quote_for_display(&id), "ignoring an unknown status in board_status");
                        continue;
                    };
                    out.insert(
                        id,
                        Overlay {
                            status,
                            note,
                            item_updated_at,
                            updated_at: Timestamp(at),
                        },
                    );
                }
                Ok(out)
            })
            .await
    }
}

fn entry(fi: FileItem, overlays: &HashMap<String, Overlay>) -> BoardEntry {
    let status = fi.file_status();
    let base = BoardEntry {
        status,
        file_status: fi.status,
        note: None,
        changed_at: None,
        line: fi.line,
        item: fi.item,
    };
    match overlays.get(&base.item.id) {
        Some(o) if o.item_updated_at == base.item.updated_at => BoardEntry {
            status: Some(o.status),
            note: o.note.clone(),
            changed_at: Some(o.updated_at),
            ..base
        },
        _ => base,
    }
}

/// The stored form of a status.
fn status_key(s: ItemStatus) -> &'static str {
    match s {
        ItemStatus::Ready => "ready",
        ItemStatus::Queued => "queued",
        ItemStatus::InProgress => "in-progress",
        ItemStatus::Done => "done",
        ItemStatus::Failed => "failed",
    }
}

/// A note as stored: redacted, one line, at most [`MAX_NOTE_CHARS`] characters.
pub(crate) fn clean_note(note: &str) -> String {
    let one_line: String = redact(note)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let trimmed = one_line.trim();
    if trimmed.chars().count() > MAX_NOTE_CHARS {
        let mut cut: String = trimmed.chars().take(MAX_NOTE_CHARS - 1).collect();
        cut.push('…');
        cut
    } else {
        trimmed.to_owned()
    }
}

fn find<'a>(file: &'a BoardFile, id: &str) -> Result<&'a FileItem, PortError> {
    file.item(id)
        .ok_or_else(|| PortError::input(format!("unknown board item {}", quote_for_display(id))))
}

/// Where an item stands: in this system's `status`, else away in the file's `column`
/// (`On(None)` when the file gives none).
fn standing(status: Option<ItemStatus>, column: &str) -> BoardStanding {
    match status {
        Some(s) => BoardStanding::On(Some(s)),
        None if column.trim().is_empty() => BoardStanding::On(None),
        None => BoardStanding::Away(column.trim().to_owned()),
    }
}

/// An item's effective status from its file status and its overlay row, if any.
fn effective(
    file_status: Option<ItemStatus>,
    file_updated_at: &str,
    row: Option<(String, String)>,
) -> Option<ItemStatus> {
    match row {
        Some((status, at)) if at == file_updated_at => file::parse_status(&status),
        _ => file_status,
    }
}

#[async_trait]
impl Board for EmbeddedBoard {
    #[instrument(skip_all, fields(board = %self.base.file.display()))]
    async fn ready_items(&self) -> Result<Vec<BoardItem>, PortError> {
        let entries = self.items().await?;
        for e in &entries {
            if e.status.is_none() {
                warn!(
                    item = %quote_for_display(&e.item.id),
                    line = e.line,
                    status = %quote_for_display(&e.file_status),
                    "board item has an unknown status and is skipped"
                );
            }
        }
        Ok(entries
            .into_iter()
            .filter(|e| e.status == Some(ItemStatus::Ready))
            .map(|e| e.item)
            .collect())
    }

    #[instrument(skip_all, fields(item = %quote_for_display(item), status = %status))]
    async fn set_status(
        &self,
        item: &str,
        status: ItemStatus,
        note: Option<&str>,
    ) -> Result<(), PortError> {
        let file = file::load(&self.base.file).await?;
        let fi = find(&file, item)?;
        let id = fi.item.id.clone();
        let item_updated_at = fi.item.updated_at.clone();
        let note = note.map(clean_note);
        let now = self.base.clock.now();
        self.base
            .db
            .call(move |c| {
                c.execute(
                    "INSERT INTO board_status (item_id, status, note, item_updated_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (item_id) DO UPDATE SET
                        status = excluded.status,
                        note = excluded.note,
                        item_updated_at = excluded.item_updated_at,
                        updated_at = excluded.updated_at",
                    params![id, status_key(status), note, item_updated_at, now.0],
                )
                .map_err(DbError::from)
            })
            .await?;
        info!("board item status changed");
        Ok(())
    }

    #[instrument(skip_all, fields(board = %self.base.file.display(), items = items.len()))]
    async fn statuses(
        &self,
        items: &[String],
    ) -> Result<HashMap<String, BoardStanding>, PortError> {
        let entries = self.items().await?;
        Ok(items
            .iter()
            .map(|id| {
                let standing = entries
                    .iter()
                    .find(|e| &e.item.id == id)
                    .map_or(BoardStanding::Absent, |e| {
                        standing(e.status, &e.file_status)
                    });
                (id.clone(), standing)
            })
            .collect())
    }

    #[instrument(skip_all, fields(item = %quote_for_display(item), status = %status))]
    async fn set_status_from(
        &self,
        item: &str,
        from: &[ItemStatus],
        status: ItemStatus,
        note: Option<&str>,
    ) -> Result<StatusChange, PortError> {
        let file = file::load(&self.base.file).await?;
        let Some(fi) = file.item(item) else {
            return Ok(StatusChange::Elsewhere(BoardStanding::Absent));
        };
        let id = fi.item.id.clone();
        let item_updated_at = fi.item.updated_at.clone();
        let file_status = fi.file_status();
        let column = fi.status.clone();
        let note = note.map(clean_note);
        let now = self.base.clock.now();
        let from = from.to_vec();
        let change = self
            .base
            .db
            .call(move |c| {
                let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let row: Option<(String, String)> = {
                    use rusqlite::OptionalExtension;
                    tx.query_row(
                        "SELECT status, item_updated_at FROM board_status WHERE item_id = ?1",
                        params![id],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?
                };
                let now_status = effective(file_status, &item_updated_at, row);
                if !now_status.is_some_and(|s| from.contains(&s)) {
                    return Ok(StatusChange::Elsewhere(standing(now_status, &column)));
                }
                tx.execute(
                    "INSERT INTO board_status (item_id, status, note, item_updated_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (item_id) DO UPDATE SET
                        status = excluded.status,
                        note = excluded.note,
                        item_updated_at = excluded.item_updated_at,
                        updated_at = excluded.updated_at",
                    params![id, status_key(status), note, item_updated_at, now.0],
                )?;
                tx.commit()?;
                Ok(StatusChange::Moved)
            })
            .await?;
        match &change {
            StatusChange::Moved => info!("board item status changed"),
            StatusChange::Elsewhere(at) => {
                info!(now = ?at, "board item is not where it was expected; left where it is")
            }
        }
        Ok(change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiro_protocol::{FailureClass, ManualClock};
    use std::path::PathBuf;
    use std::time::Duration;

    const BOARD: &str = r#"
items:
  - id: CALC-1
    project: calc
    title: Add a subtract function
    status: For Implementation
    repo: acme/calc
    branch: feature/subtract
    spec: .kiro/specs/subtract
    pr: 1
    updated_at: "2026-11-01T10:00:00Z"
  - id: CALC-2
    project: calc
    status: done
    repo: acme/calc
    branch: feature/multiply
    spec: multiply
    pr: 2
    updated_at: "2026-11-01T10:00:00Z"
  - id: CALC-3
    project: calc
    status: Backlog
"#;

    fn setup(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("board.yaml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn open(dir: &tempfile::TempDir, path: &Path) -> EmbeddedBoard {
        let db = EmbeddedDb::open_dir(&dir.path().join("state")).unwrap();
        EmbeddedBoard::open(path, db).unwrap()
    }

    #[tokio::test]
    async fn ready_items_follow_the_file_status() {
        let (dir, path) = setup(BOARD);
        let board = open(&dir, &path);
        let ready = board.ready_items().await.unwrap();
        let ids: Vec<_> = ready.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["CALC-1"]);
        assert_eq!(ready[0].pr, "1");
        assert_eq!(
            board.status_of("CALC-2").await.unwrap(),
            Some(ItemStatus::Done)
        );
        assert_eq!(board.status_of("CALC-3").await.unwrap(), None);
        assert_eq!(board.status_of("NOPE").await.unwrap(), None);
    }

    #[tokio::test]
    async fn the_status_overlay_persists_across_reopen_and_never_rewrites_the_file() {
        let (dir, path) = setup(BOARD);
        let clock = ManualClock::default();
        let board = open(&dir, &path).with_clock(Arc::new(clock.clone()));
        board
            .set_status("CALC-1", ItemStatus::Queued, None)
            .await
            .unwrap();
        assert!(board.ready_items().await.unwrap().is_empty());
        clock.advance(Duration::from_secs(3));
        board
            .set_status("CALC-1", ItemStatus::Failed, Some("coverage 50% < 80%"))
            .await
            .unwrap();
        drop(board);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), BOARD);

        let again = open(&dir, &path);
        let e = again.entry("CALC-1").await.unwrap().unwrap();
        assert_eq!(e.status, Some(ItemStatus::Failed));
        assert_eq!(e.note.as_deref(), Some("coverage 50% < 80%"));
        assert_eq!(e.changed_at, Some(clock.now()));
        assert_eq!(e.file_status, "For Implementation");
        again
            .set_status("CALC-1", ItemStatus::Ready, None)
            .await
            .unwrap();
        let e = again.entry("CALC-1").await.unwrap().unwrap();
        assert_eq!(e.status, Some(ItemStatus::Ready));
        assert_eq!(e.note, None);
        assert_eq!(again.ready_items().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn editing_updated_at_in_the_file_hands_the_item_back_to_the_file() {
        let (dir, path) = setup(BOARD);
        let board = open(&dir, &path);
        board
            .set_status("CALC-1", ItemStatus::Done, None)
            .await
            .unwrap();
        assert!(board.ready_items().await.unwrap().is_empty());
        std::fs::write(
            &path,
            BOARD.replacen("2026-11-01T10:00:00Z", "2026-11-02T09:00:00Z", 1),
        )
        .unwrap();
        let ready = board.ready_items().await.unwrap();
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].updated_at, "2026-11-02T09:00:00Z");
    }

    #[tokio::test]
    async fn unknown_items_are_permanent_input_errors_naming_the_id() {
        let (dir, path) = setup(BOARD);
        let board = open(&dir, &path);
        let err = board
            .set_status("GHOST-9", ItemStatus::Queued, None)
            .await
            .unwrap_err();
        assert_eq!(err.class, FailureClass::PermanentInput);
        assert!(err.message.contains("\"GHOST-9\""), "{err}");
    }

    #[tokio::test]
    async fn notes_are_redacted_one_line_and_bounded() {
        let (dir, path) = setup(BOARD);
        let board = open(&dir, &path);
        board
            .set_status(
                "CALC-1",
                ItemStatus::Failed,
                Some("push failed with ghp_abcdefghijklmnop1234\n\u{1b}[31mred"),
            )
            .await
            .unwrap();
        let note = board.entry("CALC-1").await.unwrap().unwrap().note.unwrap();
        assert_eq!(note, "push failed with [REDACTED]  [31mred");
        board
            .set_status("CALC-1", ItemStatus::Failed, Some(&"x".repeat(5000)))
            .await
            .unwrap();
        let note = board.entry("CALC-1").await.unwrap().unwrap().note.unwrap();
        assert_eq!(note.chars().count(), MAX_NOTE_CHARS);
    }

    #[tokio::test]
    async fn a_broken_file_fails_open_with_file_and_line() {
        let (dir, path) = setup("items:\n  - id: A\nextra: 1\n");
        let db = EmbeddedDb::open_dir(&dir.path().join("state")).unwrap();
        let err = EmbeddedBoard::open(&path, db).unwrap_err();
        assert_eq!(err.class, FailureClass::PermanentInput);
        assert!(err.message.contains("board.yaml, line 3"), "{err}");
        assert!(err.message.contains("extra"), "{err}");

        let db = EmbeddedDb::open_dir(&dir.path().join("state")).unwrap();
        let err = EmbeddedBoard::open(&dir.path().join("missing.yaml"), db).unwrap_err();
        assert!(err.message.contains("missing.yaml"), "{err}");
    }
}
