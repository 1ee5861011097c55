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

use crate::support::{example, forge, tip};
use async_trait::async_trait;
use kiro_backends::aws::dynamo::DynamoLeaseStore;
use kiro_backends::aws::sqs::{SqsQueue, SqsSettings};
use kiro_backends::embedded::EmbeddedBoard;
use kiro_backends::embedded::{EmbeddedDb, QueueConfig, SqliteLeaseStore, SqliteQueue};
use kiro_backends::testing::moto;
use kiro_backends::testing::{Finished, InMemoryBuild, InMemoryBuilds};
use kiro_consumer::{Engine, EngineConfig, Ports, RetryPolicy};
use kiro_producer::Producer;
use kiro_protocol::ports::build::env as build_env;
use kiro_protocol::{
    Board, BuildState, Clock, DeadLetter, Delivery, Destination, DlqListing, DlqSelection, ItemId,
    JobState, LeaseStore, OutgoingMessage, PortError, ProjectKey, QueueDepth, Receipt,
    ReplayProgress, ReplayReport, Secret, SendOutcome, SystemClock, WorkQueue,
};
use kiro_telemetry::otel::{TraceIdLayer, keys, log_layer_to, otel_layer, tracer_provider_builder};
use kiro_worker::Config;
use opentelemetry::Value;
use opentelemetry::trace::{SpanId, SpanKind, TraceId};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
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

/// The assertions on one item's exported spans.
fn check_trace(
    spans: &[SpanData],
    delivered: &[Delivery],
    build: &InMemoryBuild,
    fence: u64,
    system: &str,
) {
    let names: Vec<String> = spans.iter().map(describe).collect();
    let find = |what: &str, f: &dyn Fn(&SpanData) -> bool| -> SpanData {
        let found: Vec<&SpanData> = spans.iter().filter(|s| f(s)).collect();
        assert_eq!(found.len(), 1, "one {what} span expected in {names:#?}");
        found[0].clone()
    };
    let is_item = |s: &SpanData| attr(s, keys::ITEM).as_deref() == Some(ITEM);
    let op = |s: &SpanData| attr(s, keys::MESSAGING_OPERATION_TYPE);
    let send = find("send", &|s| is_item(s) && op(s).as_deref() == Some("send"));
    let process = find("process", &|s| {
        is_item(s) && op(s).as_deref() == Some("process")
    });
    let worker = find("worker", &|s| is_item(s) && s.name == "worker");
    let trace = send.span_context.trace_id();

    // The producer's span is the root of the item's trace, with an X-Ray-shaped id.
    assert_eq!(send.parent_span_id, SpanId::INVALID, "send is a root");
    assert_xray_shaped(trace);
    assert_eq!(attr(&send, keys::PROJECT).as_deref(), Some(PROJECT));
    assert_eq!(attr(&send, keys::MESSAGING_SYSTEM).as_deref(), Some(system));

    // What the message carried to the consumer: the send span's context, as W3C
    // traceparent and as X-Ray AWSTraceHeader (on SQS: a message attribute and the system
    // attribute, read back by the adapter).
    let d = delivered
        .iter()
        .find(|d| d.group == PROJECT)
        .expect("the consumer received the item's message");
    let tp = format!("00-{}-{}-01", trace, send.span_context.span_id());
    assert_eq!(d.trace.traceparent.as_deref(), Some(tp.as_str()), "{d:?}");
    assert_eq!(
        d.attributes.get("traceparent").map(String::as_str),
        Some(tp.as_str()),
        "{d:?}"
    );
    let xray = d.trace.xray.as_deref().expect("an AWSTraceHeader");
    let t = trace.to_string();
    assert!(
        xray.starts_with(&format!(
            "Root=1-{}-{};Parent={};",
            &t[..8],
            &t[8..],
            send.span_context.span_id()
        )),
        "{xray}"
    );

    assert_eq!(send.span_kind, SpanKind::Producer);
    assert_eq!(process.span_kind, SpanKind::Consumer);

    // The consumer's span continues the producer's trace and links to the send span.
    assert_eq!(process.span_context.trace_id(), trace);
    assert_eq!(process.parent_span_id, send.span_context.span_id());
    assert!(process.parent_span_is_remote);
    assert!(
        process
            .links
            .iter()
            .any(|l| l.span_context.trace_id() == trace
                && l.span_context.span_id() == send.span_context.span_id()),
        "process links to send: {:?}",
        process.links
    );
    assert_eq!(
        attr(&process, keys::MESSAGING_SYSTEM).as_deref(),
        Some(system)
    );
    assert_eq!(attr(&process, keys::PROJECT).as_deref(), Some(PROJECT));
    assert_eq!(
        attr(&process, keys::BUILD_ID).as_deref(),
        Some(build.id.as_str())
    );
    assert_eq!(
        value(&process, keys::FENCE),
        Some(Value::I64(i64::try_from(fence).unwrap())),
        "kiro.fence of process"
    );

    // Under it: the build's end and the settlement (an ack).
    let children_of = |parent: &SpanData| -> Vec<SpanData> {
        spans
            .iter()
            .filter(|s| s.parent_span_id == parent.span_context.span_id())
            .cloned()
            .collect()
    };
    let under_process = children_of(&process);
    let finish = under_process
        .iter()
        .find(|s| s.name == "finish")
        .unwrap_or_else(|| panic!("a finish span under process in {names:#?}"));
    assert_eq!(
        attr(finish, keys::BUILD_ID).as_deref(),
        Some(build.id.as_str())
    );
    let settle = under_process
        .iter()
        .find(|s| attr(s, keys::MESSAGING_OPERATION_TYPE).as_deref() == Some("settle"))
        .unwrap_or_else(|| panic!("a settle span under process in {names:#?}"));
    assert_eq!(
        attr(settle, keys::MESSAGING_OPERATION_NAME).as_deref(),
        Some("ack")
    );

    // The build got the process span's context and the worker continued it.
    assert_eq!(
        build
            .req
            .env
            .get(build_env::TRACEPARENT)
            .map(String::as_str),
        Some(format!("00-{}-{}-01", trace, process.span_context.span_id()).as_str())
    );
    assert_eq!(worker.span_context.trace_id(), trace);
    assert_eq!(worker.parent_span_id, process.span_context.span_id());
    assert!(worker.parent_span_is_remote);
    assert_eq!(attr(&worker, keys::PROJECT).as_deref(), Some(PROJECT));
    let steps: Vec<String> = children_of(&worker)
        .iter()
        .map(|s| s.name.to_string())
        .collect();
    for step in ["checkout_step", "agent_step", "tests_step", "push_step"] {
        assert!(
            steps.iter().any(|s| s == step),
            "{step} under worker: {steps:?}"
        );
    }

    // The item's processing ends with its settlement: `process` outlives the build's
    // worker and the settle span.
    for (what, child) in [("worker", &worker), ("finish", finish), ("settle", settle)] {
        assert!(
            process.end_time >= child.end_time && process.start_time <= child.start_time,
            "process does not enclose {what}"
        );
    }

    // Every span of the run belongs to the item's one trace.
    for s in spans {
        assert_eq!(
            s.span_context.trace_id(),
            trace,
            "a span outside the item's trace: {}\nall: {names:#?}",
            describe(s)
        );
    }

    // Nothing secret anywhere: names, attributes, events, links.
    let all = format!("{spans:?}");
    for secret in [PLANTED_TOKEN, PLANTED_API_KEY] {
        assert!(!all.contains(secret), "a planted secret was exported");
    }
    assert!(!all.contains("ghp_"), "something token-like was exported");
}

