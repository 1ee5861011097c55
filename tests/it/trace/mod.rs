//! One trace per work item, in memory, across producer, consumer and worker.
//!
//! Owns the proof that a work item's spans form one X-Ray-shaped trace: the producer's
//! `send` span is the root; the consumer's `process` span is its child and links to it
//! (the messaging conventions); the `finish` and `settle` spans are children of
//! `process`; the worker's `worker` span is a child of `process` (through `TRACEPARENT`)
//! and the worker's steps are its children. Nothing secret the worker holds appears in
//! any exported span.
//!
//! Everything runs in one test process against the real library code: the producer's
//! and the consumer's ticks, and the whole worker pipeline (checkout of the quick-start
//! forge, the scripted agent under node, `npm test`, coverage, commit and push) run by
//! [`in_process_builds`], a test stand-in for the build runner. The spans go to an
//! [`InMemorySpanExporter`] through the production subscriber's layers
//! ([`TraceIdLayer`] + [`otel_layer`]), installed as this test thread's default only (the
//! tests use current-thread runtimes, so every task of a run is on that thread).
//!
//! The two tests differ only in the queue and lease wiring: the embedded SQLite queue and
//! lease store, or SQS and DynamoDB on moto (127.0.0.1).
//!
//! This module holds the two tests and their wiring (`World`, `Backend`); `check`, the
//! assertions on the exported spans; `stand_ins`, the observed queue and the in-process
//! build runner.

mod check;
mod stand_ins;

use crate::support::{example, forge, tip};
use check::check_trace;
use kiro_backends::aws::dynamo::DynamoLeaseStore;
use kiro_backends::aws::sqs::{SqsQueue, SqsSettings};
use kiro_backends::embedded::EmbeddedBoard;
use kiro_backends::embedded::{EmbeddedDb, QueueConfig, SqliteLeaseStore, SqliteQueue};
use kiro_backends::testing::moto;
use kiro_consumer::{Engine, EngineConfig, Ports, RetryPolicy};
use kiro_producer::Producer;
use kiro_protocol::{
    Board, Clock, ItemId, JobState, LeaseStore, ProjectKey, SystemClock, WorkQueue,
};
use kiro_telemetry::otel::{TraceIdLayer, log_layer_to, otel_layer, tracer_provider_builder};
use opentelemetry_sdk::trace::InMemorySpanExporter;
use stand_ins::{Observed, in_process_builds, only};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::TestWriter;
use tracing_subscriber::layer::SubscriberExt;

const ITEM: &str = "CALC-1";
const PROJECT: &str = "calc";

/// Secrets the build runner gives the worker (as CodeBuild would from Secrets Manager).
/// The forge is a `file://` one, so they are held but never needed; they must not show up
/// in any span.
const PLANTED_TOKEN: &str = "ghp_TraceTestPlantedToken0123456789abcdef";
const PLANTED_API_KEY: &str = "ksk_TraceTestPlantedKey0123456789abcdef";

/// A board with one item of the quick start (CALC-1 of acme/calc) and its pull request.
const BOARD: &str = r#"items:
  - id: CALC-1
    project: calc
    title: Add a subtract function
    status: For Implementation
    repo: acme/calc
    branch: feature/subtract
    spec: .kiro/specs/subtract
    pr: 1
    updated_at: "2026-11-01T10:00:00Z"
pull_requests:
  - repo: acme/calc
    number: 1
    head: feature/subtract
    title: Add a subtract function
"#;

const VISIBILITY: Duration = Duration::from_secs(60);
const LEASE_TTL: Duration = Duration::from_secs(30);

#[tokio::test]
async fn one_trace_per_item_through_the_embedded_queue() {
    let tmp = tempfile::tempdir().unwrap();
    let world = World::new(tmp.path());
    let db = EmbeddedDb::open_dir(&world.state).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let queue = SqliteQueue::new(
        db.clone(),
        clock.clone(),
        QueueConfig {
            visibility_timeout: VISIBILITY,
            ..QueueConfig::default()
        },
    )
    .unwrap();
    let leases = SqliteLeaseStore::new(db, clock, Duration::from_secs(1)).unwrap();
    world
        .run(Backend {
            queue: Arc::new(queue),
            leases: Arc::new(leases),
            // The worker's wiring finds the leases in KIRO_STATE_DIR (the default backend).
            worker_env: BTreeMap::new(),
            system: "kiro_sqlite",
        })
        .await;
}

#[tokio::test]
async fn one_trace_per_item_through_sqs_on_moto() {
    let tmp = tempfile::tempdir().unwrap();
    let world = World::new(tmp.path());
    let aws = moto::provision("trace").await;
    let settings = moto::settings();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut sqs = SqsSettings::new(aws.queue_url.clone(), aws.dlq_url.clone());
    sqs.visibility_timeout = VISIBILITY;
    let queue = SqsQueue::connect(&settings, sqs, clock.clone()).await;
    let leases =
        DynamoLeaseStore::connect(&settings, aws.table.clone(), clock, Duration::from_secs(1))
            .await;
    let worker_env = BTreeMap::from([
        ("KIRO_BACKEND".to_owned(), "aws".to_owned()),
        ("KIRO_AWS_REGION".to_owned(), settings.region.clone()),
        (
            "KIRO_AWS_ENDPOINT_URL".to_owned(),
            moto::moto().endpoint.clone(),
        ),
        ("KIRO_LEASE_TABLE".to_owned(), aws.table.clone()),
    ]);
    world
        .run(Backend {
            queue: Arc::new(queue),
            leases: Arc::new(leases),
            worker_env,
            system: "aws_sqs",
        })
        .await;
}

