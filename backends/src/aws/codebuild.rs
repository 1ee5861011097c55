//! `BuildRunner` on AWS CodeBuild.
//!
//! - **start** is one `StartBuild` on the configured project with the branch as
//!   `sourceVersion`, the request's environment as PLAINTEXT `environmentVariablesOverride`
//!   (never secrets: those are configured on the project, from Secrets Manager or
//!   Parameter Store), the request's time limit as `timeoutInMinutesOverride` (clamped to
//!   CodeBuild's 5–2160 minutes) and the request's idempotency key as `idempotencyToken`.
//!   CodeBuild honours that token for **5 minutes** only: a repeat within them (a retry
//!   after a timeout or a 5xx, or a consumer re-attaching right after a crash) returns the
//!   first build. Beyond that window the job record carries the guarantee: the consumer
//!   records its intent before `StartBuild` and the build id right after it, and whoever
//!   takes the project next re-attaches to the recorded build instead of starting one.
//! - **status** asks `BatchGetBuilds` once per 100 ids (the API's limit); ids CodeBuild
//!   does not know (`buildsNotFound`) are simply absent from the answer. A build maps to a
//!   [`BuildStatus`]: `buildStatus` (an IN_PROGRESS build still in SUBMITTED/QUEUED is
//!   [`BuildState::Queued`]), `currentPhase`, start and end times, the CloudWatch Logs deep
//!   link, the `exportedEnvironmentVariables` and, for a failed build, the failed phase and
//!   its contexts as the message.
//! - **stop** is `StopBuild`; stopping a build that already finished is a no-op (CodeBuild
//!   refuses it with `InvalidInputException`, which is checked against the build's status).
//!
//! Invariant: every call goes through [`classify`](super::classify::classify) and
//! [`retry`](super::retry::retry): throttling and transient errors are retried with
//! backoff (a retried `StartBuild` carries the same token, so it cannot start a second
//! build), everything else is returned classified.

use super::classify::{AwsError, classify};
use super::retry::{RetryPolicy, retry};
use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_codebuild::Client;
use aws_sdk_codebuild::types::{
    Build, BuildPhase, EnvironmentVariable, EnvironmentVariableType, StatusType,
};
use kiro_protocol::{
    BuildId, BuildRequest, BuildRunner, BuildState, BuildStatus, FailureClass, PortError, Timestamp,
};
use std::collections::BTreeMap;
use std::time::Duration;
use tracing::{debug, instrument};

/// Most ids one `BatchGetBuilds` call takes.
pub const BATCH_GET_LIMIT: usize = 100;

/// CodeBuild's bounds for `timeoutInMinutesOverride`.
const MIN_TIMEOUT_MINUTES: u64 = 5;
const MAX_TIMEOUT_MINUTES: u64 = 36 * 60;

/// Runs builds of one CodeBuild project.
#[derive(Debug, Clone)]
pub struct CodeBuildRunner {
    client: Client,
    project: String,
    retry: RetryPolicy,
    /// Whether the branch is passed as `sourceVersion` (projects with a repository
    /// source). A `NO_SOURCE` project (what infra-pulumi deploys: the worker clones the
    /// item's repository itself, from `KIRO_REPO` and `KIRO_BRANCH`) rejects it.
    source_version: bool,
}

impl CodeBuildRunner {
    /// A runner for CodeBuild project `project` (setting `KIRO_CODEBUILD_PROJECT`).
    pub fn new(sdk: &SdkConfig, project: impl Into<String>) -> Self {
        CodeBuildRunner::from_client(Client::new(sdk), project)
    }

    /// A runner built from this crate's AWS settings (region, endpoint override).
    pub async fn connect(aws: &super::settings::AwsSettings, project: impl Into<String>) -> Self {
        CodeBuildRunner::new(&super::settings::sdk_config(aws).await, project)
    }

    /// A runner on a client built elsewhere (tests hand in a mocked client).
    pub fn from_client(client: Client, project: impl Into<String>) -> Self {
        CodeBuildRunner {
            client,
            project: project.into(),
            retry: RetryPolicy::default(),
            source_version: false,
        }
    }

    /// Pass the branch as `sourceVersion` (for projects whose source is the repository).
    pub fn with_source_version(mut self, on: bool) -> Self {
        self.source_version = on;
        self
    }

    /// Retry with `policy` instead of the default.
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The CodeBuild project builds run in.
    pub fn project(&self) -> &str {
        &self.project
    }

    async fn batch_get(&self, ids: &[BuildId]) -> Result<Vec<BuildStatus>, AwsError> {
        let ids: Vec<String> = ids.iter().map(|i| i.as_str().to_owned()).collect();
        let out = retry(&self.retry, |_| {
            let call = self.client.batch_get_builds().set_ids(Some(ids.clone()));
            async move {
                call.send()
                    .await
                    .map_err(|e| classify("codebuild:BatchGetBuilds", &e))
            }
        })
        .await?;
        if !out.builds_not_found().is_empty() {
            debug!(
                not_found = out.builds_not_found().len(),
                "builds unknown to CodeBuild"
            );
        }
        out.builds().iter().map(status_of).collect()
    }
}

