//! The test step: run the operator's test command in the checkout.
//!
//! Invariant: the command comes only from the run's settings — the repository's
//! settings file as it was before the agent ran, or the worker's configuration (never
//! from the board or the agent; [`crate::repo_settings`]) — and runs with `sh -c` in the checkout, in its own process group, under a time
//! limit, with an allow-listed environment ([`crate::child_env`]: never the push token,
//! cloud credentials or the agent's API key) and a fresh, empty HOME. The kept
//! output tail has any configured secret value masked.

use crate::child_env::ChildEnv;
use crate::steps::process::{Exit, run_captured};
use kiro_protocol::{Failure, FailureClass};
use std::path::Path;
use std::time::Duration;
use tokio::process::Command;

/// Lines of output kept for the report.
pub const TAIL_LINES: usize = 40;

/// What the tests did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    pub passed: bool,
    /// `exit code 1`, `timed out after 30m`, …
    pub summary: String,
    /// The last lines of output (kept for failures).
    pub tail: Vec<String>,
    /// Counts from the JUnit report, when one is configured and readable.
    pub counts: Option<crate::steps::junit::TestCounts>,
    /// The failing cases of the JUnit report, when one is configured and readable.
    pub failed_cases: Vec<crate::steps::junit::FailedCase>,
}

impl TestResult {
    /// The failure this result stands for, if any.
    pub fn failure(&self) -> Option<Failure> {
        (!self.passed).then(|| {
            Failure::new(
                FailureClass::TestsFailed,
                format!("tests failed ({})", self.summary),
            )
        })
    }
}

/// Run `test_cmd` in `checkout`, with `env` (an allow-list) and a fresh HOME.
pub async fn run(
    test_cmd: &str,
    checkout: &Path,
    limit: Duration,
    log: &Path,
    secrets: &[&str],
    env: &ChildEnv,
) -> Result<TestResult, Failure> {
    let home = tempfile::Builder::new()
        .prefix("kiro-tests-home-")
        .tempdir()
        .map_err(|e| {
            Failure::new(
                FailureClass::Internal,
                format!("cannot create the tests' HOME: {e}"),
            )
        })?;
    let mut cmd = Command::new("sh");
    env.apply(&mut cmd);
    cmd.arg("-c")
        .arg(test_cmd)
        .current_dir(checkout)
        .env("HOME", home.path());
    let secrets: Vec<String> = secrets.iter().map(|s| (*s).to_owned()).collect();
    let c = run_captured(cmd, limit, log, TAIL_LINES, &secrets)
        .await
        .map_err(|e| Failure::new(FailureClass::Internal, format!("cannot run tests: {e}")))?;
    let (passed, summary) = match c.exit {
        Exit::Code(0) => (true, "exit code 0".to_owned()),
        Exit::Code(n) => (false, format!("exit code {n}")),
        Exit::Signal(s) => (false, format!("killed by signal {s}")),
        Exit::TimedOut => (
            false,
            format!("timed out after {}", humantime::format_duration(limit)),
        ),
    };
    Ok(TestResult {
        passed,
        summary,
        tail: c.tail,
        counts: None,
        failed_cases: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failing_tests_keep_a_masked_tail() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("t.log");
        let r = run(
            "for i in $(seq 1 60); do echo line $i; done; echo token=s3cr3t-value; exit 2",
            dir.path(),
            Duration::from_secs(20),
            &log,
            &["s3cr3t-value"],
            &ChildEnv::default(),
        )
        .await
        .unwrap();
        assert!(!r.passed);
        assert_eq!(r.summary, "exit code 2");
        assert_eq!(r.tail.len(), TAIL_LINES);
        assert_eq!(r.tail.last().unwrap(), "token=***");
        assert_eq!(r.failure().unwrap().class, FailureClass::TestsFailed);
        let ok = run(
            "true",
            dir.path(),
            Duration::from_secs(20),
            &log,
            &[],
            &ChildEnv::default(),
        )
        .await
        .unwrap();
        assert!(ok.passed && ok.failure().is_none());
    }

    /// A stand-in test command dumps its environment: exactly the allow-list, a fresh
    /// HOME, never a credential or the agent's key.
    #[tokio::test]
    async fn the_tests_get_exactly_the_allow_list() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("t.log");
        let dump = dir.path().join("env.txt");
        let parent: Vec<(std::ffi::OsString, std::ffi::OsString)> = [
            ("PATH", std::env::var("PATH").unwrap_or_default().as_str()),
            ("HOME", "/root"),
            ("LANG", "C.UTF-8"),
            ("CI", "true"),
            ("HTTPS_PROXY", "http://proxy:3128"),
            (
                "AWS_SECRET_ACCESS_KEY",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            ),
            ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"),
            (
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "/v2/credentials/x",
            ),
            ("ECS_CONTAINER_METADATA_URI_V4", "http://169.254.170.2/v4"),
            ("GITHUB_TOKEN", "ghp_abcdefghijklmnop"),
            ("GH_TOKEN", "ghp_abcdefghijklmnop"),
            ("KIRO_API_KEY", "ksk_abcdefghijklmnop"),
            ("KIRO_STATE_DIR", "/state"),
            ("NPM_CONFIG_REGISTRY", "https://registry.internal"),
        ]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
        let env = ChildEnv::for_tests(parent, &["NPM_CONFIG_REGISTRY".to_owned()]);
        let r = run(
            &format!("env > '{}'", dump.display()),
            dir.path(),
            Duration::from_secs(20),
            &log,
            &[],
            &env,
        )
        .await
        .unwrap();
        assert!(r.passed, "{r:?}");
        let text = std::fs::read_to_string(&dump).unwrap();
        let mut names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, _)| k))
            .collect();
        names.sort();
        // `sh` itself adds PWD (and may add SHLVL, OLDPWD, `_`).
        names.retain(|n| !matches!(*n, "PWD" | "SHLVL" | "OLDPWD" | "_"));
        assert_eq!(
            names,
            [
                "CI",
                "HOME",
                "HTTPS_PROXY",
                "LANG",
                "NPM_CONFIG_REGISTRY",
                "PATH"
            ]
        );
        let home = text.lines().find_map(|l| l.strip_prefix("HOME=")).unwrap();
        assert_ne!(home, "/root");
        assert!(home.contains("kiro-tests-home-"), "{home}");
    }
}
