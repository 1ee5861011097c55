//! The local build runner against the build contract suite, and what a build is given
//! and what it reports: its log file and own source directory, the layers of its
//! environment and their inheritance, a buildspec broken after start-up, bad
//! configuration refused or reported, and the launcher's own help.

use crate::support::*;
use kiro_local_build::{LocalBuildConfig, LocalBuildRunner};
use kiro_protocol::outcome::vars;
use kiro_protocol::{BuildId, BuildRunner, BuildState, Clock, SystemClock};
use kiro_statedb::EmbeddedDb;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The contract's buildspec: exports the outcome variables and runs `$CONTRACT_SCRIPT`.
fn contract_buildspec() -> String {
    format!(
        "version: 0.2\nenv:\n  exported-variables: [{}]\nphases:\n  build:\n    commands:\n      - eval \"$CONTRACT_SCRIPT\"\n",
        vars::ALL.join(", ")
    )
}

kiro_backends::build_contract!(
    Local::new(&contract_buildspec()),
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)],
    // The local runner keeps every key, so `find` (for runners that forget) has nothing to
    // add: replaying a key returns its build.
    skip [a_started_build_is_found_by_its_key],
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_file_holds_the_output_and_the_build_runs_in_its_own_src_dir() {
    let h = Local::new(
        r#"
version: 0.2
env:
  exported-variables: [WHERE, SRC]
phases:
  install:
    commands: ["echo installing-marker"]
  build:
    commands:
      - echo build-stdout-marker; echo build-stderr-marker >&2
      - export WHERE="$(pwd)" SRC="$CODEBUILD_SRC_DIR"
"#,
    );
    let id = h
        .runner
        .start(&request("log-1", &[], Duration::from_secs(60)))
        .await
        .unwrap();
    let st = wait(&h, &id).await;
    assert_eq!(st.state, BuildState::Succeeded, "{st:?}");
    let log_path = PathBuf::from(st.log.clone().unwrap());
    assert_eq!(log_path, h.runner.log_path(&id));
    assert!(log_path.starts_with(h.state_dir().join("builds")));
    let log = read(&log_path);
    for needle in [
        "Entering phase INSTALL",
        "installing-marker",
        "Entering phase BUILD",
        "Running command echo build-stdout-marker",
        "build-stdout-marker",
        "build-stderr-marker",
    ] {
        assert!(
            log.contains(needle),
            "{needle:?} missing from the log:\n{log}"
        );
    }
    let src = h.runner.build_dir(&id).join("src");
    assert_eq!(st.exported["SRC"], src.to_string_lossy());
    assert_eq!(
        Path::new(&st.exported["WHERE"]).canonicalize().unwrap(),
        src.canonicalize().unwrap()
    );
    assert_eq!(st.phase.as_deref(), Some("BUILD"));
    assert!(st.ended_at.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_layers_and_inheritance() {
    const SPEC: &str = r#"
version: 0.2
env:
  variables:
    LAYER: from-spec
    SPEC_ONLY: spec
  exported-variables: [LAYER, SPEC_ONLY, BASE_ONLY, INHERITED, HOME_SEEN]
phases:
  build:
    commands:
      - export INHERITED="${CARGO_MANIFEST_DIR:-}" HOME_SEEN="${HOME:+yes}"
      - if [ -z "$INHERITED" ]; then unset INHERITED; fi
"#;
    assert!(
        std::env::var_os("CARGO_MANIFEST_DIR").is_some(),
        "cargo sets CARGO_MANIFEST_DIR for test processes"
    );
    let base = |c: &mut LocalBuildConfig| {
        c.base_env.insert("BASE_ONLY".into(), "base".into());
        c.base_env.insert("LAYER".into(), "from-base".into());
    };
    let inherit = Local::with(SPEC, Arc::new(SystemClock), base);
    let isolated = Local::with(SPEC, Arc::new(SystemClock), |c| {
        base(c);
        c.inherit_env = false;
    });
    let req = request(
        "env-1",
        &[("LAYER", "from-request")],
        Duration::from_secs(60),
    );
    let a = inherit.runner.start(&req).await.unwrap();
    let b = isolated.runner.start(&req).await.unwrap();
    let a = wait(&inherit, &a).await;
    let b = wait(&isolated, &b).await;
    for st in [&a, &b] {
        assert_eq!(st.state, BuildState::Succeeded, "{st:?}");
        assert_eq!(st.exported["LAYER"], "from-request", "overrides win");
        assert_eq!(st.exported["SPEC_ONLY"], "spec");
        assert_eq!(st.exported["BASE_ONLY"], "base");
    }
    assert!(a.exported.contains_key("INHERITED"), "{a:?}");
    assert!(!b.exported.contains_key("INHERITED"), "{b:?}");
    if std::env::var_os("HOME").is_some() {
        assert_eq!(
            b.exported["HOME_SEEN"], "yes",
            "HOME is kept without inheritance"
        );
    }
    // The request's overrides and the runner's base environment are not stored.
    let base_in_db: i64 = inherit
        .db
        .call_sync(|c| {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM builds WHERE env_json LIKE '%BASE_ONLY%'",
                [],
                |r| r.get(0),
            )?)
        })
        .unwrap();
    assert_eq!(base_in_db, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buildspec_broken_after_start_up_fails_the_build_with_its_reason() {
    let h = Local::new("version: 0.2\nphases:\n  build:\n    commands: [\"true\"]\n");
    std::fs::write(
        h.dir.path().join("buildspec.yml"),
        "version: 0.2\nphases:\n  prebuild:\n    commands: [x]\n",
    )
    .unwrap();
    let id = h
        .runner
        .start(&request("broken-1", &[], Duration::from_secs(60)))
        .await
        .unwrap();
    let st = wait(&h, &id).await;
    assert_eq!(st.state, BuildState::Failed);
    let msg = st.message.unwrap();
    assert!(msg.contains("phases.prebuild"), "{msg}");
    assert!(read(&h.runner.log_path(&id)).contains("phases.prebuild"));
}

#[tokio::test]
async fn bad_configuration_is_refused_or_reported() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("buildspec.yml");
    std::fs::write(&spec, "version: 0.1\n").unwrap();
    let db = EmbeddedDb::open_dir(dir.path()).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let err = LocalBuildRunner::new(
        db.clone(),
        clock.clone(),
        LocalBuildConfig::new(dir.path(), &spec, LAUNCHER),
    )
    .unwrap_err();
    assert!(err.message.contains("version 0.1"), "{err}");
    std::fs::write(&spec, "version: 0.2\n").unwrap();
    let err = LocalBuildRunner::new(
        db.clone(),
        clock.clone(),
        LocalBuildConfig::new(dir.path(), &spec, dir.path().join("no-such-launcher")),
    )
    .unwrap_err();
    assert!(err.message.contains("no-such-launcher"), "{err}");
    // A launcher that exists but cannot run: the build is recorded FAULT with the reason.
    let runner =
        LocalBuildRunner::new(db, clock, LocalBuildConfig::new(dir.path(), &spec, &spec)).unwrap();
    let id = runner
        .start(&request("fault-1", &[], Duration::from_secs(60)))
        .await
        .unwrap();
    let st = runner.status(std::slice::from_ref(&id)).await.unwrap();
    assert_eq!(st[0].state, BuildState::Fault);
    assert!(
        st[0]
            .message
            .as_deref()
            .unwrap()
            .contains("cannot start the build process")
    );
    assert!(runner.stop(&BuildId::new("local:calc:999")).await.is_err());
    assert!(runner.status(&[]).await.unwrap().is_empty());
}

#[test]
fn the_launcher_explains_itself() {
    let out = std::process::Command::new(LAUNCHER)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("not by humans"), "{help}");
    let out = std::process::Command::new(LAUNCHER).output().unwrap();
    assert!(!out.status.success(), "arguments are required");
    // Test binaries live in target/<profile>/deps; the launcher one level up.
    let found = kiro_local_build::locate_launcher().unwrap();
    assert_eq!(
        found.canonicalize().unwrap(),
        Path::new(LAUNCHER).canonicalize().unwrap()
    );
}
