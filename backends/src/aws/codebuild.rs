//! `BuildRunner` on AWS CodeBuild.
//!
//! - **start** is one `StartBuild` on the configured project with the branch as
//!   `sourceVersion`, the request's environment as PLAINTEXT `environmentVariablesOverride`
//!   (never secrets: those are configured on the project, from Secrets Manager or
//!   Parameter Store) plus `KIRO_BUILD_KEY` = the idempotency key, the request's time
//!   limit as `timeoutInMinutesOverride` only when it has one (clamped to CodeBuild's
//!   5–2160 minutes; none: the project's own timeout applies) and the idempotency key as
//!   `idempotencyToken`. CodeBuild honours that token for **5 minutes** only: a repeat of
//!   the *same* request within them (a retry after a timeout or a 5xx, or a consumer
//!   replaying the request recorded with its intent) returns the first build; the same
//!   token with *other* parameters is refused (`InvalidInputException`, "parameter
//!   mismatch"). Such a refusal is answered by [`find`](BuildRunner::find): the build the
//!   key started, if it can be seen, else an error of class `contention` (a build for the
//!   key exists or is being started; never the item's fault, never a second build).
//! - **find** looks a key up after the token may have expired: `ListBuildsForProject`
//!   (newest first) and `BatchGetBuilds` of each page, matching `KIRO_BUILD_KEY` in the
//!   build's environment, until a page reaches builds started well before the intent.
//! - **status** asks `BatchGetBuilds` once per 100 ids (the API's limit); ids CodeBuild
//!   does not know (`buildsNotFound`) are simply absent from the answer. A build maps to a
//!   [`BuildStatus`]: `buildStatus` (an IN_PROGRESS build still in SUBMITTED/QUEUED is
//!   [`BuildState::Queued`]), `currentPhase`, start and end times, the CloudWatch Logs deep
//!   link, the `exportedEnvironmentVariables` and, for a failed build, the failed phase and
//!   its contexts as the message.
//! - **stop** is `StopBuild`; stopping a build that already finished is a no-op (CodeBuild
//!   refuses it with `InvalidInputException`, which is checked against the build's status).
//!
//! Invariant: every call goes through the shared `call` helper: throttling and transient
//! errors are retried with backoff (a retried `StartBuild` carries the same token, so it
//! cannot start a second build), everything else is returned classified.

use super::call::call;
use super::classify::AwsError;
use super::retry::CallBackoff;
use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_codebuild::Client;
use aws_sdk_codebuild::types::SortOrderType;
use aws_sdk_codebuild::types::{
    Build, BuildPhase, EnvironmentVariable, EnvironmentVariableType, StatusType,
};
use kiro_protocol::ports::build::env as build_env;
use kiro_protocol::{
    BuildId, BuildRequest, BuildRunner, BuildState, BuildStatus, FailureClass, PortError, Timestamp,
};
use std::collections::BTreeMap;
use std::time::Duration;
use tracing::{debug, instrument};

/// Most ids one `BatchGetBuilds` call takes.
pub const BATCH_GET_LIMIT: usize = 100;

/// CodeBuild's bounds for `timeoutInMinutesOverride`.
pub const MIN_TIMEOUT_MINUTES: u64 = 5;
pub const MAX_TIMEOUT_MINUTES: u64 = 36 * 60;

/// Pages of `ListBuildsForProject` (100 ids each) [`BuildRunner::find`] reads at most.
const FIND_MAX_PAGES: usize = 10;

/// How long before the intent a build may appear to have started (clock skew between
/// the consumer and CodeBuild): `find` stops at a page whose oldest build started
/// earlier than the intent minus this.
const FIND_SKEW: Duration = Duration::from_secs(10 * 60);

