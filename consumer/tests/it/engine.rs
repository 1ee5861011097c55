//! Engine behaviour on the happy path and its failures: projects side by side, one build
//! per project in send order, what a build is given, acks in one batch per tick, retries
//! after backoff, dead letters (budget spent, permanent failure, unknown schema, a group
//! that is not the item's project), a replayed dead letter's fresh budget, and lease
//! contention that spends no attempt.

use crate::support::*;
use kiro_backends::testing::Spy;
use kiro_protocol::*;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(start_paused = true)]
async fn items_of_two_projects_run_side_by_side_and_succeed() {
    let h = Harness::new();
    h.send("A-1", "alpha").await;
    h.send("B-1", "beta").await;
    let mut e = h.engine("c1");
    let r = e.tick(Duration::ZERO).await;
    assert_eq!(r.started, 2, "{r:?}");
    assert_eq!(h.job("alpha", "A-1").await.state, JobState::Running);
    h.runner.succeed("A-1");
    h.runner.succeed("B-1");
    pass(Duration::from_secs(6)).await;
    let r = e.tick(Duration::ZERO).await;
    assert_eq!(r.succeeded, 2, "{r:?}");
    let job = h.job("alpha", "A-1").await;
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.attempts, 1);
    assert_eq!(job.coverage, Some(91.0));
    assert!(h.depth().await.is_idle());
    assert_eq!(e.active_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn one_build_per_project_in_send_order() {
    let h = Harness::new();
    for id in ["A-1", "A-2", "A-3"] {
        h.send(id, "alpha").await;
    }
    let mut e = h.engine("c1");
    let mut order = Vec::new();
    for _ in 0..3 {
        e.tick(Duration::ZERO).await;
        let running: Vec<_> = h
            .runner
            .builds()
            .iter()
            .filter(|b| b.state == BuildState::InProgress)
            .map(|b| b.req.item.to_string())
            .collect();
        assert_eq!(
            running.len(),
            1,
            "exactly one build of the project runs: {running:?}"
        );
        order.push(running[0].clone());
        h.runner.succeed(&running[0]);
        pass(Duration::from_secs(6)).await;
        e.tick(Duration::ZERO).await;
    }
    assert_eq!(order, ["A-1", "A-2", "A-3"]);
    assert!(h.depth().await.is_idle());
}

#[tokio::test(start_paused = true)]
async fn the_build_gets_the_item_and_the_fence() {
    let h = Harness::new();
    h.send("A-1", "alpha").await;
    let mut e = h.engine("c1");
    e.tick(Duration::ZERO).await;
    let b = &h.runner.builds_of("A-1")[0];
    let job = h.job("alpha", "A-1").await;
    assert_eq!(
        b.req.env.get("KIRO_ITEM_ID").map(String::as_str),
        Some("A-1")
    );
    assert_eq!(
        b.req.env.get("KIRO_BRANCH").map(String::as_str),
        Some("feature/x")
    );
    assert_eq!(
        b.req.env.get("KIRO_SPEC_PATH").map(String::as_str),
        Some(".kiro/specs/x")
    );
    assert_eq!(
        b.req.env.get("KIRO_FENCE").cloned(),
        Some(job.fence.to_string())
    );
    assert_eq!(job.build_id.as_ref(), Some(&b.id));
    // The worker learns the build's limit, to keep its own inside it.
    assert_eq!(b.req.timeout, Some(Duration::from_secs(3600)));
    assert_eq!(
        b.req.env.get("KIRO_BUILD_TIMEOUT").map(String::as_str),
        Some("1h")
    );
}

#[tokio::test(start_paused = true)]
async fn a_retryable_failure_is_retried_after_backoff_then_succeeds() {
    let h = Harness::new();
    h.send("A-1", "alpha").await;
    let mut e = h.engine("c1");
    e.tick(Duration::ZERO).await;
    h.runner.fail("A-1", FailureClass::TestsFailed);
    pass(Duration::from_secs(6)).await;
    let r = e.tick(Duration::ZERO).await;
    assert_eq!(r.retried, 1, "{r:?}");
    let job = h.job("alpha", "A-1").await;
    assert_eq!(job.state, JobState::Retrying);
    assert_eq!(
        job.last_failure.as_ref().map(|f| f.class),
        Some(FailureClass::TestsFailed)
    );
    // Within the backoff (base 10 s) nothing is started again.
    let r = e.tick(Duration::ZERO).await;
    assert_eq!(r.started, 0);
    pass(Duration::from_secs(25)).await;
    let r = e.tick(Duration::ZERO).await;
    assert_eq!(r.started, 1, "{r:?}");
    assert_eq!(h.runner.starts(), 2);
    h.runner.succeed("A-1");
    pass(Duration::from_secs(6)).await;
    e.tick(Duration::ZERO).await;
    let job = h.job("alpha", "A-1").await;
    assert_eq!((job.state, job.attempts), (JobState::Succeeded, 2));
    assert_eq!(job.history.len(), 2);
    assert_eq!(
        job.history[0].failure.as_ref().map(|f| f.class),
        Some(FailureClass::TestsFailed)
    );
}

#[tokio::test(start_paused = true)]
async fn the_budget_spent_dead_letters_with_reason_class_and_history() {
    let h = Harness::new();
    h.send("A-1", "alpha").await;
    let mut e = h.engine("c1");
    for _ in 0..3 {
        e.tick(Duration::ZERO).await;
        h.runner.fail("A-1", FailureClass::AgentFailed);
        pass(Duration::from_secs(6)).await;
        e.tick(Duration::ZERO).await;
        pass(Duration::from_secs(130)).await;
    }
    let job = h.job("alpha", "A-1").await;
    assert_eq!(job.state, JobState::DeadLettered);
    assert_eq!(job.attempts, 3);
    let dlq = h.queue.dlq_list(10).await.unwrap().entries;
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].letter.class, FailureClass::AgentFailed);
    assert!(
        dlq[0].letter.reason.contains("after 3 of 3 attempts"),
        "{}",
        dlq[0].letter.reason
    );
    assert_eq!(dlq[0].letter.attempts.len(), 3);
    assert_eq!(dlq[0].group, "alpha");
    assert!(h.depth().await.is_idle());
}

