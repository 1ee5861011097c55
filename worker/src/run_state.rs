//! What one run of the pipeline shares between its parts ([`pipeline`](crate::pipeline),
//! the fix loop [`rounds`](crate::rounds), the [`side_branch`](crate::side_branch)):
//! the state it has learned, what is never committed, and running blocking git work.
//!
//! Invariant: this module depends on no part of the pipeline, so the parts depend on it
//! and never on each other's internals.

use crate::config::Config;
use crate::repo_settings::Settings;
use crate::steps::brief::FailureBrief;
use crate::steps::report::Round;
use crate::steps::steering::SyncReport;
use crate::steps::test_run::TestResult;
use crate::steps::{gates, git, partial};
use crate::tasks::Task;
use kiro_protocol::{BranchName, Failure, FailureClass};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What the run learned so far (used for the report and the outcome, success or not).
#[derive(Debug, Default)]
pub(crate) struct RunState {
    /// The tasks on the pull request's tip.
    pub before: Vec<Task>,
    /// The tasks as the checkout has them now.
    pub after: Vec<Task>,
    pub tests: Option<TestResult>,
    pub coverage: Option<f64>,
    pub commit: Option<String>,
    pub pushed: bool,
    pub steering: Option<SyncReport>,
    /// Each round of the fix loop.
    pub rounds: Vec<Round>,
    /// The agent's time across the rounds of this attempt (the outcome's agent
    /// seconds).
    pub agent_time: Duration,
    /// The last lines of the agent's last output: its own summary.
    pub agent_summary: Vec<String>,
    /// The agent ran (so the checkout may hold work).
    pub agent_ran: bool,
    /// The failure brief of the last round that failed the gates.
    pub brief: Option<FailureBrief>,
    /// The previous attempt's brief and its side branch, when this attempt starts
    /// from it.
    pub resume: Option<(FailureBrief, BranchName)>,
    /// The side branch found on the remote at the start.
    pub side_found: Option<partial::Found>,
    /// What happened to side branches, one sentence each (for the report).
    pub side_notes: Vec<String>,
    /// The run's settings, once resolved after the checkout.
    pub settings: Option<Settings>,
}

/// What is never committed: the build's own files (logs of the setup, the agent's
/// rounds and the tests, outcome, report) when inside the checkout, the reports and test
/// artefacts, the repository's never-commit paths and its settings file (`.gitignore` or
/// not).
pub(crate) fn exclusions(cfg: &Config, settings: &Settings, checkout: &Path) -> git::Exclusions {
    let rounds = (2..=settings.fix_rounds.saturating_add(1)).map(|n| cfg.round_log(n));
    let setup = (1..=settings.setup.len()).map(|n| cfg.setup_log(n));
    let (never, globs) = gates::never_commit(settings);
    git::Exclusions(
        [
            cfg.agent_log(),
            cfg.preflight_log(),
            cfg.test_log(),
            cfg.outcome_path(),
            cfg.report_file(),
        ]
        .into_iter()
        .chain(rounds)
        .chain(setup)
        .filter_map(|p| relative_inside(&p, checkout))
        .chain(never)
        .collect(),
        globs,
    )
}

pub(crate) fn relative_inside(path: &Path, dir: &Path) -> Option<PathBuf> {
    let abs = |p: &Path| std::path::absolute(p).ok();
    let (p, d) = (abs(path)?, abs(dir)?);
    p.strip_prefix(&d).ok().map(Path::to_owned)
}

/// Run blocking work (git, file trees) off the async threads.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, Failure>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Failure> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Failure::new(FailureClass::Internal, format!("blocking task failed: {e}")))?
}
