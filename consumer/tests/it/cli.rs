//! The `kiro-consumer` binary's settings checks, before anything is wired.

use std::process::Command;

fn consumer(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiro-consumer"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run kiro-consumer")
}

#[test]
fn a_codebuild_timeout_out_of_bounds_exits_2_naming_the_flag_and_the_variable() {
    for bad in ["2m", "37h"] {
        let out = consumer(
            &["run"],
            &[
                ("KIRO_BACKEND", "aws"),
                ("KIRO_BUILD_RUNNER", "codebuild"),
                ("KIRO_BUILD_TIMEOUT", bad),
            ],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(
            err.contains("--build-timeout") && err.contains("KIRO_BUILD_TIMEOUT"),
            "{bad}: {err}"
        );
        assert!(err.contains("5m to 36h"), "{bad}: {err}");
    }
}

#[test]
fn the_help_says_an_unset_timeout_is_the_codebuild_projects() {
    let out = consumer(&["run", "--help"], &[]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(help.contains("KIRO_BUILD_TIMEOUT"), "{help}");
    assert!(help.contains("project's own timeout"), "{help}");
}

/// Nonsense settings never start: each exits 2 before anything is wired, naming the flag
/// and its variable (they used to start with exit 0, and `--max-jobs 0` then dead-lettered
/// every queued message).
#[test]
fn settings_outside_their_range_exit_2_naming_flag_and_variable() {
    let cases: [(&str, &str, &str); 16] = [
        ("KIRO_LEASE_TTL", "0s", "--lease-ttl"),
        ("KIRO_LEASE_TTL", "999999999999h", "--lease-ttl"),
        ("KIRO_MAX_JOBS", "0", "--max-jobs"),
        ("KIRO_MAX_JOBS", "100000", "--max-jobs"),
        ("KIRO_VISIBILITY", "0s", "--visibility"),
        ("KIRO_VISIBILITY", "13h", "--visibility"),
        ("KIRO_VISIBILITY", "30s", "--visibility"), // below the default 60s lease TTL
        ("KIRO_POLL_EVERY", "0s", "--poll-every"),
        ("KIRO_BUILD_TIMEOUT", "0s", "--build-timeout"),
        ("KIRO_MAX_ATTEMPTS", "0", "--max-attempts"),
        ("KIRO_RETRY_BASE", "1h", "--retry-base"), // above the default 15m maximum
        ("KIRO_RETRY_MAX", "13h", "--retry-max"),
        ("KIRO_RECEIVE_WAIT", "21s", "--receive-wait"),
        ("KIRO_RECEIVE_WAIT", "1000h", "--receive-wait"),
        ("KIRO_LEASE_SKEW", "2m", "--lease-skew"), // beyond the default 60s TTL
        ("KIRO_MAX_JOBS", "-1", "--max-jobs"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap();
    for (var, value, flag) in cases {
        let out = consumer(&["run"], &[("KIRO_STATE_DIR", state), (var, value)]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {err}");
        assert!(
            err.contains(flag) && (err.contains(var) || err.contains("invalid value")),
            "{var}={value}: {err}"
        );
    }
    // Both together: --retry-base 1h with --retry-max 1s names the base.
    let out = consumer(
        &["run", "--retry-base", "1h", "--retry-max", "1s"],
        &[("KIRO_STATE_DIR", state)],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--retry-base (KIRO_RETRY_BASE)"), "{err}");
    // Nothing was created for a refused start.
    assert!(!dir.path().join("kiro.db").exists());
}

/// `KIRO_METRICS=emff` stops the consumer at start-up with exit 2, naming the variable,
/// the value and the accepted modes (it used to start with metrics silently off).
#[test]
fn a_misspelt_kiro_metrics_exits_2_naming_the_variable_and_the_modes() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap();
    let out = consumer(
        &["run"],
        &[("KIRO_STATE_DIR", state), ("KIRO_METRICS", "emff")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for want in ["KIRO_METRICS", "\"emff\"", "`emf`", "`off`"] {
        assert!(err.contains(want), "{want:?} missing in {err}");
    }
    assert!(!dir.path().join("kiro.db").exists(), "nothing was wired");
}
