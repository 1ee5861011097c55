//! The consumer's command line ([`Cli`]) and `run`'s one typed [`Config`], parsed once.
//!
//! Every setting is a flag with an environment variable (`KIRO_*`), so the same binary
//! is configured by a terminal, by the quick start and by an ECS task definition. The
//! settings every binary shares (state directory, backend, log format, AWS) are
//! `kiro_runtime`'s. Invariant: each default is stated once (a clap default, or a constant
//! of [`kiro_consumer::defaults`] that clap shows and the engine's own default uses); [`Config::new`] checks every setting before anything is wired, and
//! [`Config::engine`] is the only place the engine's configuration is derived.

use clap::{Args, Parser, Subcommand, ValueEnum};
use kiro_consumer::{EngineConfig, RetryPolicy, defaults};
use kiro_protocol::ids::ProjectKey;
use kiro_protocol::{FailureClass, env};
pub use kiro_runtime::Backend;
use kiro_runtime::{AwsArgs, CommonArgs, ForgeArgs, GithubArgs, LeaseTableArgs, SqsArgs};
use kiro_telemetry::metrics::{Metrics, MetricsMode};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// kiro-consumer: takes work items off the queue one project at a time, runs a build for
/// each under a fenced lease, and acks, retries or dead-letters it. Also the operator's
/// console for job records and the dead-letter queue.
#[derive(Debug, Parser)]
#[command(name = "kiro-consumer", version, about, long_about = None)]
pub struct Cli {
    /// State directory, backend and log format.
    #[command(flatten)]
    pub common: CommonArgs,
    /// AWS settings (used with `--backend aws`).
    #[command(flatten)]
    pub aws: AwsBackendArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// The variable naming the CodeBuild project.
pub const CODEBUILD_PROJECT: &str = "KIRO_CODEBUILD_PROJECT";
/// The variable naming the buildspec the local build runner executes.
pub const BUILDSPEC: &str = "KIRO_BUILDSPEC";
/// The variable of `--item-agent-budget`.
pub const ITEM_AGENT_BUDGET: &str = "KIRO_ITEM_AGENT_BUDGET";
/// The variable of `--board-every`.
pub const BOARD_EVERY: &str = "KIRO_BOARD_EVERY";

/// Settings of the AWS backend. Each is required with `--backend aws`; a missing one is
/// named in the error.
#[derive(Debug, Clone, Default, Args)]
pub struct AwsBackendArgs {
    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(flatten)]
    pub sqs: SqsArgs,
    #[command(flatten)]
    pub leases: LeaseTableArgs,
    /// CodeBuild project that runs the builds (with KIRO_BUILD_RUNNER=codebuild).
    #[arg(long, global = true, env = CODEBUILD_PROJECT)]
    pub codebuild_project: Option<String>,
    /// Which build runner the AWS backend uses: `local` runs buildspec.yml on this
    /// machine (quick start, tests), `codebuild` runs AWS CodeBuild.
    #[arg(
        long,
        global = true,
        env = "KIRO_BUILD_RUNNER",
        value_enum,
        default_value_t
    )]
    pub build_runner: BuildRunnerKind,
}

/// The build runner of the AWS backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum BuildRunnerKind {
    #[default]
    Local,
    Codebuild,
}

