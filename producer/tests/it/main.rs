//! Integration tests of the producer against the REAL embedded adapters: the board file
//! and its SQLite status overlay, and the SQLite FIFO queue (all in `kiro-backends`), in a
//! temporary state directory, with a manual clock.

mod cli;
mod hostile;
mod tick;

use kiro_backends::embedded::EmbeddedBoard;
use kiro_backends::embedded::{EmbeddedDb, QueueConfig, SqliteQueue};
use kiro_producer::Producer;
use kiro_protocol::{Clock, ManualClock, WorkQueue};
use std::path::PathBuf;
use std::sync::Arc;

/// A producer over a board file and a queue in a temp dir.
#[derive(Debug)]
pub struct Env {
    pub dir: tempfile::TempDir,
    pub board_file: PathBuf,
    pub board: Arc<EmbeddedBoard>,
    pub queue: Arc<SqliteQueue>,
    pub clock: ManualClock,
    pub producer: Producer,
}

pub fn env(board_yaml: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let board_file = dir.path().join("board.yaml");
    std::fs::write(&board_file, board_yaml).unwrap();
    let clock = ManualClock::default();
    let shared: Arc<dyn Clock> = Arc::new(clock.clone());
    let db = EmbeddedDb::open_dir(&dir.path().join("state")).unwrap();
    let board = Arc::new(
        EmbeddedBoard::open(&board_file, db.clone())
            .unwrap()
            .with_clock(shared.clone()),
    );
    let queue = Arc::new(SqliteQueue::new(db, shared.clone(), QueueConfig::default()).unwrap());
    let producer = Producer::new(board.clone(), queue.clone(), shared);
    Env {
        dir,
        board_file,
        board,
        queue,
        clock,
        producer,
    }
}

impl Env {
    /// Messages waiting in the queue.
    pub async fn visible(&self) -> u64 {
        self.queue.depth().await.unwrap().visible
    }
}

/// Quote any string as a YAML double-quoted scalar (control characters escaped).
pub fn yq(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A board item with the given fields (each quoted with [`yq`]).
#[derive(Debug, Clone)]
pub struct Item {
    pub id: String,
    pub project: String,
    pub repo: String,
    pub branch: String,
    pub spec: String,
    pub pr: String,
    pub updated_at: String,
}

impl Item {
    pub fn good(id: &str, project: &str) -> Item {
        Item {
            id: id.into(),
            project: project.into(),
            repo: format!("acme/{project}"),
            branch: format!("feature/{}", id.to_lowercase()),
            spec: format!(".kiro/specs/{}", id.to_lowercase()),
            pr: "1".into(),
            updated_at: "2026-11-01T10:00:00Z".into(),
        }
    }

    pub fn yaml(&self) -> String {
        format!(
            "  - id: {}\n    project: {}\n    title: t\n    status: For Implementation\n    repo: {}\n    branch: {}\n    spec: {}\n    pr: {}\n    updated_at: {}\n",
            yq(&self.id),
            yq(&self.project),
            yq(&self.repo),
            yq(&self.branch),
            yq(&self.spec),
            yq(&self.pr),
            yq(&self.updated_at),
        )
    }
}

pub fn board_yaml(items: &[Item]) -> String {
    let mut s = String::from("items:\n");
    for i in items {
        s.push_str(&i.yaml());
    }
    s
}
