//! The setup step: the repository's setup commands (its settings file's `setup`), run
//! after the checkout and before the agent, so that the agent and the tests find the
//! dependencies installed.
//!
//! Invariant: each command runs exactly as the test command does ([`test_run::run`]):
//! `sh -c` in the checkout, its own process group, the tests' allow-listed environment
//! and a fresh, empty HOME, its output in its own log in the build directory with every
//! secret masked; the commands share one time limit, and the first that fails (exit
//! code, signal, time limit) stops the run as `build-failed` naming the command's
//! position and how it ended (retried: an install can fail for a passing reason).

use crate::child_env::{self, ChildEnv};
use crate::config::Config;
use crate::repo_settings::Settings;
use crate::steps::test_run;
use kiro_protocol::{Failure, FailureClass};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tracing::{info, instrument};

/// The pipeline's setup step: `settings.setup` with the tests' environment (the
/// worker's allow-list and `KIRO_TEST_ENV_PASS`) and the tests' secret masking (the
/// GitHub token, the Kiro API key), each command's log in the build directory.
#[instrument(skip_all, fields(commands = settings.setup.len()))]
pub async fn step(cfg: &Config, settings: &Settings, checkout: &Path) -> Result<(), Failure> {
    if settings.setup.is_empty() {
        return Ok(());
    }
    let secrets: Vec<&str> = cfg
        .github
        .token
        .iter()
        .chain(cfg.kiro_api_key.iter())
        .map(|s| s.expose())
        .collect();
    let extra = child_env::parse_extra(child_env::TEST_PASS_SETTING, cfg.test_env_pass.as_deref())?;
    let env = ChildEnv::for_tests(std::env::vars_os(), &extra);
    run(
        &settings.setup,
        checkout,
        settings.setup_timeout,
        |n| cfg.setup_log(n),
        &secrets,
        &env,
    )
    .await
}

/// Run `commands` in order in `checkout` within `limit` altogether; the output of
/// command `n` (1-based) goes to `log(n)`.
pub async fn run(
    commands: &[String],
    checkout: &Path,
    limit: Duration,
    log: impl Fn(usize) -> PathBuf,
    secrets: &[&str],
    env: &ChildEnv,
) -> Result<(), Failure> {
    let started = Instant::now();
    for (i, command) in commands.iter().enumerate() {
        let n = i + 1;
        let left = limit.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(Failure::new(
                FailureClass::BuildFailed,
                format!(
                    "setup[{i}] did not start: the setup commands used their {} \
                     (setup_timeout)",
                    humantime::format_duration(limit)
                ),
            ));
        }
        let r = test_run::run(command, checkout, left, &log(n), secrets, env).await?;
        if !r.passed {
            let tail = r
                .tail
                .iter()
                .rev()
                .take(5)
                .rev()
                .cloned()
                .collect::<Vec<_>>();
            return Err(Failure::new(
                FailureClass::BuildFailed,
                format!(
                    "setup[{i}] failed ({}): {}",
                    r.summary.replace(
                        &format!("timed out after {}", humantime::format_duration(left)),
                        &format!(
                            "the setup commands' {} (setup_timeout) ran out",
                            humantime::format_duration(limit)
                        ),
                    ),
                    tail.join(" | ")
                ),
            ));
        }
        info!(command = n, "setup command passed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commands_run_in_order_until_one_fails_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        let log = |n: usize| logs.join(format!("setup-{n}.log"));
        let cmds = vec![
            "echo one > order.txt".to_owned(),
            "echo two >> order.txt; echo token=s3cr3t".to_owned(),
            "echo broken; exit 3".to_owned(),
            "echo never >> order.txt".to_owned(),
        ];
        let f = run(
            &cmds,
            dir.path(),
            Duration::from_secs(20),
            log,
            &["s3cr3t"],
            &ChildEnv::default(),
        )
        .await
        .unwrap_err();
        assert_eq!(f.class, FailureClass::BuildFailed);
        assert_eq!(f.reason, "setup[2] failed (exit code 3): broken");
        let order = std::fs::read_to_string(dir.path().join("order.txt")).unwrap();
        assert_eq!(order, "one\ntwo\n");
        let second = std::fs::read_to_string(log(2)).unwrap();
        assert!(
            second.contains("token=***") && !second.contains("s3cr3t"),
            "{second}"
        );
    }

    #[tokio::test]
    async fn the_commands_share_one_time_limit() {
        let dir = tempfile::tempdir().unwrap();
        let log = |n: usize| dir.path().join(format!("setup-{n}.log"));
        let cmds = vec!["sleep 5".to_owned()];
        let f = run(
            &cmds,
            dir.path(),
            Duration::from_millis(300),
            log,
            &[],
            &ChildEnv::default(),
        )
        .await
        .unwrap_err();
        assert_eq!(f.class, FailureClass::BuildFailed);
        assert!(
            f.reason
                .starts_with("setup[0] failed (the setup commands' 300ms (setup_timeout) ran out)"),
            "{}",
            f.reason
        );
    }
}
