//! Benchmark: what it costs one consumer to supervise N in-flight builds on AWS, under
//! staggered (Poisson) arrivals and with free slots, with the binary's defaults.
//!
//! Work items of distinct projects arrive as a Poisson process whose rate keeps N builds in
//! flight on average (rate = N / build time, Little's law); each build runs M minutes
//! (default 30). The real run loop ([`Engine::run`]) takes them, with `max_jobs` = 2N so
//! slots are always free (the receive loop never stops), and every setting of
//! `EngineConfig::default` (= `kiro-consumer run`'s defaults, `kiro_consumer::defaults`).
//! Arrivals run for 2M minutes; the first M minutes ramp up, the second M are measured
//! (steady state: builds start, run and finish at the same rate); then the arrivals stop,
//! the builds drain, and the consumer idles for 10 minutes (measured too). Everything runs
//! on tokio's paused clock (virtual time: no real waiting).
//!
//! What is real and what is counted: build status goes through the real
//! `CodeBuildRunner` on a mocked CodeBuild client (aws-smithy-mocks: every StartBuild and
//! BatchGetBuilds is a real SDK call, counted at the mock); the queue and leases are the
//! embedded SQLite adapters behind spies (`kiro_backends::testing::Spy`) whose observers
//! count the AWS calls the SQS and DynamoDB adapters make for each port call (`extend` of
//! k receipts = ⌈k/10⌉ ChangeMessageVisibilityBatch; each lease operation = one DynamoDB
//! call, as in `kiro_backends::aws::{sqs, dynamo}`); scale-in protection is a counting
//! stand-in for UpdateTaskProtection. The producer's sends are not counted.
//!
//! Prints, for the measured window: calls per job-minute (job-minutes = the integral of
//! builds in flight over time) by service and action, receipts per visibility call and ids
//! per BatchGetBuilds call; the dispatch latency (sent → build started: what the receive
//! gap costs); calls per consumer-minute while idle; peak RSS (VmHWM) and CPU
//! time. Asserts nothing.
//! Run: `cargo bench -p kiro-consumer --bench aws_supervision -- [JOBS] [BUILD_MINUTES] [SEED]`.

#[path = "common/mod.rs"]
mod common;

use async_trait::async_trait;
use aws_sdk_codebuild::Client;
use aws_sdk_codebuild::config::retry::RetryConfig;
use aws_sdk_codebuild::operation::batch_get_builds::BatchGetBuildsOutput;
use aws_sdk_codebuild::operation::start_build::StartBuildOutput;
use aws_sdk_codebuild::types::{Build, ExportedEnvironmentVariable, StatusType};
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use kiro_backends::aws::codebuild::CodeBuildRunner;
use kiro_backends::embedded::{EmbeddedDb, QueueConfig, SqliteLeaseStore, SqliteQueue};
use kiro_backends::testing::{Call, Spy};
use kiro_consumer::clock::TokioClock;
use kiro_consumer::{Engine, EngineConfig, Ports, RunUntil, defaults};
use kiro_protocol::*;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const SQS: &str = "SQS";
const DDB: &str = "DynamoDB";
const CODEBUILD: &str = "CodeBuild";
const ECS: &str = "ECS";

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// AWS API calls by (service, action), builds in flight, and the batch sizes.
#[derive(Debug, Default)]
struct Meter {
    calls: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// Builds started and not yet acked.
    inflight: AtomicI64,
    /// Receipts carried by visibility extensions, ids by BatchGetBuilds calls.
    receipts_extended: AtomicU64,
    ids_polled: AtomicU64,
}

type Counts = BTreeMap<(&'static str, &'static str), u64>;

impl Meter {
    fn bump(&self, service: &'static str, action: &'static str, n: u64) {
        *self
            .calls
            .lock()
            .expect("lock")
            .entry((service, action))
            .or_default() += n;
    }
    fn bump_ids(&self, n: usize) {
        self.ids_polled.fetch_add(n as u64, Ordering::Relaxed);
    }
    fn snapshot(&self) -> Counts {
        self.calls.lock().expect("lock").clone()
    }
}

