//! The local build runner on real processes: the build contract suite, logs, time
//! limits, re-attaching from a new runner, vanished build processes, environment
//! inheritance and bad configuration. Builds run the real `kiro-local-build` binary
//! against buildspecs written to temporary directories.

use async_trait::async_trait;
use kiro_backends::testing::contract::build::{
    self as contract, BuildHarness, BuildScript, ScriptEnd,
};
use kiro_local_build::process::{self, SIGKILL};
use kiro_local_build::runner::{LAUNCH_GRACE, SPAWN_GRACE};
use kiro_local_build::{LocalBuildConfig, LocalBuildRunner};
use kiro_protocol::outcome::vars;
use kiro_protocol::{
    BranchName, BuildId, BuildRequest, BuildRunner, BuildState, Clock, ItemId, ManualClock,
    PortError, ProjectKey, SystemClock,
};
use kiro_statedb::EmbeddedDb;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;

const LAUNCHER: &str = env!("CARGO_BIN_EXE_kiro-local-build");

/// The contract's buildspec: exports the outcome variables and runs `$CONTRACT_SCRIPT`.
fn contract_buildspec() -> String {
    format!(
        "version: 0.2\nenv:\n  exported-variables: [{}]\nphases:\n  build:\n    commands:\n      - eval \"$CONTRACT_SCRIPT\"\n",
        vars::ALL.join(", ")
    )
}

/// A state directory with a buildspec and a runner on it.
#[derive(Debug)]
struct Local {
    dir: TempDir,
    runner: Arc<LocalBuildRunner>,
    db: EmbeddedDb,
}

impl Local {
    fn new(buildspec: &str) -> Self {
        Self::with(buildspec, Arc::new(SystemClock), |_| {})
    }

