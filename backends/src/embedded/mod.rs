//! The embedded default: everything the system needs on one machine with no cloud
//! account, kept in a state directory (`kiro.db`, build logs and work directories).
//!
//! - [`queue`], [`lease`]: the SQLite work queue (with its dead-letter queue) and the
//!   lease store with job records;
//! - [`board`], [`pulls`]: the board and forge of one-machine runs — a human-editable
//!   board file ([`board_file`], YAML) plus two tables (`board_status`, `pr_reports`).
//!
//! (The local buildspec runner, which shares the state database, is the `kiro-local-build`
//! crate.)
//!
//! Invariants: it survives restarts — every state change is a SQLite transaction, so a
//! restarted process carries on from the database. The board file is only ever read, never written; everything this
//! system changes (statuses, notes, reports) lives in the state database, so the file
//! stays the human's and several processes (producer, worker) can share one board.

pub mod board;
pub mod board_file;
mod file_backed;
pub mod lease;
pub mod pulls;
pub mod queue;
mod rows;

pub use board::{BoardEntry, EmbeddedBoard};
pub use board_file::{BoardFileError, parse_status};
pub use kiro_statedb::EmbeddedDb;
pub use lease::SqliteLeaseStore;
pub use pulls::{EmbeddedPulls, StoredComment, StoredReport};
pub use queue::{QueueConfig, SqliteQueue};
