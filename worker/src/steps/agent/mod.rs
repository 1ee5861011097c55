//! The agent step: run the headless coding agent (kiro-cli, or a stand-in) on the
//! checkout, after an authentication preflight.
//!
//! Invariant: the agent command is split with `shell-words` and the prompt is appended
//! as ONE argument — nothing goes through a shell; a prompt over [`PROMPT_ARG_MAX`]
//! bytes (Linux refuses one argument over 128 KiB) is written to [`PROMPT_FILE`] in the
//! agent's fresh HOME and the argument is a short prompt naming that file. The preflight and the agent share one
//! fresh, empty `HOME` (and XDG dirs inside it) so no stored login can shadow
//! `KIRO_API_KEY`; their environment is an allow-list ([`crate::child_env`]: never cloud
//! credentials, the git push token or `KIRO_*` internals); the API key reaches them only
//! through their environment and is masked in every log line and failure reason. Both are killed
//! with their whole process group at their time limit. For kiro-cli the headless flags
//! (`--no-interactive --trust-all-tools --wrap never`, the harness) are always present.
//! The exit code is only one signal: the pipeline judges progress from `tasks.md`.

use crate::child_env::{self, ChildEnv};
use crate::config::{Config, Harness};
use crate::steps::process::{Captured, Exit, run_captured};
use kiro_protocol::Secret;
use kiro_protocol::{Failure, FailureClass, SpecPath};
use std::path::Path;
use std::time::Duration;
use tempfile::TempDir;
use tokio::process::Command;

/// The longest prompt passed as one argument, in bytes (Linux refuses a single argument
/// over 128 KiB with E2BIG); a longer one goes through [`PROMPT_FILE`].
pub const PROMPT_ARG_MAX: usize = 64 * 1024;

/// The file in the agent's fresh HOME that holds a prompt over [`PROMPT_ARG_MAX`].
pub const PROMPT_FILE: &str = "kiro-prompt.md";

/// The program name that gets kiro-cli's treatment (flags, preflight by default).
pub const KIRO_CLI: &str = "kiro-cli";

/// Output lines that mean "no usable login" (matched lower-cased).
const AUTH_ERRORS: &[&str] = &[
    "not logged in",
    "not authenticated",
    "unauthenticated",
    "unauthorized",
    "invalid api key",
    "invalid key",
    "api key is invalid",
    "authentication failed",
    "authentication error",
    "login required",
    "please log in",
    "please login",
    "kiro-cli login",
    "device authorization",
    "expired token",
    "token has expired",
];

/// At most this many output lines for an agent run whose auth error is believed: a real
/// working transcript is longer, and may legitimately mention these words.
const SHORT_OUTPUT: usize = 10;

/// The agent's argument vector, with kiro-cli's headless flags completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentCommand {
    pub program: String,
    pub args: Vec<String>,
    /// The program is kiro-cli (by file name).
    pub kiro: bool,
}

/// kiro-cli's optional flags.
#[derive(Debug, Clone, Copy)]
pub struct KiroFlags<'a> {
    pub agent: Option<&'a str>,
    pub harness: Harness,
    pub model: Option<&'a str>,
}

impl AgentCommand {
    /// Split `cmd` and, for kiro-cli, complete it: the `chat` sub-command when none is
    /// given, `--no-interactive`, `--trust-all-tools`, `--wrap never`, the harness,
    /// `--agent` and `--model` — each unless the command already says it.
    pub fn parse(cmd: &str, flags: KiroFlags<'_>) -> Result<AgentCommand, Failure> {
        let argv = shell_words::split(cmd).map_err(|e| {
            Failure::new(
                FailureClass::PermanentInput,
                format!("KIRO_AGENT_CMD cannot be split into words: {e}"),
            )
        })?;
        let Some((program, args)) = argv.split_first() else {
            return Err(Failure::new(
                FailureClass::PermanentInput,
                "KIRO_AGENT_CMD is empty",
            ));
        };
        let kiro = Path::new(program)
            .file_name()
            .is_some_and(|n| n == KIRO_CLI);
        let mut args = args.to_vec();
        if kiro {
            complete_kiro_args(&mut args, flags);
        }
        Ok(AgentCommand {
            program: program.clone(),
            args,
            kiro,
        })
    }
}

fn complete_kiro_args(args: &mut Vec<String>, flags: KiroFlags<'_>) {
    if args.first().is_none_or(|a| a.starts_with('-')) {
        args.insert(0, "chat".into());
    }
    let has = |args: &[String], names: &[&str]| {
        args.iter().any(|a| {
            names
                .iter()
                .any(|n| a == n || a.starts_with(&format!("{n}=")))
        })
    };
    let push = |args: &mut Vec<String>, names: &[&str], add: &[&str]| {
        if !has(args, names) {
            args.extend(add.iter().map(|s| (*s).to_owned()));
        }
    };
    push(
        args,
        &["--no-interactive", "--non-interactive"],
        &["--no-interactive"],
    );
    push(args, &["--trust-all-tools", "-a"], &["--trust-all-tools"]);
    push(args, &["--wrap", "-w"], &["--wrap", "never"]);
    match flags.harness {
        Harness::V3 => push(args, &["--v3", "--v2"], &["--v3"]),
        Harness::V2 => push(args, &["--v3", "--v2"], &["--v2"]),
        Harness::None => {}
    }
    if let Some(name) = flags.agent.filter(|n| !n.trim().is_empty()) {
        push(args, &["--agent", "--profile"], &["--agent", name.trim()]);
    }
    if let Some(model) = flags.model.filter(|m| !m.trim().is_empty()) {
        push(args, &["--model"], &["--model", model.trim()]);
    }
}

