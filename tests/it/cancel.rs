//! Cancellation end to end on the embedded default, with the real binaries: a card moved
//! out of the active statuses mid-build, and `kiro-consumer cancel` on a running item
//! whose build this machine cannot stop — the bumped fence alone keeps its worker from
//! pushing.

use crate::support::*;
use kiro_protocol::{ItemStatus, JobState};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The pipeline's environment with a slow agent (so the build is surely running when it
/// is cancelled) and a board file of this test's own (so it can be edited).
fn env_with(state: &std::path::Path, board: &std::path::Path) -> Vec<(String, String)> {
    let mut env = pipeline_env(state);
    let agent = example().join("agent/scripted-agent.mjs");
    env.retain(|(k, _)| k != "KIRO_BOARD_FILE" && k != "KIRO_AGENT_CMD");
    env.push(("KIRO_BOARD_FILE".into(), board.display().to_string()));
    env.push((
        "KIRO_AGENT_CMD".into(),
        format!(
            "sh -c 'sleep 3; exec node {} \"$1\"' slow-agent",
            agent.display()
        ),
    ));
    env
}

fn consumer(bin: &std::path::Path, env: &[(String, String)]) -> Child {
    Command::new(bin.join("kiro-consumer"))
        .args(["run", "--until-idle"])
        .args(QUICK_RECOVERY)
        .envs(env.iter().cloned())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The first job running a build (waits for it).
async fn running(s: &State) -> kiro_protocol::JobRecord {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let jobs = s.jobs().await;
        if let Some(j) = jobs
            .iter()
            .find(|j| j.state == JobState::Running && j.build_id.is_some())
        {
            return j.clone();
        }
        assert!(Instant::now() < deadline, "no build started: {jobs:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn branch_tip(s: &State, project: &str, branch: &str) -> String {
    let repo = s.remote(project);
    let b = repo.find_branch(branch, git2::BranchType::Local).unwrap();
    b.get().target().unwrap().to_string()
}

/// The item's branch in the quick-start board.
fn branch_of(item: &str) -> &'static str {
    match item {
        "CALC-1" => "feature/subtract",
        "CALC-2" => "feature/multiply",
        "GREET-1" => "feature/greet-name",
        _ => "feature/farewell",
    }
}

fn finish(child: Child) -> String {
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    log
}

/// A pipeline on this test's own board and state, with a build running.
struct Started {
    bin: std::path::PathBuf,
    _tmp: tempfile::TempDir,
    state: std::path::PathBuf,
    board: std::path::PathBuf,
    env: Vec<(String, String)>,
    consumer: Child,
    s: State,
    /// The job whose build runs, and its item.
    job: kiro_protocol::JobRecord,
    item: String,
    /// Its branch's tip before anything was pushed.
    before: String,
}

/// Produce once, start a consumer and wait until one item's build runs.
async fn start_until_a_build_runs() -> Started {
    let bin = bin_dir();
    let tmp = tempfile::tempdir().unwrap();
    let state = forge(tmp.path());
    let board = tmp.path().join("board.yaml");
    std::fs::copy(board_file(), &board).unwrap();
    let env = env_with(&state, &board);
    produce_once(&bin, &env);
    let c = consumer(&bin, &env);
    let s = State::open(&state);
    let job = running(&s).await;
    let item = job.item.to_string();
    let before = branch_tip(&s, job.project.as_str(), branch_of(&item));
    Started {
        bin,
        _tmp: tmp,
        state,
        board,
        env,
        consumer: c,
        s,
        job,
        item,
        before,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_of_a_running_item_bumps_the_fence_and_its_worker_cannot_push() {
    // `_tmp` is bound so the run's directory lives to the end of the test.
    let Started {
        bin,
        _tmp,
        env,
        consumer: c,
        s,
        job,
        item,
        before,
        ..
    } = start_until_a_build_runs().await;
    // This cancel cannot stop the build (no buildspec here): the fence must hold alone.
    let out = Command::new(bin.join("kiro-consumer"))
        .args(["cancel", &item, "--buildspec", "/nonexistent/buildspec.yml"])
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("fence bumped"), "{said}");
    assert!(said.contains("not stopped"), "{said}");
    let log = finish(c);
    let after = s.job(&item).await.unwrap();
    assert_eq!(after.state, JobState::Cancelled, "{after:?}\n{log}");
    assert!(after.fence > job.fence, "{after:?}");
    assert_eq!(
        branch_tip(&s, job.project.as_str(), branch_of(&item)),
        before,
        "the cancelled build's worker pushed nothing"
    );
    assert_eq!(s.builds_of(&item).len(), 1, "no second build");
    assert!(
        s.dead_letters()
            .await
            .iter()
            .all(|d| !d.body.contains(&item)),
        "not dead-lettered"
    );
    // The other items went on; nothing is left in flight.
    for j in s.jobs().await {
        assert!(j.state.is_final(), "{j:?}");
    }
    assert!(s.depth().await.is_idle());
    // `jobs` shows the cancelled state and the agent time of the budget.
    let jobs = Command::new(bin.join("kiro-consumer"))
        .arg("jobs")
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&jobs.stdout);
    assert!(table.contains("cancelled"), "{table}");
    assert!(
        table.contains("AGENT/BUDGET") && table.contains("/3h"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_card_moved_mid_build_is_cancelled_and_left_where_the_human_put_it() {
    let Started {
        _tmp,
        state,
        board,
        consumer: c,
        s,
        job,
        item,
        before,
        ..
    } = start_until_a_build_runs().await;
    // The human moves the card to a column of their own (the file's status, and its
    // updated_at so the file's status counts again).
    let text = std::fs::read_to_string(&board).unwrap();
    let at = text.find(&format!("- id: {item}\n")).unwrap();
    let (head, tail) = text.split_at(at);
    let tail = tail
        .replacen("status: For Implementation", "status: Backlog", 1)
        .replacen("updated_at: \"2026-11-01", "updated_at: \"2026-12-01", 1);
    std::fs::write(&board, format!("{head}{tail}")).unwrap();
    let log = finish(c);
    let after = s.job(&item).await.unwrap();
    assert_eq!(after.state, JobState::Cancelled, "{after:?}\n{log}");
    assert!(
        log.contains("item cancelled; card left where it is"),
        "{log}"
    );
    assert_eq!(s.builds_of(&item), ["STOPPED"], "the build was stopped");
    assert_eq!(
        branch_tip(&s, job.project.as_str(), branch_of(&item)),
        before,
        "nothing pushed"
    );
    let db = kiro_backends::embedded::EmbeddedDb::open_dir(&state).unwrap();
    let b = kiro_backends::embedded::EmbeddedBoard::open(&board, db).unwrap();
    let e = b.entry(&item).await.unwrap().unwrap();
    assert_eq!(
        (e.status, e.file_status.as_str()),
        (None, "Backlog"),
        "the card stays in the human's column"
    );
    assert_ne!(e.status, Some(ItemStatus::Failed));
    for j in s.jobs().await {
        assert!(j.state.is_final(), "{j:?}");
    }
    assert!(s.depth().await.is_idle());
}

/// On SQS and DynamoDB (moto): `kiro-consumer cancel --project` of an item still queued
/// behind another writes its record (a new DynamoDB transaction), and the consumer that
/// takes its message acknowledges it without a build; the project's other item runs.
#[tokio::test(flavor = "multi_thread")]
async fn cancel_of_a_queued_item_on_sqs_and_dynamodb_is_acknowledged_unbuilt() {
    use kiro_backends::testing::moto;
    let bin = bin_dir();
    let tmp = tempfile::tempdir().unwrap();
    let state = forge(tmp.path());
    let aws = moto::provision("cancel").await;
    let env = aws_pipeline_env(&state, &aws);
    produce_once(&bin, &env);
    let cancel = Command::new(bin.join("kiro-consumer"))
        .args(["cancel", "CALC-2", "--project", "calc"])
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&cancel.stdout);
    assert!(
        cancel.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&cancel.stderr)
    );
    assert!(said.contains("queued, not taken yet"), "{said}");
    let consume = Command::new(bin.join("kiro-consumer"))
        .args([
            "run",
            "--until-idle",
            "--poll-every",
            "500ms",
            "--receive-wait",
            "1s",
            "--visibility",
            "60s",
        ])
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&consume.stderr);
    assert!(consume.status.success(), "{log}");
    let jobs = Command::new(bin.join("kiro-consumer"))
        .args(["jobs", "--json"])
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    let jobs: Vec<kiro_protocol::JobRecord> = serde_json::from_slice(&jobs.stdout).unwrap();
    let state_of = |item: &str| {
        jobs.iter()
            .find(|j| j.item.as_str() == item)
            .map(|j| j.state)
    };
    assert_eq!(
        state_of("CALC-2"),
        Some(JobState::Cancelled),
        "{jobs:?}\n{log}"
    );
    assert_eq!(state_of("CALC-1"), Some(JobState::Succeeded), "{jobs:?}");
    let s = State::open(&state);
    assert!(s.builds_of("CALC-2").is_empty(), "never built");
    assert_eq!(s.builds_of("CALC-1").len(), 1);
}