/// A setting has a value the chosen backend cannot use (exit status 2): the range checks
/// are kiro-runtime's, shared with the worker.
pub use kiro_runtime::range::InvalidSetting;
use kiro_runtime::range::{count_in_range, in_range};

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
        (BuildRunnerKind::Local, Some(t)) => {
            in_range(
                "build-timeout",
                "KIRO_BUILD_TIMEOUT",
                t,
                Duration::from_secs(1),
                CODEBUILD_TIMEOUT_MAX,
            )?;
            Ok(Some(t))
        }
        (BuildRunnerKind::Local, None) => Ok(Some(LOCAL_BUILD_TIMEOUT)),
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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Process work items until stopped (SIGTERM/SIGINT hand running jobs off).
    Run(Box<RunArgs>),
    /// List every job record (project, item, state, attempts, fence, build, last failure,
    /// coverage, and the agent time used of the item's budget).
    Jobs {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// The per-item agent budget to show beside the time used (`run`'s setting).
        #[arg(long, env = ITEM_AGENT_BUDGET, value_parser = humantime::parse_duration, default_value = defaults::ITEM_AGENT_BUDGET)]
        item_agent_budget: Duration,
    },
    /// Cancel one item, queued or running (record `cancelled`, fence bumped, build stopped).
    ///
    /// The job record becomes `cancelled` (never retried or dead-lettered) and the project's
    /// fence is bumped in the same write, so a running worker provably cannot push or report
    /// afterwards; the build is stopped when this machine reaches the build runner. The
    /// holding consumer acknowledges the message; the project's other items go on. The card
    /// is not moved. An item no consumer has taken yet needs `--project`.
    Cancel {
        /// The board item id.
        item: String,
        /// The item's project (required when the item has no job record yet, or when the
        /// same id is used in several projects).
        #[arg(long)]
        project: Option<ProjectKey>,
        /// The buildspec the local build runner executes (to stop a local build).
        #[arg(long, env = BUILDSPEC, default_value = "buildspec.yml")]
        buildspec: PathBuf,
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
        #[arg(long, env = env::BOARD_FILE)]
        board: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Print the pull-request reports the workers wrote (embedded forge).
    Reports {
        #[arg(long, env = env::BOARD_FILE)]
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
        /// Only this project (its message group).
        #[arg(long)]
        project: Option<ProjectKey>,
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
    /// Jobs in flight at most (1 to 5000).
    #[arg(long, env = "KIRO_MAX_JOBS", default_value_t = defaults::MAX_JOBS)]
    pub max_jobs: usize,
    /// Board file of the embedded board (`--forge embedded`): cards moved off its active
    /// statuses are cancelled, dead-lettered items are marked failed there. Without one
    /// (and without `--forge github`) no board is read.
    #[arg(long, env = env::BOARD_FILE)]
    pub board: Option<PathBuf>,
    /// Where the board and the pull requests live (KIRO_FORGE, KIRO_GITHUB_PROJECT).
    #[command(flatten)]
    pub forge: ForgeArgs,
    /// How to reach GitHub (`--forge github`).
    #[command(flatten)]
    pub github: GithubArgs,
    /// How often the cards of the running builds are read, to cancel those moved off the
    /// board's active statuses, in the first poll round this long after the last read
    /// (100ms to 1h). Unset: every poll round on the embedded board, every 30s on GitHub
    /// (one GraphQL query per 100 running builds, against GitHub's hourly rate limit).
    #[arg(long, env = BOARD_EVERY, value_parser = humantime::parse_duration)]
    pub board_every: Option<Duration>,
    /// The buildspec the local build runner executes.
    #[arg(long, env = BUILDSPEC, default_value = "buildspec.yml")]
    pub buildspec: PathBuf,
    /// Time-to-live of the consumer's session, which holds all its project leases; renewed
    /// every third of it while jobs run (1s to 1h).
    #[arg(long, env = "KIRO_LEASE_TTL", value_parser = humantime::parse_duration, default_value = defaults::LEASE_TTL)]
    pub lease_ttl: Duration,
    /// Allowed clock skew between consumers: a lease of an expired session is taken only
    /// this long after the session's expiry (0s up to the lease TTL).
    #[arg(long, env = "KIRO_LEASE_SKEW", value_parser = humantime::parse_duration, default_value = defaults::LEASE_SKEW)]
    pub lease_skew: Duration,
    /// Message visibility set on receive and on every extension (at least the lease TTL, at
    /// most SQS's 12h).
    #[arg(long, env = "KIRO_VISIBILITY", value_parser = humantime::parse_duration, default_value = defaults::VISIBILITY)]
    pub visibility: Duration,
    /// How often running builds are polled (100ms to 10m).
    #[arg(long, env = "KIRO_POLL_EVERY", value_parser = humantime::parse_duration, default_value = defaults::POLL_EVERY)]
    pub poll_every: Duration,
    /// Time limit of each build. Unset with KIRO_BUILD_RUNNER=codebuild: the CodeBuild
    /// project's own timeout applies (no override is sent); when set there, it must be
    /// within CodeBuild's 5m to 36h. Unset with the local runner: 60m.
    #[arg(long, env = env::BUILD_TIMEOUT, value_parser = humantime::parse_duration)]
    pub build_timeout: Option<Duration>,
    /// Counted attempts before an item is dead-lettered (1 to 100).
    #[arg(long, env = "KIRO_MAX_ATTEMPTS", default_value_t = defaults::MAX_ATTEMPTS)]
    pub max_attempts: u32,
    /// First retry delay, doubling each attempt with jitter (100ms up to --retry-max).
    #[arg(long, env = "KIRO_RETRY_BASE", value_parser = humantime::parse_duration, default_value = defaults::RETRY_BASE)]
    pub retry_base: Duration,
    /// Longest retry delay (at most 12h: a retry is a visibility delay on the message).
    #[arg(long, env = "KIRO_RETRY_MAX", value_parser = humantime::parse_duration, default_value = defaults::RETRY_MAX)]
    pub retry_max: Duration,
    /// Where the loop's heartbeat is written for `kiro-consumer health`.
    #[arg(long, env = "KIRO_HEALTH_FILE", default_value = DEFAULT_HEALTH_FILE)]
    pub health_file: PathBuf,
    /// Agent time one item may use across its attempts, summed from what its builds
    /// report (1s to 7d); once spent, no new attempt starts and the item is dead-lettered
    /// `budget-spent`.
    #[arg(long, env = ITEM_AGENT_BUDGET, value_parser = humantime::parse_duration, default_value = defaults::ITEM_AGENT_BUDGET)]
    pub item_agent_budget: Duration,
    /// Long-poll wait of a receive (0s to SQS's 20s). The run loop never shortens it:
    /// supervision and polling run beside a receive in flight.
    #[arg(long, env = "KIRO_RECEIVE_WAIT", value_parser = humantime::parse_duration, default_value = defaults::RECEIVE_WAIT)]
    pub receive_wait: Duration,
    /// While messages keep arriving, the least time from the start of one receive to the
    /// next (0s to 20s): a receive that delivered fewer messages than it asked for is
    /// followed no sooner, so the arrivals in between come in one batch. A message waits
    /// at most this long; an empty or full receive is followed at once.
    #[arg(long, env = "KIRO_RECEIVE_GAP", value_parser = humantime::parse_duration, default_value = defaults::RECEIVE_GAP)]
    pub receive_gap: Duration,
}

/// The queue's visibility and the leases' allowed skew: every command wires the queue and
/// the leases with them (`run`'s settings; their defaults for the operator commands).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub visibility: Duration,
    pub lease_skew: Duration,
}

