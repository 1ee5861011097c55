//! Running one emulated build: PROVISIONING (variables resolved as the service role),
//! DOWNLOAD_SOURCE (the inlined buildspec parsed), the buildspec's phases with the local
//! executor (`kiro_local_build::exec`), then UPLOAD_ARTIFACTS, FINALIZING
//! and COMPLETED, with the build's status, phases and exported variables recorded.
//!
//! Invariant: a build ends exactly once, with `buildComplete` true, an end time and a
//! final status; a phase the executor reports as failed, timed out or stopped carries
//! that status and a context, as CodeBuild reports it.

use super::env::{self, ResolveError};
use super::logs;
use super::{EnvVar, EnvVarType, Status, now_secs};
use crate::aws::{Shared, lock};
use kiro_local_build::buildspec::BuildSpec;
use kiro_local_build::exec::{ExecPlan, execute};
use kiro_protocol::{BuildState, Timestamp};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Everything a build needs, fixed at StartBuild.
#[derive(Debug)]
pub(crate) struct RunInput {
    pub id: String,
    pub arn: String,
    pub number: u64,
    pub project: String,
    pub buildspec: String,
    pub variables: Vec<EnvVar>,
    pub service_role: String,
    pub log_group: Option<String>,
    pub image: String,
    pub initiator: String,
    pub timeout: Duration,
    pub source_version: String,
    pub dir: PathBuf,
    pub stop: watch::Receiver<bool>,
    /// How long the build may wait in QUEUED for the account's limit.
    pub queued_timeout: Duration,
}

fn set_phase(shared: &Shared, id: &str, phase: &str) {
    if let Some(b) = lock(&shared.codebuild).build_mut(id) {
        b.enter_phase(phase);
    }
}

/// Fail the current phase with `status` and a context, then finish the build.
fn end_in_phase(shared: &Shared, id: &str, status: Status, code: &str, message: &str) {
    if let Some(b) = lock(&shared.codebuild).build_mut(id)
        && let Some(p) = b.view.phases.last_mut()
    {
        p.status = Some(status.as_str().into());
        p.end = Some(now_secs());
        p.contexts.push((code.to_owned(), message.to_owned()));
    }
    finish(shared, id, status, BTreeMap::new());
}

fn finish(shared: &Shared, id: &str, status: Status, exported: BTreeMap<String, String>) {
    let mut state = lock(&shared.codebuild);
    let Some(b) = state.build_mut(id) else {
        return;
    };
    for phase in ["UPLOAD_ARTIFACTS", "FINALIZING", "COMPLETED"] {
        b.enter_phase(phase);
    }
    if let Some(last) = b.view.phases.last_mut() {
        last.end = None;
        last.status = None;
    }
    b.view.status = status.as_str().into();
    b.view.exported = exported;
    b.view.complete = true;
    b.end_time = Some(now_secs());
}

/// Resolve every typed variable; the first failure stops.
async fn resolve_all(
    shared: &Shared,
    input: &RunInput,
) -> Result<(BTreeMap<String, String>, BTreeMap<String, String>), ResolveError> {
    let mut from_buildspec = BTreeMap::new();
    for (name, reference, kind) in env::buildspec_references(&input.buildspec) {
        let v = env::resolve(shared, &input.service_role, &name, &reference, kind).await?;
        from_buildspec.insert(name, v);
    }
    let mut from_project = BTreeMap::new();
    for var in &input.variables {
        let v = env::resolve(shared, &input.service_role, &var.name, &var.value, var.kind).await?;
        from_project.insert(var.name.clone(), v);
    }
    Ok((from_buildspec, from_project))
}

/// How a build ended before its log was uploaded.
enum End {
    /// In the current phase, with a context `(code, message)`.
    InPhase(Status, String, String),
    /// After the executor ran: status, the executor's message, exported variables.
    Executed(Status, Option<String>, BTreeMap<String, String>),
}

/// Run the build to its end: the build, its log to CloudWatch Logs (when the project
/// names a log group), then its final status.
pub(crate) async fn run(shared: Arc<Shared>, input: RunInput) {
    let stream = logs::open(&shared, &input).await;
    let end = execute_build(&shared, &input).await;
    if let Some(stream) = stream {
        logs::upload(&shared, &input, &stream).await;
    }
    let id = &input.id;
    match end {
        End::InPhase(status, code, message) => end_in_phase(&shared, id, status, &code, &message),
        End::Executed(status, message, exported) => {
            super::reports::record(&shared, &input);
            mark_phases(&shared, id, status, message.as_deref());
            finish(&shared, id, status, exported);
        }
    }
}

