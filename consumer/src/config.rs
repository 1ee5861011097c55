//! The consumer's command line and configuration, parsed once.
//!
//! Every setting is a flag with an environment variable (`KIRO_*`), so the same binary
//! is configured by a terminal, by the quick start and by an ECS task definition.

use clap::{Args, Parser, Subcommand, ValueEnum};
use kiro_protocol::FailureClass;
pub use kiro_telemetry::LogFormat;
use std::path::PathBuf;
use std::time::Duration;

/// kiro-consumer: takes work items off the queue one project at a time, runs a build for
/// each under a fenced lease, and acks, retries or dead-letters it. Also the operator's
/// console for job records and the dead-letter queue.
#[derive(Debug, Parser)]
#[command(name = "kiro-consumer", version, about, long_about = None)]
pub struct Cli {
    /// Where the embedded default keeps its data (queue, leases, builds, board status,
    /// reports).
    #[arg(
        long,
        global = true,
        env = "KIRO_STATE_DIR",
        default_value = ".kiro-state"
    )]
    pub state_dir: PathBuf,
    /// Which backend holds the queue, the leases and the builds.
    #[arg(long, global = true, env = "KIRO_BACKEND", value_enum, default_value_t = Backend::Embedded)]
    pub backend: Backend,
    /// Log format on stderr: `auto` is text on a terminal and JSON lines otherwise.
    #[arg(long, global = true, env = "KIRO_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
    /// AWS settings (used with `--backend aws`).
    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Settings of the AWS backend. Each is required with `--backend aws`; a missing one is
/// named in the error.
#[derive(Debug, Clone, Default, Args)]
pub struct AwsArgs {
    /// AWS region (falls back to AWS_REGION).
    #[arg(long = "aws-region", global = true, env = "KIRO_AWS_REGION")]
    pub region: Option<String>,
    /// One endpoint for every AWS service (an emulator such as moto).
    #[arg(
        long = "aws-endpoint-url",
        global = true,
        env = "KIRO_AWS_ENDPOINT_URL"
    )]
    pub endpoint_url: Option<String>,
    /// URL of the SQS FIFO work queue.
    #[arg(long, global = true, env = "KIRO_QUEUE_URL")]
    pub queue_url: Option<String>,
    /// URL of the SQS FIFO dead-letter queue.
    #[arg(long, global = true, env = "KIRO_DLQ_URL")]
    pub dlq_url: Option<String>,
    /// DynamoDB table of leases and job records.
    #[arg(long, global = true, env = "KIRO_LEASE_TABLE")]
    pub lease_table: Option<String>,
    /// CodeBuild project that runs the builds (with KIRO_BUILD_RUNNER=codebuild).
    #[arg(long, global = true, env = "KIRO_CODEBUILD_PROJECT")]
    pub codebuild_project: Option<String>,
    /// Which build runner the AWS backend uses: `local` runs buildspec.yml on this
    /// machine (quick start, tests), `codebuild` runs AWS CodeBuild.
    #[arg(long, global = true, env = "KIRO_BUILD_RUNNER", value_enum, default_value_t = BuildRunnerKind::Local)]
    pub build_runner: BuildRunnerKind,
}

/// The build runner of the AWS backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum BuildRunnerKind {
    #[default]
    Local,
    Codebuild,
}

impl AwsArgs {
    /// The region: `--aws-region`/`KIRO_AWS_REGION`, else `AWS_REGION`.
    pub fn region(&self) -> Result<String, MissingSetting> {
        self.region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty()))
            .ok_or(MissingSetting("KIRO_AWS_REGION (or AWS_REGION)"))
    }

    /// A required setting, or an error naming it.
    pub fn require<'a>(
        value: &'a Option<String>,
        name: &'static str,
    ) -> Result<&'a str, MissingSetting> {
        value
            .as_deref()
            .filter(|v| !v.is_empty())
            .ok_or(MissingSetting(name))
    }
}