/// `run`'s defaults ([`defaults`]), which the operator commands wire with.
impl Default for Timing {
    fn default() -> Self {
        Timing {
            visibility: defaults::duration(defaults::VISIBILITY),
            lease_skew: defaults::duration(defaults::LEASE_SKEW),
        }
    }
}

/// `kiro-consumer run`'s configuration, checked: what `main` wires, and what
/// [`Config::engine`] turns into the engine's [`EngineConfig`].
#[derive(Debug, Clone)]
pub struct Config {
    pub state_dir: PathBuf,
    pub backend: Backend,
    pub aws: AwsBackendArgs,
    pub timing: Timing,
    /// Exit once nothing is in flight here and the queue is empty.
    pub until_idle: bool,
    /// Where the board and the pull requests are.
    pub forge: ForgeConfig,
    /// How often the running builds' cards are read ([`EngineConfig::board_every`];
    /// `None`: every poll round).
    pub board_every: Option<Duration>,
    pub buildspec: PathBuf,
    pub health_file: PathBuf,
    pub max_jobs: usize,
    pub receive_wait: Duration,
    pub receive_gap: Duration,
    pub lease_ttl: Duration,
    pub poll_every: Duration,
    /// The time limit given to each build ([`build_timeout`]).
    pub build_timeout: Option<Duration>,
    pub retry: RetryPolicy,
    pub item_agent_budget: Duration,
    /// `--metrics` (`KIRO_METRICS`), parsed with the shared arguments.
    pub metrics: MetricsMode,
}

