//! The worker's configuration: one typed [`Config`], parsed once by clap from the command
//! line and the environment the build gives it.
//!
//! Invariant: board-derived values (item, project, repo, branch, spec, pull request,
//! fence, attempt) are kept here as raw, optional strings and are only ever used after
//! [`Inputs::parse`] turned them into protocol newtypes — a missing or bad one becomes a
//! `permanent-input` failure naming the field, never a clap error, so the worker can still
//! write its outcome. The GitHub token is a [`Secret`] whose `Debug` prints nothing.

use crate::steps::coverage::CoverageFormat;
use clap::{Args, Parser, Subcommand, ValueEnum};
use kiro_protocol::ports::build::env;
use kiro_protocol::{
    BranchName, BuildId, Failure, FailureClass, Fence, IdError, ItemId, PrNumber, ProjectKey,
    RepoName, SpecPath,
};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// `kiro-worker`: the in-build pipeline.
#[derive(Debug, Parser)]
#[command(name = "kiro-worker", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the pipeline for the item named by the build's environment.
    Run(Box<Config>),
}

/// A value that must never be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// An on/off switch whose default depends on something else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Toggle {
    Auto,
    #[value(alias = "true", alias = "1", alias = "yes")]
    On,
    #[value(alias = "false", alias = "0", alias = "no")]
    Off,
}

impl Toggle {
    /// `auto` resolves to `default`.
    pub fn resolve(self, default: bool) -> bool {
        match self {
            Toggle::Auto => default,
            Toggle::On => true,
            Toggle::Off => false,
        }
    }
}

/// kiro-cli's agent harness (`--v3` / `--v2`); `none` adds no flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Harness {
    V2,
    V3,
    None,
}

/// Everything the worker needs, from flags or (usually) the environment.
#[derive(Debug, Clone, Args)]
pub struct Config {
    // --- the item (board-derived: untrusted, parsed by `Inputs::parse`) ---
    #[arg(long, env = env::ITEM)]
    pub item: Option<String>,
    #[arg(long, env = env::PROJECT)]
    pub project: Option<String>,
    #[arg(long, env = env::REPO)]
    pub repo: Option<String>,
    #[arg(long, env = env::BRANCH)]
    pub branch: Option<String>,
    #[arg(long, env = env::SPEC)]
    pub spec: Option<String>,
    #[arg(long, env = env::PR)]
    pub pr: Option<String>,
    #[arg(long, env = env::FENCE)]
    pub fence: Option<String>,
    #[arg(long, env = env::ATTEMPT)]
    pub attempt: Option<String>,
    #[arg(long, env = env::TRACEPARENT)]
    pub traceparent: Option<String>,
    /// This build's page (CodeBuild sets it): linked from a report too long for GitHub.
    #[arg(long, env = "CODEBUILD_BUILD_URL")]
    pub build_url: Option<String>,
    /// This build's id, as the build runner sets it (`CODEBUILD_BUILD_ID`); lets the
    /// worker act after a new lease holder adopted its build.
    #[arg(long, env = "CODEBUILD_BUILD_ID")]
    pub build_id: Option<String>,

