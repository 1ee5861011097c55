//! Cancellation and budgets: a card moved out of the active statuses withdraws its item
//! (at take, and within one poll round while its build runs); `cancel_item` fences a
//! running build out and its holder acknowledges the message; a spent agent budget
//! refuses the next attempt.

use crate::support::*;
use kiro_backends::embedded::{EmbeddedBoard, EmbeddedDb};
use kiro_backends::testing::Spy;
use kiro_protocol::*;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A board file holding of project alpha (as the harness sends them).
struct TestBoard {
    _dir: tempfile::TempDir,
    file: PathBuf,
    board: Arc<Spy<EmbeddedBoard>>,
}

fn board_text(a1: &str, a1_updated: &str) -> String {
    let item = |id: &str, status: &str, updated: &str| {
        format!(
            "  - id: {id}\n    project: alpha\n    title: item {id}\n    status: {status}\n    repo: acme/calc\n    branch: feature/x\n    spec: x\n    pr: 1\n    updated_at: \"{updated}\"\n"
        )
    };
    format!(
        "items:\n{}{}",
        item("A-1", a1, a1_updated),
        item("A-2", "queued", "1")
    )
}

impl TestBoard {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("board.yaml");
        std::fs::write(&file, board_text("queued", "1")).unwrap();
        let db = EmbeddedDb::open_dir(dir.path()).unwrap();
        let board = Arc::new(Spy::new(Arc::new(EmbeddedBoard::open(&file, db).unwrap())));
        TestBoard {
            _dir: dir,
            file,
            board,
        }
    }

    /// A human moves A-1 to another column (the file's status and its `updated_at`).
    fn move_a1(&self, status: &str) {
        std::fs::write(&self.file, board_text(status, "2")).unwrap();
    }
}

fn engine_with_board(h: &Harness, b: &TestBoard) -> kiro_consumer::Engine {
    h.engine_on_forge(Harness::config("c1"), b.board.clone(), None)
}

