//! The worker's configuration: one typed [`Config`], parsed once by clap from the command
//! line and the environment the build gives it.
//!
//! Invariant: board-derived values (item, project, repo, branch, spec, pull request,
//! fence, attempt) are kept here as raw, optional strings and are only ever used after
//! [`Inputs::parse`] turned them into protocol newtypes — a missing or bad one becomes a
//! `permanent-input` failure naming the field, never a clap error, so the worker can still
//! write its outcome. The GitHub token and the Kiro API key are [`Secret`]s whose `Debug`
//! prints nothing. Each default is stated once, in the clap definition ([`Config::defaults`]
//! is derived from it); the settings the binaries share (backend, forge, AWS, GitHub) are
//! `kiro_runtime`'s, under the environment names in `kiro_protocol::env`.

use crate::steps::coverage::CoverageFormat;
use clap::{Args, FromArgMatches, Parser, Subcommand, ValueEnum};
use kiro_protocol::env as settings;
use kiro_protocol::ports::build::env;
use kiro_protocol::{
    BranchName, BuildId, Failure, FailureClass, Fence, IdError, ItemId, PrNumber, ProjectKey,
    RepoName, Secret, SpecPath,
};
use kiro_runtime::{AwsArgs, ForgeArgs, GithubArgs, LeaseTableArgs};
pub use kiro_runtime::{Backend, Forge};
use std::path::{Path, PathBuf};

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

/// Where the outcome is written when `KIRO_OUTCOME_FILE` is not set (relative to the build
/// directory).
pub const DEFAULT_OUTCOME_FILE: &str = "kiro-outcome.env";

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
    #[arg(long, env = settings::GIT_BASE, default_value = "https://github.com")]
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
    /// The agent's time limit for the whole attempt: every round of the fix loop gets
    /// what the earlier ones left; its process group is killed on expiry. The default
    /// leaves a 60m build time to test, push and report (1s to 36h).
    #[arg(long, env = "KIRO_AGENT_TIMEOUT", default_value = "40m")]
    pub agent_timeout: humantime::Duration,
    /// `<agent> whoami` before the agent runs: `auto` (only when the agent is kiro-cli),
    /// `on` or `off`.
    #[arg(long, env = "KIRO_AGENT_PREFLIGHT", value_enum, default_value = "auto")]
    pub agent_preflight: Toggle,
    /// The preflight's time limit (1s to 10m).
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
    /// The test command's time limit (1s to 36h).
    #[arg(long, env = "KIRO_TEST_TIMEOUT", default_value = "10m")]
    pub test_timeout: humantime::Duration,
    /// The build's own time limit, when known (1s to 36h): the consumer writes it into
    /// every build whose limit it sets (the local runner's, or an explicit one), and the
    /// stack into the CodeBuild project's environment. When set, the agent's, the
    /// preflight's and the tests' limits and the fence wait must leave 5m inside it for
    /// checkout, push and report (the defaults fit a 60m build).
    #[arg(long, env = kiro_protocol::env::BUILD_TIMEOUT)]
    pub build_timeout: Option<humantime::Duration>,
    /// The coverage report's format: `auto` (detected from the file's content) or one of
    /// lcov, Cobertura, Istanbul (summary or final), llvm-cov, Clover, coverage.py, Go, JaCoCo.
    #[arg(long, env = "KIRO_COVERAGE_FORMAT", value_enum, default_value = "auto")]
    pub coverage_format: CoverageFormat,
    /// The coverage report, relative to the checkout (default: the first of the format's
    /// usual paths, for `auto` of every format's, that this test run wrote). Removed
    /// before the tests run; never committed; missing afterwards: `report-missing`.
    #[arg(long, env = "KIRO_COVERAGE_PATH")]
    pub coverage_path: Option<PathBuf>,
    /// Older name of `KIRO_COVERAGE_PATH` (used when that one is not set).
    #[arg(long, env = "KIRO_LCOV_PATH")]
    pub lcov_path: Option<PathBuf>,
    /// A JUnit XML report the tests write, relative to the checkout (default: none).
    /// Removed before the tests run; never committed; not written by passing tests:
    /// `report-missing`.
    #[arg(long, env = "KIRO_JUNIT_PATH")]
    pub junit_path: Option<PathBuf>,
    /// Minimum line coverage in percent (0 to 100).
    #[arg(long, env = "KIRO_COVERAGE_THRESHOLD", default_value_t = 80.0)]
    pub coverage_threshold: f64,
    /// How many times the agent is prompted again with a failure brief (the failing
    /// tests, the output's tail, the uncovered lines) when the tests fail or coverage is
    /// short, within the agent's time limit (0 to 10; 0: one round only).
    #[arg(long, env = "KIRO_FIX_ROUNDS", default_value_t = 2)]
    pub fix_rounds: u32,
    #[arg(long, env = settings::OUTCOME_FILE, default_value = DEFAULT_OUTCOME_FILE)]
    pub outcome_file: PathBuf,
    /// How long a handed-off build waits, before a fenced side effect (run, push, report),
    /// for the next consumer to adopt it: while the job record still names this build
    /// and the lease is between holders, the build is in transit, not lost. At least the
    /// consumers' lease TTL plus skew plus the time a replacement consumer takes to start
    /// (0s to 1h).
    #[arg(long, env = "KIRO_FENCE_WAIT", default_value = "3m")]
    pub fence_wait: humantime::Duration,
    /// Where the lease store lives (the fence check): `embedded` (KIRO_STATE_DIR) or
    /// `aws` (DynamoDB table KIRO_LEASE_TABLE).
    #[arg(long, env = settings::BACKEND, value_enum, default_value_t)]
    pub backend: Backend,
    /// Where the board and pull requests live, and the GitHub project.
    #[command(flatten)]
    pub forge: ForgeArgs,
    /// AWS region and endpoint of the lease table.
    #[command(flatten)]
    pub aws: AwsArgs,
    /// The lease table (`KIRO_BACKEND=aws`).
    #[command(flatten)]
    pub leases: LeaseTableArgs,
    /// Where the report goes on GitHub: one sticky `comment`, or a marked section of the
    /// pull request's `body`.
    #[arg(long, env = "KIRO_REPORT_MODE", value_enum, default_value = "comment")]
    pub report_mode: ReportModeArg,
    /// The embedded backend's state directory (`kiro.db`).
    #[arg(long, env = settings::STATE_DIR)]
    pub state_dir: Option<PathBuf>,
    /// The embedded board file.
    #[arg(long, env = settings::BOARD_FILE)]
    pub board_file: Option<PathBuf>,
    #[arg(long, env = "KIRO_GIT_AUTHOR_NAME", default_value = "kiro-worker")]
    pub git_author_name: String,
    #[arg(
        long,
        env = "KIRO_GIT_AUTHOR_EMAIL",
        default_value = "kiro-worker@users.noreply.local"
    )]
    pub git_author_email: String,
    /// How to reach GitHub: a token or a GitHub App (clone, push, board, pull requests).
    #[command(flatten)]
    pub github: GithubArgs,
}

