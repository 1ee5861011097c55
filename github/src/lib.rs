//! The GitHub adapters of the `Board` and `PullRequests` ports (the embedded board and
//! forge of one-machine runs are in `kiro-backends`).
//!
//! - [`gh`]: the GitHub adapters — a Projects (v2) board over GraphQL, pull-request
//!   reports and check runs over REST, token or GitHub App authentication.
//! - [`redact`]: strips token-looking values from any text before it is stored or shown
//!   (re-exported from `kiro-protocol`, where the logs and spans share it).
//!
//! Invariant: callers only see the ports of `kiro-protocol` and [`PortError`]s; nothing
//! this crate stores on a board item or a pull request has passed around [`redact()`].
//!
//! [`PortError`]: kiro_protocol::PortError

pub mod gh;
pub use kiro_protocol::redact;

pub use kiro_protocol::redact::redact;
