//! The CodeBuild JSON 1.1 operations: StartBuild, BatchGetBuilds, StopBuild and
//! ListBuildsForProject, with CodeBuild's validation, idempotency tokens and concurrent
//! build limit.
//!
//! Invariant: StartBuild decides (token replay, mismatch, limit, new build) and records
//! the new build under ONE lock, so two concurrent calls can never both pass the limit
//! or both start a build for one token.

use super::run::{self, RunInput};
use super::{Build, BuildView, EnvVar, EnvVarType, State, Status, TokenUse, build_json, now_secs};
use crate::aws::server::Parsed;
use crate::aws::wire::{self, Body};
use crate::aws::{Shared, lock};
use http::Response;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::time::Instant;

const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// Minutes an idempotency token is remembered.
pub const TOKEN_WINDOW_MINUTES: u32 = 5;

/// An API error: HTTP 400 with a CodeBuild error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    fn input(message: impl Into<String>) -> ApiError {
        ApiError {
            code: "InvalidInputException",
            message: message.into(),
        }
    }

    fn response(&self) -> Response<Body> {
        wire::aws_error(400, self.code, &self.message, CONTENT_TYPE)
    }
}

/// Answer one CodeBuild call.
pub(crate) async fn handle(shared: &Arc<Shared>, req: &Parsed) -> Response<Body> {
    let result = match req.action.as_deref() {
        Some("StartBuild") => start_build(shared, req).await,
        Some("BatchGetBuilds") => batch_get(shared, &req.body),
        Some("StopBuild") => stop_build(shared, &req.body),
        Some("ListBuildsForProject") => list_for_project(shared, &req.body),
        other => Err(ApiError {
            code: "UnknownOperationException",
            message: format!("the emulator does not implement CodeBuild {other:?}"),
        }),
    };
    match result {
        Ok(v) => wire::json(200, &v, CONTENT_TYPE),
        Err(e) => e.response(),
    }
}

fn str_field<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body.get(key).and_then(Value::as_str)
}

/// `environmentVariablesOverride` entries.
fn overrides(body: &Value) -> Result<Vec<EnvVar>, ApiError> {
    let Some(list) = body.get("environmentVariablesOverride") else {
        return Ok(Vec::new());
    };
    let list = list
        .as_array()
        .ok_or_else(|| ApiError::input("environmentVariablesOverride must be a list"))?;
    list.iter()
        .enumerate()
        .map(|(i, v)| {
            let name = str_field(v, "name")
                .filter(|n| !n.is_empty())
                .ok_or_else(|| {
                    ApiError::input(format!(
                        "environmentVariablesOverride[{i}].name is required"
                    ))
                })?;
            let value = str_field(v, "value").ok_or_else(|| {
                ApiError::input(format!(
                    "environmentVariablesOverride[{i}].value is required"
                ))
            })?;
            let kind = match str_field(v, "type") {
                None => EnvVarType::Plaintext,
                Some(t) => EnvVarType::parse(t).ok_or_else(|| {
                    ApiError::input(format!(
                        "environmentVariablesOverride[{i}].type {t:?} is not PLAINTEXT, \
                         PARAMETER_STORE or SECRETS_MANAGER"
                    ))
                })?,
            };
            Ok(EnvVar::new(name, value, kind))
        })
        .collect()
}

/// The project's variables with the overrides replacing them by name.
pub fn merge_vars(project: &[EnvVar], overrides: &[EnvVar]) -> Vec<EnvVar> {
    let mut out: Vec<EnvVar> = project
        .iter()
        .filter(|p| !overrides.iter().any(|o| o.name == p.name))
        .cloned()
        .collect();
    out.extend(overrides.iter().cloned());
    out
}

