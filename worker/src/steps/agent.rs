//! The agent step: run the headless coding agent on the checkout.
//!
//! Invariant: the agent command is split with `shell-words` and the prompt is appended
//! as ONE argument — nothing goes through a shell. The agent gets a fresh, empty `HOME`
//! (and XDG dirs inside it) so no stored login can shadow `KIRO_API_KEY`, never sees the
//! git push token, and is killed with its whole process group at the time limit. Its exit
//! code is only one signal: the pipeline judges progress from `tasks.md`.

use crate::steps::process::{Exit, run_captured};
use kiro_protocol::{Failure, FailureClass, SpecPath};
use std::path::Path;
use std::time::Duration;
use tokio::process::Command;

/// Environment variables the agent must not inherit.
pub const WITHHELD: &[&str] = &["GITHUB_TOKEN", "GH_TOKEN"];

/// Run `agent_cmd + [prompt]` in `checkout`, logging to `log`.
pub async fn run(
    agent_cmd: &str,
    prompt: &str,
    checkout: &Path,
    spec: &SpecPath,
    limit: Duration,
    log: &Path,
) -> Result<(), Failure> {
    let argv = shell_words::split(agent_cmd).map_err(|e| {
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
    let home = tempfile::Builder::new()
        .prefix("kiro-agent-home-")
        .tempdir()
        .map_err(|e| {
            Failure::new(
                FailureClass::Internal,
                format!("cannot create the agent's HOME: {e}"),
            )
        })?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .arg(prompt)
        .current_dir(checkout)
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path().join(".config"))
        .env("XDG_DATA_HOME", home.path().join(".local/share"))
        .env("XDG_CACHE_HOME", home.path().join(".cache"))
        .env("XDG_STATE_HOME", home.path().join(".local/state"))
        .env(kiro_protocol::ports::build::env::SPEC, spec.as_str())
        .env("NO_COLOR", "1");
    for var in WITHHELD {
        cmd.env_remove(var);
    }
    let captured = run_captured(cmd, limit, log, 40).await.map_err(|e| {
        let class = if e.kind() == std::io::ErrorKind::NotFound {
            FailureClass::PermanentInput
        } else {
            FailureClass::AgentFailed
        };
        Failure::new(class, format!("agent {program:?} could not start: {e}"))
    })?;
    tracing::info!(exit = ?captured.exit, "agent finished");
    match captured.exit {
        Exit::Code(0) => Ok(()),
        Exit::Code(3) => Err(Failure::new(
            FailureClass::AgentFailed,
            "MCP server failed to start (agent exit code 3)",
        )),
        Exit::Code(4) => Err(Failure::new(
            FailureClass::PermanentInput,
            "agent not found (agent exit code 4)",
        )),
        Exit::Code(c) => Err(Failure::new(
            FailureClass::AgentFailed,
            format!("agent exited with code {c}"),
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
