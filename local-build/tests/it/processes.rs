//! A build's processes: a time-out, a stop and a vanished build process each end the
//! build's whole process group, and nothing a build starts (in its own session, ignoring
//! SIGTERM) outlives it.

use crate::support::*;
use kiro_backends::testing::contract::build as contract;
use kiro_local_build::process::{self, SIGKILL};
use kiro_protocol::{BuildRunner, BuildState};
use std::time::Duration;

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