    // --- operator settings ---
    /// Base URL of the git forge; the clone URL is `{base}/{owner}/{name}.git`.
    #[arg(long, env = "KIRO_GIT_BASE", default_value = "https://github.com")]
    pub git_base: String,
    /// The build's own directory: logs and the outcome file go here; relative paths
    /// below are resolved against it.
    #[arg(long, env = "KIRO_BUILD_DIR", default_value = ".")]
    pub build_dir: PathBuf,
    /// Where the repository is checked out (fresh every run).
    #[arg(long, env = "KIRO_WORKDIR", default_value = "workspace")]
    pub workdir: PathBuf,
    /// The agent command; the prompt is appended as one more argument.
    #[arg(
        long,
        env = "KIRO_AGENT_CMD",
        default_value = "kiro-cli chat --no-interactive --trust-all-tools"
    )]
    pub agent_cmd: String,
    #[arg(long, env = "KIRO_AGENT_TIMEOUT", default_value = "60m")]
    pub agent_timeout: humantime::Duration,
    /// `<agent> whoami` before the agent runs: `auto` (only when the agent is kiro-cli),
    /// `on` or `off`.
    #[arg(long, env = "KIRO_AGENT_PREFLIGHT", value_enum, default_value = "auto")]
    pub agent_preflight: Toggle,
    #[arg(long, env = "KIRO_AGENT_PREFLIGHT_TIMEOUT", default_value = "30s")]
    pub agent_preflight_timeout: humantime::Duration,
    /// kiro-cli's custom agent (`--agent NAME`).
    #[arg(long, env = "KIRO_AGENT_NAME")]
    pub agent_name: Option<String>,
    /// kiro-cli's harness flag: `v3` (`--v3`), `v2` (`--v2`) or `none`.
    #[arg(long, env = "KIRO_AGENT_HARNESS", value_enum, default_value = "v3")]
    pub agent_harness: Harness,
    /// kiro-cli's model (`--model X`).
    #[arg(long, env = "KIRO_AGENT_MODEL")]
    pub agent_model: Option<String>,
    /// kiro-cli's API key, passed to the agent (and its preflight) only; never logged.
    #[arg(long, env = "KIRO_API_KEY", hide_env_values = true)]
    pub kiro_api_key: Option<Secret>,
    /// Extra variables of the worker's environment passed to the agent (comma- or
    /// space-separated names; never `AWS_*`, `ECS_CONTAINER_METADATA_URI*`, the GitHub
    /// token or `KIRO_*`). The agent otherwise gets only PATH, locale, TERM, TMPDIR, TZ
    /// and the proxy settings, with a fresh HOME and its KIRO_API_KEY.
    #[arg(long, env = "KIRO_AGENT_ENV_PASS")]
    pub agent_env_pass: Option<String>,
    /// Extra variables passed to the test command (same rules as KIRO_AGENT_ENV_PASS;
    /// the tests also get CI, and never KIRO_API_KEY).
    #[arg(long, env = "KIRO_TEST_ENV_PASS")]
    pub test_env_pass: Option<String>,
    /// Central steering files: a git URL (optionally `#ref`) or a local directory.
    #[arg(long, env = "KIRO_STEERING_SOURCE")]
    pub steering_source: Option<String>,
    /// The repository's test command, run with `sh -c` in the checkout.
    #[arg(long, env = "KIRO_TEST_CMD", default_value = "npm test")]
    pub test_cmd: String,
    #[arg(long, env = "KIRO_TEST_TIMEOUT", default_value = "30m")]
    pub test_timeout: humantime::Duration,
    /// The coverage report's format: `auto` (detected from the file), `lcov`,
    /// `cobertura`, `istanbul` (`coverage-summary.json`) or `llvm-cov` (`--json`).
    #[arg(long, env = "KIRO_COVERAGE_FORMAT", value_enum, default_value = "auto")]
    pub coverage_format: CoverageFormat,
    /// The coverage report, relative to the checkout (default: the format's usual path;
    /// for `auto`, the first of those that exists).
    #[arg(long, env = "KIRO_COVERAGE_PATH")]
    pub coverage_path: Option<PathBuf>,
    /// Older name of `KIRO_COVERAGE_PATH` (used when that one is not set).
    #[arg(long, env = "KIRO_LCOV_PATH")]
    pub lcov_path: Option<PathBuf>,
    /// A JUnit XML report the tests write, relative to the checkout (default: none).
    #[arg(long, env = "KIRO_JUNIT_PATH")]
    pub junit_path: Option<PathBuf>,
    /// Minimum line coverage in percent.
    #[arg(long, env = "KIRO_COVERAGE_THRESHOLD", default_value_t = 80.0)]
    pub coverage_threshold: f64,
    #[arg(long, env = "KIRO_OUTCOME_FILE", default_value = "kiro-outcome.env")]
    pub outcome_file: PathBuf,
    /// How long a handed-off build waits, before a fenced side effect (run, push, report),
    /// for the next consumer to adopt it: while the job record still names this build
    /// and the lease is between holders, the build is in transit, not lost. At least the
    /// consumers' lease TTL plus skew plus the time a replacement consumer takes to start.
    #[arg(long, env = "KIRO_FENCE_WAIT", default_value = "3m")]
    pub fence_wait: humantime::Duration,
    /// Where the lease store lives (the fence check): `embedded` (KIRO_STATE_DIR) or
    /// `aws` (DynamoDB table KIRO_LEASE_TABLE).
    #[arg(long, env = "KIRO_BACKEND", value_enum, default_value = "embedded")]
    pub backend: LeaseBackend,
    /// Where the board and pull requests live: `embedded` (KIRO_BOARD_FILE + KIRO_STATE_DIR)
    /// or `github` (GITHUB_TOKEN or the KIRO_GITHUB_APP_* settings, KIRO_GITHUB_PROJECT).
    #[arg(long, env = "KIRO_FORGE", value_enum, default_value = "embedded")]
    pub forge: Forge,
    /// AWS region of the lease table (falls back to AWS_REGION).
    #[arg(long, env = "KIRO_AWS_REGION")]
    pub aws_region: Option<String>,
    /// One endpoint for every AWS service (an emulator such as moto).
    #[arg(long, env = "KIRO_AWS_ENDPOINT_URL")]
    pub aws_endpoint_url: Option<String>,
    /// DynamoDB table of leases and job records (`KIRO_BACKEND=aws`).
    #[arg(long, env = "KIRO_LEASE_TABLE")]
    pub lease_table: Option<String>,
    /// The GitHub project holding the board (`orgs/<org>/<number>` or
    /// `users/<user>/<number>`), for `KIRO_FORGE=github`.
    #[arg(long, env = "KIRO_GITHUB_PROJECT")]
    pub github_project: Option<String>,
    /// Where the report goes on GitHub: one sticky `comment`, or a marked section of the
    /// pull request's `body`.
    #[arg(long, env = "KIRO_REPORT_MODE", value_enum, default_value = "comment")]
    pub report_mode: ReportModeArg,
    /// The embedded backend's state directory (`kiro.db`).
    #[arg(long, env = "KIRO_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// The embedded board file.
    #[arg(long, env = "KIRO_BOARD_FILE")]
    pub board_file: Option<PathBuf>,
    #[arg(long, env = "KIRO_GIT_AUTHOR_NAME", default_value = "kiro-worker")]
    pub git_author_name: String,
    #[arg(
        long,
        env = "KIRO_GIT_AUTHOR_EMAIL",
        default_value = "kiro-worker@users.noreply.local"
    )]
    pub git_author_email: String,
    /// Token for https pushes (`x-access-token`); never logged.
    #[arg(long, env = "GITHUB_TOKEN", hide_env_values = true)]
    pub github_token: Option<Secret>,
    /// GitHub App id: with the key and installation id, clone and push use a fresh
    /// installation token instead of `GITHUB_TOKEN`.
    #[arg(long, env = "KIRO_GITHUB_APP_ID")]
    pub github_app_id: Option<String>,
    /// GitHub App private key (PEM; literal `\n` accepted); never logged.
    #[arg(long, env = "KIRO_GITHUB_APP_PRIVATE_KEY", hide_env_values = true)]
    pub github_app_private_key: Option<Secret>,
    #[arg(long, env = "KIRO_GITHUB_APP_INSTALLATION_ID")]
    pub github_app_installation_id: Option<String>,
    /// GitHub REST base (GitHub Enterprise: `https://HOST/api/v3`).
    #[arg(long, env = "KIRO_GITHUB_API_URL")]
    pub github_api_url: Option<String>,
}