/// Wait in QUEUED until the account runs fewer builds than its limit (then move to
/// PROVISIONING under the same lock), the queued timeout passes, or a stop.
async fn wait_in_queue(shared: &Shared, input: &RunInput) -> Option<End> {
    let deadline = tokio::time::Instant::now() + input.queued_timeout;
    let limit = shared
        .cfg
        .account_concurrent_build_limit
        .unwrap_or(u32::MAX) as usize;
    let mut stop = input.stop.clone();
    loop {
        {
            let mut state = lock(&shared.codebuild);
            let (running, _) = super::api::account_load(&state);
            let b = state.build_mut(&input.id)?;
            if b.view.current_phase != "QUEUED" {
                return None;
            }
            if running < limit {
                b.enter_phase("PROVISIONING");
                return None;
            }
        }
        if *stop.borrow() {
            return Some(End::InPhase(
                Status::Stopped,
                "BUILD_STOPPED".into(),
                "build stopped".into(),
            ));
        }
        if tokio::time::Instant::now() >= deadline {
            return Some(End::InPhase(
                Status::TimedOut,
                "BUILD_TIMED_OUT".into(),
                "build timed out in the queue (queuedTimeoutInMinutes)".into(),
            ));
        }
        let tick = (shared.cfg.minute / 20).max(Duration::from_millis(10));
        let _ = tokio::time::timeout(tick, stop.changed()).await;
    }
}

async fn execute_build(shared: &Arc<Shared>, input: &RunInput) -> End {
    if let Some(end) = wait_in_queue(shared, input).await {
        return end;
    }
    let id = input.id.clone();
    let (from_buildspec, from_project) = match resolve_all(shared, input).await {
        Ok(v) => v,
        Err(e) => {
            return End::InPhase(Status::Failed, e.code, e.message);
        }
    };
    set_phase(shared, &id, "DOWNLOAD_SOURCE");
    let mut spec = match BuildSpec::parse(&input.buildspec) {
        Ok(s) => s,
        Err(e) => {
            return End::InPhase(Status::Failed, "YAML_FILE_ERROR".into(), e.to_string());
        }
    };
    if *input.stop.borrow() {
        return End::InPhase(
            Status::Stopped,
            "BUILD_STOPPED".into(),
            "build stopped".into(),
        );
    }
    if let Err(e) = std::fs::create_dir_all(&input.dir) {
        let msg = format!("cannot create {}: {e}", input.dir.display());
        return End::InPhase(Status::Fault, "CLIENT_ERROR".into(), msg);
    }
    let cfg = &shared.cfg;
    let mut base: BTreeMap<String, String> = cfg
        .build_base_env
        .iter()
        .map(|(k, v)| {
            let v = v.replace(crate::aws::ENDPOINT_PLACEHOLDER, &shared.endpoint);
            (k.clone(), v)
        })
        .collect();
    base.insert("AWS_REGION".into(), cfg.region.clone());
    base.insert("AWS_DEFAULT_REGION".into(), cfg.region.clone());
    base.insert(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI".into(),
        format!(
            "{}/_emulator/credentials/{}",
            shared.endpoint, input.service_role
        ),
    );
    spec.env.variables.extend(from_buildspec);
    let mut overrides = from_project;
    let stream = id.rsplit(':').next().unwrap_or_default().to_owned();
    for (k, v) in [
        ("CODEBUILD_BUILD_ARN", input.arn.clone()),
        ("CODEBUILD_BUILD_NUMBER", input.number.to_string()),
        ("CODEBUILD_INITIATOR", input.initiator.clone()),
        ("CODEBUILD_BUILD_IMAGE", input.image.clone()),
        ("CODEBUILD_LOG_PATH", stream),
        (
            "CODEBUILD_PROJECT_ARN",
            format!(
                "arn:aws:codebuild:{}:{}:project/{}",
                cfg.region, cfg.account, input.project
            ),
        ),
        (
            "CODEBUILD_KMS_KEY_ID",
            format!("arn:aws:kms:{}:{}:alias/aws/s3", cfg.region, cfg.account),
        ),
    ] {
        overrides.insert(k.to_owned(), v);
    }
    let plan = ExecPlan {
        build_id: id.clone(),
        build_dir: input.dir.clone(),
        base_env: base,
        overrides,
        source_version: input.source_version.clone(),
        start_time: Timestamp(
            i64::try_from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis()),
            )
            .unwrap_or(0),
        ),
        timeout: input.timeout,
        kill_grace: Duration::from_secs(1),
    };
    // The environment the phase shells start with, as the executor composes it.
    let mut environment = plan.base_env.clone();
    environment.extend(spec.env.variables.clone());
    environment.extend(plan.overrides.clone());
    environment.insert("CODEBUILD_BUILD_ID".into(), id.clone());
    environment.insert(
        "CODEBUILD_SRC_DIR".into(),
        plan.src_dir().to_string_lossy().into_owned(),
    );
    environment.insert(
        "CODEBUILD_SOURCE_VERSION".into(),
        plan.source_version.clone(),
    );
    environment.insert("CODEBUILD_BUILD_SUCCEEDING".into(), "1".into());
    if let Some(b) = lock(&shared.codebuild).build_mut(&id) {
        b.view.environment = environment;
    }

    let phase_shared = shared.clone();
    let phase_id = id.clone();
    let mut on_phase = move |name: kiro_local_build::PhaseName, pgid: i32| {
        if let Some(b) = lock(&phase_shared.codebuild).build_mut(&phase_id) {
            b.enter_phase(name.as_str());
            b.pgid = (pgid > 1).then_some(pgid);
        }
    };
    let outcome = execute(&spec, &plan, input.stop.clone(), &mut on_phase).await;
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            return End::InPhase(Status::Fault, "CLIENT_ERROR".into(), e.to_string());
        }
    };
    let status = match outcome.state {
        BuildState::Succeeded => Status::Succeeded,
        BuildState::TimedOut => Status::TimedOut,
        BuildState::Stopped => Status::Stopped,
        BuildState::Fault => Status::Fault,
        _ => Status::Failed,
    };
    End::Executed(status, outcome.message, outcome.exported)
}

