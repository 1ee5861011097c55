//! One rehearsal of one rendered stack: provision, run the producer as the scheduler
//! starts it and the consumer as ECS runs it, let builds run the worker in the emulated
//! build image, and collect everything the assertions ([`super::verdict`]) look at.
//!
//! Invariant: every value a process sees comes from the render, from what the rehearsal
//! provisioned from the render, or from [`super::env::ADDITIONS`]; the scenario never
//! repairs a missing setting — it fails naming it.

use super::board::{MOVED, MOVED_TO, PAT, item_id, quickstart_items};
use super::collector;
use super::github_fake::GithubFake;
use super::image::Image;
use super::provision::{self, SecretValues};
use super::render::Rendered;
use super::tasks::{Local, Running, TaskLauncher, seam_hint, tail};
use crate::support::{bin_dir, forge};
use kiro_backends::aws::dynamo::DynamoLeaseStore;
use kiro_backends::aws::settings::AwsSettings;
use kiro_backends::aws::sqs::{SqsQueue, SqsSettings};
use kiro_protocol::{DeadLetterEntry, JobRecord, JobState, LeaseStore, SystemClock, WorkQueue};
use kiro_tests::aws::{AwsEmulator, ENDPOINT_PLACEHOLDER, EmulatorConfig};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use wiremock::MockServer;

/// The quick-start items that must succeed, with their repo, PR, branch and spec.
pub const GOOD: [(&str, &str, u64, &str); 3] = [
    ("CALC-1", "calc", 1, "feature/subtract"),
    ("CALC-2", "calc", 2, "feature/multiply"),
    ("GREET-1", "greeter", 1, "feature/greet-name"),
];
pub const COVERAGE: &str = "GREET-2";
pub const HOSTILE: &str = "BAD-1";

/// The Kiro API key stored in the stack's secret.
pub const KIRO_API_KEY: &str = "ksk_rehearsalKiroApiKey0123456789";
/// The GitHub App installation the fake accepts (when the stack configures an App).
const DEFAULT_INSTALLATION: u64 = 4242;

/// How to run the consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One consumer, stopped with SIGTERM once every item settled.
    Plain,
    /// The first consumer is SIGKILLed while its first StartBuild is held (the build exists,
    /// its id is not recorded); a second consumer takes over.
    CrashDuringStartBuild,
}

/// Everything the assertions need after the run.
#[derive(Debug)]
pub struct Outcome {
    pub render: Rendered,
    pub emu: AwsEmulator,
    pub github: GithubFake,
    /// Keeps the run's directory (builds, tasks, forge) until the assertions are done.
    pub _tmp: tempfile::TempDir,
    pub forge: PathBuf,
    pub jobs: Vec<JobRecord>,
    pub dead_letters: Vec<DeadLetterEntry>,
    pub producer_log: String,
    pub consumer_logs: Vec<String>,
    /// The receiver standing in for the consumer task's collector sidecar.
    pub task_collector: MockServer,
    /// The receiver standing in for the collector the stack configures for builds.
    pub build_collector: MockServer,
    /// The rendered build collector endpoint (`None`: the project configures none).
    pub build_collector_rendered: Option<String>,
    /// The build the crashed consumer's held StartBuild created.
    pub held_build: Option<String>,
    /// The ECS task id of the consumer that ran to the end.
    pub last_consumer: String,
    /// Scheduler permissions checked with the evaluator: (role, action).
    pub scheduler_actions: Vec<(String, String)>,
    pub app_configured: bool,
}

/// A rendered value of `name` in any container of any task, or the build project.
fn rendered_var(r: &Rendered, name: &str) -> Option<String> {
    [&r.tasks.consumer, &r.tasks.producer]
        .iter()
        .flat_map(|t| t.containers.iter())
        .find_map(|c| c.environment.get(name).cloned())
        .or_else(|| r.codebuild.var(name).map(str::to_owned))
}

/// The cluster name of an ECS cluster ARN.
fn cluster_name(arn: &str) -> String {
    arn.rsplit('/').next().unwrap_or(arn).to_owned()
}

