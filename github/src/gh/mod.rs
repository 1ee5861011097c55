//! The GitHub adapters: a Projects (v2) board over GraphQL and pull requests over REST.
//!
//! - [`settings`]: [`GithubSettings`] from an explicit environment map (token or App).
//! - [`client`]: [`GithubClient`], one HTTP path for every call (auth header, rate-limit
//!   waits, bounded retries, error classification and scrubbing).
//! - [`auth`]: personal access tokens and App installation tokens (cached, refreshed).
//! - [`ratelimit`]: how long GitHub asked us to wait.
//! - [`graphql`]: queries that keep partial data and report partial errors.
//! - [`board`]: [`GithubBoard`], the `Board` port.
//! - [`pulls`] and [`checks`]: [`GithubPulls`], the `PullRequests` port (sticky report,
//!   check runs).
//!
//! Invariant: a token never leaves a [`Secret`](kiro_protocol::Secret) except into one
//! `Authorization` header marked sensitive; every error message is scrubbed of it, and every text sent to GitHub has
//! passed through [`crate::redact::redact`].

pub mod auth;
pub mod board;
pub mod checks;
pub mod client;
pub mod graphql;
pub mod pulls;
pub mod ratelimit;
pub mod settings;

pub use auth::installation_token;
pub use board::{FieldConfig, GithubBoard, OwnerKind, ProjectKeyRule, ProjectRef, ReadyItems};
pub use client::GithubClient;
pub use pulls::{GithubPulls, REPORT_MARKER, ReportMode};
pub use ratelimit::RetryPolicy;
pub use settings::{AuthConfig, GithubSettings, SettingsError};