fn new_uuid() -> String {
    let b: [u8; 16] = rand::random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

enum Decision {
    Replay(String),
    New(String, Box<RunInput>),
}

/// Decide under the lock: replay, refuse, or create the build.
fn decide(
    shared: &Shared,
    state: &mut State,
    body: &Value,
    caller: &str,
) -> Result<Decision, ApiError> {
    let cfg = &shared.cfg;
    let name = str_field(body, "projectName")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::input("projectName is required"))?;
    let token = str_field(body, "idempotencyToken").map(str::to_owned);
    let mut params = body.clone();
    if let Some(m) = params.as_object_mut() {
        m.remove("idempotencyToken");
    }
    let window = cfg.minute * TOKEN_WINDOW_MINUTES;
    state.tokens.retain(|_, t| t.at.elapsed() < window);
    if let Some(t) = token.as_deref().and_then(|t| state.tokens.get(t)) {
        if t.params == params {
            return Ok(Decision::Replay(t.build_id.clone()));
        }
        return Err(ApiError::input(format!(
            "Idempotency token {} was already used with different parameters \
             (parameter mismatch): the StartBuild request must repeat the first request exactly",
            token.as_deref().unwrap_or_default()
        )));
    }
    let project = state.projects.get(name).ok_or_else(|| ApiError {
        code: "ResourceNotFoundException",
        message: format!(
            "Project cannot be found: arn:aws:codebuild:{}:{}:project/{name}",
            cfg.region, cfg.account
        ),
    })?;
    let over = overrides(body)?;
    // CodeBuild refuses the reserved prefix (at CreateProject for project variables).
    let reserved = project
        .spec
        .environment_variables
        .iter()
        .chain(&over)
        .find(|v| v.name.starts_with("CODEBUILD_"));
    if let Some(v) = reserved {
        return Err(ApiError::input(format!(
            "Invalid environment variable name {}: the CODEBUILD_ prefix is reserved",
            v.name
        )));
    }
    let timeout = match body.get("timeoutInMinutesOverride") {
        None => project.spec.timeout_in_minutes,
        Some(v) => {
            let m = v
                .as_u64()
                .filter(|m| (5..=2160).contains(m))
                .ok_or_else(|| {
                    ApiError::input(format!(
                        "timeoutInMinutesOverride {v} must be an integer from 5 to 2160"
                    ))
                })?;
            u32::try_from(m).unwrap_or(2160)
        }
    };
    if let Some(limit) = project.spec.concurrent_build_limit {
        let active = state
            .builds
            .iter()
            .filter(|b| b.view.project == name && b.view.status == Status::InProgress.as_str())
            .count();
        if active >= limit as usize {
            return Err(ApiError {
                code: "AccountLimitExceededException",
                message: format!("Cannot have more than {limit} active builds for the project"),
            });
        }
    }
    // The account's limit: beyond it builds queue, up to five times the limit.
    let mut queued = false;
    if let Some(limit) = cfg.account_concurrent_build_limit {
        let (running, waiting) = account_load(state);
        if running >= limit as usize {
            let max_queue = 5 * limit as usize;
            if waiting >= max_queue {
                return Err(ApiError {
                    code: "AccountLimitExceededException",
                    message: format!(
                        "Cannot have more than {max_queue} builds in queue for the account"
                    ),
                });
            }
            queued = true;
        }
    }
    let spec = project.spec.clone();
    let project = state
        .projects
        .get_mut(name)
        .ok_or_else(|| ApiError::input(format!("project {name} vanished")))?;
    project.builds_started += 1;
    let number = project.builds_started;
    let uuid = new_uuid();
    let id = format!("{name}:{uuid}");
    let arn = format!(
        "arn:aws:codebuild:{}:{}:build/{id}",
        cfg.region, cfg.account
    );
    let dir = cfg.build_root.join(&uuid);
    let variables = merge_vars(&spec.environment_variables, &over);
    let (stop_tx, stop_rx) = watch::channel(false);
    let source_version = str_field(body, "sourceVersion").map(str::to_owned);
    let now = now_secs();
    let mut build = Build {
        view: BuildView {
            id: id.clone(),
            arn: arn.clone(),
            number,
            project: name.to_owned(),
            token: token.clone(),
            status: Status::InProgress.as_str().into(),
            current_phase: "SUBMITTED".into(),
            complete: false,
            phases: Vec::new(),
            initiator: caller.to_owned(),
            variables: variables.clone(),
            timeout_in_minutes: timeout,
            environment: BTreeMap::new(),
            exported: BTreeMap::new(),
            log: dir.join(kiro_local_build::exec::LOG_FILE),
            dir: dir.clone(),
        },
        start_time: now,
        end_time: None,
        stop: stop_tx,
        source_version: source_version.clone(),
        queued_timeout_in_minutes: spec.queued_timeout_in_minutes,
        image: spec.image.clone(),
        service_role: spec.service_role.clone(),
        pgid: None,
        log_group: spec.log_group.clone(),
    };
    build.enter_phase("SUBMITTED");
    build.enter_phase("QUEUED");
    if !queued {
        build.enter_phase("PROVISIONING");
    }
    state.builds.push(build);
    if let Some(t) = &token {
        state.tokens.insert(
            t.clone(),
            TokenUse {
                params,
                build_id: id.clone(),
                at: Instant::now(),
            },
        );
    }
    Ok(Decision::New(
        id.clone(),
        Box::new(RunInput {
            id,
            arn,
            number,
            project: name.to_owned(),
            buildspec: spec.buildspec,
            variables,
            service_role: spec.service_role,
            log_group: spec.log_group,
            image: spec.image,
            initiator: caller.to_owned(),
            timeout: cfg.minute * timeout,
            source_version: source_version.unwrap_or_default(),
            dir,
            stop: stop_rx,
            queued_timeout: cfg.minute * spec.queued_timeout_in_minutes,
        }),
    ))
}

/// `(running, queued)` builds of the account: IN_PROGRESS builds past / in QUEUED.
pub(crate) fn account_load(state: &State) -> (usize, usize) {
    let active = state
        .builds
        .iter()
        .filter(|b| b.view.status == Status::InProgress.as_str());
    active.fold((0, 0), |(r, q), b| {
        if b.view.current_phase == "QUEUED" {
            (r, q + 1)
        } else {
            (r + 1, q)
        }
    })
}

