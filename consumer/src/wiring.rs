//! The one place the consumer picks and builds its adapters.
//!
//! Invariant: only this module (and `main`) knows which backend is in use; the engine
//! and the operator views see ports only. With `--backend aws` the queue is SQS FIFO,
//! the leases live in DynamoDB, builds run in CodeBuild (`KIRO_BUILD_RUNNER=codebuild`)
//! or on this machine (`local`, for the quick start and tests), and on ECS the task holds
//! scale-in protection while it has jobs. The board and the pull requests are the board
//! file's or, with `--forge github`, the GitHub project's. The settings a local build gets
//! are named by `kiro_protocol::env`, the names the worker reads them by.

use crate::config::{
    AwsBackendArgs, BUILDSPEC, Backend, BuildRunnerKind, CODEBUILD_PROJECT, Config, ForgeConfig,
    Timing,
};
use anyhow::{Context, Result};
use kiro_backends::aws::codebuild::CodeBuildRunner;
use kiro_backends::aws::dynamo::DynamoLeaseStore;
use kiro_backends::aws::ecs::protection_from_env;
use kiro_backends::aws::settings::AwsSettings;
use kiro_backends::aws::sqs::SqsQueue;
use kiro_backends::embedded::{
    EmbeddedBoard, EmbeddedDb, EmbeddedPulls, QueueConfig, SqliteLeaseStore, SqliteQueue,
};
use kiro_consumer::clock::TokioClock;
use kiro_github::gh::{FieldConfig, GithubBoard, GithubClient, GithubPulls, ReportMode};
use kiro_local_build::{LocalBuildConfig, LocalBuildRunner, locate_launcher};
use kiro_protocol::{
    Board, BuildRunner, Clock, LeaseStore, PullRequests, TaskProtection, WorkQueue, env,
};
use kiro_runtime::aws::require;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A forge's board and pull requests.
type Forges = (Arc<dyn Board>, Arc<dyn PullRequests>);

/// The adapters of one backend.
#[derive(Debug)]
pub struct Wired {
    pub db: EmbeddedDb,
    pub clock: Arc<dyn Clock>,
    pub queue: Arc<dyn WorkQueue>,
    pub leases: Arc<dyn LeaseStore>,
    /// The AWS settings, with `--backend aws`.
    pub aws: Option<AwsSettings>,
}

/// Queue and leases (what every command needs).
pub async fn core(
    backend: Backend,
    aws: &AwsBackendArgs,
    state_dir: &Path,
    timing: Timing,
) -> Result<Wired> {
    let Timing {
        visibility,
        lease_skew: skew,
    } = timing;
    match backend {
        Backend::Aws => {
            let settings = aws.aws.settings()?;
            let mut sqs = aws.sqs.settings()?;
            let table = aws.leases.table()?;
            if aws.build_runner == BuildRunnerKind::Codebuild {
                require(&aws.codebuild_project, CODEBUILD_PROJECT)?;
            }
            // The local build runner and the board still keep their state here.
            let db = EmbeddedDb::open_dir(state_dir)
                .with_context(|| format!("opening the state directory {}", state_dir.display()))?;
            let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
            sqs.visibility_timeout = visibility;
            let queue = SqsQueue::connect(&settings, sqs, clock.clone()).await;
            let leases = DynamoLeaseStore::connect(&settings, table, clock.clone(), skew).await;
            Ok(Wired {
                db,
                clock,
                queue: Arc::new(queue),
                leases: Arc::new(leases),
                aws: Some(settings),
            })
        }
        Backend::Embedded => {
            let db = EmbeddedDb::open_dir(state_dir)
                .with_context(|| format!("opening the state directory {}", state_dir.display()))?;
            let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
            let queue = SqliteQueue::new(
                db.clone(),
                clock.clone(),
                QueueConfig {
                    visibility_timeout: visibility,
                    ..QueueConfig::default()
                },
            )?;
            let leases = SqliteLeaseStore::new(db.clone(), clock.clone(), skew)?;
            Ok(Wired {
                db,
                clock,
                queue: Arc::new(queue),
                leases: Arc::new(leases),
                aws: None,
            })
        }
    }
}

/// What `run` needs beyond the queue and the leases.
#[derive(Debug)]
pub struct RunParts {
    pub builds: Arc<dyn BuildRunner>,
    /// The board: where moved cards are read and dead-lettered items are marked failed
    /// (the board file, or the GitHub project; none without either).
    pub board: Option<Arc<dyn Board>>,
    /// Where a final failure is announced (with the board).
    pub pulls: Option<Arc<dyn PullRequests>>,
    /// Settings passed into every build.
    pub build_env: BTreeMap<String, String>,
    /// ECS scale-in protection (with `--backend aws`).
    pub protection: Option<Arc<dyn TaskProtection>>,
}

