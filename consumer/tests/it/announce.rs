//! The announcement of a final failure: a dead-lettered item gets a new comment on its pull
//! request that mentions its assignees; a retry announces nothing; a forge that refuses
//! the comment loses nothing (the dead letter and the board's mark stand).

use crate::support::*;
use kiro_backends::embedded::{EmbeddedBoard, EmbeddedDb, EmbeddedPulls};
use kiro_protocol::*;
use std::sync::Arc;
use std::time::Duration;

/// A board file with A-1 and its pull request `acme/calc#1`.
struct Forge {
    _dir: tempfile::TempDir,
    board: Arc<EmbeddedBoard>,
    pulls: Arc<EmbeddedPulls>,
}

impl Forge {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("board.yaml");
        std::fs::write(
            &file,
            "items:\n  - id: A-1\n    project: alpha\n    title: item A-1\n    status: queued\n    repo: acme/calc\n    branch: feature/x\n    spec: x\n    pr: 1\n    updated_at: \"1\"\n    assignees: [octo-cat, Copilot]\npull_requests:\n  - repo: acme/calc\n    number: 1\n    head: feature/x\n",
        )
        .unwrap();
        let db = EmbeddedDb::open_dir(dir.path()).unwrap();
        Forge {
            board: Arc::new(EmbeddedBoard::open(&file, db.clone()).unwrap()),
            pulls: Arc::new(EmbeddedPulls::open(&file, db).unwrap()),
            _dir: dir,
        }
    }
}

/// Send A-1 of alpha assigned to `assignees`, as the producer would.
async fn send_assigned(h: &Harness, assignees: &[&str]) -> MessageId {
    let item = BoardItem {
        id: "A-1".into(),
        project: "alpha".into(),
        title: "item A-1".into(),
        repo: "acme/calc".into(),
        branch: "feature/x".into(),
        spec: "x".into(),
        pr: "1".into(),
        updated_at: "1".into(),
        conflict: None,
        assignees: assignees.iter().map(|a| a.to_string()).collect(),
    }
    .validate()
    .unwrap();
    h.send_body(
        Envelope::new(item.clone(), TraceContext::default(), h.clock.now()).encode(),
        "alpha",
        item.dedup_id(),
    )
    .await
}

fn engine(h: &Harness, f: &Forge, pulls: Arc<dyn PullRequests>) -> kiro_consumer::Engine {
    h.engine_on_forge(Harness::config("c1"), f.board.clone(), Some(pulls))
}

#[tokio::test(start_paused = true)]
async fn a_dead_letter_is_announced_once_to_the_assignees_and_a_retry_is_not() {
    let h = Harness::new();
    let f = Forge::new();
    let sent = send_assigned(&h, &["octo-cat", "Copilot"]).await;
    let mut e = engine(&h, &f, f.pulls.clone());
    assert_eq!(e.tick(Duration::ZERO).await.started, 1);
    // A retryable failure: retried, nobody is told.
    h.runner.fail("A-1", FailureClass::TestsFailed);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(e.tick(Duration::ZERO).await.retried, 1);
    assert!(f.pulls.comments().await.unwrap().is_empty());
    // A failure that is not retried: dead-lettered and announced.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(e.tick(Duration::ZERO).await.started, 1);
    h.runner.fail("A-1", FailureClass::CoverageBelow);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(e.tick(Duration::ZERO).await.dead_lettered, 1);
    let comments = f.pulls.comments().await.unwrap();
    assert_eq!(comments.len(), 1, "{comments:?}");
    let c = &comments[0];
    assert_eq!(
        (c.repo.as_str(), c.number.0, c.item.as_str()),
        ("acme/calc", 1, "A-1")
    );
    assert!(
        c.body.starts_with(
            "@octo-cat @Copilot: `A-1` failed for good after 2 attempts and was dead-lettered (`coverage-below`)."
        ),
        "{}",
        c.body
    );
    assert!(
        c.body.contains(&format!("dlq replay --id {sent}")),
        "{}",
        c.body
    );
    // The sticky report is not the announcement: no report was written.
    assert!(f.pulls.reports().await.unwrap().is_empty());
}

/// Pull requests that refuse every comment.
#[derive(Debug)]
struct Refusing;

#[async_trait::async_trait]
impl PullRequests for Refusing {
    async fn get(&self, _: &RepoName, _: PrNumber) -> Result<Option<PullRequest>, PortError> {
        Ok(None)
    }
    async fn upsert_report(&self, _: &RepoName, _: PrNumber, _: &Report) -> Result<(), PortError> {
        Err(PortError::transient("refused"))
    }
    async fn comment(&self, _: &RepoName, _: PrNumber, _: &Report) -> Result<(), PortError> {
        Err(PortError::new(
            FailureClass::Throttled,
            "secondary rate limit",
        ))
    }
}

#[tokio::test(start_paused = true)]
async fn a_refused_announcement_loses_nothing() {
    let h = Harness::new();
    let f = Forge::new();
    send_assigned(&h, &[]).await;
    let mut e = engine(&h, &f, Arc::new(Refusing));
    assert_eq!(e.tick(Duration::ZERO).await.started, 1);
    h.runner.fail("A-1", FailureClass::PermanentInput);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(e.tick(Duration::ZERO).await.dead_lettered, 1);
    assert_eq!(h.queue.dlq_list(10).await.unwrap().entries.len(), 1);
    assert_eq!(h.job("alpha", "A-1").await.state, JobState::DeadLettered);
    let entry = f.board.entry("A-1").await.unwrap().unwrap();
    assert_eq!(entry.status, Some(ItemStatus::Failed));
    assert!(h.depth().await.is_idle());
}