/// Render `stack_file` and rehearse it.
pub async fn rehearse(stack_file: &Path, mode: Mode) -> Outcome {
    let file = stack_file.to_path_buf();
    let render = match tokio::task::spawn_blocking(move || Rendered::render(&file)).await {
        Ok(r) => r,
        // The render's own message (what failed and how to fix it) is the test's.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    let bin = bin_dir();
    let tmp = tempfile::tempdir().unwrap();
    let state = forge(tmp.path());
    let forge_dir = state.join("forge");
    let secrets = SecretValues {
        github_token: PAT.into(),
        kiro_api_key: KIRO_API_KEY.into(),
        app_key: provision::generate_app_key(tmp.path()),
    };

    // GitHub: the board and pull requests; the App the stack names, if any.
    let app_id = rendered_var(&render, "KIRO_GITHUB_APP_ID").unwrap_or_default();
    let installation = rendered_var(&render, "KIRO_GITHUB_APP_INSTALLATION_ID")
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_INSTALLATION);
    let github = GithubFake::start(
        quickstart_items(),
        forge_dir.clone(),
        PAT,
        &app_id,
        installation,
    )
    .await;
    if let Some(project) = rendered_var(&render, "KIRO_GITHUB_PROJECT") {
        github.set_project(&project);
    }

    // Collectors: the consumer task's sidecar (its rendered endpoint) and the builds'.
    let task_collector = collector::receiver().await;
    let build_collector = collector::receiver().await;
    let mut task_rewrite = BTreeMap::new();
    if let Some(v) = render
        .tasks
        .consumer
        .container("consumer")
        .environment
        .get("OTEL_EXPORTER_OTLP_ENDPOINT")
    {
        task_rewrite.insert(v.clone(), task_collector.uri());
    }
    let build_collector_rendered = render
        .codebuild
        .var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .map(str::to_owned);
    let mut build_rewrite = BTreeMap::new();
    if let Some(v) = &build_collector_rendered {
        build_rewrite.insert(v.clone(), build_collector.uri());
    }

    // AWS: the emulator (the build image names it before it starts by a placeholder).
    let cli_version = render
        .codebuild
        .var("KIRO_CLI_VERSION")
        .expect("the CodeBuild project pins KIRO_CLI_VERSION")
        .to_owned();
    let image = Image::build(&tmp.path().join("image"), &bin, &cli_version, KIRO_API_KEY);
    let build_home = tmp.path().join("build-home");
    std::fs::create_dir_all(&build_home).unwrap();
    let mut cfg = EmulatorConfig::new(tmp.path().join("builds"));
    cfg.region = render.region.clone();
    cfg.account = render.account.clone();
    cfg.cluster = cluster_name(&render.schedule.target.arn);
    cfg.build_base_env = BTreeMap::from([
        ("PATH".to_owned(), image.path.clone()),
        ("HOME".to_owned(), build_home.display().to_string()),
        (
            "KIRO_AWS_ENDPOINT_URL".to_owned(),
            ENDPOINT_PLACEHOLDER.to_owned(),
        ),
        ("KIRO_GITHUB_API_URL".to_owned(), github.uri()),
        (
            "KIRO_GIT_BASE".to_owned(),
            format!("file://{}", forge_dir.display()),
        ),
    ]);
    let emu = AwsEmulator::start(cfg)
        .await
        .expect("start the AWS emulator");

    provision::credentials(&emu, &render);
    provision::resources(&emu, &render, &secrets).await;
    provision::project(&emu, &render, &build_rewrite);

    let scheduler_actions = super::iam::check_scheduler(&render);

    let launcher = TaskLauncher {
        emu: &emu,
        render: &render,
        local: Local {
            aws: emu.endpoint(),
            github: github.uri(),
            path: image.path.clone(),
            root: tmp.path().join("tasks"),
            rewrite: task_rewrite,
            bin: bin.clone(),
        },
    };

    // The producer, as the scheduler starts it.
    let producer = launcher
        .environment(&render.tasks.producer, "producer", "producer-1")
        .await;
    super::env::assert_exact(
        &producer.name,
        &producer.env,
        &producer.rendered,
        super::env::ECS_PROVIDED,
        &[],
    );
    let (code, out, err) = producer.run().await;
    assert_eq!(
        code,
        0,
        "{} (started as the schedule starts it: {:?}) exited {code}{}:\n{}\n{}",
        producer.name,
        render.tasks.producer.container("producer").argv(),
        seam_hint(&err, &producer.env, "producer"),
        tail(&out, 20),
        tail(&err, 40)
    );
    let producer_log = err;
    // A human moves one queued card off this system's statuses on GitHub, before any
    // consumer runs: the deployed consumer must read the move and build nothing.
    github.move_card(&item_id(MOVED), MOVED_TO);

    // The consumer, as the service runs it.
    let store = job_store(&emu, &render).await;
    let mut consumer_logs = Vec::new();
    let mut held_build = None;
    let mut n = 1;
    if mode == Mode::CrashDuringStartBuild {
        let mut hold = emu.hold_next_start_build();
        let first = launcher
            .environment(&render.tasks.consumer, "consumer", "consumer-1")
            .await;
        let mut running = first.spawn();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        // One future for the whole wait: `started` takes the hold's receiver.
        let started = {
            let started = hold.started();
            tokio::pin!(started);
            loop {
                tokio::select! {
                    id = &mut started => break id,
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                running.assert_running();
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the first consumer started no build within 90 s:\n{}",
                    tail(&running.log(), 40)
                );
            }
        };
        held_build = Some(started.expect("the held StartBuild's build id"));
        // While the held start keeps its build running, let the first consumer start the
        // rest of what it received: those starts meet the project's concurrent build
        // limit now, whatever the machine's load (bounded: a consumer that took one
        // message has nothing more to start, and the next consumer meets the limit).
        let limit_wait = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::time::Instant::now() < limit_wait
            && !emu
                .calls()
                .iter()
                .any(|c| c.action.as_deref() == Some("StartBuild") && c.status == Some(400))
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        consumer_logs.push(running.crash());
        drop(hold);
        n += 1;
    }
    let last_consumer = format!("consumer-{n}");
    let task = launcher
        .environment(&render.tasks.consumer, "consumer", &last_consumer)
        .await;
    let mut running = task.spawn();
    let jobs = wait_settled(&store, &mut running, Duration::from_secs(200)).await;
    let (code, log) = running.stop(Duration::from_secs(60)).await;
    assert_eq!(
        code,
        0,
        "{} exited {code} after SIGTERM:\n{}",
        task.name,
        tail(&log, 40)
    );
    consumer_logs.push(log);

    let dead_letters = dlq(&emu, &render).await;
    Outcome {
        app_configured: render.secrets.github_app_key.is_some(),
        render,
        emu,
        github,
        _tmp: tmp,
        forge: forge_dir,
        jobs,
        dead_letters,
        producer_log,
        consumer_logs,
        task_collector,
        build_collector,
        build_collector_rendered,
        held_build,
        last_consumer,
        scheduler_actions,
    }
}

