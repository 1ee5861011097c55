//! The producer's command line and its one typed [`Config`].
//!
//! Invariant: this is the only place (with `main`) that reads arguments and environment
//! variables; everything after [`Config::from_cli`] works on checked, typed values.

use clap::Parser;
use kiro_backends::aws::settings::AwsSettings;
use kiro_backends::aws::sqs::SqsSettings;
use kiro_protocol::env;
use kiro_runtime::{AwsArgs, CommonArgs, ForgeArgs, GithubArgs, MissingSetting, SqsArgs};
pub use kiro_runtime::{Backend, Forge};
pub use kiro_telemetry::LogFormat;
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;

/// Read the board, validate each ready item and enqueue it for the consumer.
///
/// Every item in the board's ready status ("For Implementation") is checked — branch
/// names, spec paths, repository names and ids — and then sent to the work queue with
/// the project as its message group, and moved to "Queued". An item that fails the
/// checks is moved to "Failed" with the reason as its note and is never enqueued.
#[derive(Debug, Parser)]
#[command(
    name = "kiro-producer",
    version,
    after_help = "Examples:\n  \
        kiro-producer --once --board examples/quickstart/board.yaml\n  \
        kiro-producer --every 5m --state-dir /var/lib/kiro\n\n\
        Exit status: 0 when the tick ran (rejected items included), 1 when the board or \
        the queue could not be used, 2 for a bad command line."
)]
pub struct Cli {
    /// Run one tick and exit (the default when --every is not given).
    #[arg(long, conflicts_with = "every")]
    pub once: bool,

    /// Run a tick now and then every DURATION (e.g. 30s, 5m, 1h; 1s to 7d) until
    /// SIGINT/SIGTERM.
    #[arg(long, value_name = "DURATION", value_parser = parse_period)]
    pub every: Option<Duration>,

    /// State directory, backend and log format.
    #[command(flatten)]
    pub common: CommonArgs,

    /// Board file (YAML) of the embedded backend.
    #[arg(long, value_name = "FILE", env = env::BOARD_FILE)]
    pub board: Option<PathBuf>,

    /// AWS region and endpoint (`--backend aws`).
    #[command(flatten)]
    pub aws: AwsArgs,

    /// The work queue and its dead-letter queue (`--backend aws`).
    #[command(flatten)]
    pub sqs: SqsArgs,

    /// Where the board lives.
    #[command(flatten)]
    pub forge: ForgeArgs,

    /// How to reach GitHub (`--forge github`).
    #[command(flatten)]
    pub github: GithubArgs,
}

/// Run once, or repeatedly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Once,
    Every(Duration),
}

/// Everything the producer needs, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub mode: Mode,
    /// Where the embedded queue and board statuses live.
    pub state_dir: PathBuf,
    pub backend: BackendConfig,
    pub forge: ForgeConfig,
    pub log_format: LogFormat,
    /// How to reach GitHub (parsed when the board is wired: a bad value exits 1).
    pub github: GithubArgs,
}

/// The chosen board and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForgeConfig {
    Embedded { board_file: PathBuf },
    Github { project: String },
}

/// The chosen queue backend and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendConfig {
    Embedded,
    Aws {
        aws: AwsSettings,
        queues: SqsSettings,
    },
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("the embedded backend needs a board file: pass --board FILE or set KIRO_BOARD_FILE")]
    MissingBoard,
    #[error("--backend aws needs {0}")]
    MissingSetting(&'static str),
    #[error("--forge github needs --github-project or KIRO_GITHUB_PROJECT (e.g. orgs/acme/7)")]
    NoGithubProject,
}

impl Config {
    pub fn from_cli(cli: Cli) -> Result<Config, ConfigError> {
        let mode = match cli.every {
            Some(period) => Mode::Every(period),
            None => Mode::Once,
        };
        let forge = match cli.forge.forge {
            Forge::Embedded => ForgeConfig::Embedded {
                board_file: cli.board.ok_or(ConfigError::MissingBoard)?,
            },
            Forge::Github => ForgeConfig::Github {
                project: cli
                    .forge
                    .github_project
                    .filter(|p| !p.is_empty())
                    .ok_or(ConfigError::NoGithubProject)?,
            },
        };
        let backend = match cli.common.backend {
            Backend::Embedded => BackendConfig::Embedded,
            Backend::Aws => BackendConfig::Aws {
                aws: cli.aws.settings()?,
                queues: cli.sqs.settings()?,
            },
        };
        Ok(Config {
            mode,
            state_dir: cli.common.state_dir,
            backend,
            forge,
            log_format: cli.common.log_format,
            github: cli.github,
        })
    }
}

