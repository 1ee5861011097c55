//! ECS as a consumer task sees it: the task metadata endpoint (v4 `/task`) and task
//! scale-in protection (`UpdateTaskProtection`, `GetTaskProtection`), which moto 5.2.5
//! does not implement.
//!
//! Invariant: answers have the real shapes the aws-sdk-ecs crate parses:
//! `{"protectedTasks":[{"taskArn","protectionEnabled","expirationDate"}],"failures":[…]}`
//! with `expirationDate` in epoch seconds; a task the emulator never registered (through
//! [`super::AwsEmulator::metadata_endpoint`]) is a `MISSING` failure, as on ECS.

use super::server::Parsed;
use super::wire::{self, Body};
use super::{EmulatorConfig, Shared, lock};
use http::Response;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// The protection state of one task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskProtectionView {
    pub task_arn: String,
    pub enabled: bool,
    /// Epoch seconds when the protection lapses (when enabled).
    pub expiration: Option<f64>,
    /// How many `UpdateTaskProtection` calls reached this task.
    pub updates: u32,
}

/// Tasks and their protection.
#[derive(Debug, Default)]
pub struct State {
    tasks: HashMap<String, String>,
    protection: HashMap<String, TaskProtectionView>,
}

impl State {
    pub fn protection(&self, task_arn: &str) -> Option<TaskProtectionView> {
        self.protection.get(task_arn).cloned()
    }
}

/// `arn:aws:ecs:<region>:<account>:task/<cluster>/<task>`.
pub fn task_arn(cfg: &EmulatorConfig, task: &str) -> String {
    format!(
        "arn:aws:ecs:{}:{}:task/{}/{task}",
        cfg.region, cfg.account, cfg.cluster
    )
}

fn cluster_arn(cfg: &EmulatorConfig) -> String {
    format!(
        "arn:aws:ecs:{}:{}:cluster/{}",
        cfg.region, cfg.account, cfg.cluster
    )
}

pub(super) fn register_task(shared: &Shared, task: &str) {
    let arn = task_arn(&shared.cfg, task);
    lock(&shared.ecs).tasks.insert(task.to_owned(), arn);
}

/// `GET <metadata>/task` (and `<metadata>` itself, the container document).
pub(super) fn metadata(shared: &Shared, rest: &str) -> Response<Body> {
    let (task, sub) = rest.split_once('/').unwrap_or((rest, ""));
    let Some(arn) = lock(&shared.ecs).tasks.get(task).cloned() else {
        return wire::text(404, "unknown task");
    };
    let cfg = &shared.cfg;
    let body = match sub {
        "task" => json!({
            "Cluster": cluster_arn(cfg),
            "TaskARN": arn,
            "Family": "kiro-consumer",
            "Revision": "1",
            "DesiredStatus": "RUNNING",
            "KnownStatus": "RUNNING",
            "LaunchType": "FARGATE",
            "AvailabilityZone": format!("{}a", cfg.region),
            "Containers": [],
        }),
        "" => json!({ "Name": "consumer", "DockerId": task, "Labels": {
            "com.amazonaws.ecs.cluster": cluster_arn(cfg),
            "com.amazonaws.ecs.task-arn": arn,
        }}),
        _ => return wire::text(404, "unknown metadata path"),
    };
    wire::json(200, &body, "application/json")
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `UpdateTaskProtection` / `GetTaskProtection`.
pub(super) fn handle(shared: &Shared, req: &Parsed) -> Response<Body> {
    let body = &req.body;
    let tasks: Vec<String> = body
        .get("tasks")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if body.get("cluster").and_then(Value::as_str).is_none() {
        return wire::aws_error(
            400,
            "InvalidParameterException",
            "cluster is required",
            CONTENT_TYPE,
        );
    }
    let mut state = lock(&shared.ecs);
    let known = |t: &str, state: &State| {
        state
            .tasks
            .iter()
            .find(|(id, arn)| t == id.as_str() || t == arn.as_str())
            .map(|(_, arn)| arn.clone())
    };
    let mut protected = Vec::new();
    let mut failures = Vec::new();
    let update = req.action.as_deref() == Some("UpdateTaskProtection");
    let enabled = body.get("protectionEnabled").and_then(Value::as_bool);
    if update && enabled.is_none() {
        return wire::aws_error(
            400,
            "InvalidParameterException",
            "protectionEnabled is required",
            CONTENT_TYPE,
        );
    }
    let minutes = body
        .get("expiresInMinutes")
        .and_then(Value::as_f64)
        .unwrap_or(120.0);
    if update && !(1.0..=2880.0).contains(&minutes) {
        return wire::aws_error(
            400,
            "InvalidParameterException",
            "expiresInMinutes must be between 1 and 2880",
            CONTENT_TYPE,
        );
    }
    for t in tasks {
        let Some(arn) = known(&t, &state) else {
            failures.push(json!({ "arn": t, "reason": "MISSING", "detail": "task not found" }));
            continue;
        };
        let entry = state
            .protection
            .entry(arn.clone())
            .or_insert_with(|| TaskProtectionView {
                task_arn: arn.clone(),
                enabled: false,
                expiration: None,
                updates: 0,
            });
        if update {
            let on = enabled.unwrap_or(false);
            entry.enabled = on;
            entry.expiration = on.then(|| now_secs() + minutes * 60.0);
            entry.updates += 1;
        }
        let mut view = json!({ "taskArn": arn, "protectionEnabled": entry.enabled });
        if let Some(exp) = entry.expiration {
            view["expirationDate"] = json!(exp);
        }
        protected.push(view);
    }
    wire::json(
        200,
        &json!({ "protectedTasks": protected, "failures": failures }),
        CONTENT_TYPE,
    )
}
