//! The arguments every binary shares: which backend and which forge, the state directory,
//! the log format and the metrics mode.
//!
//! Invariant: one enum per choice and one default per setting, stated here; the value
//! names (`embedded`, `aws`, `github`) are the ones the deployment renders, so they never
//! change.

use clap::{Args, ValueEnum};
use kiro_protocol::env;
use kiro_telemetry::LogFormat;
use kiro_telemetry::metrics::{MetricsMode, MetricsModeError};
use std::fmt;
use std::path::PathBuf;

/// The embedded backend's state directory when none is given.
pub const DEFAULT_STATE_DIR: &str = ".kiro-state";

/// Which adapters hold the queue and the leases (and run the builds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Backend {
    /// SQLite queue and leases in the state directory and a local buildspec runner (no
    /// cloud account).
    #[default]
    Embedded,
    /// SQS FIFO queue and dead-letter queue, DynamoDB leases (KIRO_AWS_REGION,
    /// KIRO_QUEUE_URL, KIRO_DLQ_URL, KIRO_LEASE_TABLE; KIRO_AWS_ENDPOINT_URL for an
    /// emulator).
    Aws,
}

/// Where the board and the pull requests live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Forge {
    /// The board file (KIRO_BOARD_FILE), statuses and reports in the state directory.
    #[default]
    Embedded,
    /// A GitHub Projects (v2) board and pull requests on GitHub.
    Github,
}

/// The value's name on the command line and in the environment (`embedded`, `aws`, …).
fn value_name(v: &impl ValueEnum, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match v.to_possible_value() {
        Some(p) => f.write_str(p.get_name()),
        None => Ok(()),
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        value_name(self, f)
    }
}

impl fmt::Display for Forge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        value_name(self, f)
    }
}

/// The state directory, the backend and the log format of `kiro-producer` and
/// `kiro-consumer` (global: accepted before or after a subcommand).
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct CommonArgs {
    /// State directory of the embedded backend (holds kiro.db: queue, leases, builds,
    /// board statuses, reports; and the spans).
    #[arg(
        long,
        value_name = "DIR",
        global = true,
        env = env::STATE_DIR,
        default_value = DEFAULT_STATE_DIR
    )]
    pub state_dir: PathBuf,
    /// Which backend holds the queue, the leases and the builds.
    #[arg(long, value_enum, global = true, env = env::BACKEND, default_value_t)]
    pub backend: Backend,
    /// Log format on stderr: `auto` is text on a terminal and JSON lines otherwise.
    #[arg(long, value_enum, global = true, env = env::LOG_FORMAT, default_value_t)]
    pub log_format: LogFormat,
    /// Metrics of `kiro-consumer run`: `emf` writes CloudWatch Embedded Metric Format
    /// lines on stdout, `off` none (OTLP metrics follow the `OTEL_*` variables either
    /// way). Any other value stops the binary at start-up.
    #[arg(
        long,
        value_name = "MODE",
        global = true,
        env = env::METRICS,
        default_value_t,
        value_parser = metrics_mode
    )]
    pub metrics: MetricsMode,
}

/// `--metrics` / `KIRO_METRICS`: `emf` or `off` (any case), else an error naming both.
fn metrics_mode(s: &str) -> Result<MetricsMode, MetricsModeError> {
    s.parse()
}

/// Where the board lives, for `kiro-producer`, `kiro-consumer run` and `kiro-worker`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ForgeArgs {
    /// Where the board (and the pull requests) live: `embedded` (the board file, statuses
    /// in the state directory) or `github` (a GitHub Projects (v2) board: GITHUB_TOKEN or
    /// the KIRO_GITHUB_APP_* settings, KIRO_GITHUB_PROJECT).
    #[arg(long, value_enum, env = env::FORGE, default_value_t)]
    pub forge: Forge,
    /// The GitHub project holding the board (`orgs/<org>/<number>`,
    /// `users/<user>/<number>` or its URL), with `--forge github`.
    #[arg(long, env = env::GITHUB_PROJECT)]
    pub github_project: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        forge: ForgeArgs,
    }

    #[test]
    fn the_defaults_and_the_value_names() {
        Cli::command().debug_assert();
        let cmd = Cli::command().mut_args(|a| a.env(None));
        let m = cmd.try_get_matches_from(["t"]).unwrap();
        let cli = <Cli as clap::FromArgMatches>::from_arg_matches(&m).unwrap();
        assert_eq!(cli.common.state_dir, PathBuf::from(".kiro-state"));
        assert_eq!(cli.common.backend, Backend::Embedded);
        assert_eq!(cli.common.log_format, LogFormat::Auto);
        assert_eq!(cli.common.metrics, MetricsMode::Off);
        assert_eq!(cli.forge.forge, Forge::Embedded);
        assert_eq!(Backend::Aws.to_string(), "aws");
        assert_eq!(Backend::Embedded.to_string(), "embedded");
        assert_eq!(Forge::Github.to_string(), "github");
        let cli = Cli::try_parse_from(["t", "--backend", "aws", "--forge", "github"]).unwrap();
        assert_eq!(
            (cli.common.backend, cli.forge.forge),
            (Backend::Aws, Forge::Github)
        );
    }

    /// A misspelt metrics mode stops the parse with a message naming the variable, the
    /// value and the accepted modes (it used to mean off, silently).
    #[test]
    fn a_misspelt_metrics_mode_is_refused_naming_the_variable() {
        let cli = Cli::try_parse_from(["t", "--metrics", "EMF"]).unwrap();
        assert_eq!(cli.common.metrics, MetricsMode::Emf);
        let err = Cli::try_parse_from(["t", "--metrics", "emff"])
            .unwrap_err()
            .to_string();
        for want in ["KIRO_METRICS", "--metrics", "\"emff\"", "`emf`", "`off`"] {
            assert!(err.contains(want), "{want:?} missing in {err}");
        }
    }
}