    fn with(
        buildspec: &str,
        clock: Arc<dyn Clock>,
        tweak: impl FnOnce(&mut LocalBuildConfig),
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let spec = dir.path().join("buildspec.yml");
        std::fs::write(&spec, buildspec).unwrap();
        let mut config = LocalBuildConfig::new(dir.path().join("state"), &spec, LAUNCHER);
        tweak(&mut config);
        let db = EmbeddedDb::open_dir(&config.state_dir).unwrap();
        let runner = Arc::new(LocalBuildRunner::new(db.clone(), clock, config).unwrap());
        Local { dir, runner, db }
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// A new runner on the same state directory (as a restarted consumer would make).
    fn reopen(&self, clock: Arc<dyn Clock>) -> LocalBuildRunner {
        let db = EmbeddedDb::open_dir(&self.state_dir()).unwrap();
        LocalBuildRunner::new(db, clock, self.runner.config().clone()).unwrap()
    }

    fn column(&self, id: &BuildId, column: &str) -> Option<i64> {
        let sql = format!("SELECT {column} FROM builds WHERE id = ?1");
        let id = id.as_str().to_owned();
        self.db
            .call_sync(move |c| Ok(c.query_row(&sql, [id], |r| r.get(0))?))
            .unwrap()
    }
}

fn request(key: &str, env: &[(&str, &str)], timeout: Duration) -> BuildRequest {
    BuildRequest {
        project: ProjectKey::parse("calc").unwrap(),
        item: ItemId::parse("CALC-1").unwrap(),
        idempotency_key: key.into(),
        source_version: BranchName::parse("feature/x").unwrap(),
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        timeout: Some(timeout),
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[async_trait]
impl BuildHarness for Local {
    fn runner(&self) -> Arc<dyn BuildRunner> {
        self.runner.clone()
    }

    fn request(&self, key: &str, script: &BuildScript) -> BuildRequest {
        let mut code: String = script
            .exports
            .iter()
            .map(|(k, v)| format!("export {k}={}; ", shell_quote(v)))
            .collect();
        code.push_str(match script.end {
            ScriptEnd::Succeed => "true",
            ScriptEnd::Fail => "false",
            ScriptEnd::RunUntilStopped => "sleep 600",
        });
        request(key, &[("CONTRACT_SCRIPT", &code)], Duration::from_secs(120))
    }

    async fn builds_started(&self) -> Result<usize, PortError> {
        self.db
            .call(|c| Ok(c.query_row("SELECT COUNT(*) FROM builds", [], |r| r.get::<_, i64>(0))?))
            .await
            .map(|n| usize::try_from(n).unwrap_or(0))
    }
}

kiro_backends::build_contract!(
    Local::new(&contract_buildspec()),
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)],
    // The local runner keeps every key, so `find` (for runners that forget) has nothing to
    // add: replaying a key returns its build.
    skip [a_started_build_is_found_by_its_key],
);

async fn wait(h: &Local, id: &BuildId) -> kiro_protocol::BuildStatus {
    contract::wait_finished(h, id).await
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

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
async fn timeout_ends_timed_out_and_kills_the_process_group() {
    let h = Local::new(
        r#"
version: 0.2
phases:
  build:
    commands:
      - sleep 300 & echo $! > "$CODEBUILD_SRC_DIR/bg.pid"
      - sleep 300
  post_build:
    commands: ["echo post-build-must-not-run"]
"#,
    );
    let id = h
        .runner
        .start(&request("timeout-1", &[], Duration::from_secs(1)))
        .await
        .unwrap();
    let st = wait(&h, &id).await;
    assert_eq!(st.state, BuildState::TimedOut, "{st:?}");
    assert!(st.message.unwrap().contains("timed out"));
    let pgid = i32::try_from(h.column(&id, "pgid").unwrap()).unwrap();
    assert!(
        !process::group_exists(pgid),
        "the build's process group is dead"
    );
    let bg: i32 = read(&h.runner.build_dir(&id).join("src/bg.pid"))
        .trim()
        .parse()
        .unwrap();
    assert!(
        !process::is_alive(bg, None),
        "the background process is dead"
    );
    assert!(!read(&h.runner.log_path(&id)).contains("\npost-build-must-not-run"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_outlives_its_runner_and_a_new_runner_sees_it_finish() {
    let h = Local::new(
        r#"
version: 0.2
env:
  exported-variables: [KIRO_OUTCOME]
phases:
  build:
    commands:
      - while [ ! -e "$GO_FILE" ]; do sleep 0.05; done
      - export KIRO_OUTCOME=succeeded
"#,
    );
    let go = h.dir.path().join("go");
    let go_str = go.to_string_lossy().into_owned();
    let req = request(
        "reattach-1",
        &[("GO_FILE", &go_str)],
        Duration::from_secs(120),
    );
    let id = {
        let first = h.reopen(Arc::new(SystemClock));
        let id = first.start(&req).await.unwrap();
        // The launcher records the state before the phase: wait for both.
        let st = contract::wait_for(&h, &id, "in its build phase", |s| {
            s.state == BuildState::InProgress && s.phase.is_some()
        })
        .await;
        assert_eq!(st.phase.as_deref(), Some("BUILD"));
        id
        // `first` is dropped here; the build keeps running.
    };
    let second = h.reopen(Arc::new(SystemClock));
    let st = second.status(std::slice::from_ref(&id)).await.unwrap();
    assert_eq!(st[0].state, BuildState::InProgress, "{st:?}");
    // Starting again with the same key re-attaches instead of starting a second build.
    assert_eq!(second.start(&req).await.unwrap(), id);
    assert_eq!(h.builds_started().await.unwrap(), 1);
    std::fs::write(&go, "").unwrap();
    let st = wait(&h, &id).await;
    assert_eq!(st.state, BuildState::Succeeded, "{st:?}");
    assert_eq!(st.exported["KIRO_OUTCOME"], "succeeded");
    let seen_by_second = second.status(std::slice::from_ref(&id)).await.unwrap();
    assert_eq!(seen_by_second[0].state, BuildState::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_build_process_is_reported_fault_and_its_leftovers_killed() {
    let h = Local::new("version: 0.2\nphases:\n  build:\n    commands: [\"sleep 300\"]\n");
    let id = h
        .runner
        .start(&request("killed-1", &[], Duration::from_secs(120)))
        .await
        .unwrap();
    contract::wait_for(&h, &id, "in a phase", |s| s.phase.is_some()).await;
    let pid = i32::try_from(h.column(&id, "pid").unwrap()).unwrap();
    let pgid = i32::try_from(h.column(&id, "pgid").unwrap()).unwrap();
    assert!(process::group_exists(pgid));
    process::signal(pid, SIGKILL).unwrap();
    let st = wait(&h, &id).await;
    assert_eq!(st.state, BuildState::Fault, "{st:?}");
    assert_eq!(st.message.as_deref(), Some("build process vanished"));
    let mut gone = false;
    for _ in 0..200 {
        if !process::group_exists(pgid) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(gone, "the vanished build's phase processes were killed");
}

/// A row as a runner records it before spawning the build process: `runner` crashed in
/// between (found by the fault suite, `tests/it/fault/`: the build was declared vanished
/// and its item's attempt burned).
fn record_unlaunched(h: &Local, id: &BuildId, buildspec: &Path, created_at: i64) {
    let (id, spec) = (
        id.as_str().to_owned(),
        buildspec.to_string_lossy().into_owned(),
    );
    let dir = h.runner.build_dir(&BuildId::new(id.clone()));
    let dir = dir.to_string_lossy().into_owned();
    h.db.call_sync(move |c| {
        Ok(c.execute(
            "INSERT INTO builds (seq, id, project, item, idempotency_key, source_version, state,
                                 env_json, timeout_ms, buildspec, build_dir, created_at)
             VALUES (1, ?1, 'calc', 'CALC-1', 'k', 'main', 'QUEUED', '{}', 60000, ?2, ?3, ?4)",
            rusqlite::params![id, spec, dir, created_at],
        )?)
    })
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_recorded_but_never_launched_is_launched_by_the_next_look() {
    let clock = ManualClock::default();
    let h = Local::with(
        "version: 0.2\nphases:\n  build:\n    commands: [\"echo ran > ran.txt\"]\n",
        Arc::new(clock.clone()),
        |_| {},
    );
    let id = BuildId::new("local:calc:1");
    let spec = h.runner.config().buildspec.clone();
    record_unlaunched(&h, &id, &spec, clock.now().millis());
    let st = h.runner.status(std::slice::from_ref(&id)).await.unwrap();
    assert_eq!(
        st[0].state,
        BuildState::Queued,
        "its starter may still launch it"
    );
    assert_eq!(h.column(&id, "pid"), None, "not launched twice at once");

    // Past the launch grace, whoever looks at it launches it; it runs once, to its end.
    clock.advance(LAUNCH_GRACE + Duration::from_secs(1));
    let st = h.runner.status(std::slice::from_ref(&id)).await.unwrap();
    assert!(!st[0].state.is_finished(), "{:?}", st[0]);
    let done = wait(&h, &id).await;
    assert_eq!(done.state, BuildState::Succeeded, "{done:?}");
    let ran = h.runner.build_dir(&id).join("src/ran.txt");
    assert_eq!(read(&ran), "ran\n");
    // Long after, it is still that one build, never declared vanished.
    clock.advance(SPAWN_GRACE * 2);
    let st = h.runner.status(std::slice::from_ref(&id)).await.unwrap();
    assert_eq!(st[0].state, BuildState::Succeeded);
}

#[tokio::test]
async fn a_stopped_build_never_launched_is_stopped_not_launched() {
    let clock = ManualClock::default();
    let h = Local::with(
        "version: 0.2\nphases:\n  build:\n    commands: [\"true\"]\n",
        Arc::new(clock.clone()),
        |_| {},
    );
    let id = BuildId::new("local:calc:1");
    record_unlaunched(&h, &id, Path::new("/nonexistent"), clock.now().millis());
    h.runner.stop(&id).await.unwrap();
    clock.advance(LAUNCH_GRACE + Duration::from_secs(1));
    let st = h.runner.status(std::slice::from_ref(&id)).await.unwrap();
    assert_eq!(
        st[0].state,
        BuildState::Queued,
        "not launched: a stop was asked"
    );
    assert_eq!(h.column(&id, "pid"), None);
    clock.advance(SPAWN_GRACE);
    let st = h.runner.status(std::slice::from_ref(&id)).await.unwrap();
    assert_eq!(st[0].state, BuildState::Stopped, "{:?}", st[0]);
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
async fn two_runners_racing_on_one_key_start_one_build() {
    let h = Local::new("version: 0.2\nphases:\n  build:\n    commands: [\"true\"]\n");
    let other = h.reopen(Arc::new(SystemClock));
    let req = request("race-1", &[], Duration::from_secs(60));
    let (a, b) = tokio::join!(h.runner.start(&req), other.start(&req));
    assert_eq!(a.unwrap(), b.unwrap());
    assert_eq!(h.builds_started().await.unwrap(), 1);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_is_recorded_by_the_build_process_and_kills_its_group() {
    let h = Local::new(
        "version: 0.2\nphases:\n  build:\n    commands: [\"sleep 300\"]\n    finally: [\"echo finally-ran\"]\n",
    );
    let id = h
        .runner
        .start(&request("stop-2", &[], Duration::from_secs(120)))
        .await
        .unwrap();
    contract::wait_for(&h, &id, "in a phase", |s| s.phase.is_some()).await;
    let pgid = i32::try_from(h.column(&id, "pgid").unwrap()).unwrap();
    h.runner.stop(&id).await.unwrap();
    let st = wait(&h, &id).await;
    assert_eq!(st.state, BuildState::Stopped);
    assert_eq!(st.message.as_deref(), Some("build stopped in phase BUILD"));
    assert!(!process::group_exists(pgid));
    assert!(read(&h.runner.log_path(&id)).contains("State: STOPPED"));
}

/// Nothing a build starts outlives it: a process in its own session that ignores
/// SIGTERM (as an agent in its own process group does), left behind by a time-out, a
/// stop, or a worker killed with SIGKILL, is gone by the time the build is recorded
/// finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_process_of_a_build_outlives_it() {
    // The "agent": a new session, SIGTERM ignored, its pid written down.
    let escape = r#"setsid sh -c 'trap "" TERM; echo $$ > "$CODEBUILD_SRC_DIR/agent.pid"; exec sleep 300' &"#;
    let h = Local::new(&format!(
        "version: 0.2\nphases:\n  build:\n    commands:\n      - |\n        {escape}\n        while [ ! -s \"$CODEBUILD_SRC_DIR/agent.pid\" ]; do sleep 0.02; done\n        eval \"$THEN\"\n"
    ));
    // The "worker" killed with SIGKILL: it starts the agent, then dies.
    let killed_worker = format!(
        "sh -c '{}; while [ ! -s \"$CODEBUILD_SRC_DIR/agent.pid\" ]; do sleep 0.02; done; kill -9 $$'",
        escape.replace('\'', r"'\''")
    );
    let cases: [(&str, String, Duration, BuildState); 3] = [
        (
            "timeout",
            "sleep 300".into(),
            Duration::from_secs(2),
            BuildState::TimedOut,
        ),
        (
            "stop",
            "sleep 300".into(),
            Duration::from_secs(120),
            BuildState::Stopped,
        ),
        (
            "killed-worker",
            killed_worker,
            Duration::from_secs(120),
            BuildState::Failed,
        ),
    ];
    for (name, then, timeout, want) in cases {
        let id = h
            .runner
            .start(&request(name, &[("THEN", &then)], timeout))
            .await
            .unwrap();
        let pid_file = h.runner.build_dir(&id).join("src/agent.pid");
        for _ in 0..400 {
            if !read(&pid_file).trim().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let agent: i32 = read(&pid_file).trim().parse().expect("the agent started");
        assert!(process::is_alive(agent, None), "{name}: the agent runs");
        if name == "stop" {
            h.runner.stop(&id).await.unwrap();
        }
        let st = wait(&h, &id).await;
        assert_eq!(st.state, want, "{name}: {st:?}");
        assert!(
            !process::is_alive(agent, None),
            "{name}: the agent {agent} outlived its build"
        );
    }
}