/// Runs builds of one CodeBuild project.
#[derive(Debug, Clone)]
pub struct CodeBuildRunner {
    client: Client,
    project: String,
    backoff: CallBackoff,
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
            backoff: CallBackoff::default(),
            source_version: false,
        }
    }

    /// Pass the branch as `sourceVersion` (for projects whose source is the repository).
    pub fn with_source_version(mut self, on: bool) -> Self {
        self.source_version = on;
        self
    }

    /// The same runner with another backoff for its calls.
    pub fn with_backoff(mut self, backoff: CallBackoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The CodeBuild project builds run in.
    pub fn project(&self) -> &str {
        &self.project
    }

    async fn batch_get(&self, ids: &[BuildId]) -> Result<Vec<BuildStatus>, AwsError> {
        self.batch_get_raw(ids)
            .await?
            .iter()
            .map(status_of)
            .collect()
    }

    async fn batch_get_raw(&self, ids: &[BuildId]) -> Result<Vec<Build>, AwsError> {
        let ids: Vec<String> = ids.iter().map(|i| i.as_str().to_owned()).collect();
        let out = call(&self.backoff, "codebuild:BatchGetBuilds", |_| {
            self.client
                .batch_get_builds()
                .set_ids(Some(ids.clone()))
                .send()
        })
        .await?;
        if !out.builds_not_found().is_empty() {
            debug!(
                not_found = out.builds_not_found().len(),
                "builds unknown to CodeBuild"
            );
        }
        Ok(out.builds.unwrap_or_default())
    }

    /// One page of the project's build ids, newest first.
    async fn list_page(
        &self,
        next: Option<String>,
    ) -> Result<(Vec<BuildId>, Option<String>), AwsError> {
        let out = call(&self.backoff, "codebuild:ListBuildsForProject", |_| {
            self.client
                .list_builds_for_project()
                .project_name(&self.project)
                .sort_order(SortOrderType::Descending)
                .set_next_token(next.clone())
                .send()
        })
        .await?;
        let ids = out.ids().iter().map(BuildId::new).collect();
        Ok((ids, out.next_token.filter(|t| !t.is_empty())))
    }

    /// The build whose environment carries `KIRO_BUILD_KEY` = `key`, among the builds
    /// started since `since` (minus [`FIND_SKEW`]).
    async fn find_key(
        &self,
        key: &str,
        since: Timestamp,
        max_pages: usize,
    ) -> Result<Option<BuildId>, AwsError> {
        let floor = since.minus(FIND_SKEW);
        let mut next = None;
        for _ in 0..max_pages {
            let (ids, token) = self.list_page(next).await?;
            if ids.is_empty() {
                return Ok(None);
            }
            let builds = self.batch_get_raw(&ids).await?;
            if let Some(b) = builds.iter().find(|b| carries_key(b, key)) {
                return Ok(b.id().map(BuildId::new));
            }
            let oldest = builds.iter().filter_map(|b| millis(b.start_time())).min();
            if token.is_none() || oldest.is_some_and(|t| t < floor) {
                return Ok(None);
            }
            next = token;
        }
        debug!(key, "key not found within the pages searched");
        Ok(None)
    }
}

/// Whether build `b` was started with idempotency key `key` (its `KIRO_BUILD_KEY`).
fn carries_key(b: &Build, key: &str) -> bool {
    b.environment().is_some_and(|e| {
        e.environment_variables()
            .iter()
            .any(|v| v.name() == build_env::BUILD_KEY && v.value() == key)
    })
}

/// Whether a `StartBuild` refusal says the token was used with other parameters. AWS
/// documents the error ("parameter mismatch") but not its text: any mention of the
/// idempotency token or of a mismatch counts.
fn is_token_mismatch(e: &AwsError) -> bool {
    let m = e.message.to_ascii_lowercase();
    e.is_code("InvalidInputException") && (m.contains("idempoten") || m.contains("mismatch"))
}

/// The `timeoutInMinutesOverride` for a time limit: whole minutes, rounded up, within
/// CodeBuild's bounds.
pub fn timeout_minutes(timeout: Duration) -> i32 {
    let minutes = timeout.as_secs().div_ceil(60);
    let clamped = minutes.clamp(MIN_TIMEOUT_MINUTES, MAX_TIMEOUT_MINUTES);
    i32::try_from(clamped).unwrap_or(i32::MAX)
}

fn env_overrides(
    env: &BTreeMap<String, String>,
    key: &str,
) -> Result<Vec<EnvironmentVariable>, AwsError> {
    env.iter()
        .filter(|(k, _)| k.as_str() != build_env::BUILD_KEY)
        .chain(std::iter::once((
            &build_env::BUILD_KEY.to_owned(),
            &key.to_owned(),
        )))
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
        let env = env_overrides(&req.env, &req.idempotency_key)?;
        let minutes = req.timeout.map(timeout_minutes);
        let started = call(&self.backoff, "codebuild:StartBuild", |_| {
            self.client
                .start_build()
                .project_name(&self.project)
                .set_source_version(
                    self.source_version
                        .then(|| req.source_version.as_str().to_owned()),
                )
                .set_environment_variables_override(Some(env.clone()))
                .idempotency_token(&req.idempotency_key)
                .set_timeout_in_minutes_override(minutes)
                .send()
        })
        .await;
        let out = match started {
            Ok(out) => out,
            Err(e) if e.is_code("InvalidInputException") => {
                // The same token with other parameters is refused; the build it started
                // (within the token's 5 minutes: on the first page) is the answer, if it
                // can be seen already.
                if let Some(id) = self.find_key(&req.idempotency_key, Timestamp(0), 1).await? {
                    debug!(build = %id, "key already used; same build");
                    return Ok(id);
                }
                if is_token_mismatch(&e) {
                    return Err(PortError::new(
                        FailureClass::Contention,
                        format!(
                            "{e} (idempotency token {} was used with other parameters; \
                             its build is not visible yet: no second build was started)",
                            req.idempotency_key
                        ),
                    ));
                }
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        };
        let id = out.build_value().and_then(|b| b.id()).ok_or_else(|| {
            PortError::transient("codebuild:StartBuild answered without a build id")
        })?;
        debug!(build = id, "build started");
        Ok(BuildId::new(id))
    }

    #[instrument(skip_all, fields(key = %key))]
    async fn find(&self, key: &str, since: Timestamp) -> Result<Option<BuildId>, PortError> {
        Ok(self.find_key(key, since, FIND_MAX_PAGES).await?)
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
        let stopped = call(&self.backoff, "codebuild:StopBuild", |_| {
            self.client.stop_build().id(id.as_str()).send()
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
