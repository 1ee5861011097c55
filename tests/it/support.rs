//! Shared helpers: where the binaries and the example are, and read-only views of a
//! state directory (job records, dead letters, builds, board, reports, git remotes).

use kiro_backends::embedded::{EmbeddedBoard, EmbeddedPulls};
use kiro_backends::embedded::{EmbeddedDb, QueueConfig, SqliteLeaseStore, SqliteQueue};
use kiro_protocol::{
    DeadLetterEntry, ItemStatus, JobRecord, LeaseStore, QueueDepth, SystemClock, WorkQueue,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// `kiro-consumer run` settings under which a crashed consumer is recovered from in seconds:
/// short leases and visibility, fast polls, short retries (the crash and fault suites).
pub const QUICK_RECOVERY: &[&str] = &[
    "--max-jobs",
    "4",
    "--lease-ttl",
    "3s",
    "--lease-skew",
    "0s",
    "--visibility",
    "4s",
    "--poll-every",
    "300ms",
    "--receive-wait",
    "300ms",
    "--retry-base",
    "1s",
    "--retry-max",
    "2s",
];

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The directory holding the built binaries; fails with instructions when they are missing.
pub fn bin_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let dir = target.join("debug");
    for bin in [
        "kiro-producer",
        "kiro-consumer",
        "kiro-worker",
        "kiro-local-build",
    ] {
        assert!(
            dir.join(bin).exists(),
            "{} is missing: run `cargo build --workspace --bins` first (scripts/test-all.sh does)",
            dir.join(bin).display()
        );
    }
    dir
}

pub fn example() -> PathBuf {
    repo_root().join("examples/quickstart")
}

pub fn board_file() -> PathBuf {
    example().join("board.yaml")
}

/// Read-only views of a state directory.
pub struct State {
    pub dir: PathBuf,
    pub db: EmbeddedDb,
}

impl State {
    pub fn open(dir: &Path) -> State {
        State {
            dir: dir.to_path_buf(),
            db: EmbeddedDb::open_dir(dir).expect("state db"),
        }
    }

    pub async fn jobs(&self) -> Vec<JobRecord> {
        SqliteLeaseStore::new(self.db.clone(), Arc::new(SystemClock), Duration::ZERO)
            .unwrap()
            .jobs()
            .await
            .unwrap()
    }

    pub async fn job(&self, item: &str) -> Option<JobRecord> {
        self.jobs()
            .await
            .into_iter()
            .find(|j| j.item.as_str() == item)
    }

    fn queue(&self) -> SqliteQueue {
        SqliteQueue::new(
            self.db.clone(),
            Arc::new(SystemClock),
            QueueConfig::default(),
        )
        .unwrap()
    }

    pub async fn dead_letters(&self) -> Vec<DeadLetterEntry> {
        self.queue().dlq_list(100).await.unwrap().entries
    }

    pub async fn depth(&self) -> QueueDepth {
        self.queue().depth().await.unwrap()
    }

    /// How many builds were ever started for `item`, and their states.
    pub fn builds_of(&self, item: &str) -> Vec<String> {
        let item = item.to_owned();
        self.db
            .call_sync(move |c| {
                let mut st = c
                    .prepare("SELECT state FROM builds WHERE item = ?1 ORDER BY seq")
                    .unwrap();
                let rows = st.query_map([item], |r| r.get::<_, String>(0)).unwrap();
                Ok(rows.map(|r| r.unwrap()).collect())
            })
            .unwrap()
    }

    pub async fn board_status(&self, item: &str) -> (Option<ItemStatus>, Option<String>) {
        let board = EmbeddedBoard::open(&board_file(), self.db.clone()).unwrap();
        let e = board.entry(item).await.unwrap().expect("board item");
        (e.status, e.note)
    }

