//! Benchmark: what it costs one consumer to supervise N in-flight builds on AWS.
//!
//! One engine takes N items of N projects (default 1,000) and supervises their builds
//! for M minutes of build time (default 30) until every build succeeds, on tokio's paused
//! clock (virtual time: no real waiting). Build status goes through the real
//! `CodeBuildRunner` on a mocked CodeBuild client (aws-smithy-mocks: every StartBuild and
//! BatchGetBuilds is a real SDK call, counted at the mock); the queue and leases are the
//! embedded SQLite adapters behind spies (`kiro_backends::testing::Spy`) whose observers
//! count the AWS calls the SQS and DynamoDB adapters make for each port call (`extend`
//! of k receipts = ⌈k/10⌉ ChangeMessageVisibilityBatch; every lease operation = one
//! DynamoDB call, as in `kiro_backends::aws::{sqs, dynamo}`); scale-in protection is a counting stand-in for
//! UpdateTaskProtection. Engine settings are the production defaults (lease 60 s renewed
//! every 20 s, visibility 300 s, status polled every 10 s).
//!
//! Prints the calls per service, AWS API calls per job per minute of build time (steady
//! state, and overall), the largest number of visibility and BatchGetBuilds calls in one
//! tick against ⌈n/10⌉ and ⌈n/100⌉, peak RSS (VmHWM) and CPU time. Asserts nothing.
//! Run: `cargo bench -p kiro-consumer --bench aws_supervision -- [JOBS] [BUILD_MINUTES]`.

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
use kiro_consumer::{Engine, EngineConfig, Ports, defaults};
use kiro_protocol::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// AWS API calls, by action.
#[derive(Debug, Default)]
struct Calls {
    sqs_receive: AtomicU64,
    sqs_visibility_batch: AtomicU64,
    sqs_delete: AtomicU64,
    sqs_change_visibility: AtomicU64,
    sqs_other: AtomicU64,
    ddb: AtomicU64,
    ddb_renew: AtomicU64,
    cb_start: AtomicU64,
    cb_batch_get: AtomicU64,
    cb_stop: AtomicU64,
    ecs_protection: AtomicU64,
}