async fn start_build(shared: &Arc<Shared>, req: &Parsed) -> Result<Value, ApiError> {
    let caller = req.role.clone().unwrap_or_else(|| "unknown".into());
    let (id, hold) = {
        let mut state = lock(&shared.codebuild);
        match decide(shared, &mut state, &req.body, &caller)? {
            Decision::Replay(id) => (id, None),
            Decision::New(id, input) => {
                tokio::spawn(run::run(shared.clone(), *input));
                (id, state.holds.pop_front())
            }
        }
    };
    if let Some(slot) = hold {
        let _ = slot.started.send(id.clone());
        let _ = slot.release.await;
    }
    let state = lock(&shared.codebuild);
    let b = state
        .build(&id)
        .ok_or_else(|| ApiError::input(format!("build {id} vanished")))?;
    Ok(json!({ "build": build_json(b, &shared.cfg) }))
}

fn ids_of(body: &Value, max: usize) -> Result<Vec<String>, ApiError> {
    let ids: Vec<String> = body
        .get("ids")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::input("ids is required"))?
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    if ids.is_empty() || ids.len() > max {
        return Err(ApiError::input(format!(
            "ids must hold 1 to {max} build ids (got {})",
            ids.len()
        )));
    }
    Ok(ids)
}

fn batch_get(shared: &Shared, body: &Value) -> Result<Value, ApiError> {
    let ids = ids_of(body, 100)?;
    let state = lock(&shared.codebuild);
    let mut builds = Vec::new();
    let mut not_found = Vec::new();
    for id in ids {
        match state.build(&id) {
            Some(b) => builds.push(build_json(b, &shared.cfg)),
            None => not_found.push(id),
        }
    }
    Ok(json!({ "builds": builds, "buildsNotFound": not_found }))
}

fn stop_build(shared: &Shared, body: &Value) -> Result<Value, ApiError> {
    let id = str_field(body, "id").ok_or_else(|| ApiError::input("id is required"))?;
    let state = lock(&shared.codebuild);
    let b = state.build(id).ok_or_else(|| ApiError {
        code: "ResourceNotFoundException",
        message: format!("Build {id} cannot be found"),
    })?;
    if b.view.complete {
        return Err(ApiError::input(format!(
            "Build {id} is already complete ({})",
            b.view.status
        )));
    }
    let _ = b.stop.send(true);
    Ok(json!({ "build": build_json(b, &shared.cfg) }))
}

fn list_for_project(shared: &Shared, body: &Value) -> Result<Value, ApiError> {
    let name =
        str_field(body, "projectName").ok_or_else(|| ApiError::input("projectName is required"))?;
    let state = lock(&shared.codebuild);
    if !state.projects.contains_key(name) {
        return Err(ApiError {
            code: "ResourceNotFoundException",
            message: format!("Project {name} cannot be found"),
        });
    }
    let mut ids: Vec<&str> = state
        .builds
        .iter()
        .filter(|b| b.view.project == name)
        .map(|b| b.view.id.as_str())
        .collect();
    if str_field(body, "sortOrder") != Some("ASCENDING") {
        ids.reverse();
    }
    // Pages of 100 ids; the token is the offset of the next page.
    let from = match str_field(body, "nextToken") {
        None => 0,
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= ids.len())
            .ok_or_else(|| ApiError::input(format!("invalid nextToken {t:?}")))?,
    };
    let to = (from + LIST_PAGE).min(ids.len());
    let mut answer = json!({ "ids": &ids[from..to] });
    if to < ids.len() {
        answer["nextToken"] = json!(to.to_string());
    }
    Ok(answer)
}

/// Ids per ListBuildsForProject page (CodeBuild's page size).
const LIST_PAGE: usize = 100;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_project_variables_by_name() {
        let project = [EnvVar::plain("A", "1"), EnvVar::plain("B", "2")];
        let over = [EnvVar::plain("B", "3"), EnvVar::plain("C", "4")];
        let merged = merge_vars(&project, &over);
        let pairs: Vec<(&str, &str)> = merged
            .iter()
            .map(|v| (v.name.as_str(), v.value.as_str()))
            .collect();
        assert_eq!(pairs, [("A", "1"), ("B", "3"), ("C", "4")]);
    }

    #[test]
    fn override_entries_are_validated() {
        let ok = json!({"environmentVariablesOverride": [
            {"name": "X", "value": "1"}, {"name": "S", "value": "id", "type": "SECRETS_MANAGER"}]});
        let vars = overrides(&ok).unwrap();
        assert_eq!(vars[0].kind, EnvVarType::Plaintext);
        assert_eq!(vars[1].kind, EnvVarType::SecretsManager);
        let bad =
            json!({"environmentVariablesOverride": [{"name": "X", "value": "1", "type": "NOPE"}]});
        let e = overrides(&bad).unwrap_err();
        assert!(e.message.contains("[0].type"), "{}", e.message);
        let missing = json!({"environmentVariablesOverride": [{"value": "1"}]});
        assert!(overrides(&missing).unwrap_err().message.contains("name"));
    }

    #[test]
    fn uuids_look_like_uuids() {
        let u = new_uuid();
        assert_eq!(u.len(), 36, "{u}");
        assert_eq!(u.matches('-').count(), 4);
        assert_ne!(u, new_uuid());
    }
}
