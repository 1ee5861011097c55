//! The embedded default: everything the system needs on one machine with no cloud
//! account, kept in a state directory (`kiro.db`, build logs and work directories).
//!
//! - [`queue`], [`lease`]: the SQLite work queue (with its dead-letter queue) and the
//!   lease store with job records;
//! - [`build`]: the local buildspec runner;
//! - [`board`], [`pulls`]: the board and forge of one-machine runs — a human-editable
//!   board file ([`board_file`], YAML) plus two tables (`board_status`, `pr_reports`).
//!
//! Invariants: it survives restarts — every state change is a SQLite transaction, and
//! builds run as detached processes recorded in the database, so a restarted consumer
//! re-attaches to them. The board file is only ever read, never written; everything this
//! system changes (statuses, notes, reports) lives in the state database, so the file
//! stays the human's and several processes (producer, worker) can share one board.

pub mod board;
pub mod board_file;
pub mod build;
pub mod lease;
pub mod pulls;
pub mod queue;
mod rows;

pub use board::{BoardEntry, EmbeddedBoard};
pub use board_file::{BoardFileError, parse_status};
pub use build::{LocalBuildConfig, LocalBuildRunner};
pub use kiro_statedb::EmbeddedDb;
pub use lease::SqliteLeaseStore;
pub use pulls::{EmbeddedPulls, StoredReport};
pub use queue::{QueueConfig, SqliteQueue};
