//! The CodeBuild emulator: projects the test registers, builds started through the
//! CodeBuild JSON 1.1 API ([`api`]) and run with the local buildspec executor ([`run`]),
//! environment variables resolved from Secrets Manager and Parameter Store ([`env`]).
//!
//! Semantics kept (each as documented for CodeBuild):
//! - a build's environment: the project's variables, replaced by name by
//!   `environmentVariablesOverride`; over the buildspec's `env.variables`,
//!   `env.secrets-manager` and `env.parameter-store`; under the variables CodeBuild sets
//!   itself (`CODEBUILD_BUILD_ID` = `<project>:<uuid>`, `CODEBUILD_BUILD_ARN`,
//!   `CODEBUILD_BUILD_NUMBER`, `CODEBUILD_SRC_DIR`, `CODEBUILD_INITIATOR`,
//!   `CODEBUILD_BUILD_SUCCEEDING`, `CODEBUILD_BUILD_IMAGE`, `CODEBUILD_LOG_PATH`,
//!   `CODEBUILD_SOURCE_VERSION`, `CODEBUILD_START_TIME`, `CODEBUILD_PROJECT_ARN`,
//!   `CODEBUILD_KMS_KEY_ID` — the documented list, nothing CodeBuild does not set); plus
//!   `AWS_REGION`, `AWS_DEFAULT_REGION` and the service role's credentials (as
//!   `AWS_CONTAINER_CREDENTIALS_FULL_URI`), on top of [`super::EmulatorConfig::build_base_env`];
//! - SECRETS_MANAGER / PARAMETER_STORE variables resolve at build start with the service
//!   role's credentials (recorded under that role); one that does not resolve fails the
//!   build in PROVISIONING;
//! - `timeoutInMinutesOverride` replaces the project's timeout for that build; a build
//!   over its timeout ends TIMED_OUT; StopBuild ends it STOPPED;
//! - variable names starting with `CODEBUILD_` (project or override) are refused with
//!   `InvalidInputException`;
//! - StartBuild while `concurrentBuildLimit` builds of the project are IN_PROGRESS →
//!   `AccountLimitExceededException` (HTTP 400), nothing started; beyond the account's
//!   limit ([`super::EmulatorConfig::account_concurrent_build_limit`]) a build waits in
//!   QUEUED (until `queuedTimeoutInMinutes` → TIMED_OUT), and with five times the limit
//!   queued StartBuild fails with `AccountLimitExceededException` ("Cannot have more
//!   than N builds in queue for the account");
//! - `idempotencyToken`: the same token with the same parameters within 5 minutes → the
//!   same build; with different parameters → `InvalidInputException` (HTTP 400); after
//!   5 minutes the token is forgotten.
//!
//! - with a log group, the build log goes to CloudWatch Logs as the service role
//!   (`CreateLogStream` at the start, `PutLogEvents` at the end; see [`logs`]);
//! - the buildspec's `reports` with matching files → CodeBuild's report calls as the
//!   service role, recorded (see [`reports`]).
//!
//! Invariant: the state lock is never held across an await; a build's record is the
//! one truth every API answer is rendered from.

pub mod api;
pub mod env;
pub mod logs;
pub mod reports;
pub mod run;

use super::{EmulatorConfig, Shared, lock};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

/// The `X-Amz-Target` prefix of the CodeBuild API.
pub const TARGET_PREFIX: &str = "CodeBuild_20161006.";

/// Where an environment variable's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvVarType {
    Plaintext,
    /// The value is `secret-id[:json-key[:version-stage[:version-id]]]`.
    SecretsManager,
    /// The value is a parameter name.
    ParameterStore,
}

impl EnvVarType {
    pub fn as_str(self) -> &'static str {
        match self {
            EnvVarType::Plaintext => "PLAINTEXT",
            EnvVarType::SecretsManager => "SECRETS_MANAGER",
            EnvVarType::ParameterStore => "PARAMETER_STORE",
        }
    }

    pub fn parse(s: &str) -> Option<EnvVarType> {
        match s {
            "PLAINTEXT" => Some(EnvVarType::Plaintext),
            "SECRETS_MANAGER" => Some(EnvVarType::SecretsManager),
            "PARAMETER_STORE" => Some(EnvVarType::ParameterStore),
            _ => None,
        }
    }
}

