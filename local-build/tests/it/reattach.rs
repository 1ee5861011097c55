//! One build per key across runners: a build outlives its runner and a new runner on the
//! same state directory re-attaches to it; two runners racing on one key start one build;
//! a build recorded but never launched (its runner crashed in between) is launched by the
//! next look, or stopped if a stop was asked, never declared vanished.

use crate::support::*;
use kiro_backends::testing::contract::build::{self as contract, BuildHarness};
use kiro_local_build::runner::{LAUNCH_GRACE, SPAWN_GRACE};
use kiro_protocol::{BuildId, BuildRunner, BuildState, Clock, ManualClock, SystemClock};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

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
async fn two_runners_racing_on_one_key_start_one_build() {
    let h = Local::new("version: 0.2\nphases:\n  build:\n    commands: [\"true\"]\n");
    let other = h.reopen(Arc::new(SystemClock));
    let req = request("race-1", &[], Duration::from_secs(60));
    let (a, b) = tokio::join!(h.runner.start(&req), other.start(&req));
    assert_eq!(a.unwrap(), b.unwrap());
    assert_eq!(h.builds_started().await.unwrap(), 1);
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