/// Close the executor's phases: failed ones (named in the executor's message as
/// `phase NAME failed: how`) FAILED with a COMMAND_EXECUTION_ERROR context, the last one
/// TIMED_OUT / STOPPED when the build was, the others SUCCEEDED.
fn mark_phases(shared: &Shared, id: &str, status: Status, message: Option<&str>) {
    let mut state = lock(&shared.codebuild);
    let Some(b) = state.build_mut(id) else {
        return;
    };
    let now = now_secs();
    let n = b.view.phases.len();
    for (i, p) in b.view.phases.iter_mut().enumerate() {
        if p.end.is_none() {
            p.end = Some(now);
        }
        let executor_phase = matches!(
            p.phase.as_str(),
            "INSTALL" | "PRE_BUILD" | "BUILD" | "POST_BUILD"
        );
        if !executor_phase {
            p.status.get_or_insert_with(|| "SUCCEEDED".into());
            continue;
        }
        let marker = format!("phase {} failed: ", p.phase);
        let failed_how = message.and_then(|m| {
            let start = m.find(&marker)? + marker.len();
            let rest = &m[start..];
            Some(rest.split("; phase ").next().unwrap_or(rest).to_owned())
        });
        let last = i + 1 == n;
        match (status, failed_how) {
            (Status::TimedOut | Status::Stopped, _) if last => {
                p.status = Some(status.as_str().into());
                let code = if status == Status::TimedOut {
                    "BUILD_TIMED_OUT"
                } else {
                    "BUILD_STOPPED"
                };
                p.contexts
                    .push((code.into(), message.unwrap_or_default().to_owned()));
            }
            (_, Some(how)) => {
                p.status = Some("FAILED".into());
                p.contexts.push((
                    "COMMAND_EXECUTION_ERROR".into(),
                    format!("Error while executing command: {how}"),
                ));
            }
            _ => p.status = Some("SUCCEEDED".into()),
        }
    }
}

impl EnvVar {
    /// Whether the value is a reference resolved at build start.
    pub fn is_reference(&self) -> bool {
        self.kind != EnvVarType::Plaintext
    }
}