impl Config {
    /// A configuration with every default and no item: for tests and library callers.
    pub fn defaults() -> Config {
        Config {
            item: None,
            project: None,
            repo: None,
            branch: None,
            spec: None,
            pr: None,
            fence: None,
            attempt: None,
            traceparent: None,
            build_id: None,
            build_url: None,
            git_base: "https://github.com".into(),
            build_dir: PathBuf::from("."),
            workdir: PathBuf::from("workspace"),
            agent_cmd: "kiro-cli chat --no-interactive --trust-all-tools".into(),
            agent_timeout: Duration::from_secs(60 * 60).into(),
            agent_preflight: Toggle::Auto,
            agent_preflight_timeout: Duration::from_secs(30).into(),
            agent_name: None,
            agent_harness: Harness::V3,
            agent_model: None,
            kiro_api_key: None,
            agent_env_pass: None,
            test_env_pass: None,
            steering_source: None,
            test_cmd: "npm test".into(),
            test_timeout: Duration::from_secs(30 * 60).into(),
            coverage_format: CoverageFormat::Auto,
            coverage_path: None,
            lcov_path: None,
            junit_path: None,
            coverage_threshold: 80.0,
            outcome_file: PathBuf::from("kiro-outcome.env"),
            fence_wait: Duration::from_secs(180).into(),
            backend: LeaseBackend::Embedded,
            forge: Forge::Embedded,
            aws_region: None,
            aws_endpoint_url: None,
            lease_table: None,
            github_project: None,
            report_mode: ReportModeArg::Comment,
            state_dir: None,
            board_file: None,
            git_author_name: "kiro-worker".into(),
            git_author_email: "kiro-worker@users.noreply.local".into(),
            github_token: None,
            github_app_id: None,
            github_app_private_key: None,
            github_app_installation_id: None,
            github_api_url: None,
        }
    }

