//! A repository's own settings: the file [`FILE`] (`.kiro/codebuild-worker.toml`) the
//! repository keeps, resolved over the deployment's defaults into one typed [`Settings`]
//! that the pipeline, the gates and the test run read instead of the worker's
//! configuration.
//!
//! Invariants:
//! - the file is read once per run, from the checkout, right after the checkout and
//!   before the agent runs (through [`crate::checkout_fs`]: a symlink out of the
//!   checkout, a FIFO, a file over [`file::MAX_FILE_BYTES`] are refused by name); the
//!   agent cannot change the settings of the run it is in, and the worker never commits
//!   a change to the file ([`Settings::never_commit`] holds it);
//! - each key the file leaves out, and every key when there is no file, takes the
//!   deployment's value (the worker's `Config`: `KIRO_TEST_CMD`, `KIRO_TEST_TIMEOUT`,
//!   `KIRO_COVERAGE_FORMAT`, `KIRO_COVERAGE_PATH`, `KIRO_COVERAGE_THRESHOLD`,
//!   `KIRO_JUNIT_PATH`, `KIRO_AGENT_TIMEOUT`), so a repository without the file runs as
//!   it did before the file existed;
//! - a file that cannot be read, is not TOML, holds an unknown key or a value out of its
//!   type or range, or limits that leave the worker no room inside the build's known
//!   time-out, is a `permanent-input` failure whose reason names the repository, the
//!   file and the key: `acme/calc: .kiro/codebuild-worker.toml: coverage[1].format: …`.

pub mod file;
pub mod pattern;
mod resolve;

pub use file::{FILE, RepoFile};
pub use pattern::RepoPattern;
pub use resolve::{deployment, merge, resolve};

use crate::steps::coverage::CoverageFormat;
use std::path::PathBuf;
use std::time::Duration;

/// The time limit of all setup commands together when the repository does not say.
pub const DEFAULT_SETUP_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// One coverage report the gate reads, and the settings a message names to change it.
#[derive(Debug, Clone, PartialEq)]
pub struct CoverageReport {
    /// `auto`: detected from each file's content.
    pub format: CoverageFormat,
    /// A path or glob; `None`: the first of the format's usual paths this run wrote.
    pub path: Option<RepoPattern>,
    /// `--coverage-path (KIRO_COVERAGE_PATH)`, or `coverage[0].path in <FILE>`.
    pub path_setting: String,
    /// `--coverage-format (KIRO_COVERAGE_FORMAT)`, or `coverage[0].format in <FILE>`.
    pub format_setting: String,
}

/// The settings one run uses: the repository's file over the deployment's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// [`FILE`] when the repository has one, else `None` (all deployment defaults).
    pub file: Option<&'static str>,
    /// Commands run with `sh -c` in the checkout, in order, before the agent.
    pub setup: Vec<String>,
    /// The limit of all setup commands together.
    pub setup_timeout: Duration,
    /// The test command, run with `sh -c` in the checkout.
    pub test_command: String,
    pub test_timeout: Duration,
    /// The coverage reports, merged into one total (at least one).
    pub coverage: Vec<CoverageReport>,
    /// Minimum line coverage, percent.
    pub coverage_threshold: f64,
    /// JUnit reports (paths or globs); empty: the tests are judged by their exit code.
    pub junit: Vec<RepoPattern>,
    /// `--junit-path (KIRO_JUNIT_PATH)`, or `junit in <FILE>`.
    pub junit_setting: String,
    /// How many times the agent is prompted again with the failures (the fix loop).
    pub fix_rounds: u32,
    /// The agent's time budget per attempt.
    pub agent_timeout: Duration,
    /// Paths and globs never committed (besides the gates' reports and artefacts): the
    /// repository's own, and the settings file itself.
    pub never_commit: Vec<RepoPattern>,
}

impl Settings {
    /// Every literal path of [`Settings::never_commit`].
    pub fn never_commit_paths(&self) -> Vec<PathBuf> {
        self.never_commit
            .iter()
            .filter_map(|p| match p {
                RepoPattern::Path(p) => Some(p.clone()),
                RepoPattern::Glob { .. } => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