/// A setting the chosen backend needs is not set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--backend aws needs {0}")]
pub struct MissingSetting(pub &'static str);

/// A setting has a value the chosen backend cannot use (exit status 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSetting(pub String);

/// The local runner's build time limit when `--build-timeout` is not set.
pub const LOCAL_BUILD_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// CodeBuild's bounds for a build timeout (`timeoutInMinutesOverride`).
const CODEBUILD_TIMEOUT_MIN: Duration = Duration::from_secs(5 * 60);
const CODEBUILD_TIMEOUT_MAX: Duration = Duration::from_secs(36 * 3600);

/// The time limit the engine gives each build: on CodeBuild, only an explicit setting
/// (checked against CodeBuild's bounds; unset, the project's own timeout applies); on
/// the local runner, the setting or [`LOCAL_BUILD_TIMEOUT`].
pub fn build_timeout(
    runner: BuildRunnerKind,
    set: Option<Duration>,
) -> Result<Option<Duration>, InvalidSetting> {
    match (runner, set) {
        (BuildRunnerKind::Local, t) => Ok(Some(t.unwrap_or(LOCAL_BUILD_TIMEOUT))),
        (BuildRunnerKind::Codebuild, None) => Ok(None),
        (BuildRunnerKind::Codebuild, Some(t))
            if (CODEBUILD_TIMEOUT_MIN..=CODEBUILD_TIMEOUT_MAX).contains(&t) =>
        {
            Ok(Some(t))
        }
        (BuildRunnerKind::Codebuild, Some(t)) => Err(InvalidSetting(format!(
            "--build-timeout (KIRO_BUILD_TIMEOUT) is {}: CodeBuild accepts 5m to 36h; \
             leave it unset to use the CodeBuild project's own timeout",
            humantime::format_duration(t)
        ))),
    }
}

/// Where `run` writes its heartbeat and `health` reads it.
pub const DEFAULT_HEALTH_FILE: &str = "/tmp/kiro-consumer.health";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// SQLite queue and leases and a local buildspec runner in --state-dir (no cloud account).
    Embedded,
    /// SQS FIFO queue + FIFO DLQ and DynamoDB leases (KIRO_AWS_REGION, KIRO_QUEUE_URL,
    /// KIRO_DLQ_URL, KIRO_LEASE_TABLE; KIRO_AWS_ENDPOINT_URL for an emulator).
    Aws,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Process work items until stopped (SIGTERM/SIGINT hand running jobs off).
    Run(RunArgs),
    /// List every job record (project, item, state, attempts, fence, build, last failure).
    Jobs {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one work item's trace: on the embedded default, the spans the producer,
    /// consumer and worker stored under the state directory, as a tree with durations
    /// and events; on AWS, the trace id and the X-Ray console link.
    Trace {
        /// The board item id.
        item: String,
        /// Only the item of this project (when the same id is used in several).
        #[arg(long)]
        project: Option<String>,
        /// Print the stored spans as JSON (embedded default).
        #[arg(long)]
        json: bool,
    },
    /// Inspect and replay the dead-letter queue.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Exit 0 if a `run` on this machine completed a loop step recently (container health
    /// check; needs no backend), 1 otherwise.
    Health {
        /// The heartbeat file `run` writes.
        #[arg(long, env = "KIRO_HEALTH_FILE", default_value = DEFAULT_HEALTH_FILE)]
        health_file: PathBuf,
        /// Oldest heartbeat still healthy.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "120s")]
        max_age: Duration,
    },
    /// Show the board items and their status (embedded board).
    Board {
        #[arg(long, env = "KIRO_BOARD_FILE")]
        board: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Print the pull-request reports the workers wrote (embedded forge).
    Reports {
        #[arg(long, env = "KIRO_BOARD_FILE")]
        board: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters without removing them.
    List {
        #[arg(long)]
        json: bool,
        /// At most this many.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// The full record of one dead letter: attempts, fence, build id and log, trace id
    /// (and the X-Ray console link on AWS).
    Show {
        /// Dead-letter message id (or the id it had in the queue).
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Put selected dead letters back into their project's queue (fresh dedup id), one
    /// at a time and in dead-letter order, writing one audit line per message.
    Replay {
        /// Dead-letter message id (repeatable).
        #[arg(long = "id")]
        ids: Vec<String>,
        /// Only this project.
        #[arg(long)]
        project: Option<String>,
        /// Only this failure class (e.g. tests-failed).
        #[arg(long)]
        class: Option<FailureClass>,
        /// Only letters older than this (e.g. 30m).
        #[arg(long, value_parser = humantime::parse_duration)]
        older_than: Option<Duration>,
        /// Select everything (required when no other criterion is given).
        #[arg(long)]
        all: bool,
        /// Show what would be replayed; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// At most this many messages per second.
        #[arg(long, default_value_t = 10.0, value_parser = positive_rate)]
        rate: f64,
        /// Do not ask for confirmation (required when stdin is not a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Move every dead letter back to the queue (StartMessageMoveTask on AWS).
    Redrive {
        /// Do not ask for confirmation (required when stdin is not a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Delete every dead letter.
    Purge {
        /// Do not ask for confirmation (required when stdin is not a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// A finite rate above zero (messages per second).
fn positive_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("{s:?} is not a rate above zero")),
    }
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Exit once nothing is in flight here and the queue is empty (quick start, tests).
    #[arg(long)]
    pub until_idle: bool,
    /// Jobs in flight at most.
    #[arg(long, env = "KIRO_MAX_JOBS", default_value_t = 16)]
    pub max_jobs: usize,
    /// Board file of the embedded board (dead-lettered items are marked failed there).
    #[arg(long, env = "KIRO_BOARD_FILE")]
    pub board: Option<PathBuf>,
    /// The buildspec the local build runner executes.
    #[arg(long, env = "KIRO_BUILDSPEC", default_value = "buildspec.yml")]
    pub buildspec: PathBuf,
    /// Lease time-to-live; renewed every third of it.
    #[arg(long, env = "KIRO_LEASE_TTL", value_parser = humantime::parse_duration, default_value = "60s")]
    pub lease_ttl: Duration,
    /// Allowed clock skew between consumers: an expired lease is taken only this long after expiry.
    #[arg(long, env = "KIRO_LEASE_SKEW", value_parser = humantime::parse_duration, default_value = "2s")]
    pub lease_skew: Duration,
    /// Message visibility set on receive and on every extension.
    #[arg(long, env = "KIRO_VISIBILITY", value_parser = humantime::parse_duration, default_value = "5m")]
    pub visibility: Duration,
    /// How often running builds are polled.
    #[arg(long, env = "KIRO_POLL_EVERY", value_parser = humantime::parse_duration, default_value = "2s")]
    pub poll_every: Duration,
    /// Time limit of each build. Unset with KIRO_BUILD_RUNNER=codebuild: the CodeBuild
    /// project's own timeout applies (no override is sent); when set there, it must be
    /// within CodeBuild's 5m to 36h. Unset with the local runner: 60m.
    #[arg(long, env = "KIRO_BUILD_TIMEOUT", value_parser = humantime::parse_duration)]
    pub build_timeout: Option<Duration>,
    /// Counted attempts before an item is dead-lettered.
    #[arg(long, env = "KIRO_MAX_ATTEMPTS", default_value_t = 3)]
    pub max_attempts: u32,
    /// First retry delay (doubles each attempt, with jitter).
    #[arg(long, env = "KIRO_RETRY_BASE", value_parser = humantime::parse_duration, default_value = "30s")]
    pub retry_base: Duration,
    /// Longest retry delay.
    #[arg(long, env = "KIRO_RETRY_MAX", value_parser = humantime::parse_duration, default_value = "15m")]
    pub retry_max: Duration,
    /// Where the loop's heartbeat is written for `kiro-consumer health`.
    #[arg(long, env = "KIRO_HEALTH_FILE", default_value = DEFAULT_HEALTH_FILE)]
    pub health_file: PathBuf,
    /// Long-poll wait of a receive.
    #[arg(long, env = "KIRO_RECEIVE_WAIT", value_parser = humantime::parse_duration, default_value = "2s")]
    pub receive_wait: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codebuild_gets_a_timeout_only_when_one_is_set_and_within_bounds() {
        let m = |n: u64| Duration::from_secs(n * 60);
        assert_eq!(build_timeout(BuildRunnerKind::Codebuild, None), Ok(None));
        assert_eq!(
            build_timeout(BuildRunnerKind::Codebuild, Some(m(90))),
            Ok(Some(m(90)))
        );
        assert_eq!(
            build_timeout(BuildRunnerKind::Codebuild, Some(m(5))),
            Ok(Some(m(5)))
        );
        assert_eq!(
            build_timeout(BuildRunnerKind::Codebuild, Some(m(36 * 60))),
            Ok(Some(m(36 * 60)))
        );
        for bad in [Duration::from_secs(299), m(36 * 60 + 1)] {
            let e = build_timeout(BuildRunnerKind::Codebuild, Some(bad)).unwrap_err();
            assert!(
                e.0.contains("--build-timeout") && e.0.contains("KIRO_BUILD_TIMEOUT"),
                "{e}"
            );
            assert!(e.0.contains("5m to 36h"), "{e}");
        }
    }

    #[test]
    fn the_local_runner_keeps_a_default() {
        assert_eq!(
            build_timeout(BuildRunnerKind::Local, None),
            Ok(Some(LOCAL_BUILD_TIMEOUT))
        );
        assert_eq!(
            build_timeout(BuildRunnerKind::Local, Some(Duration::from_secs(30))),
            Ok(Some(Duration::from_secs(30)))
        );
    }

    #[test]
    fn an_unset_timeout_parses_as_none() {
        let cli = Cli::try_parse_from(["kiro-consumer", "run"]).unwrap();
        let Command::Run(args) = cli.command else {
            panic!("run");
        };
        // Only when KIRO_BUILD_TIMEOUT is not in the test's environment.
        if std::env::var_os("KIRO_BUILD_TIMEOUT").is_none() {
            assert_eq!(args.build_timeout, None);
        }
    }
}