/// A project or override environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
    pub kind: EnvVarType,
}

impl EnvVar {
    pub fn plain(name: &str, value: &str) -> EnvVar {
        EnvVar::new(name, value, EnvVarType::Plaintext)
    }

    /// A SECRETS_MANAGER variable (`secret-id[:json-key[:stage[:version]]]`).
    pub fn secret(name: &str, reference: &str) -> EnvVar {
        EnvVar::new(name, reference, EnvVarType::SecretsManager)
    }

    /// A PARAMETER_STORE variable.
    pub fn parameter(name: &str, parameter: &str) -> EnvVar {
        EnvVar::new(name, parameter, EnvVarType::ParameterStore)
    }

    pub fn new(name: &str, value: &str, kind: EnvVarType) -> EnvVar {
        EnvVar {
            name: name.to_owned(),
            value: value.to_owned(),
            kind,
        }
    }
}

/// A project as the test registers it (the rendered stack's project).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectSpec {
    pub name: String,
    /// The service role's key (`codebuild`); its credentials resolve secrets and are the
    /// build's credentials. Its ARN is `arn:aws:iam::<account>:role/<key>`.
    pub service_role: String,
    /// The inlined buildspec text.
    pub buildspec: String,
    pub environment_variables: Vec<EnvVar>,
    pub image: String,
    pub timeout_in_minutes: u32,
    pub queued_timeout_in_minutes: u32,
    /// `None`: no project limit.
    pub concurrent_build_limit: Option<u32>,
    /// The CloudWatch Logs group builds write to (`logsConfig.cloudWatchLogs.groupName`);
    /// `None`: the log stays in the build directory only (see [`logs`]).
    pub log_group: Option<String>,
}

impl ProjectSpec {
    /// A project with CodeBuild's defaults (60 min timeout, 480 min queued timeout, no
    /// concurrent build limit).
    pub fn new(name: &str, service_role: &str, buildspec: &str) -> ProjectSpec {
        ProjectSpec {
            name: name.to_owned(),
            service_role: service_role.to_owned(),
            buildspec: buildspec.to_owned(),
            environment_variables: Vec::new(),
            image: "aws/codebuild/amazonlinux-x86_64-standard:5.0".into(),
            timeout_in_minutes: 60,
            queued_timeout_in_minutes: 480,
            concurrent_build_limit: None,
            log_group: None,
        }
    }

    pub fn env(mut self, v: EnvVar) -> Self {
        self.environment_variables.push(v);
        self
    }

    pub fn timeout_minutes(mut self, m: u32) -> Self {
        self.timeout_in_minutes = m;
        self
    }

    pub fn concurrent_build_limit(mut self, n: u32) -> Self {
        self.concurrent_build_limit = Some(n);
        self
    }

    pub fn log_group(mut self, group: &str) -> Self {
        self.log_group = Some(group.to_owned());
        self
    }
}

/// CodeBuild's `buildStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    InProgress,
    Succeeded,
    Failed,
    Fault,
    TimedOut,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::InProgress => "IN_PROGRESS",
            Status::Succeeded => "SUCCEEDED",
            Status::Failed => "FAILED",
            Status::Fault => "FAULT",
            Status::TimedOut => "TIMED_OUT",
            Status::Stopped => "STOPPED",
        }
    }
}

/// One phase of a build.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseView {
    pub phase: String,
    /// `None` while the phase runs (and for COMPLETED).
    pub status: Option<String>,
    pub start: f64,
    pub end: Option<f64>,
    /// `(statusCode, message)` pairs.
    pub contexts: Vec<(String, String)>,
}