/// The agent of one run: its command, its fresh HOME and its key.
#[derive(Debug)]
pub struct Agent {
    pub command: AgentCommand,
    home: TempDir,
    api_key: Option<Secret>,
    /// The preflight's time limit, when the preflight is on.
    preflight: Option<Duration>,
    /// What the agent inherits from the worker's environment (an allow-list).
    env: ChildEnv,
}

impl Agent {
    /// The agent `cfg` describes, with a fresh, empty HOME and the allow-listed
    /// variables of `parent` (a snapshot of the worker's environment).
    pub fn from_config(
        cfg: &Config,
        parent: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
    ) -> Result<Agent, Failure> {
        let extra =
            child_env::parse_extra(child_env::AGENT_PASS_SETTING, cfg.agent_env_pass.as_deref())?;
        let command = AgentCommand::parse(
            &cfg.agent_cmd,
            KiroFlags {
                agent: cfg.agent_name.as_deref(),
                harness: cfg.agent_harness,
                model: cfg.agent_model.as_deref(),
            },
        )?;
        let preflight = cfg
            .agent_preflight
            .resolve(command.kiro)
            .then(|| cfg.agent_preflight_timeout.into());
        Ok(Agent::new(command, cfg.kiro_api_key.clone(), preflight)?
            .with_env(ChildEnv::for_agent(parent, &extra)))
    }

    /// The agent with `env` as what it inherits.
    pub fn with_env(mut self, env: ChildEnv) -> Agent {
        self.env = env;
        self
    }

    /// An agent with a fresh, empty HOME.
    pub fn new(
        command: AgentCommand,
        api_key: Option<Secret>,
        preflight: Option<Duration>,
    ) -> Result<Agent, Failure> {
        let home = tempfile::Builder::new()
            .prefix("kiro-agent-home-")
            .tempdir()
            .map_err(|e| {
                Failure::new(
                    FailureClass::Internal,
                    format!("cannot create the agent's HOME: {e}"),
                )
            })?;
        Ok(Agent {
            command,
            home,
            api_key: api_key.filter(|k| !k.expose().trim().is_empty()),
            preflight,
            env: ChildEnv::default(),
        })
    }