impl From<MissingSetting> for ConfigError {
    fn from(e: MissingSetting) -> Self {
        ConfigError::MissingSetting(e.0)
    }
}

/// The shortest and longest `--every` period.
const PERIOD_MIN: Duration = Duration::from_secs(1);
const PERIOD_MAX: Duration = Duration::from_secs(7 * 24 * 3600);

fn parse_period(raw: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(raw).map_err(|e| format!("{e} (try 30s, 5m or 1h)"))?;
    kiro_runtime::range::duration_within(d, PERIOD_MIN, PERIOD_MAX)?;
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("kiro-producer").chain(args.iter().copied()))
    }

    #[test]
    fn every_outside_its_range_is_refused_naming_the_flag() {
        for bad in ["0s", "500ms", "8d", "999999999999h"] {
            let e = parse(&["--every", bad, "--board", "b.yaml"]).unwrap_err();
            assert_eq!(
                e.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{bad}: {e}"
            );
            let text = e.to_string();
            assert!(text.contains("--every"), "{bad}: {text}");
        }
        let e = parse(&["--every", "8d", "--board", "b.yaml"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("must be between 1s and 7days"), "{e}");
        assert!(parse(&["--every", "7d", "--board", "b.yaml"]).is_ok());
        assert!(parse(&["--every", "1s", "--board", "b.yaml"]).is_ok());
    }

    #[test]
    fn every_takes_a_human_duration() {
        let cli = parse(&["--every", "5m", "--board", "b.yaml", "--state-dir", "s"]).unwrap();
        let c = Config::from_cli(cli).unwrap();
        assert_eq!(c.mode, Mode::Every(Duration::from_secs(300)));
        assert_eq!(c.backend, BackendConfig::Embedded);
        assert_eq!(c.state_dir, PathBuf::from("s"));
        assert_eq!(
            c.forge,
            ForgeConfig::Embedded {
                board_file: "b.yaml".into()
            }
        );
    }

    #[test]
    fn once_is_the_default_and_conflicts_with_every() {
        let c = Config::from_cli(parse(&["--board", "b.yaml"]).unwrap()).unwrap();
        assert_eq!(c.mode, Mode::Once);
        assert!(parse(&["--once", "--every", "5m", "--board", "b"]).is_err());
    }

    #[test]
    fn the_embedded_backend_needs_a_board() {
        let cli = Cli {
            once: true,
            every: None,
            common: CommonArgs {
                state_dir: "s".into(),
                backend: Backend::Embedded,
                log_format: LogFormat::Auto,
                metrics: Default::default(),
            },
            board: None,
            aws: AwsArgs::default(),
            sqs: SqsArgs::default(),
            forge: ForgeArgs {
                forge: Forge::Embedded,
                github_project: None,
            },
            github: GithubArgs::default(),
        };
        let err = Config::from_cli(cli).unwrap_err();
        assert_eq!(err, ConfigError::MissingBoard);
        assert!(err.to_string().contains("--board FILE"));
    }

    #[test]
    fn bad_periods_are_rejected() {
        assert!(parse(&["--every", "soon", "--board", "b"]).is_err());
        assert!(parse(&["--every", "0s", "--board", "b"]).is_err());
    }

    #[test]
    fn the_aws_backend_names_a_missing_setting() {
        let cli = parse(&[
            "--backend",
            "aws",
            "--board",
            "b",
            "--aws-region",
            "eu-west-1",
            "--queue-url",
            "q",
        ])
        .unwrap();
        let err = Config::from_cli(cli).unwrap_err();
        assert_eq!(err, ConfigError::MissingSetting("KIRO_DLQ_URL"));
        let cli = parse(&[
            "--backend",
            "aws",
            "--board",
            "b",
            "--aws-region",
            "r",
            "--queue-url",
            "q",
            "--dlq-url",
            "d",
        ])
        .unwrap();
        assert!(matches!(
            Config::from_cli(cli).unwrap().backend,
            BackendConfig::Aws { .. }
        ));
    }

    #[test]
    fn the_github_forge_needs_a_project_but_no_board_file() {
        let err = Config::from_cli(parse(&["--forge", "github"]).unwrap()).unwrap_err();
        assert_eq!(err, ConfigError::NoGithubProject);
        let c = Config::from_cli(
            parse(&["--forge", "github", "--github-project", "orgs/acme/7"]).unwrap(),
        )
        .unwrap();
        assert_eq!(
            c.forge,
            ForgeConfig::Github {
                project: "orgs/acme/7".into()
            }
        );
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