    pub async fn report(&self, repo: &str, pr: u64) -> Option<(String, u64)> {
        let pulls = EmbeddedPulls::open(&board_file(), self.db.clone()).unwrap();
        pulls
            .reports()
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.repo.as_str() == repo && r.number.0 == pr)
            .map(|r| (r.report.markdown, r.revision))
    }

    /// The bare remote of `acme/<name>`.
    pub fn remote(&self, name: &str) -> git2::Repository {
        git2::Repository::open_bare(self.dir.join("forge/acme").join(format!("{name}.git")))
            .unwrap()
    }
}

/// The tip commit of `branch` in `repo`, with its message, author and the file at `path`.
pub fn tip(repo: &git2::Repository, branch: &str, path: &str) -> (String, String, Option<String>) {
    let commit = repo
        .find_branch(branch, git2::BranchType::Local)
        .unwrap()
        .get()
        .peel_to_commit()
        .unwrap();
    let file = commit
        .tree()
        .unwrap()
        .get_path(Path::new(path))
        .ok()
        .and_then(|e| e.to_object(repo).ok())
        .and_then(|o| {
            o.as_blob()
                .map(|b| String::from_utf8_lossy(b.content()).into_owned())
        });
    (
        commit.message().unwrap_or_default().to_owned(),
        commit.author().name().unwrap_or_default().to_owned(),
        file,
    )
}

/// A state directory under `tmp` whose forge holds the example repositories as bare
/// remotes (examples/quickstart/setup-forge.sh).
pub fn forge(tmp: &Path) -> PathBuf {
    let state = tmp.join("state");
    let setup = std::process::Command::new("bash")
        .arg(example().join("setup-forge.sh"))
        .arg(&state)
        .output()
        .unwrap();
    assert!(
        setup.status.success(),
        "{}",
        String::from_utf8_lossy(&setup.stderr)
    );
    state
}

/// `kiro-producer --once` with `env`; it must succeed.
pub fn produce_once(bin: &Path, env: &[(String, String)]) {
    let out = std::process::Command::new(bin.join("kiro-producer"))
        .arg("--once")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The environment the quick start gives the binaries.
pub fn pipeline_env(state: &Path) -> Vec<(String, String)> {
    let ex = example();
    vec![
        ("KIRO_STATE_DIR".into(), state.display().to_string()),
        ("KIRO_BOARD_FILE".into(), board_file().display().to_string()),
        (
            "KIRO_GIT_BASE".into(),
            format!("file://{}", state.join("forge").display()),
        ),
        (
            "KIRO_AGENT_CMD".into(),
            format!("node {}", ex.join("agent/scripted-agent.mjs").display()),
        ),
        ("KIRO_TEST_CMD".into(), "npm test --silent".into()),
        (
            "KIRO_BUILDSPEC".into(),
            repo_root().join("buildspec.yml").display().to_string(),
        ),
        (
            "KIRO_HEALTH_FILE".into(),
            state.join("consumer.health").display().to_string(),
        ),
    ]
}

/// [`pipeline_env`] with the queue on SQS and the leases on DynamoDB in `aws` (moto) and
/// the local build runner.
pub fn aws_pipeline_env(
    state: &Path,
    aws: &kiro_backends::testing::moto::Provisioned,
) -> Vec<(String, String)> {
    let mut env = pipeline_env(state);
    env.extend([
        ("KIRO_BACKEND".to_owned(), "aws".to_owned()),
        ("KIRO_AWS_REGION".to_owned(), "us-east-1".to_owned()),
        (
            "KIRO_AWS_ENDPOINT_URL".to_owned(),
            kiro_backends::testing::moto::moto().endpoint.clone(),
        ),
        ("KIRO_QUEUE_URL".to_owned(), aws.queue_url.clone()),
        ("KIRO_DLQ_URL".to_owned(), aws.dlq_url.clone()),
        ("KIRO_LEASE_TABLE".to_owned(), aws.table.clone()),
        ("KIRO_BUILD_RUNNER".to_owned(), "local".to_owned()),
        ("AWS_ACCESS_KEY_ID".to_owned(), "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), "test".to_owned()),
    ]);
    env
}
