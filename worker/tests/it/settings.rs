//! The `kiro-worker` binary's settings checks: a duration or count outside its range, or
//! limits that leave no room inside the build's time-out, exit 2 naming the flag and its
//! variable, and the outcome is still written for the build to export.

use kiro_protocol::outcome::vars;
use std::process::{Command, Output};

/// Variables set, the flag and the variable (or clap's words) the error must name.
type Case = (
    &'static [(&'static str, &'static str)],
    &'static str,
    &'static str,
);

fn worker(args: &[&str], env: &[(&str, &str)], dir: &std::path::Path) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiro-worker"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KIRO_BUILD_DIR", dir)
        .env("KIRO_OUTCOME_FILE", dir.join("kiro-outcome.env"))
        .current_dir(dir)
        .args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run kiro-worker")
}

/// Before: each of these started (the agent's and the tests' limits unchecked, a
/// threshold of 250% or NaN accepted) and ran the item.
#[test]
fn settings_outside_their_range_exit_2_naming_flag_and_variable() {
    let cases: [Case; 10] = [
        (
            &[("KIRO_AGENT_TIMEOUT", "0s")],
            "--agent-timeout",
            "KIRO_AGENT_TIMEOUT",
        ),
        (
            &[("KIRO_AGENT_TIMEOUT", "999999999999h")],
            "--agent-timeout",
            "KIRO_AGENT_TIMEOUT",
        ),
        (
            &[("KIRO_TEST_TIMEOUT", "0s")],
            "--test-timeout",
            "KIRO_TEST_TIMEOUT",
        ),
        (
            &[("KIRO_AGENT_PREFLIGHT_TIMEOUT", "1h")],
            "--agent-preflight-timeout",
            "KIRO_AGENT_PREFLIGHT_TIMEOUT",
        ),
        (
            &[("KIRO_FENCE_WAIT", "2h")],
            "--fence-wait",
            "KIRO_FENCE_WAIT",
        ),
        (
            &[("KIRO_COVERAGE_THRESHOLD", "250")],
            "--coverage-threshold",
            "KIRO_COVERAGE_THRESHOLD",
        ),
        (
            &[("KIRO_COVERAGE_THRESHOLD", "NaN")],
            "--coverage-threshold",
            "KIRO_COVERAGE_THRESHOLD",
        ),
        (
            &[("KIRO_BUILD_TIMEOUT", "37h")],
            "--build-timeout",
            "KIRO_BUILD_TIMEOUT",
        ),
        // The agent's limit equal to the build's: the build would be stopped before the
        // worker reports.
        (
            &[("KIRO_BUILD_TIMEOUT", "60m"), ("KIRO_AGENT_TIMEOUT", "60m")],
            "--build-timeout",
            "KIRO_AGENT_TIMEOUT",
        ),
        // Not a duration at all: clap's own error, exit 2 as well.
        (
            &[("KIRO_TEST_TIMEOUT", "soon")],
            "--test-timeout",
            "invalid value",
        ),
    ];
    for (env, flag, var) in cases {
        let dir = tempfile::tempdir().unwrap();
        let out = worker(&["run"], env, dir.path());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {err}");
        assert!(err.contains(flag) && err.contains(var), "{env:?}: {err}");
        // The outcome is still there for the build to export: a permanent input failure.
        let text = std::fs::read_to_string(dir.path().join("kiro-outcome.env")).unwrap();
        assert!(
            text.contains(&format!("export {}='failed'", vars::OUTCOME))
                && text.contains(&format!("export {}='permanent-input'", vars::FAILURE_CLASS)),
            "{env:?}: {text}"
        );
        assert!(
            text.contains("invalid worker configuration"),
            "{env:?}: {text}"
        );
        assert!(
            !dir.path().join("workspace").exists(),
            "{env:?}: nothing ran"
        );
    }
}

#[test]
fn the_help_states_every_range() {
    let dir = tempfile::tempdir().unwrap();
    let out = worker(&["run", "--help"], &[], dir.path());
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for range in [
        "(1s to 36h) [env: KIRO_AGENT_TIMEOUT=]",
        "(1s to 10m) [env: KIRO_AGENT_PREFLIGHT_TIMEOUT=]",
        "(1s to 36h) [env: KIRO_TEST_TIMEOUT=]",
        "(0s to 1h) [env: KIRO_FENCE_WAIT=]",
        "(0 to 100) [env: KIRO_COVERAGE_THRESHOLD=]",
        "5m inside it for checkout, push and report (the defaults fit a 60m build) [env: KIRO_BUILD_TIMEOUT=]",
    ] {
        assert!(help.contains(range), "{range} not in: {help}");
    }
}