impl Config {
    /// A configuration with every default and no item, read from the clap definition
    /// alone (no argument, no environment variable): for tests and library callers.
    pub fn defaults() -> Config {
        let cmd = Config::augment_args(clap::Command::new("kiro-worker")).mut_args(|a| a.env(None));
        let matches = cmd
            .try_get_matches_from(["kiro-worker"])
            .expect("every setting is optional or has a default");
        Config::from_arg_matches(&matches).expect("the defaults parse")
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

    /// The agent's log of round `n` of the fix loop (round 1: [`Config::agent_log`]).
    pub fn round_log(&self, n: u32) -> PathBuf {
        if n <= 1 {
            self.agent_log()
        } else {
            self.build_dir.join(format!("kiro-agent-round-{n}.log"))
        }
    }

    /// The log of the repository's setup command `n` (1-based).
    pub fn setup_log(&self, n: usize) -> PathBuf {
        self.build_dir.join(format!("kiro-setup-{n}.log"))
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
    use std::time::Duration;

    #[test]
    fn the_defaults_come_from_the_clap_definition_without_the_environment() {
        let d = Config::defaults();
        let min = |m: u64| humantime::Duration::from(Duration::from_secs(m * 60));
        assert_eq!(d.git_base, "https://github.com");
        assert_eq!(d.build_dir, PathBuf::from("."));
        assert_eq!(d.workdir, PathBuf::from("workspace"));
        assert_eq!(
            d.agent_cmd,
            "kiro-cli chat --no-interactive --trust-all-tools"
        );
        assert_eq!(d.agent_timeout, min(40));
        assert_eq!(d.agent_preflight, Toggle::Auto);
        assert_eq!(d.agent_preflight_timeout, Duration::from_secs(30).into());
        assert_eq!(d.agent_harness, Harness::V3);
        assert_eq!(d.test_cmd, "npm test");
        assert_eq!(d.test_timeout, min(10));
        assert_eq!(d.coverage_format, CoverageFormat::Auto);
        assert_eq!(d.coverage_threshold, 80.0);
        assert_eq!(d.fix_rounds, 2);
        assert_eq!(d.outcome_file, PathBuf::from(DEFAULT_OUTCOME_FILE));
        assert_eq!(d.fence_wait, min(3));
        assert_eq!(d.build_timeout, None);
        assert_eq!(d.backend, Backend::Embedded);
        assert_eq!(d.forge.forge, Forge::Embedded);
        assert_eq!(d.report_mode, ReportModeArg::Comment);
        assert_eq!(d.git_author_name, "kiro-worker");
        assert_eq!(d.git_author_email, "kiro-worker@users.noreply.local");
        assert_eq!(d.item, None);
        assert_eq!(d.state_dir, None);
        assert_eq!(d.github, GithubArgs::default());
        assert_eq!(d.aws, AwsArgs::default());
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

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