/// A build as tests see it.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildView {
    pub id: String,
    pub arn: String,
    pub number: u64,
    pub project: String,
    pub token: Option<String>,
    /// `IN_PROGRESS`, `SUCCEEDED`, `FAILED`, `FAULT`, `TIMED_OUT`, `STOPPED`.
    pub status: String,
    pub current_phase: String,
    pub complete: bool,
    pub phases: Vec<PhaseView>,
    /// The role key that called StartBuild (`CODEBUILD_INITIATOR`).
    pub initiator: String,
    /// The project's variables merged with the overrides (unresolved, as the API shows).
    pub variables: Vec<EnvVar>,
    pub timeout_in_minutes: u32,
    /// The environment the build's shells started with; empty until the build got past
    /// PROVISIONING. It holds resolved secret values: assert on single variables, never
    /// print it whole.
    pub environment: BTreeMap<String, String>,
    pub exported: BTreeMap<String, String>,
    pub dir: PathBuf,
    pub log: PathBuf,
}

/// A build's record.
#[derive(Debug)]
pub(crate) struct Build {
    pub view: BuildView,
    pub start_time: f64,
    pub end_time: Option<f64>,
    pub stop: watch::Sender<bool>,
    pub source_version: Option<String>,
    pub queued_timeout_in_minutes: u32,
    pub image: String,
    pub service_role: String,
    pub log_group: Option<String>,
    /// The process group of the build's phase shells, once a phase started.
    pub pgid: Option<i32>,
}

impl Build {
    pub(crate) fn enter_phase(&mut self, phase: &str) {
        let now = now_secs();
        if let Some(last) = self.view.phases.last_mut()
            && last.end.is_none()
        {
            last.end = Some(now);
            last.status.get_or_insert_with(|| "SUCCEEDED".into());
        }
        self.view.phases.push(PhaseView {
            phase: phase.to_owned(),
            status: None,
            start: now,
            end: None,
            contexts: Vec::new(),
        });
        self.view.current_phase = phase.to_owned();
    }
}

/// Seconds since the epoch, as CodeBuild's JSON timestamps.
pub fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[derive(Debug)]
pub(crate) struct Project {
    pub spec: ProjectSpec,
    pub builds_started: u64,
}

#[derive(Debug)]
pub(crate) struct TokenUse {
    pub params: Value,
    pub build_id: String,
    pub at: Instant,
}

/// A held StartBuild: the build id is announced on `started`, the answer waits for
/// `release` (a value or the sender's drop).
#[derive(Debug)]
pub(crate) struct HoldSlot {
    pub started: oneshot::Sender<String>,
    pub release: oneshot::Receiver<()>,
}

/// The test's side of a held StartBuild (see [`super::AwsEmulator::hold_next_start_build`]).
#[derive(Debug)]
pub struct StartBuildHold {
    started: Option<oneshot::Receiver<String>>,
    release: Option<oneshot::Sender<()>>,
}

impl StartBuildHold {
    /// The id of the build the held StartBuild created (it is running; its caller has
    /// not been answered). `None` if the emulator went away first, or when called a
    /// second time. The future does not borrow the hold, so the hold can be released or
    /// dropped while (or after) it is awaited.
    pub fn started(&mut self) -> impl Future<Output = Option<String>> + Send + 'static {
        let rx = self.started.take();
        async move { rx?.await.ok() }
    }

    /// Let the held StartBuild answer.
    pub fn release(mut self) {
        if let Some(tx) = self.release.take() {
            let _ = tx.send(());
        }
    }
}

/// All projects, builds, tokens and holds.
#[derive(Debug, Default)]
pub struct State {
    pub(crate) projects: HashMap<String, Project>,
    pub(crate) builds: Vec<Build>,
    pub(crate) tokens: HashMap<String, TokenUse>,
    pub(crate) holds: VecDeque<HoldSlot>,
    /// Report groups created so far (`<project>-<name>`).
    pub(crate) report_groups: HashSet<String>,
}

impl State {
    pub(crate) fn create_project(&mut self, spec: ProjectSpec) {
        let started = self
            .projects
            .get(&spec.name)
            .map_or(0, |p| p.builds_started);
        self.projects.insert(
            spec.name.clone(),
            Project {
                spec,
                builds_started: started,
            },
        );
    }

    pub(crate) fn views(&self) -> Vec<BuildView> {
        self.builds.iter().map(|b| b.view.clone()).collect()
    }

