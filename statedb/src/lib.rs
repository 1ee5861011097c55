//! The embedded state database: one SQLite file (`kiro.db`) in the state directory,
//! shared by the consumer, the producer, the local build processes and the worker.
//!
//! - [`EmbeddedDb`]: the shared handle (open, migrate, run a closure on the connection);
//! - [`DbError`]: what a closure over the connection fails with; `?` turns a SQLite
//!   error into one, and one into the port's [`PortError`] with its class.
//!
//! Invariant: this crate is not an adapter — it implements no port and knows no table;
//! the embedded adapters and the local build runner own their schemas and queries. No
//! SQLite type leaves an adapter: every failure reaches a caller as a [`PortError`].
//!
//! [`PortError`]: kiro_protocol::PortError

pub mod db;
pub mod error;

pub use db::{DB_FILE, EmbeddedDb};
pub use error::DbError;
