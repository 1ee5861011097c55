//! Adapters for the `Board` and `PullRequests` ports.
//!
//! - [`embedded`]: the one-machine default — a human-editable board file (YAML) whose
//!   status changes and pull-request reports live in the shared state database.
//! - [`gh`]: the GitHub adapters — a Projects (v2) board over GraphQL, pull-request
//!   reports and check runs over REST, token or GitHub App authentication.
//! - [`redact`]: strips token-looking values from any text before it is stored or shown
//!   (re-exported from `kiro-protocol`, where the logs and spans share it).
//!
//! Invariant: callers only see the ports of `kiro-protocol` and [`PortError`]s; nothing
//! this crate stores on a board item or a pull request has passed around [`redact()`].
//!
//! [`PortError`]: kiro_protocol::PortError

pub mod embedded;
pub mod gh;
pub use kiro_protocol::redact;

pub use embedded::{BoardEntry, BoardFileError, EmbeddedBoard, EmbeddedPulls, StoredReport};
pub use kiro_protocol::redact::redact;