    /// `p` resolved against the build directory.
    pub fn in_build_dir(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.build_dir.join(p)
        }
    }

    pub fn checkout_dir(&self) -> PathBuf {
        self.in_build_dir(&self.workdir)
    }

    pub fn outcome_path(&self) -> PathBuf {
        self.in_build_dir(&self.outcome_file)
    }

    pub fn agent_log(&self) -> PathBuf {
        self.build_dir.join("kiro-agent.log")
    }

    pub fn preflight_log(&self) -> PathBuf {
        self.build_dir.join("kiro-agent-preflight.log")
    }

    pub fn test_log(&self) -> PathBuf {
        self.build_dir.join("kiro-tests.log")
    }

    /// The full pull-request report (the one posted may be cut to GitHub's limit).
    pub fn report_file(&self) -> PathBuf {
        self.build_dir.join("kiro-report.md")
    }

    /// The clone URL of `repo`.
    pub fn clone_url(&self, repo: &RepoName) -> String {
        format!(
            "{}/{}/{}.git",
            self.git_base.trim_end_matches('/'),
            repo.owner(),
            repo.name()
        )
    }
}

/// Where the worker's lease store lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LeaseBackend {
    Embedded,
    Aws,
}

/// Where the worker's board and pull requests live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Forge {
    Embedded,
    Github,
}

/// How the report is kept on a GitHub pull request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportModeArg {
    Comment,
    Body,
}

/// The item's values, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs {
    pub item: ItemId,
    pub project: ProjectKey,
    pub repo: RepoName,
    pub branch: BranchName,
    pub spec: SpecPath,
    pub pr: PrNumber,
    pub fence: Fence,
    pub attempt: u32,
    /// The build this worker runs in, when the runner says.
    pub build_id: Option<BuildId>,
}

impl Inputs {
    /// A valid set of inputs for unit tests (item CALC-1 of acme/calc, fence 3).
    #[cfg(test)]
    pub(crate) fn sample(attempt: u32) -> Inputs {
        Inputs {
            item: ItemId::parse("CALC-1").expect("valid"),
            project: ProjectKey::parse("calc").expect("valid"),
            repo: RepoName::parse("acme/calc").expect("valid"),
            branch: BranchName::parse("feature/subtract").expect("valid"),
            spec: SpecPath::parse("subtract").expect("valid"),
            pr: PrNumber(1),
            fence: Fence(3),
            attempt,
            build_id: None,
        }
    }