/// The calls of `to` not yet in `from`.
fn since(from: &Counts, to: &Counts) -> Counts {
    to.iter()
        .map(|(k, v)| (*k, v - from.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// The SQS calls the SQS adapter makes for one call of the queue port (`extend` and
/// `ack_batch` of k receipts: ⌈k/10⌉ batch calls; `release`: one
/// ChangeMessageVisibilityBatch; a dead letter: send and delete; `depth`: the attributes
/// of the queue and of its DLQ). `destination` makes no call.
fn count_sqs(m: &Meter, c: &Call) {
    let batches = c.items.div_ceil(10) as u64;
    match c.method {
        "receive" => m.bump(SQS, "ReceiveMessage", 1),
        "extend" => {
            m.bump(SQS, "ChangeMessageVisibilityBatch", batches);
            m.receipts_extended
                .fetch_add(c.items as u64, Ordering::Relaxed);
        }
        "ack" => {
            m.bump(SQS, "DeleteMessage", 1);
            m.inflight.fetch_sub(1, Ordering::Relaxed);
        }
        "ack_batch" => {
            m.bump(SQS, "DeleteMessageBatch", batches);
            m.inflight.fetch_sub(c.items as i64, Ordering::Relaxed);
        }
        "release" => m.bump(SQS, "ChangeMessageVisibilityBatch (give back)", 1),
        "dead_letter" => {
            m.bump(SQS, "SendMessage (dead letter)", 1);
            m.bump(SQS, "DeleteMessage", 1);
        }
        "depth" => m.bump(SQS, "GetQueueAttributes", 2),
        "send" => m.bump(SQS, "SendMessage", 1),
        _ => {}
    }
}

/// The DynamoDB call of each call of the lease port, as `aws::dynamo` makes it (`jobs`,
/// the operators' listing, is no part of supervision).
fn count_ddb(m: &Meter, c: &Call) {
    let action = match c.method {
        "open_session" => "PutItem (session open)",
        "renew_session" => "UpdateItem (session renewal)",
        "end_session" => "UpdateItem (session end)",
        "acquire" => "UpdateItem (acquire)",
        "release" => "UpdateItem (release)",
        "get" => "GetItem (lease)",
        "record" => "TransactWriteItems (job record)",
        "record_new" => "TransactWriteItems (job record, create)",
        "record_and_release" => "TransactWriteItems (job record + release)",
        "job" => "GetItem (job record)",
        _ => return,
    };
    m.bump(DDB, action, 1);
}

/// Counts UpdateTaskProtection calls (refresh every hour, like a 2-hour expiry).
#[derive(Debug)]
struct CountingProtection {
    meter: Arc<Meter>,
}

#[async_trait]
impl TaskProtection for CountingProtection {
    async fn set(&self, _protected: bool) -> Result<(), PortError> {
        self.meter.bump(ECS, "UpdateTaskProtection", 1);
        Ok(())
    }
    fn refresh_every(&self) -> Option<Duration> {
        Some(Duration::from_secs(3600))
    }
}

/// A mocked CodeBuild whose builds succeed `build_time` after they start.
fn codebuild(meter: Arc<Meter>, build_time: Duration) -> Client {
    let builds: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let by_token: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let (b, c) = (builds.clone(), meter.clone());
    let start = mock!(Client::start_build).then_compute_output(move |input| {
        c.bump(CODEBUILD, "StartBuild", 1);
        let token = input.idempotency_token().unwrap_or_default().to_owned();
        let mut tokens = by_token.lock().expect("lock");
        let n = tokens.len();
        let id = tokens
            .entry(token)
            .or_insert_with(|| format!("kiro-worker:{n:08}"))
            .clone();
        b.lock()
            .expect("lock")
            .entry(id.clone())
            .or_insert_with(Instant::now);
        StartBuildOutput::builder()
            .build_value(
                Build::builder()
                    .id(id)
                    .build_status(StatusType::InProgress)
                    .current_phase("QUEUED")
                    .build(),
            )
            .build()
    });
    let success = WorkerOutcome::success().to_vars();
    let (b, c) = (builds, meter);
    let batch = mock!(Client::batch_get_builds).then_compute_output(move |input| {
        c.bump(CODEBUILD, "BatchGetBuilds", 1);
        c.bump_ids(input.ids().len());
        let builds = b.lock().expect("lock");
        let now = Instant::now();
        let mut out = BatchGetBuildsOutput::builder();
        for id in input.ids() {
            let Some(started) = builds.get(id) else {
                out = out.builds_not_found(id);
                continue;
            };
            let done = now.duration_since(*started) >= build_time;
            let mut build = Build::builder().id(id);
            if done {
                build = build
                    .build_status(StatusType::Succeeded)
                    .current_phase("COMPLETED");
                for (k, v) in &success {
                    build = build.exported_environment_variables(
                        ExportedEnvironmentVariable::builder()
                            .name(k)
                            .value(v)
                            .build(),
                    );
                }
            } else {
                build = build
                    .build_status(StatusType::InProgress)
                    .current_phase("BUILD");
            }
            out = out.builds(build.build());
        }
        out.build()
    });
    mock_client!(
        aws_sdk_codebuild,
        RuleMode::MatchAny,
        [&start, &batch],
        |c| c.retry_config(RetryConfig::disabled())
    )
}

/// A `VmHWM`/`VmRSS` line of /proc/self/status, in MiB.
fn proc_status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// User and system CPU seconds of this process (/proc/self/stat, 100 ticks per second).
fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 100.0;
    // After the command name: state is field 0; utime and stime are fields 11 and 12.
    (ticks(11), ticks(12))
}

fn main() {
    let jobs = arg(0, 1_000).max(1) as usize;
    let build_minutes = arg(1, 30).max(1);
    let seed = arg(2, 1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(run(jobs, build_minutes, seed));
}

/// How long the consumer idles at the end (measured as calls per consumer-minute).
const IDLE: Duration = Duration::from_secs(600);

async fn run(n: usize, build_minutes: u64, seed: u64) {
    let wall = std::time::Instant::now();
    let (cpu_u0, cpu_s0) = cpu_seconds();
    let dir = tempfile::tempdir().expect("temp dir");
    let db = EmbeddedDb::open_dir(dir.path()).expect("state db");
    let clock = Arc::new(TokioClock::new());
    let meter = Arc::new(Meter::default());
    let cfg = EngineConfig {
        owner: "bench".into(),
        max_jobs: 2 * n,
        ..EngineConfig::default()
    };
    let sqlite_queue = Arc::new(
        SqliteQueue::new(
            db.clone(),
            clock.clone(),
            QueueConfig {
                visibility_timeout: cfg.visibility,
                ..QueueConfig::default()
            },
        )
        .expect("queue"),
    );
    let m = meter.clone();
    let queue = Arc::new(Spy::new(sqlite_queue.clone()).with_observer(move |c| count_sqs(&m, c)));
    let m = meter.clone();
    let leases = Arc::new(
        Spy::new(Arc::new(
            SqliteLeaseStore::new(db, clock.clone(), defaults::duration(defaults::LEASE_SKEW))
                .expect("leases"),
        ))
        .with_observer(move |c| count_ddb(&m, c)),
    );
    let build_time = Duration::from_secs(build_minutes * 60);
    let m = meter.clone();
    let runner = Arc::new(
        Spy::new(Arc::new(CodeBuildRunner::from_client(
            codebuild(meter.clone(), build_time),
            "kiro-worker",
        )))
        .with_observer(move |c| {
            if c.method == "start" {
                m.inflight.fetch_add(1, Ordering::Relaxed);
            }
        }),
    );
    let settings = format!(
        "receive wait {:?}, poll every {:?}, lease {:?} renewed every {:?}, visibility {:?}, max jobs {}",
        cfg.receive_wait,
        cfg.poll_every,
        cfg.lease_ttl,
        cfg.renew_every,
        cfg.visibility,
        cfg.max_jobs
    );
    let mut engine = Engine::new(
        cfg,
        Ports {
            queue,
            leases,
            builds: runner,
            board: None,
            pulls: None,
            clock: clock.clone(),
            protection: Some(Arc::new(CountingProtection {
                meter: meter.clone(),
            })),
        },
    );

    // Poisson arrivals at N per build time, for two build times.
    let rate = n as f64 / build_time.as_secs_f64();
    let arrivals_end = build_time * 2;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut at = Vec::new();
    let mut t = 0.0f64;
    loop {
        let u: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
        t += -u.ln() / rate;
        if t >= arrivals_end.as_secs_f64() {
            break;
        }
        at.push(Duration::from_secs_f64(t));
    }
    let total = at.len();
    let t0 = Instant::now();
    let cancel = CancellationToken::new();
    let peak_inflight = AtomicI64::new(0);
    let mut job_seconds = 0u64;
    let (mut window_start, mut window_end) = (None::<Counts>, None::<Counts>);
    let mut batch_items = (0u64, 0u64);
    let (mut idle_from, mut idle_end) = (None::<Counts>, None::<Counts>);
    let (stats, ()) = tokio::join!(engine.run(cancel.clone(), RunUntil::Shutdown), async {
        let arrivals = async {
            for (i, t) in at.iter().enumerate() {
                tokio::time::sleep_until(t0 + *t).await;
                common::enqueue(&*sqlite_queue, &*clock, i, format!("p{i:06}")).await;
            }
        };
        // Once a second: the builds in flight (for job-minutes) and the window's marks.
        let sampler = async {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let elapsed = t0.elapsed();
                let inflight = meter.inflight.load(Ordering::Relaxed);
                peak_inflight.fetch_max(inflight, Ordering::Relaxed);
                if window_start.is_none() && elapsed >= build_time {
                    window_start = Some(meter.snapshot());
                    meter.receipts_extended.store(0, Ordering::Relaxed);
                    meter.ids_polled.store(0, Ordering::Relaxed);
                } else if window_start.is_some() && window_end.is_none() {
                    job_seconds += inflight.max(0) as u64;
                    if elapsed >= arrivals_end {
                        window_end = Some(meter.snapshot());
                        batch_items = (
                            meter.receipts_extended.load(Ordering::Relaxed),
                            meter.ids_polled.load(Ordering::Relaxed),
                        );
                    }
                } else if window_end.is_some() && inflight <= 0 {
                    break;
                }
            }
            // Every build settled: a minute for the last releases, then the idle window.
            tokio::time::sleep(Duration::from_secs(60)).await;
            idle_from = Some(meter.snapshot());
            tokio::time::sleep(IDLE).await;
            idle_end = Some(meter.snapshot());
        };
        tokio::join!(arrivals, sampler);
        cancel.cancel();
    });
    let (cpu_u1, cpu_s1) = cpu_seconds();
    let window = since(
        window_start.as_ref().expect("window"),
        window_end.as_ref().expect("window"),
    );
    let idle = since(
        idle_from.as_ref().expect("idle"),
        idle_end.as_ref().expect("idle"),
    );
    let job_minutes = job_seconds as f64 / 60.0;
    let window_minutes = build_time.as_secs_f64() / 60.0;

    println!(
        "{n} builds in flight on average (Poisson arrivals, seed {seed}: {total} items over {} min), {build_minutes} min each (virtual); {settings}",
        arrivals_end.as_secs() / 60
    );
    println!(
        "virtual run {:.1} min, real time {:.1} s; {} builds started, {} succeeded, {} cancelled; at most {} in flight",
        t0.elapsed().as_secs_f64() / 60.0,
        wall.elapsed().as_secs_f64(),
        stats.totals.started,
        stats.totals.succeeded,
        stats.totals.cancelled,
        peak_inflight.load(Ordering::Relaxed)
    );
    println!(
        "measured window: minutes {build_minutes}–{} (steady state), {job_minutes:.0} job-minutes ({:.0} in flight on average)",
        2 * build_minutes,
        job_minutes / window_minutes
    );
    let mut by_service: BTreeMap<&str, u64> = BTreeMap::new();
    for ((service, _), v) in &window {
        *by_service.entry(service).or_default() += v;
    }
    let all: u64 = window.values().sum();
    let row = |service: &str, action: &str, v: u64| {
        println!(
            "| {service} | {action} | {v} | {:.4} | {:.2} |",
            v as f64 / job_minutes,
            v as f64 / window_minutes
        );
    };
    println!("| service | action | calls | per job-minute | per consumer-minute |");
    println!("|---|---|---|---|---|");
    for ((service, action), v) in &window {
        row(service, action, *v);
    }
    for (service, v) in &by_service {
        row(&format!("**{service}**"), "all", *v);
    }
    row("**all**", "", all);
    let per_call = |items: u64, action: (&'static str, &'static str)| {
        let calls = window.get(&action).copied().unwrap_or(0) as f64;
        if calls > 0.0 {
            items as f64 / calls
        } else {
            0.0
        }
    };
    println!(
        "batches in the window: {:.1} receipts per ChangeMessageVisibilityBatch, {:.1} ids per BatchGetBuilds",
        per_call(batch_items.0, (SQS, "ChangeMessageVisibilityBatch")),
        per_call(batch_items.1, (CODEBUILD, "BatchGetBuilds"))
    );
    let mut latency = stats.dispatch_latency_ms.clone();
    latency.sort_unstable();
    let pct = |q: f64| {
        latency
            .get(((latency.len() as f64 * q) as usize).min(latency.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "dispatch latency (sent → build started, {} first deliveries): p50 {} ms, p99 {} ms, max {} ms",
        latency.len(),
        pct(0.5),
        pct(0.99),
        latency.last().copied().unwrap_or(0)
    );
    let idle_minutes = IDLE.as_secs_f64() / 60.0;
    let idle_all: u64 = idle.values().sum();
    println!(
        "idle (no build in flight, {} min): {idle_all} calls = {:.2} per consumer-minute ({})",
        IDLE.as_secs() / 60,
        idle_all as f64 / idle_minutes,
        idle.iter()
            .map(|((s, a), v)| format!("{s} {a}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "peak RSS (VmHWM) {:.1} MiB, RSS now {:.1} MiB; CPU {:.2} s user + {:.2} s system",
        proc_status_mib("VmHWM:"),
        proc_status_mib("VmRSS:"),
        cpu_u1 - cpu_u0,
        cpu_s1 - cpu_s0
    );
}
