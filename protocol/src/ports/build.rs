//! `BuildRunner`: start, watch and stop builds (AWS CodeBuild, or the local buildspec runner).
//!
//! Contract (checked by `kiro-backends::contract::build`):
//! - `start` with an idempotency key already used returns the first build's id and starts
//!   nothing new;
//! - `status` takes many ids at once and answers for each id it knows;
//! - a finished status carries the variables the build exported;
//! - builds outlive the process that started them: another process can ask for their status.

use crate::clock::Timestamp;
use crate::failure::PortError;
use crate::ids::{BranchName, BuildId, ItemId, ProjectKey};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// What to build.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildRequest {
    pub project: ProjectKey,
    pub item: ItemId,
    /// Same key, same build.
    pub idempotency_key: String,
    pub source_version: BranchName,
    /// Environment overrides for the build (never secrets: those come from the runner's
    /// own configuration, e.g. Secrets Manager).
    pub env: BTreeMap<String, String>,
    pub timeout: Duration,
}

/// A build's state, CodeBuild's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BuildState {
    Queued,
    InProgress,
    Succeeded,
    Failed,
    Fault,
    TimedOut,
    Stopped,
}

impl BuildState {
    pub fn is_finished(self) -> bool {
        !matches!(self, BuildState::Queued | BuildState::InProgress)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BuildState::Queued => "QUEUED",
            BuildState::InProgress => "IN_PROGRESS",
            BuildState::Succeeded => "SUCCEEDED",
            BuildState::Failed => "FAILED",
            BuildState::Fault => "FAULT",
            BuildState::TimedOut => "TIMED_OUT",
            BuildState::Stopped => "STOPPED",
        }
    }

    pub fn parse(s: &str) -> Option<BuildState> {
        [
            BuildState::Queued,
            BuildState::InProgress,
            BuildState::Succeeded,
            BuildState::Failed,
            BuildState::Fault,
            BuildState::TimedOut,
            BuildState::Stopped,
        ]
        .into_iter()
        .find(|b| b.as_str() == s)
    }
}

impl fmt::Display for BuildState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A build as the runner sees it now.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildStatus {
    pub id: BuildId,
    pub state: BuildState,
    /// The phase running or last run (`INSTALL`, `BUILD`, …), if known.
    pub phase: Option<String>,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    /// Variables the build exported (set once it finished).
    pub exported: BTreeMap<String, String>,
    /// Where the build's log is (a file path, or a CloudWatch Logs link).
    pub log: Option<String>,
    /// The runner's own explanation of a failure (phase and reason), if any.
    pub message: Option<String>,
}

#[async_trait]
pub trait BuildRunner: Send + Sync + std::fmt::Debug {
    async fn start(&self, req: &BuildRequest) -> Result<BuildId, PortError>;
    async fn status(&self, ids: &[BuildId]) -> Result<Vec<BuildStatus>, PortError>;
    async fn stop(&self, id: &BuildId) -> Result<(), PortError>;
}

/// Names of the environment variables the consumer passes into every build.
pub mod env {
    pub const ITEM: &str = "KIRO_ITEM_ID";
    pub const PROJECT: &str = "KIRO_PROJECT";
    pub const REPO: &str = "KIRO_REPO";
    pub const BRANCH: &str = "KIRO_BRANCH";
    pub const SPEC: &str = "KIRO_SPEC_PATH";
    pub const PR: &str = "KIRO_PR";
    pub const FENCE: &str = "KIRO_FENCE";
    pub const TRACEPARENT: &str = "TRACEPARENT";
    pub const ATTEMPT: &str = "KIRO_ATTEMPT";
}
