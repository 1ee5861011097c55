use super::*;
use crate::process;
use kiro_protocol::Timestamp;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct Ran {
    outcome: ExecOutcome,
    log: String,
    phases: Vec<(PhaseName, i32)>,
    _dir: tempfile::TempDir,
}

fn plan(dir: &Path, timeout: Duration) -> ExecPlan {
    let mut base_env = BTreeMap::new();
    for k in ["PATH", "HOME"] {
        if let Ok(v) = std::env::var(k) {
            base_env.insert(k.to_owned(), v);
        }
    }
    base_env.insert("FROM_BASE".into(), "base".into());
    base_env.insert("OVERRIDDEN".into(), "base".into());
    let mut overrides = BTreeMap::new();
    overrides.insert("OVERRIDDEN".into(), "override".into());
    ExecPlan {
        build_id: "local:test:1".into(),
        build_dir: dir.join("b1"),
        base_env,
        overrides,
        source_version: "feature/x".into(),
        start_time: Timestamp(1_767_225_600_000),
        timeout,
        kill_grace: Duration::from_secs(2),
    }
}

async fn run_with(yaml: &str, timeout: Duration, stop: watch::Receiver<bool>) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    let spec = BuildSpec::parse(yaml).unwrap();
    let plan = plan(dir.path(), timeout);
    let phases = Arc::new(Mutex::new(Vec::new()));
    let seen = phases.clone();
    let mut on_phase = move |p: PhaseName, g: i32| seen.lock().unwrap().push((p, g));
    let outcome = execute(&spec, &plan, stop, &mut on_phase).await.unwrap();
    let log = std::fs::read_to_string(plan.log_path()).unwrap();
    let phases = phases.lock().unwrap().clone();
    Ran {
        outcome,
        log,
        phases,
        _dir: dir,
    }
}

async fn run(yaml: &str) -> Ran {
    let (_tx, rx) = watch::channel(false);
    run_with(yaml, Duration::from_secs(60), rx).await
}