fn moto_settings(emu: &AwsEmulator, r: &Rendered) -> AwsSettings {
    AwsSettings::new(r.region.clone()).with_endpoint(emu.moto_endpoint())
}

/// The job records, read from the table directly on moto (not recorded).
async fn job_store(emu: &AwsEmulator, r: &Rendered) -> DynamoLeaseStore {
    DynamoLeaseStore::connect(
        &moto_settings(emu, r),
        r.table.name.clone(),
        Arc::new(SystemClock),
        Duration::ZERO,
    )
    .await
}

/// The dead letters, read from the DLQ directly on moto (not recorded).
async fn dlq(emu: &AwsEmulator, r: &Rendered) -> Vec<DeadLetterEntry> {
    let q = SqsQueue::connect(
        &moto_settings(emu, r),
        SqsSettings::new(r.queue.url.clone(), r.dlq.url.clone()),
        Arc::new(SystemClock),
    )
    .await;
    q.dlq_list(100).await.expect("list the DLQ on moto").entries
}

fn settled(s: JobState) -> bool {
    matches!(
        s,
        JobState::Succeeded | JobState::DeadLettered | JobState::Cancelled
    )
}

/// Wait until the five enqueued items have settled (succeeded, dead-lettered or the moved
/// one cancelled), failing
/// at once when the consumer exits.
async fn wait_settled(
    store: &DynamoLeaseStore,
    running: &mut Running,
    limit: Duration,
) -> Vec<JobRecord> {
    let want: Vec<String> = GOOD
        .iter()
        .map(|g| item_id(g.0))
        .chain([item_id(COVERAGE), item_id(MOVED)])
        .collect();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        running.assert_running();
        let jobs = store.jobs().await.unwrap_or_default();
        let done = want.iter().all(|w| {
            jobs.iter()
                .any(|j| j.item.as_str() == w && settled(j.state))
        });
        if done {
            return jobs;
        }
        if tokio::time::Instant::now() > deadline {
            let summary: Vec<String> = jobs
                .iter()
                .map(|j| {
                    format!(
                        "{} {:?} attempts={} last={:?}",
                        j.item, j.state, j.attempts, j.last_failure
                    )
                })
                .collect();
            panic!(
                "items not settled within {limit:?}; job records:\n  {}\n{}:\n{}",
                summary.join("\n  "),
                running.name,
                tail(&running.log(), 60)
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
