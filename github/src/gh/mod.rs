//! The GitHub adapters: a Projects (v2) board over GraphQL and pull requests over REST.
//!
//! - [`settings`]: [`GithubSettings`] from an explicit environment map (token or App).
//! - [`client`]: [`GithubClient`], one HTTP path for every call: a transport plus the
//!   token source.
//! - [`transport`]: the HTTP layer (auth header, rate-limit waits, bounded retries, error
//!   classification and scrubbing), given the bearer value by its caller.
//! - [`auth`]: personal access tokens and App installation tokens (cached, refreshed,
//!   exchanged through the transport).
//! - [`ratelimit`]: how long GitHub asked us to wait.
//! - [`graphql`]: queries that keep partial data and report partial errors.
//! - [`board`]: [`GithubBoard`], the `Board` port.
//! - [`pulls`] and [`checks`]: [`GithubPulls`], the `PullRequests` port (sticky report,
//!   check runs); both read a pull request through `pull_wire`.
//!
//! Invariant: a token never leaves a [`Secret`](kiro_protocol::Secret) except into one
//! `Authorization` header marked sensitive; every error message is scrubbed of it, and every text sent to GitHub has
//! passed through [`crate::redact::redact`].

pub mod auth;
pub mod board;
pub mod checks;
pub mod client;
pub mod graphql;
pub(crate) mod pull_wire;
pub mod pulls;
pub mod ratelimit;
pub mod settings;
pub mod transport;

pub use board::{FieldConfig, GithubBoard, OwnerKind, ProjectKeyRule, ProjectRef, ReadyItems};
pub use client::{GithubClient, installation_token};
pub use pulls::{GithubPulls, REPORT_MARKER, ReportMode};
pub use ratelimit::RequestBackoff;
pub use settings::{AuthConfig, GithubSettings, SettingsError};