/// The queue and lease wiring one test uses.
struct Backend {
    queue: Arc<dyn WorkQueue>,
    leases: Arc<dyn LeaseStore>,
    /// Settings the worker needs to reach the same lease store (through the build env).
    worker_env: BTreeMap<String, String>,
    /// The `messaging.system` this queue reports.
    system: &'static str,
}

/// A forge with the quick-start repositories, a state directory and a one-item board.
struct World {
    state: PathBuf,
    board_file: PathBuf,
    builds_dir: PathBuf,
}

impl World {
    fn new(tmp: &Path) -> World {
        let state = forge(tmp);
        let board_file = tmp.join("board.yaml");
        std::fs::write(&board_file, BOARD).unwrap();
        World {
            state,
            board_file,
            builds_dir: tmp.join("builds"),
        }
    }

    /// The settings every build gets (as the local runner's base environment would).
    fn build_env(&self, backend: &Backend) -> BTreeMap<String, String> {
        let mut env = BTreeMap::from([
            (
                "KIRO_STATE_DIR".to_owned(),
                self.state.display().to_string(),
            ),
            (
                "KIRO_BOARD_FILE".to_owned(),
                self.board_file.display().to_string(),
            ),
            (
                "KIRO_GIT_BASE".to_owned(),
                format!("file://{}", self.state.join("forge").display()),
            ),
            (
                "KIRO_AGENT_CMD".to_owned(),
                format!(
                    "node {}",
                    example().join("agent/scripted-agent.mjs").display()
                ),
            ),
            ("KIRO_TEST_CMD".to_owned(), "npm test --silent".to_owned()),
        ]);
        env.extend(backend.worker_env.clone());
        env
    }

    /// Produce, consume, build and settle the item with an in-memory exporter installed,
    /// then check its trace.
    async fn run(&self, backend: Backend) {
        let exporter = InMemorySpanExporter::default();
        let provider = tracer_provider_builder("kiro-test")
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(log_layer_to(
                false,
                false,
                TestWriter::new(),
                EnvFilter::new("warn"),
            ))
            .with(TraceIdLayer)
            .with(otel_layer(&provider));
        // Tests running at the same time without a subscriber must not decide the
        // interest of callsites this one needs.
        let _guard = kiro_telemetry::testing::set_default(subscriber);

        let queue = Arc::new(Observed {
            inner: backend.queue.clone(),
            deliveries: Mutex::default(),
        });
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let db = EmbeddedDb::open_dir(&self.state).unwrap();
        let board: Arc<dyn Board> = Arc::new(EmbeddedBoard::open(&self.board_file, db).unwrap());
        let builds = Arc::new(in_process_builds(self.builds_dir.clone()));

        let produced = Producer::new(board.clone(), queue.clone(), clock.clone())
            .tick()
            .await
            .unwrap();
        assert_eq!(produced.enqueued.len(), 1, "{produced:?}");

        let mut engine = Engine::new(
            EngineConfig {
                owner: "trace-test".into(),
                max_jobs: 4,
                receive_wait: Duration::ZERO,
                receive_gap: Duration::ZERO,
                lease_ttl: LEASE_TTL,
                visibility: VISIBILITY,
                renew_every: Duration::from_secs(2),
                safety_margin: Duration::from_secs(2),
                poll_every: Duration::from_millis(200),
                board_every: None,
                build_timeout: Some(Duration::from_secs(600)),
                contention_delay: Duration::from_secs(5),
                retry: RetryPolicy::default(),
                build_env: self.build_env(&backend),
                item_agent_budget: kiro_consumer::defaults::duration(
                    kiro_consumer::defaults::ITEM_AGENT_BUDGET,
                ),
                metrics: None,
            },
            Ports {
                queue: queue.clone(),
                leases: backend.leases.clone(),
                builds: builds.clone(),
                board: Some(board),
                pulls: None,
                clock,
                protection: None,
            },
        );
        let project = ProjectKey::parse(PROJECT).unwrap();
        let item = ItemId::parse(ITEM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(300);
        let job = loop {
            engine.tick(Duration::ZERO).await;
            let job = backend.leases.job(&project, &item).await.unwrap();
            if let Some(j) = job.filter(|j| j.state.is_final())
                && engine.active_count() == 0
            {
                break j;
            }
            assert!(
                Instant::now() < deadline,
                "{ITEM} not settled in time; builds: {:?}",
                builds.builds()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        drop(engine);
        // The worker really ran: one build, and its commit on the forge.
        assert_eq!(
            (job.state, job.attempts),
            (JobState::Succeeded, 1),
            "{job:?}\nbuilds: {:?}",
            builds.builds()
        );
        let build = only(&builds);
        let remote = git2::Repository::open_bare(self.state.join("forge/acme/calc.git")).unwrap();
        let (msg, author, _) = tip(&remote, "feature/subtract", ".kiro/specs/subtract/tasks.md");
        assert!(msg.contains(".kiro/specs/subtract"), "{msg}");
        assert_eq!(author, "kiro-worker");

        provider.force_flush().unwrap();
        let spans = exporter.get_finished_spans().unwrap();
        let delivered = queue.deliveries.lock().unwrap().clone();
        check_trace(&spans, &delivered, &build, job.fence.0, backend.system);
    }
}
