//! The names of the environment variables the binaries share: the settings the consumer
//! writes into a build's environment and the worker reads back, and the ones the producer,
//! the consumer and the worker each read under the same name.
//!
//! Invariant: each name is spelled here once; the binaries' command lines (clap's
//! `env = ...`) and the consumer's build environment use these constants, never a string
//! of their own. The item's own variables, set per build by the engine, are
//! [`crate::ports::build::env`]; the worker's exported outcome is [`crate::outcome`].

/// The embedded backend's state directory (`kiro.db`, spans).
pub const STATE_DIR: &str = "KIRO_STATE_DIR";
/// The embedded board file.
pub const BOARD_FILE: &str = "KIRO_BOARD_FILE";
/// Which backend holds the queue and the leases: `embedded` or `aws`.
pub const BACKEND: &str = "KIRO_BACKEND";
/// Where the board and the pull requests live: `embedded` or `github`.
pub const FORGE: &str = "KIRO_FORGE";
/// The GitHub project holding the board (`orgs/<org>/<number>`).
pub const GITHUB_PROJECT: &str = "KIRO_GITHUB_PROJECT";
/// Base URL of the git forge the worker clones from and pushes to.
pub const GIT_BASE: &str = "KIRO_GIT_BASE";
/// The AWS region (falls back to the platform's `AWS_REGION`).
pub const AWS_REGION: &str = "KIRO_AWS_REGION";
/// One endpoint for every AWS service (an emulator).
pub const AWS_ENDPOINT_URL: &str = "KIRO_AWS_ENDPOINT_URL";
/// The SQS FIFO work queue's URL.
pub const QUEUE_URL: &str = "KIRO_QUEUE_URL";
/// The SQS FIFO dead-letter queue's URL.
pub const DLQ_URL: &str = "KIRO_DLQ_URL";
/// The DynamoDB table of leases and job records.
pub const LEASE_TABLE: &str = "KIRO_LEASE_TABLE";
/// The log format on stderr: `auto`, `text` or `json`.
pub const LOG_FORMAT: &str = "KIRO_LOG_FORMAT";
/// The metrics sink: `emf` (CloudWatch EMF lines on stdout) or `off`.
pub const METRICS: &str = "KIRO_METRICS";
/// The build's time limit: the consumer's setting, and the worker's (which the consumer
/// writes into each build it starts with a known limit, and the stack into the CodeBuild
/// project's environment), so the worker can keep its own limits inside it.
pub const BUILD_TIMEOUT: &str = "KIRO_BUILD_TIMEOUT";
/// Where the worker writes its outcome (relative to the build directory).
pub const OUTCOME_FILE: &str = "KIRO_OUTCOME_FILE";