    pub(crate) fn hold(&mut self) -> StartBuildHold {
        let (started_tx, started_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel();
        self.holds.push_back(HoldSlot {
            started: started_tx,
            release: release_rx,
        });
        StartBuildHold {
            started: Some(started_rx),
            release: Some(release_tx),
        }
    }

    pub(crate) fn build_mut(&mut self, id: &str) -> Option<&mut Build> {
        self.builds.iter_mut().find(|b| b.view.id == id)
    }

    pub(crate) fn build(&self, id: &str) -> Option<&Build> {
        let id = id.rsplit_once(":build/").map_or(id, |(_, rest)| rest);
        self.builds.iter().find(|b| b.view.id == id)
    }
}

/// Stop every running build at once (the emulator is going away, perhaps with its
/// runtime, so nothing may rely on the build tasks running again): the stop signal, and
/// SIGKILL to each build's process group so no build process outlives the test.
pub(super) fn stop_all(shared: &Shared) {
    use kiro_local_build::process::{SIGKILL, signal_group};
    for b in &lock(&shared.codebuild).builds {
        if !b.view.complete {
            let _ = b.stop.send(true);
            if let Some(pgid) = b.pgid {
                let _ = signal_group(pgid, SIGKILL);
            }
        }
    }
}

/// A build in the shape of the API's `Build` structure.
pub(crate) fn build_json(b: &Build, cfg: &EmulatorConfig) -> Value {
    let v = &b.view;
    let phases: Vec<Value> = v
        .phases
        .iter()
        .map(|p| {
            let mut j = json!({ "phaseType": p.phase, "startTime": p.start });
            if let Some(s) = &p.status {
                j["phaseStatus"] = json!(s);
            }
            if let Some(end) = p.end {
                j["endTime"] = json!(end);
                j["durationInSeconds"] = json!((end - p.start).max(0.0).round() as i64);
            }
            if !p.contexts.is_empty() {
                j["contexts"] = p
                    .contexts
                    .iter()
                    .map(|(code, msg)| json!({ "statusCode": code, "message": msg }))
                    .collect();
            }
            j
        })
        .collect();
    let vars: Vec<Value> = v
        .variables
        .iter()
        .map(|e| json!({ "name": e.name, "value": e.value, "type": e.kind.as_str() }))
        .collect();
    let stream = v.id.rsplit(':').next().unwrap_or_default();
    let mut j = json!({
        "id": v.id,
        "arn": v.arn,
        "buildNumber": v.number,
        "startTime": b.start_time,
        "currentPhase": v.current_phase,
        "buildStatus": v.status,
        "projectName": v.project,
        "phases": phases,
        "source": { "type": "NO_SOURCE", "buildspec": "(inlined)" },
        "artifacts": { "location": "" },
        "environment": {
            "type": "LINUX_CONTAINER",
            "image": b.image,
            "computeType": "BUILD_GENERAL1_SMALL",
            "environmentVariables": vars,
            "privilegedMode": false,
            "imagePullCredentialsType": "CODEBUILD",
        },
        "serviceRole": format!("arn:aws:iam::{}:role/{}", cfg.account, b.service_role),
        "logs": {
            "groupName": b.log_group.clone().unwrap_or_else(|| format!("/aws/codebuild/{}", v.project)),
            "streamName": stream,
            "deepLink": format!("file://{}", v.log.display()),
        },
        "timeoutInMinutes": v.timeout_in_minutes,
        "queuedTimeoutInMinutes": b.queued_timeout_in_minutes,
        "buildComplete": v.complete,
        "initiator": v.initiator,
        "encryptionKey": format!("arn:aws:kms:{}:{}:alias/aws/s3", cfg.region, cfg.account),
    });
    if let Some(end) = b.end_time {
        j["endTime"] = json!(end);
    }
    if let Some(sv) = &b.source_version {
        j["sourceVersion"] = json!(sv);
    }
    if v.complete {
        j["exportedEnvironmentVariables"] = v
            .exported
            .iter()
            .map(|(k, val)| json!({ "name": k, "value": val }))
            .collect();
    }
    j
}
