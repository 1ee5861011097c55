//! What the executor is given ([`ExecPlan`]) and returns ([`ExecOutcome`], [`ExecError`]),
//! and the files of a build directory.
//!
//! Invariant: everything of one build lives under its build directory (`build.log`,
//! `src/`, the phase scripts), so a build directory can be inspected or removed whole.

use crate::buildspec::PhaseName;
use kiro_protocol::{BuildState, Timestamp};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;

/// The build log's file name inside the build directory.
pub const LOG_FILE: &str = "build.log";
/// The source directory's name inside the build directory.
pub const SRC_DIR: &str = "src";

/// Something outside the build's own commands went wrong (files, spawning the shell).
#[derive(Debug, Error)]
#[error("{context}: {source}")]
pub struct ExecError {
    context: String,
    #[source]
    source: std::io::Error,
}

pub(super) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ExecError {
    let context = context.into();
    move |source| ExecError { context, source }
}

/// Everything the executor needs besides the buildspec.
#[derive(Debug, Clone)]
pub struct ExecPlan {
    pub build_id: String,
    /// Holds `build.log`, `src/` and the generated phase scripts.
    pub build_dir: PathBuf,
    /// The starting environment (the launcher's own, or a minimal one).
    pub base_env: BTreeMap<String, String>,
    /// The request's overrides; they win over the buildspec's `env.variables`.
    pub overrides: BTreeMap<String, String>,
    pub source_version: String,
    pub start_time: Timestamp,
    /// The whole build's time limit.
    pub timeout: Duration,
    /// How long a killed process group gets between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
}

impl ExecPlan {
    pub fn log_path(&self) -> PathBuf {
        self.build_dir.join(LOG_FILE)
    }

    pub fn src_dir(&self) -> PathBuf {
        self.build_dir.join(SRC_DIR)
    }
}

/// How a build ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutcome {
    /// SUCCEEDED, FAILED, TIMED_OUT or STOPPED.
    pub state: BuildState,
    /// Which phase failed and how (or where it timed out / was stopped).
    pub message: Option<String>,
    /// The values of `env.exported-variables` in the final environment (unset ones absent).
    pub exported: BTreeMap<String, String>,
    /// The last phase that ran.
    pub last_phase: Option<PhaseName>,
}
