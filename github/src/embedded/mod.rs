//! The embedded board and forge for one-machine runs: a human-editable board file (YAML)
//! plus two tables in the shared state database (`board_status`, `pr_reports`).
//!
//! Invariant: the board file is only ever read, never written; everything this system
//! changes (statuses, notes, reports) lives in the state database, so the file stays the
//! human's and several processes (producer, worker) can share one board.

pub mod board;
pub mod file;
pub mod pulls;

pub use board::{BoardEntry, EmbeddedBoard};
pub use file::{BoardFileError, parse_status};
pub use pulls::{EmbeddedPulls, StoredReport};
