//! The rendered stack: what `infra-pulumi/scripts/render.ts` prints for a stack file (the
//! Pulumi program run under mocks), parsed into typed views.
//!
//! Invariant: the rehearsal only ever reads the deployment from here — every environment
//! variable, secret reference, queue attribute, table key, build setting and IAM statement
//! the binaries meet comes from the real program's output, never from a hand-written copy.
//! The structs ignore fields they do not name, so the render may grow without breaking
//! the rehearsal. [`Rendered::sample`] (a hand-written staging render checked in beside
//! this file) exists only for the harness's own unit tests.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rendered {
    pub stack: String,
    pub region: String,
    pub account: String,
    pub queue: Queue,
    pub dlq: Queue,
    #[serde(default)]
    pub schedule_dlq: Option<Queue>,
    pub table: Table,
    pub secrets: Secrets,
    pub tasks: Tasks,
    pub codebuild: Project,
    pub schedule: Schedule,
    pub roles: BTreeMap<String, Role>,
    /// Every log group the stack creates.
    #[serde(default)]
    pub log_groups: Vec<LogGroup>,
    /// The consumer task's collector sidecar configuration (YAML), when it has one.
    #[serde(default)]
    pub collector_config: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Queue {
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Table {
    pub name: String,
    pub hash_key: String,
    #[serde(default)]
    pub range_key: Option<String>,
    pub attributes: Vec<Attribute>,
    pub billing_mode: String,
    #[serde(default)]
    pub ttl_attribute: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Attribute {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogGroup {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secrets {
    pub github_token: String,
    pub kiro_api_key: String,
    #[serde(default)]
    pub github_app_key: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Tasks {
    pub consumer: Task,
    pub producer: Task,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub family: String,
    pub task_role_arn: String,
    pub execution_role_arn: String,
    pub containers: Vec<Container>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub name: String,
    #[serde(default)]
    pub entry_point: Option<Vec<String>>,
    #[serde(default)]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// NAME → secret ARN (`valueFrom`).
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Project {
    pub name: String,
    pub service_role_arn: String,
    pub build_timeout: u32,
    pub queued_timeout: u32,
    pub concurrent_build_limit: u32,
    pub image: String,
    pub buildspec: String,
    /// The CloudWatch Logs group builds write to.
    #[serde(default)]
    pub log_group: Option<String>,
    pub environment_variables: Vec<EnvVar>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    pub target: ScheduleTarget,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleTarget {
    pub arn: String,
    pub role_arn: String,
    #[serde(default)]
    pub ecs: serde_json::Value,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Role {
    pub arn: String,
    pub statements: Vec<Statement>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Statement {
    #[serde(default)]
    pub sid: Option<String>,
    pub effect: String,
    pub actions: Vec<String>,
    pub resources: Vec<String>,
    #[serde(default)]
    pub condition: Option<serde_json::Value>,
}

/// The infra-pulumi directory of this workspace.
pub fn infra_dir() -> PathBuf {
    crate::support::repo_root().join("infra-pulumi")
}

impl Rendered {
    /// Run the real render script for `stack_file` (relative to infra-pulumi, or absolute):
    /// `node --import tsx scripts/render.ts <stack_file>` in infra-pulumi. Panics with the
    /// script's stderr when it fails, and with instructions when the npm packages are
    /// missing — the rehearsal never skips.
    pub fn render(stack_file: &Path) -> Rendered {
        let dir = infra_dir();
        assert!(
            dir.join("node_modules").is_dir(),
            "{}/node_modules is missing: run scripts/test-all.sh (npm ci in infra-pulumi)",
            dir.display()
        );
        let script = dir.join("scripts/render.ts");
        assert!(
            script.exists(),
            "{} is missing: the rehearsal renders the stack with it (infra: render the Pulumi program under mocks)",
            script.display()
        );
        let out = Command::new("node")
            .args(["--import", "tsx", "scripts/render.ts"])
            .arg(stack_file)
            .current_dir(&dir)
            .output()
            .expect("run node (Node.js 20 or newer must be on PATH)");
        assert!(
            out.status.success(),
            "rendering {} failed ({}):\n{}",
            stack_file.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Rendered::parse(&out.stdout)
            .unwrap_or_else(|e| panic!("render of {}: {e}", stack_file.display()))
    }

    /// Parse a render's JSON.
    pub fn parse(json: &[u8]) -> Result<Rendered, String> {
        serde_json::from_slice(json).map_err(|e| {
            format!(
                "the render's JSON does not have the expected shape: {e}\n{}",
                String::from_utf8_lossy(&json[..json.len().min(2000)])
            )
        })
    }

    /// The hand-written staging render beside this file (harness unit tests only).
    pub fn sample() -> Rendered {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("it/rehearsal/sample-render.staging.json");
        Rendered::parse(&std::fs::read(path).expect("sample render")).expect("sample render")
    }

    /// The role whose ARN is `arn`, with its key (`consumer-task`, …).
    pub fn role_by_arn(&self, arn: &str) -> (&str, &Role) {
        self.roles
            .iter()
            .find(|(_, r)| r.arn == arn)
            .map(|(k, r)| (k.as_str(), r))
            .unwrap_or_else(|| panic!("no rendered role has the ARN {arn}"))
    }

    /// The role keyed `key` (`consumer-task`, `codebuild`, …).
    pub fn role(&self, key: &str) -> &Role {
        self.roles
            .get(key)
            .unwrap_or_else(|| panic!("the render has no role {key:?}"))
    }
}

impl Task {
    /// The essential container running `binary` (`/kiro-consumer` as its entry point).
    pub fn container(&self, name: &str) -> &Container {
        self.containers
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| {
                panic!(
                    "task {} has no container {name:?} (containers: {:?})",
                    self.family,
                    self.containers.iter().map(|c| &c.name).collect::<Vec<_>>()
                )
            })
    }
}

impl Container {
    /// The command line ECS runs: entry point then command.
    pub fn argv(&self) -> Vec<String> {
        let mut argv = self.entry_point.clone().unwrap_or_default();
        argv.extend(self.command.clone().unwrap_or_default());
        argv
    }
}

impl Project {
    /// The project's plain environment (NAME → value), and its secret references.
    pub fn plain_environment(&self) -> BTreeMap<String, String> {
        self.environment_variables
            .iter()
            .filter(|v| v.kind == "PLAINTEXT")
            .map(|v| (v.name.clone(), v.value.clone()))
            .collect()
    }

    /// The value of the project's variable `name`.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.environment_variables
            .iter()
            .find(|v| v.name == name)
            .map(|v| v.value.as_str())
    }
}