#[tokio::test]
async fn phases_run_in_order_and_share_their_environment() {
    let ran = run(r#"
version: 0.2
env:
  variables:
    FROM_SPEC: spec
    OVERRIDDEN: spec
  exported-variables: [ORDER, FROM_SPEC, FROM_BASE, OVERRIDDEN, NEVER_SET, SRC, BUILD_ID, SUCCEEDING, LOCAL_ONLY]
phases:
  post_build:
    commands:
      - export ORDER="$ORDER,post"
      - export SUCCEEDING="$SUCCEEDING,$CODEBUILD_BUILD_SUCCEEDING"
  build:
    commands:
      - export ORDER="$ORDER,build"
      - cd /
      - LOCAL_ONLY=yes
  install:
    commands:
      - export ORDER=install
      - export SRC="$CODEBUILD_SRC_DIR" BUILD_ID="$CODEBUILD_BUILD_ID"
      - test "$(pwd)" = "$CODEBUILD_SRC_DIR"
      - test "$CODEBUILD_SOURCE_VERSION" = feature/x
      - test "$CODEBUILD_START_TIME" = 1767225600000
  pre_build:
    commands:
      - export ORDER="$ORDER,pre"
      - export SUCCEEDING="$CODEBUILD_BUILD_SUCCEEDING"
"#)
        .await;
    let o = &ran.outcome;
    assert_eq!(o.state, BuildState::Succeeded, "{o:?}\n{}", ran.log);
    assert_eq!(o.exported["ORDER"], "install,pre,build,post");
    assert_eq!(o.exported["FROM_SPEC"], "spec");
    assert_eq!(o.exported["FROM_BASE"], "base");
    assert_eq!(o.exported["OVERRIDDEN"], "override");
    assert_eq!(o.exported["SUCCEEDING"], "1,1");
    assert_eq!(o.exported["BUILD_ID"], "local:test:1");
    assert!(o.exported["SRC"].ends_with("b1/src"));
    // A plain assignment of an exported-variables name is exported too (CodeBuild
    // runs all of a phase's commands in one shell); an unset one is absent.
    assert_eq!(o.exported["LOCAL_ONLY"], "yes");
    assert!(!o.exported.contains_key("NEVER_SET"));
    assert_eq!(o.last_phase, Some(PhaseName::PostBuild));
    let names: Vec<_> = ran.phases.iter().map(|p| p.0).collect();
    assert_eq!(names, PhaseName::ALL.to_vec());
    assert!(ran.phases.iter().all(|p| p.1 > 1));
    // The log has each phase header and the command echo, in order.
    let install = ran.log.find("Entering phase INSTALL").unwrap();
    let post = ran.log.find("Entering phase POST_BUILD").unwrap();
    assert!(install < post);
    assert!(
        ran.log
            .contains("[Container] Running command export ORDER=install")
    );
    // Private env dumps do not stay behind.
    assert!(!ran._dir.path().join("b1/.env-build").exists());
}

#[tokio::test]
async fn a_phase_stops_at_its_first_failure_and_finally_still_runs() {
    let ran = run(r#"
version: 0.2
env:
  exported-variables: [STEPS]
phases:
  build:
    commands:
      - export STEPS=one; echo "stdout of one"; echo "stderr of one" >&2
      - export STEPS="$STEPS,two"; exit_code=3; (exit $exit_code)
      - export STEPS="$STEPS,three"
    finally:
      - export STEPS="$STEPS,finally1"
      - export STEPS="$STEPS,finally2"
"#)
    .await;
    let o = &ran.outcome;
    assert_eq!(o.state, BuildState::Failed);
    assert_eq!(o.exported["STEPS"], "one,two,finally1,finally2");
    let msg = o.message.as_deref().unwrap();
    assert!(msg.contains("phase BUILD failed"), "{msg}");
    assert!(msg.contains("exited with status 3"), "{msg}");
    assert!(msg.contains("(exit $exit_code)"), "{msg}");
    assert!(ran.log.contains("stdout of one"));
    assert!(ran.log.contains("stderr of one"));
    assert!(ran.log.contains("Command did not exit successfully"));
    assert!(ran.log.contains("Phase complete: BUILD State: FAILED"));
}

#[tokio::test]
async fn a_failing_finally_fails_the_phase() {
    let ran = run(
            "version: 0.2\nphases:\n  build:\n    commands: [\"true\"]\n    finally: [\"false\", \"echo after-finally-failure\"]\n",
        )
        .await;
    assert_eq!(ran.outcome.state, BuildState::Failed);
    assert!(!ran.log.contains("\nafter-finally-failure"), "{}", ran.log);
}

#[tokio::test]
async fn abort_in_install_ends_the_build() {
    let ran = run(r#"
version: 0.2
env:
  exported-variables: [SEEN]
phases:
  install:
    commands: ["export SEEN=install", "false"]
  pre_build:
    commands: ["export SEEN=pre"]
  build:
    commands: ["export SEEN=build"]
  post_build:
    commands: ["export SEEN=post"]
"#)
    .await;
    assert_eq!(ran.outcome.state, BuildState::Failed);
    assert_eq!(ran.outcome.exported["SEEN"], "install");
    assert_eq!(ran.phases.len(), 1);
    assert!(ran.log.contains("Phase POST_BUILD skipped"));
    assert!(
        ran.outcome
            .message
            .unwrap()
            .starts_with("phase INSTALL failed")
    );
}

#[tokio::test]
async fn continue_goes_on_but_the_build_still_fails() {
    let ran = run(r#"
version: 0.2
env:
  exported-variables: [SEEN, SUCCEEDING]
phases:
  pre_build:
    on-failure: CONTINUE
    commands: ["export SEEN=pre", "false"]
  build:
    commands: ["export SEEN=\"$SEEN,build\"", "export SUCCEEDING=$CODEBUILD_BUILD_SUCCEEDING"]
"#)
    .await;
    assert_eq!(ran.outcome.state, BuildState::Failed);
    assert_eq!(ran.outcome.exported["SEEN"], "pre,build");
    assert_eq!(ran.outcome.exported["SUCCEEDING"], "0");
}

#[tokio::test]
async fn post_build_runs_after_a_failed_build_phase() {
    let ran = run(r#"
version: 0.2
env:
  exported-variables: [SUCCEEDING, KIRO_OUTCOME]
phases:
  build:
    commands: ["export KIRO_OUTCOME=failed", "exit 7"]
  post_build:
    commands: ["export SUCCEEDING=$CODEBUILD_BUILD_SUCCEEDING"]
"#)
    .await;
    assert_eq!(ran.outcome.state, BuildState::Failed);
    assert_eq!(ran.outcome.exported["SUCCEEDING"], "0");
    // The environment of the shell that exited still carries into POST_BUILD.
    assert_eq!(ran.outcome.exported["KIRO_OUTCOME"], "failed");
    assert_eq!(ran.outcome.last_phase, Some(PhaseName::PostBuild));
    assert!(
        ran.outcome.message.unwrap().contains("status 7"),
        "the message names the failing phase's status"
    );
}

#[tokio::test]
async fn timeout_kills_the_process_group() {
    let ran = run_with(
        r#"
version: 0.2
phases:
  build:
    commands:
      - sleep 300 & echo $! > "$CODEBUILD_SRC_DIR/../bg.pid"
      - sleep 300
"#,
        Duration::from_millis(500),
        watch::channel(false).1,
    )
    .await;
    assert_eq!(ran.outcome.state, BuildState::TimedOut);
    assert!(ran.outcome.message.unwrap().contains("timed out"));
    let pgid = ran.phases[0].1;
    assert!(!process::group_exists(pgid), "the build's group is gone");
    let bg: i32 = std::fs::read_to_string(ran._dir.path().join("b1/bg.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        !process::is_alive(bg, None),
        "the background process is dead"
    );
}

#[tokio::test]
async fn stop_ends_the_build_stopped() {
    let (tx, rx) = watch::channel(false);
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        tx.send(true).unwrap();
        tx
    });
    let ran = run_with(
            "version: 0.2\nphases:\n  build:\n    commands: [\"sleep 300\"]\n  post_build:\n    commands: [\"echo never\"]\n",
            Duration::from_secs(120),
            rx,
        )
        .await;
    drop(stopper.await.unwrap());
    assert_eq!(ran.outcome.state, BuildState::Stopped);
    assert_eq!(ran.phases.len(), 1, "nothing runs after a stop");
    assert!(!process::group_exists(ran.phases[0].1));
}

#[tokio::test]
async fn sh_runs_the_same_script() {
    let ran = run(r#"
version: 0.2
env:
  shell: sh
  exported-variables: [A]
phases:
  build:
    commands: ["A=1", "false", "A=2"]
    finally: ["A=\"$A-finally\""]
  post_build:
    commands: ["A=\"$A-post\""]
"#)
    .await;
    assert_eq!(ran.outcome.state, BuildState::Failed);
    assert_eq!(ran.outcome.exported["A"], "1-finally-post");
    assert!(ran.log.contains("with shell sh"));
}

#[tokio::test]
async fn background_processes_keep_the_phases_in_one_group_until_the_end() {
    let ran = run(r#"
version: 0.2
phases:
  install:
    commands: ["sleep 300 &"]
  build:
    commands: ["true"]
  post_build:
    commands: ["true"]
"#)
    .await;
    assert_eq!(ran.outcome.state, BuildState::Succeeded);
    let groups: Vec<i32> = ran.phases.iter().map(|p| p.1).collect();
    assert_eq!(
        groups,
        vec![groups[0]; 3],
        "later phases join the first group"
    );
    assert!(
        !process::group_exists(groups[0]),
        "the background process dies with the build"
    );
    // Without a background process the group ends with its phase: a new one is made.
    let ran = run("version: 0.2\nphases:\n  build:\n    commands: [\"true\"]\n  post_build:\n    commands: [\"true\"]\n").await;
    assert_ne!(ran.phases[0].1, ran.phases[1].1);
}

#[test]
fn quoting_and_env_dumps() {
    assert_eq!(shell_quote("it's"), r"'it'\''s'");
    let env = parse_env_dump(b"A=1\0B=x=y\0junk\0C=\0");
    assert_eq!(env["A"], "1");
    assert_eq!(env["B"], "x=y");
    assert_eq!(env["C"], "");
    assert!(!env.contains_key("junk"));
    assert_eq!(resolve_shell(Some("zsh"), None), "zsh");
    assert_eq!(resolve_shell(None, Some("/nonexistent")), "sh");
}
