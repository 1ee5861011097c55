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