fn alpha() -> ProjectKey {
    ProjectKey::parse("alpha").unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_card_moved_mid_build_is_cancelled_within_one_poll_round() {
    let h = Harness::new();
    let b = TestBoard::new();
    h.send("A-1", "alpha").await;
    h.send("A-2", "alpha").await;
    let mut e = engine_with_board(&h, &b);
    let r = e.tick(Duration::ZERO).await;
    assert_eq!(r.started, 1, "{r:?}");
    let build = h.job("alpha", "A-1").await.build_id.unwrap();
    let fence = h.job("alpha", "A-1").await.fence;
    b.move_a1("backlog");
    // Within one poll interval (5s in the harness's config).
    pass(Duration::from_secs(5)).await;
    let r = e.tick(Duration::ZERO).await;
    assert_eq!(r.withdrawn, 1, "{r:?}");
    assert_eq!(h.runner.stopped(), vec![build], "the build is stopped");
    let job = h.job("alpha", "A-1").await;
    assert_eq!(job.state, JobState::Cancelled);
    assert_eq!(
        job.last_failure.as_ref().map(|f| f.reason.as_str()),
        Some("cancelled: the card was moved to \"backlog\""),
        "the record says where the card went"
    );
    assert!(job.fence > fence, "the cancel bumped the fence");
    assert!(
        !build_may_act(
            &*h.leases,
            &alpha(),
            &job.item,
            fence,
            job.history[0].build_id.as_ref()
        )
        .await
        .unwrap(),
        "the cancelled build may never act"
    );
    let entry = b.board.inner().entry("A-1").await.unwrap().unwrap();
    assert_eq!(entry.status, None, "the card stays where the human put it");
    assert_eq!(entry.file_status, "backlog");
    // Acknowledged, not retried, not dead-lettered: the project's next item goes on.
    assert!(h.queue.dlq_list(10).await.unwrap().entries.is_empty());
    pass(Duration::from_secs(1)).await;
    let r = e.tick(Duration::ZERO).await;
    assert_eq!(r.started, 1, "A-2 starts: {r:?}");
    assert_eq!(h.job("alpha", "A-2").await.state, JobState::Running);
    // One board read per poll round for all running builds, one per received batch.
    assert!(b.board.calls("statuses") <= 4, "{:?}", b.board.tally());
}

#[tokio::test(start_paused = true)]
async fn a_card_moved_while_queued_is_cancelled_before_any_build() {
    let h = Harness::new();
    let b = TestBoard::new();
    h.send("A-1", "alpha").await;
    b.move_a1("Won't do");
    let mut e = engine_with_board(&h, &b);
    let r = e.tick(Duration::ZERO).await;
    assert_eq!((r.withdrawn, r.started), (1, 0), "{r:?}");
    assert!(h.runner.builds().is_empty(), "no build started");
    assert_eq!(h.job("alpha", "A-1").await.state, JobState::Cancelled);
    assert!(h.depth().await.is_idle(), "the message was acknowledged");
}

#[tokio::test(start_paused = true)]
async fn cancel_fences_a_running_build_out_and_its_holder_acks_the_message() {
    let h = Harness::new();
    h.send("A-1", "alpha").await;
    h.send("A-2", "alpha").await;
    let mut e = h.engine("c1");
    e.tick(Duration::ZERO).await;
    let job = h.job("alpha", "A-1").await;
    let build = job.build_id.clone().unwrap();
    let done =
        kiro_consumer::cancel::cancel_item(&*h.leases, Some(&*h.runner), &*h.clock, "A-1", None)
            .await
            .unwrap();
    assert!(done.written.bumped);
    assert_eq!(done.written.fence, Fence(job.fence.0 + 1));
    assert_eq!(
        done.build.as_ref().map(|(id, r)| (id, r.is_ok())),
        Some((&build, true))
    );
    assert!(
        !build_may_act(&*h.leases, &alpha(), &job.item, job.fence, Some(&build))
            .await
            .unwrap(),
        "the worker's fence check refuses every side effect after the cancel"
    );
    // The holder polls the stopped build, finds its fence lost to the cancel, and acks.
    pass(Duration::from_secs(5)).await;
    let r = e.tick(Duration::ZERO).await;
    assert_eq!(r.withdrawn, 1, "{r:?}");
    assert_eq!(r.retried + r.dead_lettered, 0, "{r:?}");
    assert_eq!(h.job("alpha", "A-1").await.state, JobState::Cancelled);
    assert!(h.queue.dlq_list(10).await.unwrap().entries.is_empty());
    // Nothing lost for the project's other items.
    pass(Duration::from_secs(1)).await;
    let r = e.tick(Duration::ZERO).await;
    assert_eq!(r.started, 1, "{r:?}");
    h.runner.succeed("A-2");
    pass(Duration::from_secs(5)).await;
    e.tick(Duration::ZERO).await;
    assert_eq!(h.job("alpha", "A-2").await.state, JobState::Succeeded);
    assert!(h.depth().await.is_idle());
}

#[tokio::test(start_paused = true)]
async fn cancel_of_a_queued_item_acks_it_when_taken() {
    let h = Harness::new();
    h.send("A-1", "alpha").await;
    pass(Duration::from_secs(1)).await;
    let err = kiro_consumer::cancel::cancel_item(&*h.leases, None, &*h.clock, "A-1", None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--project"), "{err}");
    let done =
        kiro_consumer::cancel::cancel_item(&*h.leases, None, &*h.clock, "A-1", Some(&alpha()))
            .await
            .unwrap();
    assert_eq!(done.was, None);
    let mut e = h.engine("c1");
    let r = e.tick(Duration::ZERO).await;
    assert_eq!((r.withdrawn, r.started), (1, 0), "{r:?}");
    assert!(h.depth().await.is_idle());
    // A message sent after the cancel (the card moved back to ready) runs.
    pass(Duration::from_secs(1)).await;
    let again = BoardItem {
        id: "A-1".into(),
        project: "alpha".into(),
        title: "again".into(),
        repo: "acme/calc".into(),
        branch: "feature/x".into(),
        spec: "x".into(),
        pr: "1".into(),
        updated_at: "2".into(),
        conflict: None,
        assignees: Vec::new(),
    }
    .validate()
    .unwrap();
    h.send_body(
        Envelope::new(again.clone(), TraceContext::default(), h.clock.now()).encode(),
        "alpha",
        again.dedup_id(),
    )
    .await;
    let r = e.tick(Duration::ZERO).await;
    assert_eq!(r.started, 1, "{r:?}");
}

#[tokio::test(start_paused = true)]
async fn a_spent_agent_budget_refuses_the_next_attempt() {
    let h = Harness::new();
    h.send("A-1", "alpha").await;
    let metrics = kiro_telemetry::metrics::MemoryMetrics::new();
    let cfg = kiro_consumer::EngineConfig {
        item_agent_budget: Duration::from_secs(600),
        metrics: Some(Arc::new(metrics.clone())),
        ..Harness::config("c1")
    };
    let mut e = h.engine_with(cfg, h.leases.clone());
    e.tick(Duration::ZERO).await;
    let mut o = WorkerOutcome::failure(Failure::new(FailureClass::TestsFailed, "red"));
    o.agent_seconds = Some(601);
    h.runner.finish("A-1", BuildState::Failed, &o);
    pass(Duration::from_secs(5)).await;
    let r = e.tick(Duration::ZERO).await;
    assert_eq!(r.retried, 1, "{r:?}");
    assert_eq!(h.job("alpha", "A-1").await.agent_seconds, 601);
    let minutes = metrics.named(kiro_telemetry::metrics::names::AGENT_MINUTES);
    assert_eq!(
        minutes.len(),
        1,
        "one agent-minutes data point per finished build"
    );
    assert!(
        (minutes[0].value - 601.0 / 60.0).abs() < 1e-9,
        "{minutes:?}"
    );
    assert_eq!(
        minutes[0].dimensions,
        vec![("Project".to_owned(), "alpha".to_owned())]
    );
    // The retry comes back: no new attempt, a dead letter naming the budget.
    pass(Duration::from_secs(120)).await;
    let r = e.tick(Duration::ZERO).await;
    assert_eq!((r.started, r.dead_lettered), (0, 1), "{r:?}");
    assert_eq!(h.runner.builds_of("A-1").len(), 1, "no second build");
    let job = h.job("alpha", "A-1").await;
    assert_eq!(job.state, JobState::DeadLettered);
    let f = job.last_failure.unwrap();
    assert_eq!(f.class, FailureClass::BudgetSpent);
    for part in ["\"A-1\"", "10m01s", "10m", "--item-agent-budget"] {
        assert!(f.reason.contains(part), "{part} in {}", f.reason);
    }
    let letters = h.queue.dlq_list(10).await.unwrap().entries;
    assert_eq!(letters[0].letter.class, FailureClass::BudgetSpent);
}

/// Failed is the consumer's own mark of a dead letter: a replayed dead letter whose card
/// shows it still runs (only a column outside this system's statuses cancels).
#[tokio::test(start_paused = true)]
async fn a_replayed_dead_letter_whose_card_shows_failed_still_runs() {
    let h = Harness::new();
    let b = TestBoard::new();
    b.move_a1("Failed");
    h.send("A-1", "alpha").await;
    let mut e = engine_with_board(&h, &b);
    let r = e.tick(Duration::ZERO).await;
    assert_eq!((r.started, r.withdrawn), (1, 0), "{r:?}");
}

#[tokio::test(start_paused = true)]
async fn with_board_every_the_running_cards_are_read_that_often_not_every_round() {
    let h = Harness::new();
    let b = TestBoard::new();
    h.send("A-1", "alpha").await;
    let mut cfg = Harness::config("c1");
    cfg.board_every = Some(Duration::from_secs(15));
    let mut e = h.engine_on_forge(cfg, b.board.clone(), None);
    let r = e.tick(Duration::ZERO).await;
    assert_eq!(r.started, 1, "{r:?}");
    // One read for the received batch, one for the first poll round.
    assert_eq!(b.board.calls("statuses"), 2, "{:?}", b.board.tally());
    pass(Duration::from_secs(1)).await;
    b.move_a1("backlog");
    // The poll rounds at 5s and 10s poll the build but do not read the board.
    for _ in 0..2 {
        pass(Duration::from_secs(5)).await;
        let r = e.tick(Duration::ZERO).await;
        assert_eq!(r.withdrawn, 0, "{r:?}");
    }
    assert_eq!(b.board.calls("statuses"), 2, "{:?}", b.board.tally());
    assert_eq!(h.job("alpha", "A-1").await.state, JobState::Running);
    // The round at 16s is 15s after the last read.
    pass(Duration::from_secs(5)).await;
    let r = e.tick(Duration::ZERO).await;
    assert_eq!(r.withdrawn, 1, "{r:?}");
    assert_eq!(b.board.calls("statuses"), 3, "{:?}", b.board.tally());
    assert_eq!(h.job("alpha", "A-1").await.state, JobState::Cancelled);
}

/// A board whose reads never answer (a stalled forge, or one that asks to have its rate
/// limit waited out); its writes go to `inner`.
#[derive(Debug)]
struct StalledBoard(Arc<dyn Board>);

#[async_trait::async_trait]
impl Board for StalledBoard {
    async fn ready_items(&self) -> Result<Vec<BoardItem>, PortError> {
        self.0.ready_items().await
    }
    async fn set_status(
        &self,
        item: &str,
        status: ItemStatus,
        note: Option<&str>,
    ) -> Result<(), PortError> {
        self.0.set_status(item, status, note).await
    }
    async fn statuses(
        &self,
        _: &[String],
    ) -> Result<std::collections::HashMap<String, BoardStanding>, PortError> {
        std::future::pending().await
    }
    async fn set_status_from(
        &self,
        item: &str,
        from: &[ItemStatus],
        status: ItemStatus,
        note: Option<&str>,
    ) -> Result<StatusChange, PortError> {
        self.0.set_status_from(item, from, status, note).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_stalled_board_read_never_holds_the_loop_past_a_renewal() {
    let h = Harness::new();
    let b = TestBoard::new();
    h.send("A-1", "alpha").await;
    let cfg = Harness::config("c1");
    let limit = (cfg.renew_every / 2).min(cfg.visibility / 6);
    let mut e = h.engine_on_forge(cfg, Arc::new(StalledBoard(b.board.clone())), None);
    // The received batch's read and the poll round's are each abandoned within half a
    // renewal period (and a sixth of the visibility), withdrawing nothing; the build
    // starts and runs on.
    let started = tokio::time::Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(120), e.tick(Duration::ZERO))
        .await
        .expect("the tick ends although the board never answers");
    assert_eq!((r.started, r.withdrawn), (1, 0), "{r:?}");
    assert!(
        started.elapsed() <= limit * 2,
        "two abandoned reads: {:?}",
        started.elapsed()
    );
    // The session is renewed on time and the job goes on under its lease.
    for _ in 0..6 {
        pass(Duration::from_secs(5)).await;
        let r = tokio::time::timeout(Duration::from_secs(120), e.tick(Duration::ZERO))
            .await
            .expect("each tick ends");
        assert_eq!((r.cancelled, r.received), (0, 0), "{r:?}");
    }
    assert_eq!(e.active_count(), 1);
    let job = h.job("alpha", "A-1").await;
    assert_eq!(job.state, JobState::Running);
    h.runner.succeed("A-1");
    pass(Duration::from_secs(5)).await;
    tokio::time::timeout(Duration::from_secs(120), e.tick(Duration::ZERO))
        .await
        .expect("the settling tick ends");
    assert_eq!(h.job("alpha", "A-1").await.state, JobState::Succeeded);
}