impl Config {
    /// `run`'s settings, each checked ([`RunArgs::check`], [`build_timeout`]): a bad one
    /// is an [`InvalidSetting`] (exit status 2) before anything is wired.
    pub fn new(
        common: &CommonArgs,
        aws: AwsBackendArgs,
        args: RunArgs,
    ) -> Result<Config, InvalidSetting> {
        args.check()?;
        let runner = match common.backend {
            Backend::Aws => aws.build_runner,
            Backend::Embedded => BuildRunnerKind::Local,
        };
        let build_timeout = build_timeout(runner, args.build_timeout)?;
        let forge = ForgeConfig::new(args.board, args.forge, &args.github)?;
        let board_every = forge.board_every(args.board_every);
        Ok(Config {
            state_dir: common.state_dir.clone(),
            backend: common.backend,
            aws,
            timing: Timing {
                visibility: args.visibility,
                lease_skew: args.lease_skew,
            },
            until_idle: args.until_idle,
            forge,
            board_every,
            buildspec: args.buildspec,
            health_file: args.health_file,
            max_jobs: args.max_jobs,
            receive_wait: args.receive_wait,
            receive_gap: args.receive_gap,
            lease_ttl: args.lease_ttl,
            poll_every: args.poll_every,
            build_timeout,
            retry: RetryPolicy {
                max_attempts: args.max_attempts,
                base_delay: args.retry_base,
                max_delay: args.retry_max,
            },
            item_agent_budget: args.item_agent_budget,
            metrics: common.metrics,
        })
    }

    /// The engine's configuration: these settings, the lease renewal, safety margin and
    /// contention delay derived from the lease TTL as [`defaults`] derives them,
    /// `build_env` for every build and the `metrics` sink.
    pub fn engine(
        &self,
        build_env: BTreeMap<String, String>,
        metrics: Option<Arc<dyn Metrics>>,
    ) -> EngineConfig {
        EngineConfig {
            max_jobs: self.max_jobs,
            receive_wait: self.receive_wait,
            receive_gap: self.receive_gap,
            lease_ttl: self.lease_ttl,
            visibility: self.timing.visibility,
            renew_every: defaults::renew_every(self.lease_ttl),
            safety_margin: defaults::safety_margin(self.lease_ttl),
            poll_every: self.poll_every,
            board_every: self.board_every,
            build_timeout: self.build_timeout,
            contention_delay: defaults::contention_delay(self.lease_ttl),
            retry: self.retry.clone(),
            build_env,
            metrics,
            item_agent_budget: self.item_agent_budget,
            ..EngineConfig::default()
        }
    }
}

impl RunArgs {
    /// Every duration and count within its documented range, and the relations between
    /// them: the lease renewal (a third of the TTL) well inside both the TTL and the
    /// message visibility, the skew inside the TTL, the retry delays ordered. The first
    /// problem is named by its flag and variable.
    pub fn check(&self) -> Result<(), InvalidSetting> {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        in_range("lease-ttl", "KIRO_LEASE_TTL", self.lease_ttl, s(1), s(3600))?;
        in_range(
            "item-agent-budget",
            ITEM_AGENT_BUDGET,
            self.item_agent_budget,
            s(1),
            s(7 * 24 * 3600),
        )?;
        in_range(
            "lease-skew",
            "KIRO_LEASE_SKEW",
            self.lease_skew,
            s(0),
            self.lease_ttl,
        )?;
        in_range(
            "visibility",
            "KIRO_VISIBILITY",
            self.visibility,
            self.lease_ttl,
            s(12 * 3600),
        )?;
        in_range(
            "poll-every",
            "KIRO_POLL_EVERY",
            self.poll_every,
            ms(100),
            s(600),
        )?;
        if let Some(every) = self.board_every {
            in_range("board-every", BOARD_EVERY, every, ms(100), s(3600))?;
        }
        in_range(
            "receive-wait",
            "KIRO_RECEIVE_WAIT",
            self.receive_wait,
            s(0),
            s(20),
        )?;
        in_range(
            "receive-gap",
            "KIRO_RECEIVE_GAP",
            self.receive_gap,
            s(0),
            s(20),
        )?;
        in_range(
            "retry-max",
            "KIRO_RETRY_MAX",
            self.retry_max,
            ms(100),
            s(12 * 3600),
        )?;
        in_range(
            "retry-base",
            "KIRO_RETRY_BASE",
            self.retry_base,
            ms(100),
            self.retry_max,
        )?;
        // The build timeout's range depends on the runner: see [`build_timeout`].
        count_in_range("max-jobs", "KIRO_MAX_JOBS", self.max_jobs as u64, 1, 5000)?;
        count_in_range(
            "max-attempts",
            "KIRO_MAX_ATTEMPTS",
            u64::from(self.max_attempts),
            1,
            100,
        )?;
        Ok(())
    }
}

mod forge;
pub use forge::ForgeConfig;

#[cfg(test)]
mod tests;