    /// Parse every board-derived value; the first missing or bad one is a
    /// `permanent-input` failure naming the field.
    pub fn parse(cfg: &Config) -> Result<Inputs, Failure> {
        fn req<'a>(v: &'a Option<String>, var: &str) -> Result<&'a str, Failure> {
            v.as_deref().ok_or_else(|| {
                Failure::new(FailureClass::PermanentInput, format!("{var} is not set"))
            })
        }
        let bad = |e: IdError| Failure::new(FailureClass::PermanentInput, e.to_string());
        let item = ItemId::parse(req(&cfg.item, env::ITEM)?).map_err(bad)?;
        let project = ProjectKey::parse(req(&cfg.project, env::PROJECT)?).map_err(bad)?;
        let repo = RepoName::parse(req(&cfg.repo, env::REPO)?).map_err(bad)?;
        let branch = BranchName::parse(req(&cfg.branch, env::BRANCH)?).map_err(bad)?;
        let spec = SpecPath::parse(req(&cfg.spec, env::SPEC)?).map_err(bad)?;
        let pr = PrNumber::parse(req(&cfg.pr, env::PR)?).map_err(bad)?;
        let raw_fence = req(&cfg.fence, env::FENCE)?;
        let fence = raw_fence
            .trim()
            .parse::<u64>()
            .map(Fence)
            .map_err(|_| bad(IdError::new("fence", raw_fence, "must be a number")))?;
        let attempt = match cfg.attempt.as_deref() {
            None | Some("") => 1,
            Some(raw) => raw
                .trim()
                .parse::<u32>()
                .map_err(|_| bad(IdError::new("attempt", raw, "must be a number")))?,
        };
        let build_id = cfg
            .build_id
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(BuildId::new);
        Ok(Inputs {
            build_id,
            item,
            project,
            repo,
            branch,
            spec,
            pr,
            fence,
            attempt,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Config {
        Config {
            item: Some("CALC-1".into()),
            project: Some("calc".into()),
            repo: Some("acme/calc".into()),
            branch: Some("feature/subtract".into()),
            spec: Some(".kiro/specs/subtract".into()),
            pr: Some("1".into()),
            fence: Some("7".into()),
            attempt: Some("2".into()),
            ..Config::defaults()
        }
    }

    #[test]
    fn good_inputs_parse() {
        let i = Inputs::parse(&good()).unwrap();
        assert_eq!(i.fence, Fence(7));
        assert_eq!(i.attempt, 2);
        assert_eq!(
            Config::defaults().clone_url(&i.repo),
            "https://github.com/acme/calc.git"
        );
    }

    #[test]
    fn bad_or_missing_inputs_name_the_field() {
        let mut c = good();
        c.branch = Some("a;rm -rf /".into());
        let f = Inputs::parse(&c).unwrap_err();
        assert_eq!(f.class, FailureClass::PermanentInput);
        assert!(f.reason.starts_with("invalid branch "), "{}", f.reason);
        let mut c = good();
        c.spec = None;
        assert_eq!(
            Inputs::parse(&c).unwrap_err().reason,
            "KIRO_SPEC_PATH is not set"
        );
        let mut c = good();
        c.fence = Some("x".into());
        assert!(
            Inputs::parse(&c)
                .unwrap_err()
                .reason
                .starts_with("invalid fence")
        );
    }

    #[test]
    fn clap_reads_the_environment_names() {
        let cli = Cli::try_parse_from([
            "kiro-worker",
            "run",
            "--branch",
            "b",
            "--agent-timeout",
            "2s",
            "--github-token",
            "ghp_secret",
        ])
        .unwrap();
        let Command::Run(cfg) = cli.command;
        assert_eq!(cfg.branch.as_deref(), Some("b"));
        assert_eq!(cfg.agent_harness, Harness::V3);
        assert_eq!(cfg.agent_preflight, Toggle::Auto);
        assert_eq!(cfg.coverage_format, CoverageFormat::Auto);
        let cli = Cli::try_parse_from([
            "kiro-worker",
            "run",
            "--agent-harness",
            "none",
            "--agent-preflight",
            "false",
            "--coverage-format",
            "llvm-cov",
            "--kiro-api-key",
            "ksk_secret",
        ])
        .unwrap();
        let Command::Run(c2) = cli.command;
        assert_eq!(c2.agent_harness, Harness::None);
        assert_eq!(c2.agent_preflight, Toggle::Off);
        assert_eq!(c2.coverage_format, CoverageFormat::LlvmCov);
        assert!(!format!("{c2:?}").contains("ksk_secret"));
        assert_eq!(Duration::from(cfg.agent_timeout), Duration::from_secs(2));
        assert!(!format!("{cfg:?}").contains("ghp_secret"));
    }
}
