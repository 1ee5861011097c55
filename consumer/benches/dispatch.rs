//! Benchmark: the engine's throughput and dispatch latency on the embedded backend.
//!
//! Enqueues N items (default 10,000) over P projects (default 1,000), then runs the real
//! engine on the real SQLite queue and lease store with the in-memory build runner (builds
//! end at once, successfully), until every item succeeded. Prints jobs per second and
//! p50/p99 dispatch latency (message visible → build started). Run with
//! `scripts/bench.sh` (`cargo bench -p kiro-consumer --bench dispatch -- [ITEMS] [PROJECTS] [MAX_JOBS]`).

#[path = "common/mod.rs"]
mod common;

use kiro_backends::embedded::{EmbeddedDb, QueueConfig, SqliteLeaseStore, SqliteQueue};
use kiro_backends::testing::InMemoryBuilds;
use kiro_consumer::{Engine, EngineConfig, Ports, RetryPolicy};
use kiro_protocol::{Clock, SystemClock};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let items = arg(0, 10_000);
    let projects = arg(1, 1_000).max(1);
    let max_jobs = arg(2, 256).max(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let db = EmbeddedDb::open_dir(dir.path()).expect("state db");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let queue = Arc::new(
        SqliteQueue::new(
            db.clone(),
            clock.clone(),
            QueueConfig {
                visibility_timeout: Duration::from_secs(300),
                ..QueueConfig::default()
            },
        )
        .expect("queue"),
    );
    let leases =
        Arc::new(SqliteLeaseStore::new(db, clock.clone(), Duration::ZERO).expect("leases"));
    let builds = Arc::new(InMemoryBuilds::new());

    let t0 = Instant::now();
    for n in 0..items {
        common::enqueue(&*queue, &*clock, n, format!("p{:04}", n % projects)).await;
    }
    let enqueue = t0.elapsed();

    let cfg = EngineConfig {
        owner: "bench".into(),
        max_jobs,
        receive_wait: Duration::ZERO,
        receive_gap: Duration::ZERO,
        lease_ttl: Duration::from_secs(300),
        visibility: Duration::from_secs(300),
        renew_every: Duration::from_secs(100),
        safety_margin: Duration::from_secs(5),
        poll_every: Duration::ZERO,
        board_every: None,
        build_timeout: Some(Duration::from_secs(3600)),
        contention_delay: Duration::from_secs(1),
        retry: RetryPolicy::default(),
        build_env: Default::default(),
        item_agent_budget: kiro_consumer::defaults::duration(
            kiro_consumer::defaults::ITEM_AGENT_BUDGET,
        ),
        metrics: None,
    };
    let mut engine = Engine::new(
        cfg,
        Ports {
            queue,
            leases,
            builds: builds.clone(),
            board: None,
            pulls: None,
            clock,
            protection: None,
        },
    );
    let t1 = Instant::now();
    let mut ticks = 0u64;
    while engine.stats().totals.succeeded < items {
        engine.tick(Duration::ZERO).await;
        ticks += 1;
        assert!(
            t1.elapsed() < Duration::from_secs(1800),
            "benchmark did not finish in 30 minutes"
        );
    }
    let run = t1.elapsed();
    let stats = engine.stats();
    let mut lat = stats.dispatch_latency_ms.clone();
    lat.sort_unstable();
    println!(
        "items {items}, projects {projects}, max jobs in flight {max_jobs}, builds started {}",
        builds.starts()
    );
    println!(
        "enqueue: {:.0} messages/s ({:.2} s)",
        items as f64 / enqueue.as_secs_f64(),
        enqueue.as_secs_f64()
    );
    println!(
        "process: {:.0} jobs/s ({:.2} s, {ticks} ticks)",
        items as f64 / run.as_secs_f64(),
        run.as_secs_f64()
    );
    println!(
        "dispatch latency (visible → build started): p50 {} ms, p99 {} ms, max {} ms ({} samples)",
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(0),
        lat.len()
    );
}