#[tokio::test(start_paused = true)]
async fn a_permanent_failure_is_dead_lettered_at_once() {
    let h = Harness::new();
    h.send("A-1", "alpha").await;
    let mut e = h.engine("c1");
    e.tick(Duration::ZERO).await;
    h.runner.fail("A-1", FailureClass::CoverageBelow);
    pass(Duration::from_secs(6)).await;
    let r = e.tick(Duration::ZERO).await;
    assert_eq!(r.dead_lettered, 1, "{r:?}");
    assert_eq!(h.runner.starts(), 1);
    assert_eq!(
        h.queue.dlq_list(10).await.unwrap().entries[0].letter.class,
        FailureClass::CoverageBelow
    );
}

#[tokio::test(start_paused = true)]
async fn an_unknown_schema_version_is_dead_lettered_without_a_build() {
    let h = Harness::new();
    h.send_body(
        r#"{"schema": 42, "item": {}}"#.into(),
        "alpha",
        DedupId::new("x1"),
    )
    .await;
    h.send_body("not json at all".into(), "beta", DedupId::new("x2"))
        .await;
    let mut e = h.engine("c1");
    let r = e.tick(Duration::ZERO).await;
    assert_eq!(r.dead_lettered, 2, "{r:?}");
    assert_eq!(h.runner.starts(), 0);
    let dlq = h.queue.dlq_list(10).await.unwrap().entries;
    assert!(
        dlq.iter()
            .all(|d| d.letter.class == FailureClass::PermanentInput)
    );
    assert!(
        dlq.iter()
            .any(|d| d.letter.reason.contains("unknown schema version 42"))
    );
}

