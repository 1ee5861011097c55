//! The embedded default: everything the system needs on one machine with no cloud
//! account, kept in a state directory (`kiro.db`, build logs and work directories).
//!
//! Invariant: it survives restarts — every state change is a SQLite transaction, and
//! builds run as detached processes recorded in the database, so a restarted consumer
//! re-attaches to them.

pub mod build;
pub mod lease;
pub mod queue;
mod rows;

pub use build::{LocalBuildConfig, LocalBuildRunner};
pub use kiro_statedb::EmbeddedDb;
pub use lease::SqliteLeaseStore;
pub use queue::{QueueConfig, SqliteQueue};
