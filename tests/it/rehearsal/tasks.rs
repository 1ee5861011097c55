//! Running kiro-producer and kiro-consumer as ECS would: the rendered container's entry
//! point and command, exactly the rendered environment over the image's `ENV`
//! (Dockerfile.consumer), the rendered `secrets` resolved
//! with the task's execution role, the variables ECS itself sets, and the rehearsal's
//! listed additions ([`super::env::ADDITIONS`]); nothing inherited from the test process.
//!
//! Invariant: a process's environment is composed only by [`TaskLauncher::environment`],
//! and the launched process's real environment (`/proc/<pid>/environ`) is checked against
//! it; a process that fails is reported with its output and the seam it names.

use super::env::{self, ECS_PROVIDED};
use super::provision::{resolve_secret, role_key};
use super::render::{Rendered, Task};
use kiro_tests::aws::AwsEmulator;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// What the rehearsal points the processes at.
#[derive(Debug, Clone)]
pub struct Local {
    /// The AWS endpoint (the emulator).
    pub aws: String,
    pub github: String,
    /// `PATH` of the emulated image.
    pub path: String,
    /// Where each process gets its own home and working directory.
    pub root: PathBuf,
    /// Rendered value → local value (collector endpoints → the test's receivers).
    pub rewrite: BTreeMap<String, String>,
    /// The workspace's debug binaries (`/kiro-consumer` → `<bin>/kiro-consumer`).
    pub bin: PathBuf,
}

/// A task's composed environment and the deployed part of it: the image's `ENV`, the
/// rendered container environment over it, and the resolved secrets.
#[derive(Debug, Clone)]
pub struct TaskEnv {
    pub env: BTreeMap<String, String>,
    pub rendered: BTreeMap<String, String>,
    pub argv: Vec<String>,
    pub dir: PathBuf,
    pub name: String,
}

/// Composes and launches tasks.
#[derive(Debug)]
pub struct TaskLauncher<'a> {
    pub emu: &'a AwsEmulator,
    pub render: &'a Rendered,
    pub local: Local,
}

impl TaskLauncher<'_> {
    /// The environment ECS would give container `container` of `task`, as ECS task `id`.
    pub async fn environment(&self, task: &Task, container: &str, id: &str) -> TaskEnv {
        let c = task.container(container);
        // The image's ENV, under the task definition's environment (as ECS starts it).
        let mut rendered = super::image::task_image_env();
        rendered.extend(c.environment.clone());
        let exec_role = role_key(self.render, &task.execution_role_arn);
        for (name, arn) in &c.secrets {
            let value = resolve_secret(self.emu, &exec_role, name, arn).await;
            rendered.insert(name.clone(), value);
        }
        let mut e: BTreeMap<String, String> = rendered
            .iter()
            .map(|(k, v)| (k.clone(), self.local.rewrite.get(v).unwrap_or(v).clone()))
            .collect();
        let task_role = role_key(self.render, &task.task_role_arn);
        let dir = self.local.root.join(id);
        std::fs::create_dir_all(dir.join("home")).unwrap();
        for (k, v) in [
            ("AWS_REGION", self.render.region.clone()),
            ("AWS_DEFAULT_REGION", self.render.region.clone()),
            (
                "ECS_CONTAINER_METADATA_URI_V4",
                self.emu.metadata_endpoint(id),
            ),
            ("HOSTNAME", format!("{id}.ecs.internal")),
            ("KIRO_AWS_ENDPOINT_URL", self.local.aws.clone()),
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                self.emu.credentials_uri(&task_role),
            ),
            ("KIRO_GITHUB_API_URL", self.local.github.clone()),
            ("HOME", dir.join("home").display().to_string()),
            ("PATH", self.local.path.clone()),
        ] {
            e.entry(k.to_owned()).or_insert(v);
        }
        let mut argv = c.argv();
        assert!(
            !argv.is_empty(),
            "container {container} of {} has no entry point or command",
            task.family
        );
        let program = Path::new(&argv[0])
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        argv[0] = self.local.bin.join(&program).display().to_string();
        TaskEnv {
            env: e,
            rendered,
            argv,
            dir,
            name: format!("{program} ({} task {id})", task.family),
        }
    }
}