/// The build runner, the board and the task protection for `run`.
pub async fn run_parts(wired: &Wired, config: &Config) -> Result<RunParts> {
    let aws_args = &config.aws;
    let (board_file, forge) = forge(wired, &config.forge)?;
    let (board, pulls) = match forge {
        Some((board, pulls)) => (Some(board), Some(pulls)),
        None => (None, None),
    };
    let protection = match &wired.aws {
        Some(aws) => Some(protection_from_env(aws).await),
        None => None,
    };
    if let (Some(aws), BuildRunnerKind::Codebuild) = (&wired.aws, aws_args.build_runner) {
        let project = require(&aws_args.codebuild_project, CODEBUILD_PROJECT)?;
        // The CodeBuild project carries the worker's settings and secrets; the engine
        // adds the item's variables to every build.
        return Ok(RunParts {
            builds: Arc::new(CodeBuildRunner::connect(aws, project).await),
            board,
            pulls,
            build_env: inherited_build_env(BuildRunnerKind::Codebuild, |k| std::env::var(k).ok()),
            protection,
        });
    }
    let state_dir = absolute(&config.state_dir)?;
    let (launcher, buildspec) = local_launcher(&config.buildspec)?;
    let bin_dir = launcher
        .parent()
        .map(Path::to_path_buf)
        .context("the launcher has no parent directory")?;
    // Settings every local build needs; the build inherits the rest of this environment,
    // as a CI runner on a developer machine would.
    let mut base_env = BTreeMap::new();
    let path = std::env::var("PATH").unwrap_or_default();
    base_env.insert("PATH".to_owned(), format!("{}:{path}", bin_dir.display()));
    base_env.insert(env::STATE_DIR.to_owned(), state_dir.display().to_string());
    if std::env::var_os(env::GIT_BASE).is_none() {
        base_env.insert(
            env::GIT_BASE.to_owned(),
            format!("file://{}", state_dir.join("forge").display()),
        );
    }
    if let Some(file) = &board_file {
        base_env.insert(env::BOARD_FILE.to_owned(), file.display().to_string());
    }
    base_env.extend(inherited_build_env(BuildRunnerKind::Local, |k| {
        std::env::var(k).ok()
    }));
    if let Some(aws) = &wired.aws {
        // A local build under the AWS backend checks its fence in DynamoDB.
        base_env.insert(env::BACKEND.to_owned(), Backend::Aws.to_string());
        base_env.insert(env::AWS_REGION.to_owned(), aws.region.clone());
        if let Some(url) = &aws.endpoint_url {
            base_env.insert(env::AWS_ENDPOINT_URL.to_owned(), url.clone());
        }
        if let Some(table) = &aws_args.leases.lease_table {
            base_env.insert(env::LEASE_TABLE.to_owned(), table.clone());
        }
    }
    let runner = local_runner(wired, state_dir, launcher, buildspec, base_env.clone())?;
    Ok(RunParts {
        builds: Arc::new(runner),
        board,
        pulls,
        build_env: base_env,
        protection,
    })
}

/// The board and the pull requests of `forge`, with the board file when it is the embedded
/// one; `None` without a board file on the embedded forge.
fn forge(wired: &Wired, forge: &ForgeConfig) -> Result<(Option<PathBuf>, Option<Forges>)> {
    Ok(match forge {
        ForgeConfig::Embedded {
            board_file: Some(file),
        } => {
            let file = absolute(file)?;
            let opened = |what: &str| format!("opening the board file {} ({what})", file.display());
            let board =
                EmbeddedBoard::open(&file, wired.db.clone()).with_context(|| opened("board"))?;
            let pulls = EmbeddedPulls::open(&file, wired.db.clone())
                .with_context(|| opened("pull requests"))?;
            (Some(file), Some((Arc::new(board), Arc::new(pulls))))
        }
        ForgeConfig::Embedded { board_file: None } => (None, None),
        ForgeConfig::Github { project, settings } => {
            // One client for both: they share its connections and (with an App) its
            // installation token.
            let client = GithubClient::new(settings.clone()).context("connecting to GitHub")?;
            let board =
                GithubBoard::with_client(client.clone(), project.clone(), FieldConfig::default());
            let pulls = GithubPulls::with_client(client, ReportMode::default());
            (None, Some((Arc::new(board), Arc::new(pulls))))
        }
    })
}