impl Calls {
    fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
    fn bump(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
    fn sqs(&self) -> u64 {
        Self::get(&self.sqs_receive)
            + Self::get(&self.sqs_visibility_batch)
            + Self::get(&self.sqs_delete)
            + Self::get(&self.sqs_change_visibility)
            + Self::get(&self.sqs_other)
    }
    fn codebuild(&self) -> u64 {
        Self::get(&self.cb_start) + Self::get(&self.cb_batch_get) + Self::get(&self.cb_stop)
    }
    fn total(&self) -> u64 {
        self.sqs() + Self::get(&self.ddb) + self.codebuild() + Self::get(&self.ecs_protection)
    }
}

/// The SQS calls the SQS adapter makes for one call of the queue port (`extend` and
/// `ack_batch` of k receipts: ⌈k/10⌉ batch calls; a dead letter: send and delete). The
/// dead-letter console's calls and `destination` are no part of supervision.
fn count_sqs(calls: &Calls, c: &Call) {
    let batches = c.items.div_ceil(10) as u64;
    match c.method {
        "send" | "depth" => Calls::bump(&calls.sqs_other, 1),
        "receive" => Calls::bump(&calls.sqs_receive, 1),
        "extend" => Calls::bump(&calls.sqs_visibility_batch, batches),
        "ack" => Calls::bump(&calls.sqs_delete, 1),
        "ack_batch" => Calls::bump(&calls.sqs_delete, batches),
        "release" => Calls::bump(&calls.sqs_change_visibility, 1),
        "dead_letter" => Calls::bump(&calls.sqs_other, 2),
        _ => {}
    }
}

/// One DynamoDB call per call of the lease port (`jobs`, the operators' listing, is no
/// part of supervision).
fn count_ddb(calls: &Calls, c: &Call) {
    match c.method {
        "jobs" => {}
        "renew" => {
            Calls::bump(&calls.ddb, 1);
            Calls::bump(&calls.ddb_renew, 1);
        }
        _ => Calls::bump(&calls.ddb, 1),
    }
}

/// Counts UpdateTaskProtection calls (refresh every hour, like a 2-hour expiry).
#[derive(Debug)]
struct CountingProtection {
    calls: Arc<Calls>,
}

#[async_trait]
impl TaskProtection for CountingProtection {
    async fn set(&self, _protected: bool) -> Result<(), PortError> {
        Calls::bump(&self.calls.ecs_protection, 1);
        Ok(())
    }
    fn refresh_every(&self) -> Option<Duration> {
        Some(Duration::from_secs(3600))
    }
}

/// A mocked CodeBuild whose builds succeed `build_time` after they start.
fn codebuild(calls: Arc<Calls>, build_time: Duration) -> Client {
    let builds: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let by_token: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let (b, c) = (builds.clone(), calls.clone());
    let start = mock!(Client::start_build).then_compute_output(move |input| {
        Calls::bump(&c.cb_start, 1);
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
    let (b, c) = (builds, calls);
    let batch = mock!(Client::batch_get_builds).then_compute_output(move |input| {
        Calls::bump(&c.cb_batch_get, 1);
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
    let jobs = arg(0, 1_000).max(1);
    let build_minutes = arg(1, 30).max(1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(run(jobs as usize, build_minutes));
}

async fn run(n: usize, build_minutes: u64) {
    let wall = std::time::Instant::now();
    let (cpu_u0, cpu_s0) = cpu_seconds();
    let dir = tempfile::tempdir().expect("temp dir");
    let db = EmbeddedDb::open_dir(dir.path()).expect("state db");
    let clock = Arc::new(TokioClock::new());
    let calls = Arc::new(Calls::default());
    let sqlite_queue = Arc::new(
        SqliteQueue::new(
            db.clone(),
            clock.clone(),
            QueueConfig {
                visibility_timeout: defaults::duration(defaults::VISIBILITY),
                ..QueueConfig::default()
            },
        )
        .expect("queue"),
    );
    for i in 0..n {
        common::enqueue(&*sqlite_queue, &*clock, i, format!("p{i:05}")).await;
    }
    let c = calls.clone();
    let queue = Arc::new(Spy::new(sqlite_queue).with_observer(move |call| count_sqs(&c, call)));
    let c = calls.clone();
    let leases = Arc::new(
        Spy::new(Arc::new(
            SqliteLeaseStore::new(db, clock.clone(), defaults::duration(defaults::LEASE_SKEW))
                .expect("leases"),
        ))
        .with_observer(move |call| count_ddb(&c, call)),
    );
    let build_time = Duration::from_secs(build_minutes * 60);
    let runner = Arc::new(CodeBuildRunner::from_client(
        codebuild(calls.clone(), build_time),
        "kiro-worker",
    ));
    let cfg = EngineConfig {
        owner: "bench".into(),
        max_jobs: n,
        receive_wait: Duration::ZERO,
        ..EngineConfig::default()
    };
    let (renew_every, poll_every) = (cfg.renew_every, cfg.poll_every);
    let mut engine = Engine::new(
        cfg,
        Ports {
            queue,
            leases,
            builds: runner,
            board: None,
            clock,
            protection: Some(Arc::new(CountingProtection {
                calls: calls.clone(),
            })),
        },
    );

    let t0 = Instant::now();
    let mut ticks = 0u64;
    let (mut max_vis, mut max_batch, mut max_inflight) = (0u64, 0u64, 0usize);
    let mut violations = 0u64;
    let mut after_dispatch = 0u64;
    let mut before_settle = None;
    let mut supervising = Duration::ZERO;
    while engine.stats().totals.succeeded < n {
        let inflight_before = engine.active_count();
        let total_before = calls.total();
        let vis0 = Calls::get(&calls.sqs_visibility_batch);
        let batch0 = Calls::get(&calls.cb_batch_get);
        let r = engine.tick(Duration::ZERO).await;
        ticks += 1;
        let inflight = inflight_before + r.received;
        max_inflight = max_inflight.max(inflight);
        let vis = Calls::get(&calls.sqs_visibility_batch) - vis0;
        let batch = Calls::get(&calls.cb_batch_get) - batch0;
        max_vis = max_vis.max(vis);
        max_batch = max_batch.max(batch);
        if vis > inflight.div_ceil(10) as u64 || batch > inflight.div_ceil(100) as u64 {
            violations += 1;
        }
        if ticks == 1 {
            after_dispatch = calls.total();
        }
        if r.succeeded > 0 && before_settle.is_none() {
            // Everything before the tick that settles the first builds is supervision.
            before_settle = Some(total_before);
            supervising = t0.elapsed();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            t0.elapsed() < build_time * 3,
            "builds did not finish in three times their build time"
        );
    }
    let virtual_time = t0.elapsed();
    let (cpu_u1, cpu_s1) = cpu_seconds();
    let total = calls.total();
    let steady = before_settle
        .unwrap_or(total)
        .saturating_sub(after_dispatch);
    let steady_minutes = supervising.as_secs_f64() / 60.0;
    let job_minutes = n as f64 * build_minutes as f64;
    let g = Calls::get;

    println!(
        "jobs {n}, build time {build_minutes} min each (virtual), engine defaults: renew every {} s, poll every {} s",
        renew_every.as_secs(),
        poll_every.as_secs()
    );
    println!(
        "virtual run {:.1} min in {ticks} ticks (1 s apart), real time {:.1} s",
        virtual_time.as_secs_f64() / 60.0,
        wall.elapsed().as_secs_f64()
    );
    println!(
        "SQS: {} (ReceiveMessage {}, ChangeMessageVisibilityBatch {}, DeleteMessage(Batch) {}, ChangeMessageVisibility {}, other {})",
        calls.sqs(),
        g(&calls.sqs_receive),
        g(&calls.sqs_visibility_batch),
        g(&calls.sqs_delete),
        g(&calls.sqs_change_visibility),
        g(&calls.sqs_other)
    );
    println!(
        "DynamoDB: {} (lease renewals {})",
        g(&calls.ddb),
        g(&calls.ddb_renew)
    );
    println!(
        "CodeBuild: {} (StartBuild {}, BatchGetBuilds {}, StopBuild {})",
        calls.codebuild(),
        g(&calls.cb_start),
        g(&calls.cb_batch_get),
        g(&calls.cb_stop)
    );
    println!("ECS UpdateTaskProtection: {}", g(&calls.ecs_protection));
    println!(
        "AWS API calls: {total} in all = {:.3} per job per minute of build time",
        total as f64 / job_minutes
    );
    println!(
        "steady supervision (after the dispatch tick, before the first settle): {steady} calls over {:.1} min = {:.3} per job per minute",
        steady_minutes,
        steady as f64 / (n as f64 * steady_minutes.max(1.0 / 60.0))
    );
    println!(
        "per tick at most: {max_vis} visibility calls (bound ⌈{max_inflight}/10⌉ = {}), {max_batch} BatchGetBuilds calls (bound ⌈{max_inflight}/100⌉ = {}); ticks over a bound: {violations}",
        max_inflight.div_ceil(10),
        max_inflight.div_ceil(100)
    );
    println!(
        "peak RSS (VmHWM) {:.1} MiB, RSS now {:.1} MiB; CPU {:.2} s user + {:.2} s system",
        proc_status_mib("VmHWM:"),
        proc_status_mib("VmRSS:"),
        cpu_u1 - cpu_u0,
        cpu_s1 - cpu_s0
    );
}
