//! Integration tests of the worker: the whole pipeline as a library call against real
//! parts — a bare git "forge" in a temp dir made from the quick-start example
//! repositories, the scripted stand-in agent (run with node), the real `npm test`, and
//! the embedded lease store, board and pull-request adapters over a real SQLite file.

mod checkout;
mod fixloop;
mod gates;
mod git_daemon;
mod handoff;
mod kiro;
mod pipeline;
mod repo_settings;
mod secrets;
mod settings;
mod settings_file;
mod steering;

use kiro_backends::embedded::{EmbeddedBoard, EmbeddedPulls};
use kiro_backends::embedded::{EmbeddedDb, SqliteLeaseStore};
use kiro_protocol::{Fence, LeaseStore, ProjectKey, SystemClock};
use kiro_worker::Config;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

pub fn quickstart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart")
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "test")
        .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
        .env("GIT_COMMITTER_NAME", "test")
        .env("GIT_COMMITTER_EMAIL", "test@example.invalid")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The embedded pull requests, recording the check runs the worker publishes (the
/// embedded forge has none; GitHub's are tested in kiro-github against wiremock).
#[derive(Debug)]
pub struct RecordingPulls {
    inner: EmbeddedPulls,
    pub checks: std::sync::Mutex<Vec<kiro_protocol::CheckReport>>,
}

#[async_trait::async_trait]
impl kiro_protocol::PullRequests for RecordingPulls {
    async fn get(
        &self,
        repo: &kiro_protocol::RepoName,
        pr: kiro_protocol::PrNumber,
    ) -> Result<Option<kiro_protocol::PullRequest>, kiro_protocol::PortError> {
        self.inner.get(repo, pr).await
    }
    async fn upsert_report(
        &self,
        repo: &kiro_protocol::RepoName,
        pr: kiro_protocol::PrNumber,
        report: &kiro_protocol::Report,
    ) -> Result<(), kiro_protocol::PortError> {
        self.inner.upsert_report(repo, pr, report).await
    }
    async fn comment(
        &self,
        repo: &kiro_protocol::RepoName,
        pr: kiro_protocol::PrNumber,
        comment: &kiro_protocol::Report,
    ) -> Result<(), kiro_protocol::PortError> {
        self.inner.comment(repo, pr, comment).await
    }
    async fn publish_check(
        &self,
        _repo: &kiro_protocol::RepoName,
        _pr: kiro_protocol::PrNumber,
        check: &kiro_protocol::CheckReport,
    ) -> Result<(), kiro_protocol::PortError> {
        self.checks.lock().unwrap().push(check.clone());
        Ok(())
    }
}

/// One test's world: forge, state directory, build directory, ports.
#[allow(missing_debug_implementations)]
pub struct World {
    pub root: tempfile::TempDir,
    pub board: EmbeddedBoard,
    pub pulls: EmbeddedPulls,
    pub lease: SqliteLeaseStore,
    pub ports: kiro_worker::Ports,
    pub recorded: Arc<RecordingPulls>,
}

impl World {
    /// A forge holding `acme/calc` and `acme/greeter` (one branch per spec), and the
    /// embedded ports over the quick-start board file.
    #[allow(clippy::new_without_default)]
    pub fn new() -> World {
        let root = tempfile::tempdir().unwrap();
        for name in ["calc", "greeter"] {
            let bare = root.path().join(format!("forge/acme/{name}.git"));
            std::fs::create_dir_all(&bare).unwrap();
            git(
                &bare,
                &["init", "--quiet", "--bare", "--initial-branch=main"],
            );
            let work = root.path().join(format!("seed-{name}"));
            copy_dir(&quickstart().join("repos").join(name), &work);
            git(&work, &["init", "--quiet", "--initial-branch=main"]);
            git(&work, &["add", "-A"]);
            git(&work, &["commit", "--quiet", "-m", "initial import"]);
            git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
            git(&work, &["push", "--quiet", "origin", "main"]);
            for spec in std::fs::read_dir(work.join(".kiro/specs")).unwrap() {
                let feature = spec.unwrap().file_name().into_string().unwrap();
                git(
                    &work,
                    &[
                        "push",
                        "--quiet",
                        "origin",
                        &format!("main:refs/heads/feature/{feature}"),
                    ],
                );
            }
        }
        let state = root.path().join("state");
        let board_file = quickstart().join("board.yaml");
        let mut ports = kiro_worker::wiring::embedded(&state, &board_file).unwrap();
        let db = EmbeddedDb::open_dir(&state).unwrap();
        let recorded = Arc::new(RecordingPulls {
            inner: EmbeddedPulls::open(&board_file, db.clone()).unwrap(),
            checks: Default::default(),
        });
        ports.pulls = recorded.clone();
        World {
            recorded,
            board: EmbeddedBoard::open(&board_file, db.clone()).unwrap(),
            pulls: EmbeddedPulls::open(&board_file, db.clone()).unwrap(),
            lease: SqliteLeaseStore::new(db, Arc::new(SystemClock), Duration::ZERO).unwrap(),
            ports,
            root,
        }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.root.path().join(p)
    }

    pub fn bare(&self, name: &str) -> PathBuf {
        self.path(&format!("forge/acme/{name}.git"))
    }

    /// The tip of `branch` on the forge.
    pub fn tip(&self, repo: &str, branch: &str) -> String {
        git(
            &self.bare(repo),
            &["rev-parse", &format!("refs/heads/{branch}")],
        )
    }

    /// Take the project's lease as the consumer would; returns its fence.
    pub async fn take_lease(&self, project: &str) -> Fence {
        self.hold(project, "test-consumer").await.fence
    }

    /// Take the project's lease as a consumer named `owner`: a session of its own (the
    /// name suffixed when it was used before), then the acquire.
    pub async fn hold(&self, project: &str, owner: &str) -> kiro_protocol::Lease {
        let p = ProjectKey::parse(project).unwrap();
        let mut id = owner.to_owned();
        let mut n = 0;
        let session = loop {
            match self.lease.open_session(&id, Duration::from_secs(600)).await {
                Ok(s) => break s,
                Err(_) if n < 10 => {
                    n += 1;
                    id = format!("{owner}.{n}");
                }
                Err(e) => panic!("open session: {e}"),
            }
        };
        self.lease.acquire(&p, &session).await.unwrap()
    }

    /// A worker configuration for one board item, as the consumer would pass it.
    pub fn config(&self, item: (&str, &str, &str, &str, &str, &str), fence: Fence) -> Config {
        let (id, project, repo, branch, spec, pr) = item;
        let agent = quickstart().join("agent/scripted-agent.mjs");
        Config {
            item: Some(id.into()),
            project: Some(project.into()),
            repo: Some(repo.into()),
            branch: Some(branch.into()),
            spec: Some(spec.into()),
            pr: Some(pr.into()),
            fence: Some(fence.0.to_string()),
            attempt: Some("1".into()),
            git_base: format!("file://{}", self.path("forge").display()),
            build_dir: self.path("build"),
            agent_cmd: format!("node {}", agent.display()),
            agent_timeout: Duration::from_secs(120).into(),
            test_cmd: "npm test --silent".into(),
            test_timeout: Duration::from_secs(120).into(),
            state_dir: Some(self.path("state")),
            board_file: Some(quickstart().join("board.yaml")),
            ..Config::defaults()
        }
    }
}

pub const CALC_1: (&str, &str, &str, &str, &str, &str) = (
    "CALC-1",
    "calc",
    "acme/calc",
    "feature/subtract",
    ".kiro/specs/subtract",
    "1",
);
pub const GREET_2: (&str, &str, &str, &str, &str, &str) = (
    "GREET-2",
    "greeter",
    "acme/greeter",
    "feature/farewell",
    ".kiro/specs/farewell",
    "2",
);
pub const CALC_2: (&str, &str, &str, &str, &str, &str) = (
    "CALC-2",
    "calc",
    "acme/calc",
    "feature/multiply",
    ".kiro/specs/multiply",
    "2",
);
