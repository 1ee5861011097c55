//! `BuildRunner`: start, watch and stop builds (AWS CodeBuild, or the local buildspec runner).
//!
//! Contract (checked by `kiro_backends::testing::contract::build`):
//! - `start` with an idempotency key already used returns the first build's id and starts
//!   nothing new; the same key with other parameters never starts a second build either
//!   (the runner returns the first build, or refuses with a `contention` error);
//! - `find` names the build a key started, for runners whose keys expire (CodeBuild
//!   forgets a token after 5 minutes);
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

/// What to build. The consumer records the exact request with its intent (in the job
/// record), so a consumer that re-attaches after a crash can replay it unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildRequest {
    pub project: ProjectKey,
    pub item: ItemId,
    /// Same key, same build.
    pub idempotency_key: String,
    pub source_version: BranchName,
    /// Environment overrides for the build (never secrets: those come from the runner's
    /// own configuration, e.g. Secrets Manager).
    pub env: BTreeMap<String, String>,
    /// The build's time limit; `None`: the runner's own (a CodeBuild project's timeout,
    /// the local runner's default).
    #[serde(
        default,
        with = "opt_secs",
        rename = "timeout_secs",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
}

/// An optional duration as whole seconds.
mod opt_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_secs))
    }
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
    /// The build started with idempotency key `key` (whose intent was recorded at
    /// `since`), if the runner can see it. Runners whose keys never expire (the local
    /// runner keeps every key) need no lookup: replaying the request returns the first
    /// build, so the default answers `None`. A runner whose keys expire (CodeBuild) must
    /// look: the consumer asks before replaying an old intent.
    async fn find(&self, key: &str, since: Timestamp) -> Result<Option<BuildId>, PortError> {
        let _ = (key, since);
        Ok(None)
    }
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
    /// The build's idempotency key, so a build can be found after the runner forgot the
    /// key (set by runners whose keys expire).
    pub const BUILD_KEY: &str = "KIRO_BUILD_KEY";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_round_trips_through_json_with_or_without_a_timeout() {
        let mut req = BuildRequest {
            project: ProjectKey::parse("calc").unwrap(),
            item: ItemId::parse("CALC-1").unwrap(),
            idempotency_key: "calc-CALC-1-0".into(),
            source_version: BranchName::parse("feature/x").unwrap(),
            env: BTreeMap::from([("KIRO_FENCE".to_owned(), "7".to_owned())]),
            timeout: Some(Duration::from_secs(5400)),
        };
        let json = serde_json::to_string(&req).unwrap();
        assert!(json.contains("\"timeout_secs\":5400"), "{json}");
        assert_eq!(serde_json::from_str::<BuildRequest>(&json).unwrap(), req);
        req.timeout = None;
        let json = serde_json::to_string(&req).unwrap();
        assert!(!json.contains("timeout"), "{json}");
        assert_eq!(serde_json::from_str::<BuildRequest>(&json).unwrap(), req);
    }
}