/// The first 8 hex digits of an X-Ray trace id are its epoch second: close to now.
fn assert_xray_shaped(trace: TraceId) {
    let t = trace.to_string();
    let epoch = u64::from_str_radix(&t[..8], 16).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        epoch.abs_diff(now) < 24 * 60 * 60,
        "trace id {t} does not start with an epoch second near {now}"
    );
}

/// A span attribute.
fn value(s: &SpanData, key: &str) -> Option<Value> {
    s.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

/// A span attribute as a string.
fn attr(s: &SpanData, key: &str) -> Option<String> {
    value(s, key).map(|v| v.as_str().into_owned())
}

fn describe(s: &SpanData) -> String {
    format!(
        "{} trace={} span={} parent={}",
        s.name,
        s.span_context.trace_id(),
        s.span_context.span_id(),
        s.parent_span_id
    )
}

/// The real queue adapter, keeping every delivery it hands the consumer (what the
/// message carried) for the assertions.
#[derive(Debug)]
struct Observed {
    inner: Arc<dyn WorkQueue>,
    deliveries: Mutex<Vec<Delivery>>,
}

#[async_trait]
impl WorkQueue for Observed {
    fn destination(&self) -> Destination {
        self.inner.destination()
    }
    async fn send(&self, m: OutgoingMessage) -> Result<SendOutcome, PortError> {
        self.inner.send(m).await
    }
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, PortError> {
        let got = self.inner.receive(max, wait).await?;
        self.deliveries.lock().unwrap().extend(got.iter().cloned());
        Ok(got)
    }
    async fn extend(
        &self,
        r: &[Receipt],
        v: Duration,
    ) -> Result<Vec<Result<(), PortError>>, PortError> {
        self.inner.extend(r, v).await
    }
    async fn ack(&self, r: &Receipt) -> Result<(), PortError> {
        self.inner.ack(r).await
    }
    async fn ack_batch(&self, r: &[Receipt]) -> Result<Vec<Result<(), PortError>>, PortError> {
        self.inner.ack_batch(r).await
    }
    async fn release(&self, r: &Receipt, d: Duration) -> Result<(), PortError> {
        self.inner.release(r, d).await
    }
    async fn dead_letter(&self, d: &Delivery, l: &DeadLetter) -> Result<(), PortError> {
        self.inner.dead_letter(d, l).await
    }
    async fn dlq_list(&self, n: usize) -> Result<DlqListing, PortError> {
        self.inner.dlq_list(n).await
    }
    async fn dlq_replay_with(
        &self,
        s: &DlqSelection,
        dry: bool,
        progress: &mut dyn ReplayProgress,
    ) -> Result<ReplayReport, PortError> {
        self.inner.dlq_replay_with(s, dry, progress).await
    }
    async fn dlq_redrive(&self) -> Result<u64, PortError> {
        self.inner.dlq_redrive().await
    }
    async fn dlq_purge(&self) -> Result<u64, PortError> {
        self.inner.dlq_purge().await
    }
    async fn depth(&self) -> Result<QueueDepth, PortError> {
        self.inner.depth().await
    }
}

/// TEST STAND-IN for a build runner (CodeBuild, or the local runner's `kiro-local-build`
/// process): the in-memory runner of `kiro_backends::testing`, each of whose builds runs
/// the real worker pipeline, `kiro_worker::run`, on a task of this test's runtime instead
/// of in a separate process, so the worker's spans reach the test's exporter. The
/// worker's `Config` is made from the request's environment (what the consumer passed,
/// `TRACEPARENT` included) plus the runner's own secrets, and its ports come from the
/// worker's real wiring. Like a real build that ran the worker, the build SUCCEEDS and
/// exports the outcome's variables (`kiro_protocol::outcome::vars`); it is FAULT when the
/// worker's wiring fails. Idempotent on the key, as the build contract asks.
fn in_process_builds(dir: PathBuf) -> InMemoryBuilds {
    let n = AtomicUsize::new(0);
    InMemoryBuilds::running(move |req, id| {
        let n = n.fetch_add(1, Ordering::Relaxed) + 1;
        let cfg = worker_config(&req.env, dir.join(n.to_string()), id.as_str());
        Box::pin(async move {
            match kiro_worker::wiring::ports(&cfg).await {
                Ok(ports) => Finished {
                    state: BuildState::Succeeded,
                    exported: kiro_worker::run(&cfg, &ports).await.to_vars(),
                    message: None,
                },
                Err(f) => Finished {
                    state: BuildState::Fault,
                    exported: BTreeMap::new(),
                    message: Some(format!("{}: {}", f.class, f.reason)),
                },
            }
        })
    })
}

/// The one build that was started.
fn only(builds: &InMemoryBuilds) -> InMemoryBuild {
    let all = builds.builds();
    assert_eq!(all.len(), 1, "exactly one build: {all:?}");
    all[0].clone()
}

/// The worker's configuration for a build: the request's environment (the item, the
/// fence, `TRACEPARENT`, the settings), the build's id and directory, the secrets.
fn worker_config(env: &BTreeMap<String, String>, dir: PathBuf, id: &str) -> Config {
    let get = |k: &str| env.get(k).cloned();
    let d = Config::defaults();
    Config {
        item: get(build_env::ITEM),
        project: get(build_env::PROJECT),
        repo: get(build_env::REPO),
        branch: get(build_env::BRANCH),
        spec: get(build_env::SPEC),
        pr: get(build_env::PR),
        fence: get(build_env::FENCE),
        attempt: get(build_env::ATTEMPT),
        traceparent: get(build_env::TRACEPARENT),
        build_id: Some(id.to_owned()),
        git_base: get("KIRO_GIT_BASE").unwrap_or(d.git_base.clone()),
        build_dir: dir,
        agent_cmd: get("KIRO_AGENT_CMD").unwrap_or(d.agent_cmd.clone()),
        agent_timeout: Duration::from_secs(120).into(),
        test_cmd: get("KIRO_TEST_CMD").unwrap_or(d.test_cmd.clone()),
        test_timeout: Duration::from_secs(120).into(),
        backend: match get("KIRO_BACKEND").as_deref() {
            Some("aws") => kiro_runtime::Backend::Aws,
            _ => kiro_runtime::Backend::Embedded,
        },
        aws: kiro_runtime::AwsArgs {
            region: get("KIRO_AWS_REGION"),
            endpoint_url: get("KIRO_AWS_ENDPOINT_URL"),
        },
        leases: kiro_runtime::LeaseTableArgs {
            lease_table: get("KIRO_LEASE_TABLE"),
        },
        state_dir: get("KIRO_STATE_DIR").map(PathBuf::from),
        board_file: get("KIRO_BOARD_FILE").map(PathBuf::from),
        github: kiro_runtime::GithubArgs {
            token: Some(Secret::new(PLANTED_TOKEN)),
            ..d.github.clone()
        },
        kiro_api_key: Some(Secret::new(PLANTED_API_KEY)),
        ..d
    }
}
