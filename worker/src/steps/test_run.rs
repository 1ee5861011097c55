//! The test step: run the operator's test command in the checkout.
//!
//! Invariant: the command comes only from the worker's configuration (never from the
//! board) and runs with `sh -c` in the checkout, in its own process group, under a time
//! limit, without the push token or the agent's API key in its environment. The kept
//! output tail has any configured secret value masked.

use crate::steps::process::{Exit, run_captured};
use kiro_protocol::{Failure, FailureClass};
use std::path::Path;
use std::time::Duration;
use tokio::process::Command;

/// Lines of output kept for the report.
pub const TAIL_LINES: usize = 40;

/// Environment variables the tests must not inherit.
pub const WITHHELD: &[&str] = &["GITHUB_TOKEN", "GH_TOKEN", "KIRO_API_KEY"];

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

/// Run `test_cmd` in `checkout`.
pub async fn run(
    test_cmd: &str,
    checkout: &Path,
    limit: Duration,
    log: &Path,
    secrets: &[&str],
) -> Result<TestResult, Failure> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(test_cmd).current_dir(checkout);
    for var in WITHHELD {
        cmd.env_remove(var);
    }
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
        )
        .await
        .unwrap();
        assert!(!r.passed);
        assert_eq!(r.summary, "exit code 2");
        assert_eq!(r.tail.len(), TAIL_LINES);
        assert_eq!(r.tail.last().unwrap(), "token=***");
        assert_eq!(r.failure().unwrap().class, FailureClass::TestsFailed);
        let ok = run("true", dir.path(), Duration::from_secs(20), &log, &[])
            .await
            .unwrap();
        assert!(ok.passed && ok.failure().is_none());
    }
}