#[tokio::test(start_paused = true)]
async fn contention_returns_the_message_without_spending_an_attempt() {
    let h = Harness::new();
    let project = ProjectKey::parse("alpha").unwrap();
    let other = acquire_as(
        &*h.leases,
        &project,
        "someone-else",
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    h.send("A-1", "alpha").await;
    let mut e = h.engine("c1");
    let r = e.tick(Duration::ZERO).await;
    assert_eq!((r.contention, r.started), (1, 0), "{r:?}");
    assert_eq!(h.runner.starts(), 0);
    // The holder lets go; after the contention delay the item runs with a fresh budget.
    h.leases.release(&other).await.unwrap();
    pass(Duration::from_secs(25)).await;
    let r = e.tick(Duration::ZERO).await;
    assert_eq!(r.started, 1, "{r:?}");
    assert_eq!(h.job("alpha", "A-1").await.attempts, 1);
}

#[tokio::test(start_paused = true)]
async fn a_replayed_dead_letter_runs_again_with_a_fresh_budget() {
    let h = Harness::new();
    h.send("A-1", "alpha").await;
    let mut e = h.engine("c1");
    e.tick(Duration::ZERO).await;
    h.runner.fail("A-1", FailureClass::CoverageBelow);
    pass(Duration::from_secs(6)).await;
    e.tick(Duration::ZERO).await;
    assert_eq!(h.job("alpha", "A-1").await.state, JobState::DeadLettered);
    let report = h
        .queue
        .dlq_replay(
            &DlqSelection {
                all: true,
                ..Default::default()
            },
            false,
        )
        .await
        .unwrap();
    assert_eq!(report.replayed.len(), 1);
    let r = e.tick(Duration::ZERO).await;
    assert_eq!(r.started, 1, "{r:?}");
    let job = h.job("alpha", "A-1").await;
    assert_eq!(
        (job.state, job.attempts, job.history.len()),
        (JobState::Running, 1, 2)
    );
}

#[tokio::test(start_paused = true)]
async fn the_successes_of_a_tick_are_acked_in_one_batch() {
    let h = Harness::new();
    let counting = Arc::new(Spy::new(h.queue.clone()));
    for (id, p) in [("A-1", "alpha"), ("B-1", "beta"), ("C-1", "gamma")] {
        h.send(id, p).await;
    }
    let mut e = kiro_consumer::Engine::new(
        Harness::config("c1"),
        kiro_consumer::Ports {
            queue: counting.clone(),
            leases: h.leases.clone(),
            builds: h.runner.clone(),
            board: None,
            pulls: None,
            clock: h.clock.clone(),
            protection: None,
        },
    );
    assert_eq!(e.tick(Duration::ZERO).await.started, 3);
    for id in ["A-1", "B-1", "C-1"] {
        h.runner.succeed(id);
    }
    pass(Duration::from_secs(6)).await;
    assert_eq!(e.tick(Duration::ZERO).await.succeeded, 3);
    assert_eq!(
        (counting.calls("ack_batch"), counting.items("ack_batch")),
        (1, 3),
        "one batch of three"
    );
    assert_eq!(counting.calls("ack"), 0);
    assert!(h.depth().await.is_idle());
}

/// A message whose group is not its item's project (sent by hand, or by a buggy
/// producer) is dead-lettered alone, as permanent input naming both; the good items of
/// that group still run (it used to make them exceed the max receive count).
#[tokio::test(start_paused = true)]
async fn a_message_whose_group_is_not_its_project_is_dead_lettered_alone() {
    let h = Harness::new();
    h.send_in_group("B-9", "beta", "alpha").await;
    h.send("A-1", "alpha").await;
    let mut e = h.engine("c1");
    for _ in 0..4 {
        e.tick(Duration::ZERO).await;
        for item in ["A-1", "B-9"] {
            if !h.runner.builds_of(item).is_empty() {
                h.runner.succeed(item);
            }
        }
        pass(Duration::from_secs(6)).await;
    }
    e.tick(Duration::ZERO).await;
    let dlq = h.queue.dlq_list(10).await.unwrap().entries;
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    assert_eq!(dlq[0].letter.class, FailureClass::PermanentInput);
    assert!(
        dlq[0].letter.reason.contains("group \"alpha\"")
            && dlq[0].letter.reason.contains("project \"beta\""),
        "{}",
        dlq[0].letter.reason
    );
    assert_eq!(h.job("alpha", "A-1").await.state, JobState::Succeeded);
    assert_eq!(h.runner.starts(), 1, "the stray item never built");
}
