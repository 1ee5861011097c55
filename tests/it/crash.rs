//! A consumer SIGKILLed while builds run: a new consumer re-attaches, exactly one build
//! runs per item, every item reaches a final state and nothing is lost.

use crate::support::*;
use kiro_protocol::JobState;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_consumer_is_replaced_without_duplicate_builds() {
    let bin = bin_dir();
    let tmp = tempfile::tempdir().unwrap();
    let state = forge(tmp.path());

    let mut env = pipeline_env(&state);
    // A slower agent, so the builds are surely running when the consumer dies.
    let agent = example().join("agent/scripted-agent.mjs");
    env.push((
        "KIRO_AGENT_CMD".into(),
        format!(
            "sh -c 'sleep 4; exec node {} \"$1\"' slow-agent",
            agent.display()
        ),
    ));

    produce_once(&bin, &env);

    let consumer_args: Vec<&str> = ["run", "--until-idle"]
        .into_iter()
        .chain(QUICK_RECOVERY.iter().copied())
        .collect();
    let mut first = Command::new(bin.join("kiro-consumer"))
        .args(&consumer_args)
        .envs(env.clone())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // Wait until a build is running under the first consumer.
    let s = State::open(&state);
    let deadline = Instant::now() + Duration::from_secs(90);
    let running = loop {
        let jobs = s.jobs().await;
        if let Some(j) = jobs
            .iter()
            .find(|j| j.state == JobState::Running && j.build_id.is_some())
        {
            break j.clone();
        }
        assert!(Instant::now() < deadline, "no build started: {jobs:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    assert_eq!(
        s.builds_of(running.item.as_str()),
        ["IN_PROGRESS"],
        "the build outlives its consumer"
    );

    let second = Command::new(bin.join("kiro-consumer"))
        .args(&consumer_args)
        .envs(env)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{log}");
    assert!(
        log.contains("re-attached"),
        "the new consumer re-attached:\n{log}"
    );

    // Exactly one build for the item whose consumer died, and it finished.
    let builds = s.builds_of(running.item.as_str());
    assert_eq!(
        builds.len(),
        1,
        "exactly one build for {}: {builds:?}",
        running.item
    );
    let job = s.job(running.item.as_str()).await.unwrap();
    assert!(job.state.is_final(), "{job:?}");
    assert!(job.fence > running.fence, "taken over under a newer fence");

    // Every enqueued item is final; nothing is left in flight.
    let jobs = s.jobs().await;
    assert_eq!(jobs.len(), 4, "{jobs:?}");
    for j in &jobs {
        assert!(j.state.is_final(), "{j:?}");
        assert_eq!(
            s.builds_of(j.item.as_str()).len() as u32,
            j.attempts.max(1),
            "{j:?}"
        );
    }
    assert_eq!(
        jobs.iter()
            .filter(|j| j.state == JobState::Succeeded)
            .count(),
        3
    );
    assert!(s.depth().await.is_idle());
}