/// A build runner for `kiro-consumer cancel` to stop a build with: CodeBuild with
/// `KIRO_BUILD_RUNNER=codebuild`, else the local runner over this state directory (its
/// launcher and `buildspec` must be found, as for `run`). `Err` says why there is none.
pub async fn stopper(
    wired: &Wired,
    aws_args: &AwsBackendArgs,
    state_dir: &Path,
    buildspec: &Path,
) -> Result<Arc<dyn BuildRunner>, String> {
    if let (Some(aws), BuildRunnerKind::Codebuild) = (&wired.aws, aws_args.build_runner) {
        let project =
            require(&aws_args.codebuild_project, CODEBUILD_PROJECT).map_err(|e| e.to_string())?;
        return Ok(Arc::new(CodeBuildRunner::connect(aws, project).await));
    }
    let local = || -> Result<LocalBuildRunner> {
        let (launcher, buildspec) = local_launcher(buildspec)?;
        local_runner(
            wired,
            absolute(state_dir)?,
            launcher,
            buildspec,
            BTreeMap::new(),
        )
    };
    match local() {
        Ok(runner) => Ok(Arc::new(runner)),
        Err(e) => Err(format!("{e:#}")),
    }
}

/// The local build launcher and the buildspec it runs (absolute), each checked to exist.
fn local_launcher(buildspec: &Path) -> Result<(PathBuf, PathBuf)> {
    let launcher = locate_launcher().context(
        "the local build launcher kiro-local-build was not found next to kiro-consumer or on PATH: build the workspace (cargo build --workspace --bins)",
    )?;
    let buildspec = absolute(buildspec)?;
    if !buildspec.exists() {
        anyhow::bail!(
            "buildspec {} not found (set --buildspec or {BUILDSPEC})",
            buildspec.display()
        );
    }
    Ok((launcher, buildspec))
}

/// The local build runner over `state_dir`: every build gets `base_env` over this
/// process's environment.
fn local_runner(
    wired: &Wired,
    state_dir: PathBuf,
    launcher: PathBuf,
    buildspec: PathBuf,
    base_env: BTreeMap<String, String>,
) -> Result<LocalBuildRunner> {
    Ok(LocalBuildRunner::new(
        wired.db.clone(),
        wired.clock.clone(),
        LocalBuildConfig {
            state_dir,
            buildspec,
            launcher,
            base_env,
            inherit_env: true,
        },
    )?)
}

/// What this consumer's own environment adds to every build's environment.
///
/// - A local build runs on this machine and inherits this process's environment (the
///   OpenTelemetry exporter settings included, as a CI runner on a developer machine
///   would); only the service name is replaced, since the inherited one names this
///   consumer.
/// - A CodeBuild build gets nothing of it: the exporter this consumer uses (on ECS, its
///   collector sidecar at `localhost:4318`) is not reachable from a build, so the CodeBuild
///   project's own environment (set by the stack) decides where the worker exports.
fn inherited_build_env(
    runner: BuildRunnerKind,
    var: impl Fn(&str) -> Option<String>,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    if runner == BuildRunnerKind::Local && var("OTEL_SERVICE_NAME").is_some() {
        env.insert("OTEL_SERVICE_NAME".to_owned(), "kiro-worker".to_owned());
    }
    env
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("resolving {}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consumer_env(k: &str) -> Option<String> {
        match k {
            "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://localhost:4318".to_owned()),
            "OTEL_EXPORTER_OTLP_PROTOCOL" => Some("http/protobuf".to_owned()),
            "OTEL_TRACES_EXPORTER" => Some("otlp".to_owned()),
            "OTEL_SERVICE_NAME" => Some("kiro-consumer".to_owned()),
            _ => None,
        }
    }

    #[test]
    fn codebuild_builds_get_none_of_the_consumers_exporter_settings() {
        let env = inherited_build_env(BuildRunnerKind::Codebuild, consumer_env);
        assert!(
            env.keys().all(|k| !k.starts_with("OTEL_")),
            "the CodeBuild project's environment decides: {env:?}"
        );
    }

    #[test]
    fn local_builds_inherit_the_environment_under_the_workers_name() {
        let env = inherited_build_env(BuildRunnerKind::Local, consumer_env);
        assert_eq!(
            env.get("OTEL_SERVICE_NAME").map(String::as_str),
            Some("kiro-worker")
        );
        // The rest (the exporter endpoint included) comes with the inherited environment.
        assert!(!env.contains_key("OTEL_EXPORTER_OTLP_ENDPOINT"));
        assert!(inherited_build_env(BuildRunnerKind::Local, |_| None).is_empty());
    }
}