/// The `timeoutInMinutesOverride` for a time limit: whole minutes, rounded up, within
/// CodeBuild's bounds.
pub fn timeout_minutes(timeout: Duration) -> i32 {
    let minutes = timeout.as_secs().div_ceil(60);
    let clamped = minutes.clamp(MIN_TIMEOUT_MINUTES, MAX_TIMEOUT_MINUTES);
    i32::try_from(clamped).unwrap_or(i32::MAX)
}

fn env_overrides(env: &BTreeMap<String, String>) -> Result<Vec<EnvironmentVariable>, AwsError> {
    env.iter()
        .map(|(k, v)| {
            EnvironmentVariable::builder()
                .name(k)
                .value(v)
                .r#type(EnvironmentVariableType::Plaintext)
                .build()
                .map_err(|e| {
                    AwsError::new(
                        "codebuild:StartBuild",
                        FailureClass::Internal,
                        format!("environment variable {k}: {e}"),
                    )
                })
        })
        .collect()
}

fn millis(t: Option<&aws_smithy_types::DateTime>) -> Option<Timestamp> {
    t.and_then(|t| t.to_millis().ok()).map(Timestamp)
}

/// The state of a build as the port names it.
fn state_of(b: &Build) -> Result<BuildState, AwsError> {
    let status = b.build_status().ok_or_else(|| {
        AwsError::new(
            "codebuild:BatchGetBuilds",
            FailureClass::Transient,
            format!("build {} has no buildStatus", b.id().unwrap_or("?")),
        )
    })?;
    Ok(match status {
        StatusType::InProgress => match b.current_phase() {
            Some("SUBMITTED" | "QUEUED") => BuildState::Queued,
            _ => BuildState::InProgress,
        },
        StatusType::Succeeded => BuildState::Succeeded,
        StatusType::Failed => BuildState::Failed,
        StatusType::Fault => BuildState::Fault,
        StatusType::TimedOut => BuildState::TimedOut,
        StatusType::Stopped => BuildState::Stopped,
        other => {
            return Err(AwsError::new(
                "codebuild:BatchGetBuilds",
                FailureClass::Internal,
                format!("unknown buildStatus {:?}", other.as_str()),
            ));
        }
    })
}

/// The explanation of a failure: the first phase that did not succeed, with its contexts.
fn failure_message(phases: &[BuildPhase]) -> Option<String> {
    let failed = phases.iter().find(|p| {
        p.phase_status()
            .is_some_and(|s| !matches!(s, StatusType::Succeeded | StatusType::InProgress))
    })?;
    let phase = failed.phase_type().map_or("?", |t| t.as_str());
    let status = failed.phase_status().map_or("?", |s| s.as_str());
    let contexts: Vec<String> = failed
        .contexts()
        .iter()
        .filter_map(|c| match (c.status_code(), c.message()) {
            (Some(code), Some(msg)) if !msg.is_empty() => Some(format!("{code}: {msg}")),
            (None, Some(msg)) if !msg.is_empty() => Some(msg.to_owned()),
            (Some(code), _) => Some(code.to_owned()),
            _ => None,
        })
        .collect();
    Some(if contexts.is_empty() {
        format!("phase {phase} {status}")
    } else {
        format!("phase {phase} {status}: {}", contexts.join("; "))
    })
}

/// One CodeBuild build as a [`BuildStatus`].
pub fn status_of(b: &Build) -> Result<BuildStatus, AwsError> {
    let id = b.id().ok_or_else(|| {
        AwsError::new(
            "codebuild:BatchGetBuilds",
            FailureClass::Transient,
            "a build without an id",
        )
    })?;
    let state = state_of(b)?;
    let exported = b
        .exported_environment_variables()
        .iter()
        .filter_map(|v| {
            v.name()
                .map(|n| (n.to_owned(), v.value().unwrap_or_default().to_owned()))
        })
        .collect();
    let log = b.logs().and_then(|l| {
        l.deep_link()
            .or(l.cloud_watch_logs_arn())
            .or(l.s3_deep_link())
            .map(str::to_owned)
    });
    let message = if state.is_finished() && state != BuildState::Succeeded {
        failure_message(b.phases()).or_else(|| Some(format!("build ended {state}")))
    } else {
        None
    };
    Ok(BuildStatus {
        id: BuildId::new(id),
        state,
        phase: b.current_phase().map(str::to_owned),
        started_at: millis(b.start_time()).unwrap_or(Timestamp(0)),
        ended_at: if state.is_finished() {
            millis(b.end_time())
        } else {
            None
        },
        exported,
        log,
        message,
    })
}

