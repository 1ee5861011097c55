//! The engine's metrics: which data points a success, a retried test failure, a dead
//! letter and lease contention produce (names, units, dimensions, values), recorded by
//! `MemoryMetrics` (test stand-in) on tokio's paused time.

use crate::support::*;
use kiro_consumer::{Engine, EngineConfig};
use kiro_protocol::*;
use kiro_telemetry::metrics::{MemoryMetrics, Unit, names};
use std::sync::Arc;
use std::time::Duration;

fn engine(h: &Harness, metrics: &MemoryMetrics) -> Engine {
    let cfg = EngineConfig {
        metrics: Some(Arc::new(metrics.clone())),
        ..Harness::config("c1")
    };
    h.engine_with(cfg, h.leases.clone())
}

/// How many data points of each name were recorded.
fn count(m: &MemoryMetrics, name: &str) -> usize {
    m.named(name).len()
}

#[tokio::test(start_paused = true)]
async fn a_success_records_started_finished_succeeded_duration_latency_and_coverage() {
    let h = Harness::new();
    let m = MemoryMetrics::new();
    h.send("A-1", "alpha").await;
    pass(Duration::from_secs(3)).await;
    let mut e = engine(&h, &m);
    e.tick(Duration::ZERO).await;
    assert_eq!(count(&m, names::BUILDS_STARTED), 1);
    let latency = m.named(names::DISPATCH_LATENCY);
    assert_eq!(latency.len(), 1);
    assert_eq!(latency[0].unit, Unit::Milliseconds);
    assert!(latency[0].value >= 3000.0, "{latency:?}");
    assert_eq!(count(&m, names::BUILDS_FINISHED), 0, "still running");

    h.runner.succeed("A-1");
    pass(Duration::from_secs(6)).await;
    let r = e.tick(Duration::ZERO).await;
    assert_eq!(r.succeeded, 1, "{r:?}");
    assert_eq!(count(&m, names::BUILDS_FINISHED), 1);
    assert_eq!(count(&m, names::BUILDS_SUCCEEDED), 1);
    assert_eq!(count(&m, names::BUILDS_FAILED), 0);
    assert_eq!(count(&m, names::TESTS_FAILED), 0);
    let duration = m.named(names::BUILD_DURATION);
    assert_eq!(duration.len(), 1);
    assert_eq!(duration[0].unit, Unit::Milliseconds);
    assert!(
        (6000.0..7000.0).contains(&duration[0].value),
        "started_at → now: {duration:?}"
    );
    assert!(
        duration[0].dimensions.is_empty(),
        "alarm metrics stay dimensionless"
    );
    let coverage = m.named(names::COVERAGE);
    assert_eq!(coverage.len(), 1);
    assert_eq!((coverage[0].value, coverage[0].unit), (91.0, Unit::Percent));
    assert!(
        m.all().iter().all(|p| p.at_ms.is_some()),
        "stamped by the clock"
    );
}

#[tokio::test(start_paused = true)]
async fn a_tests_failed_retry_counts_a_failed_build_by_class_then_a_success() {
    let h = Harness::new();
    let m = MemoryMetrics::new();
    h.send("A-1", "alpha").await;
    let mut e = engine(&h, &m);
    e.tick(Duration::ZERO).await;
    h.runner.fail("A-1", FailureClass::TestsFailed);
    pass(Duration::from_secs(6)).await;
    let r = e.tick(Duration::ZERO).await;
    assert_eq!(r.retried, 1, "{r:?}");
    assert_eq!(count(&m, names::BUILDS_FINISHED), 1);
    assert_eq!(count(&m, names::BUILDS_FAILED), 1);
    assert_eq!(count(&m, names::TESTS_FAILED), 1);
    let by_class = m.named(names::BUILDS_FAILED_BY_CLASS);
    assert_eq!(by_class.len(), 1);
    assert_eq!(
        by_class[0].dimensions,
        [("FailureClass".to_string(), "tests-failed".to_string())]
    );
    assert!(m.named(names::BUILDS_FAILED)[0].dimensions.is_empty());

    pass(Duration::from_secs(25)).await;
    let r = e.tick(Duration::ZERO).await;
    assert_eq!(r.started, 1, "{r:?}");
    assert_eq!(count(&m, names::BUILDS_STARTED), 2);
    assert_eq!(
        count(&m, names::DISPATCH_LATENCY),
        1,
        "latency is sampled on first deliveries only"
    );
    h.runner.succeed("A-1");
    pass(Duration::from_secs(6)).await;
    e.tick(Duration::ZERO).await;
    assert_eq!(count(&m, names::BUILDS_FINISHED), 2);
    assert_eq!(count(&m, names::BUILDS_SUCCEEDED), 1);
    assert_eq!(count(&m, names::BUILDS_FAILED), 1);
    assert_eq!(count(&m, names::DEAD_LETTERS), 0);
}

#[tokio::test(start_paused = true)]
async fn a_dead_letter_is_counted_once_with_its_failed_builds() {
    let h = Harness::new();
    let m = MemoryMetrics::new();
    h.send("A-1", "alpha").await;
    let mut e = engine(&h, &m);
    e.tick(Duration::ZERO).await;
    h.runner.fail("A-1", FailureClass::CoverageBelow);
    pass(Duration::from_secs(6)).await;
    let r = e.tick(Duration::ZERO).await;
    assert_eq!(r.dead_lettered, 1, "{r:?}");
    assert_eq!(m.sum(names::DEAD_LETTERS), 1.0);
    assert_eq!(count(&m, names::BUILDS_FAILED), 1);
    assert_eq!(count(&m, names::TESTS_FAILED), 0);
    assert_eq!(
        m.named(names::BUILDS_FAILED_BY_CLASS)[0].dimensions[0].1,
        "coverage-below"
    );
}

#[tokio::test(start_paused = true)]
async fn an_undecodable_message_is_a_dead_letter_without_a_build() {
    let h = Harness::new();
    let m = MemoryMetrics::new();
    h.send_body("not json at all".into(), "beta", DedupId::new("x2"))
        .await;
    let mut e = engine(&h, &m);
    e.tick(Duration::ZERO).await;
    assert_eq!(m.sum(names::DEAD_LETTERS), 1.0);
    assert_eq!(count(&m, names::BUILDS_STARTED), 0);
    assert_eq!(count(&m, names::BUILDS_FINISHED), 0);
}

#[tokio::test(start_paused = true)]
async fn lease_contention_is_counted() {
    let h = Harness::new();
    let m = MemoryMetrics::new();
    let project = ProjectKey::parse("alpha").unwrap();
    acquire_as(
        &*h.leases,
        &project,
        "someone-else",
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    h.send("A-1", "alpha").await;
    let mut e = engine(&h, &m);
    let r = e.tick(Duration::ZERO).await;
    assert_eq!(r.contention, 1, "{r:?}");
    assert_eq!(m.sum(names::LEASE_CONTENTION), 1.0);
    assert_eq!(count(&m, names::BUILDS_STARTED), 0);
}