impl TaskEnv {
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..])
            .env_clear()
            .envs(&self.env)
            .current_dir(&self.dir);
        cmd
    }

    /// Check a running process's real environment against the composition (read once the
    /// process shows its own environment: right after exec the kernel may still show a
    /// transient one).
    pub fn check_process(&self, pid: u32) {
        let mut actual = env::of_pid(pid);
        for _ in 0..50 {
            if self.env.keys().all(|k| actual.contains_key(k)) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            actual = env::of_pid(pid);
        }
        env::assert_exact(&self.name, &actual, &self.rendered, ECS_PROVIDED, &[]);
    }

    /// Run to completion (the producer); returns (exit code, stdout, stderr).
    pub async fn run(&self) -> (i32, String, String) {
        let mut cmd = self.command();
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Start a long-running process (the consumer), its output to files in its directory.
    pub fn spawn(&self) -> Running {
        let stderr = self.dir.join("stderr.log");
        let stdout = self.dir.join("stdout.log");
        let child = self
            .command()
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.argv[0]));
        let running = Running {
            child,
            stderr,
            name: self.name.clone(),
            env: self.env.clone(),
        };
        self.check_process(running.child.id());
        running
    }
}

/// A running task.
#[derive(Debug)]
pub struct Running {
    pub child: Child,
    pub stderr: PathBuf,
    pub name: String,
    env: BTreeMap<String, String>,
}

impl Running {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// `Some(code)` once exited.
    pub fn exited(&mut self) -> Option<i32> {
        self.child
            .try_wait()
            .unwrap()
            .map(|s| s.code().unwrap_or(-1))
    }

    /// Panic with the log and the seam it names when the process exited.
    pub fn assert_running(&mut self) {
        if let Some(code) = self.exited() {
            let log = self.log();
            panic!(
                "{} exited {code}{}:\n{}",
                self.name,
                seam_hint(&log, &self.env, &self.name),
                tail(&log, 60)
            );
        }
    }

    /// Send `sig` with the `kill` utility (the workspace denies the unsafe FFI call).
    fn signal(&self, sig: i32) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{sig} {}", self.child.id());
    }

    /// SIGKILL (a crash) and reap.
    pub fn crash(mut self) -> String {
        self.signal(9);
        let _ = self.child.wait();
        self.log()
    }

    /// SIGTERM (ECS stopping the task) and wait up to `limit`; returns (exit code, log).
    pub async fn stop(mut self, limit: Duration) -> (i32, String) {
        self.signal(15);
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(code) = self.exited() {
                return (code, self.log());
            }
            if tokio::time::Instant::now() > deadline {
                self.signal(9);
                let _ = self.child.wait();
                panic!(
                    "{} did not exit within {limit:?} of SIGTERM:\n{}",
                    self.name,
                    tail(&self.log(), 40)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Failures whose message does not name the setting that would have avoided them.
const KNOWN_SEAMS: &[(&str, &str)] = &[(
    "kiro-local-build",
    "KIRO_BUILD_RUNNER=codebuild (without it the consumer runs builds on its own machine)",
)];

/// " — the rendered <what> environment lacks X, Y" for the `KIRO_*`/`GITHUB_*`/`OTEL_*`
/// names `log` mentions that `env` does not hold (and the settings [`KNOWN_SEAMS`] name);
/// empty when there are none.
pub fn seam_hint(log: &str, env: &BTreeMap<String, String>, what: &str) -> String {
    let mut missing: Vec<String> = KNOWN_SEAMS
        .iter()
        .filter(|(needle, setting)| {
            log.contains(needle) && !env.contains_key(setting.split('=').next().unwrap_or(setting))
        })
        .map(|(_, setting)| (*setting).to_owned())
        .collect();
    for word in log.split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')) {
        let named = ["KIRO_", "GITHUB_", "OTEL_"]
            .iter()
            .any(|p| word.starts_with(p) && word.len() > p.len());
        if named && !env.contains_key(word) && !missing.iter().any(|m| m.starts_with(word)) {
            missing.push(word.to_owned());
        }
    }
    if missing.is_empty() {
        String::new()
    } else {
        format!(
            " — the rendered {what} environment lacks {}",
            missing.join(", ")
        )
    }
}

#[test]
fn the_seam_hint_names_settings_the_log_mentions_and_the_environment_lacks() {
    let env = BTreeMap::from([("KIRO_BACKEND".to_owned(), "aws".to_owned())]);
    let h = seam_hint(
        "error: KIRO_GITHUB_PROJECT is not set (KIRO_BACKEND=aws)",
        &env,
        "producer",
    );
    assert_eq!(
        h,
        " — the rendered producer environment lacks KIRO_GITHUB_PROJECT"
    );
    let h = seam_hint(
        "the local build launcher kiro-local-build was not found",
        &env,
        "consumer",
    );
    assert!(h.contains("KIRO_BUILD_RUNNER=codebuild"), "{h}");
    assert_eq!(seam_hint("all good", &env, "x"), "");
}