#[async_trait]
impl BuildRunner for CodeBuildRunner {
    #[instrument(skip_all, fields(project = %req.project, item = %req.item))]
    async fn start(&self, req: &BuildRequest) -> Result<BuildId, PortError> {
        let env = env_overrides(&req.env)?;
        let minutes = timeout_minutes(req.timeout);
        let out = retry(&self.retry, |_| {
            let call = self
                .client
                .start_build()
                .project_name(&self.project)
                .set_source_version(
                    self.source_version
                        .then(|| req.source_version.as_str().to_owned()),
                )
                .set_environment_variables_override(Some(env.clone()))
                .idempotency_token(&req.idempotency_key)
                .timeout_in_minutes_override(minutes);
            async move {
                call.send()
                    .await
                    .map_err(|e| classify("codebuild:StartBuild", &e))
            }
        })
        .await?;
        let id = out.build_value().and_then(|b| b.id()).ok_or_else(|| {
            PortError::transient("codebuild:StartBuild answered without a build id")
        })?;
        debug!(build = id, "build started");
        Ok(BuildId::new(id))
    }

    async fn status(&self, ids: &[BuildId]) -> Result<Vec<BuildStatus>, PortError> {
        let mut all = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(BATCH_GET_LIMIT) {
            all.extend(self.batch_get(chunk).await?);
        }
        Ok(all)
    }

    #[instrument(skip_all, fields(build = %id))]
    async fn stop(&self, id: &BuildId) -> Result<(), PortError> {
        let stopped = retry(&self.retry, |_| {
            let call = self.client.stop_build().id(id.as_str());
            async move {
                call.send()
                    .await
                    .map_err(|e| classify("codebuild:StopBuild", &e))
            }
        })
        .await;
        match stopped {
            Ok(_) => Ok(()),
            // Refused: already finished (a no-op), or unknown.
            Err(e) if e.class == FailureClass::PermanentInput => {
                match self.batch_get(std::slice::from_ref(id)).await?.first() {
                    Some(s) if s.state.is_finished() => Ok(()),
                    Some(_) => Err(e.into()),
                    None => Err(PortError::input(format!("unknown build {id}"))),
                }
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_codebuild::types::{
        BuildPhaseType, ExportedEnvironmentVariable, LogsLocation, PhaseContext,
    };

    #[test]
    fn timeouts_round_up_within_codebuild_bounds() {
        assert_eq!(timeout_minutes(Duration::from_secs(60)), 5);
        assert_eq!(timeout_minutes(Duration::from_secs(61 * 60 + 1)), 62);
        assert_eq!(timeout_minutes(Duration::from_secs(100 * 3600)), 2160);
    }

    #[test]
    fn a_failed_build_maps_state_phase_times_vars_log_and_message() {
        let b = Build::builder()
            .id("proj:1")
            .build_status(StatusType::Failed)
            .current_phase("COMPLETED")
            .start_time(aws_smithy_types::DateTime::from_millis(1_000))
            .end_time(aws_smithy_types::DateTime::from_millis(9_000))
            .logs(
                LogsLocation::builder()
                    .deep_link("https://console/logs")
                    .build(),
            )
            .exported_environment_variables(
                ExportedEnvironmentVariable::builder()
                    .name("KIRO_OUTCOME")
                    .value("failed")
                    .build(),
            )
            .phases(
                BuildPhase::builder()
                    .phase_type(BuildPhaseType::Install)
                    .phase_status(StatusType::Succeeded)
                    .build(),
            )
            .phases(
                BuildPhase::builder()
                    .phase_type(BuildPhaseType::Build)
                    .phase_status(StatusType::Failed)
                    .contexts(
                        PhaseContext::builder()
                            .status_code("COMMAND_EXECUTION_ERROR")
                            .message(
                                "Error while executing command: npm test. Reason: exit status 1",
                            )
                            .build(),
                    )
                    .build(),
            )
            .build();
        let s = status_of(&b).unwrap();
        assert_eq!(s.state, BuildState::Failed);
        assert_eq!(s.phase.as_deref(), Some("COMPLETED"));
        assert_eq!(s.started_at, Timestamp(1_000));
        assert_eq!(s.ended_at, Some(Timestamp(9_000)));
        assert_eq!(s.log.as_deref(), Some("https://console/logs"));
        assert_eq!(
            s.exported.get("KIRO_OUTCOME").map(String::as_str),
            Some("failed")
        );
        let m = s.message.unwrap();
        assert!(
            m.starts_with("phase BUILD FAILED: COMMAND_EXECUTION_ERROR"),
            "{m}"
        );
        assert!(m.contains("exit status 1"), "{m}");
    }

    #[test]
    fn a_queued_build_is_queued_and_a_running_one_has_no_end() {
        let queued = Build::builder()
            .id("p:1")
            .build_status(StatusType::InProgress)
            .current_phase("QUEUED")
            .build();
        assert_eq!(status_of(&queued).unwrap().state, BuildState::Queued);
        let running = Build::builder()
            .id("p:2")
            .build_status(StatusType::InProgress)
            .current_phase("BUILD")
            .end_time(aws_smithy_types::DateTime::from_millis(5))
            .build();
        let s = status_of(&running).unwrap();
        assert_eq!(s.state, BuildState::InProgress);
        assert_eq!(s.ended_at, None);
        assert_eq!(s.message, None);
        assert!(status_of(&Build::builder().id("p:3").build()).is_err());
    }
}