    /// The HOME the agent runs with.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    fn secrets(&self) -> Vec<String> {
        self.api_key.iter().map(|k| k.expose().to_owned()).collect()
    }

    fn base_command(&self, cwd: &Path) -> Command {
        let home = self.home.path();
        let mut cmd = Command::new(&self.command.program);
        self.env.apply(&mut cmd);
        cmd.current_dir(cwd)
            .env("HOME", home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env("XDG_STATE_HOME", home.join(".local/state"))
            .env("NO_COLOR", "1");
        if let Some(k) = &self.api_key {
            cmd.env("KIRO_API_KEY", k.expose());
        }
        cmd
    }

    fn start_failure(&self, e: &std::io::Error) -> Failure {
        let class = if e.kind() == std::io::ErrorKind::NotFound {
            FailureClass::PermanentInput
        } else {
            FailureClass::AgentFailed
        };
        Failure::new(
            class,
            format!("agent {:?} could not start: {e}", self.command.program),
        )
    }

    /// `<program> whoami` under the preflight limit (a no-op when the preflight is off):
    /// a missing key, a time-out, a non-zero exit or an output that says "not logged in"
    /// is an `auth` failure.
    #[tracing::instrument(skip_all, fields(program = %self.command.program))]
    pub async fn preflight(&self, log: &Path) -> Result<(), Failure> {
        let Some(limit) = self.preflight else {
            return Ok(());
        };
        let who = format!("{} whoami", self.command.program);
        if self.command.kiro && self.api_key.is_none() {
            return Err(Failure::new(
                FailureClass::Auth,
                format!("KIRO_API_KEY is not set: {KIRO_CLI} cannot log in headlessly"),
            ));
        }
        let mut cmd = self.base_command(self.home.path());
        cmd.arg("whoami");
        let c = run_captured(cmd, limit, log, 20, &self.secrets())
            .await
            .map_err(|e| self.start_failure(&e))?;
        let last = last_line(&c);
        let fail = |what: String| Err(Failure::new(FailureClass::Auth, what));
        match c.exit {
            Exit::TimedOut => fail(format!(
                "{who} did not answer within {} (no usable login; is KIRO_API_KEY valid?)",
                humantime::format_duration(limit)
            )),
            Exit::Signal(s) => fail(format!("{who} was killed by signal {s}")),
            Exit::Code(0) if says_not_logged_in(&c.tail) => {
                fail(format!("{who} reports no login: {last}"))
            }
            Exit::Code(0) => {
                tracing::info!("preflight passed");
                Ok(())
            }
            Exit::Code(n) => fail(format!("{who} failed (exit code {n}): {last}")),
        }
    }

    /// The prompt argument: `prompt` itself up to [`PROMPT_ARG_MAX`] bytes; beyond, a
    /// short prompt naming [`PROMPT_FILE`] in the agent's fresh HOME, which holds it.
    fn prompt_arg(&self, prompt: &str) -> Result<String, Failure> {
        if prompt.len() <= PROMPT_ARG_MAX {
            return Ok(prompt.to_owned());
        }
        let file = self.home.path().join(PROMPT_FILE);
        std::fs::write(&file, prompt).map_err(|e| {
            Failure::new(
                FailureClass::Internal,
                format!("cannot write the agent's prompt file: {e}"),
            )
        })?;
        tracing::info!(bytes = prompt.len(), file = %file.display(), "prompt passed as a file");
        Ok(format!(
            "Your instructions for this run are longer than one command-line argument may be, \
so they are in the file {}. Read that whole file first and follow it exactly: it holds the \
spec, its open tasks and the rules of this run.",
            file.display()
        ))
    }

    /// Run `command + [prompt]` in `checkout` for at most `limit`, logging to `log`.
    #[tracing::instrument(skip_all, fields(program = %self.command.program))]
    pub async fn run(
        &self,
        prompt: &str,
        checkout: &Path,
        spec: &SpecPath,
        limit: Duration,
        log: &Path,
    ) -> Result<(), Failure> {
        self.run_with_tail(prompt, checkout, spec, limit, log)
            .await
            .result
    }

    /// [`Agent::run`], keeping the last lines of the agent's output (masked): its own
    /// summary of what it did, for the report.
    pub async fn run_with_tail(
        &self,
        prompt: &str,
        checkout: &Path,
        spec: &SpecPath,
        limit: Duration,
        log: &Path,
    ) -> AgentRun {
        let arg = match self.prompt_arg(prompt) {
            Ok(a) => a,
            Err(f) => return AgentRun::failed(f),
        };
        let mut cmd = self.base_command(checkout);
        cmd.args(&self.command.args)
            .arg(arg)
            .env(kiro_protocol::ports::build::env::SPEC, spec.as_str());
        let c = match run_captured(cmd, limit, log, 40, &self.secrets()).await {
            Ok(c) => c,
            Err(e) => return AgentRun::failed(self.start_failure(&e)),
        };
        tracing::info!(exit = ?c.exit, lines = c.lines, "agent finished");
        AgentRun {
            result: judge_exit(&c, limit),
            tail: c.tail,
        }
    }
}

/// What one run of the agent did.
#[derive(Debug, Clone)]
pub struct AgentRun {
    pub result: Result<(), Failure>,
    /// The last lines of its output, secrets masked.
    pub tail: Vec<String>,
}

impl AgentRun {
    fn failed(f: Failure) -> AgentRun {
        AgentRun {
            result: Err(f),
            tail: Vec::new(),
        }
    }
}

/// Map the agent's exit (and, for a short output, an auth error in it) to a result.
fn judge_exit(c: &Captured, limit: Duration) -> Result<(), Failure> {
    let auth = matches!(c.exit, Exit::Code(0 | 1))
        && c.lines <= SHORT_OUTPUT
        && says_not_logged_in(&c.tail);
    if auth {
        return Err(Failure::new(
            FailureClass::Auth,
            format!("agent reports an authentication error: {}", last_line(c)),
        ));
    }
    match c.exit {
        Exit::Code(0) => Ok(()),
        Exit::Code(1) => Err(Failure::new(
            FailureClass::AgentFailed,
            format!("agent failed (exit code 1): {}", last_line(c)),
        )),
        Exit::Code(3) => Err(Failure::new(
            FailureClass::AgentFailed,
            "MCP server failed to start (agent exit code 3)",
        )),
        Exit::Code(4) => Err(Failure::new(
            FailureClass::PermanentInput,
            "agent not found (agent exit code 4)",
        )),
        Exit::Code(n) => Err(Failure::new(
            FailureClass::AgentFailed,
            format!("agent exited with code {n}"),
        )),
        Exit::Signal(s) => Err(Failure::new(
            FailureClass::AgentFailed,
            format!("agent was killed by signal {s}"),
        )),
        Exit::TimedOut => Err(Failure::new(
            FailureClass::AgentFailed,
            format!(
                "agent timed out after {}",
                humantime::format_duration(limit)
            ),
        )),
    }
}

fn says_not_logged_in(lines: &[String]) -> bool {
    lines.iter().any(|l| {
        let l = l.to_lowercase();
        AUTH_ERRORS.iter().any(|p| l.contains(p))
    })
}

/// The last non-empty output line (already masked), shortened, or `no output`.
fn last_line(c: &Captured) -> String {
    let line = c
        .tail
        .iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| !l.is_empty())
        .unwrap_or("no output");
    let mut s: String = line.chars().take(200).collect();
    if line.chars().count() > 200 {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests;
