//! The layer the three binaries (`kiro-producer`, `kiro-consumer`, `kiro-worker`) stand on:
//! the command-line pieces they share and the shutdown signal.
//!
//! - [`args`]: the backend and forge choices ([`Backend`], [`Forge`]), the state directory
//!   ([`DEFAULT_STATE_DIR`]) and the log format ([`CommonArgs`], [`ForgeArgs`]);
//! - [`aws`]: the AWS settings ([`AwsArgs`] → `AwsSettings`, with the one `AWS_REGION`
//!   fallback; [`SqsArgs`], [`LeaseTableArgs`]);
//! - [`github`]: the GitHub settings ([`GithubArgs`] → `GithubSettings`);
//! - [`range`]: the range checks of duration and count settings ([`InvalidSetting`],
//!   exit status 2);
//! - [`shutdown`]: SIGTERM/SIGINT → a `CancellationToken`.
//!
//! Invariant: each shared flag, its environment variable (a [`kiro_protocol::env`] or
//! `kiro_github::gh::settings::vars` constant), its default and its help text are stated
//! here once; a binary flattens these structs (`#[command(flatten)]`) and never restates
//! them. This crate may depend on the adapter crates; no adapter depends on it.

pub mod args;
pub mod aws;
pub mod github;
pub mod range;
pub mod shutdown;

pub use args::{Backend, CommonArgs, DEFAULT_STATE_DIR, Forge, ForgeArgs};
pub use aws::{AwsArgs, LeaseTableArgs, MissingSetting, SqsArgs};
pub use github::GithubArgs;
pub use range::InvalidSetting;
