//! Resolution: the repository's file over the deployment's defaults, into [`Settings`].
//!
//! Invariant: [`merge`] takes each key from the file when the file sets it and from the
//! worker's `Config` otherwise, and checks the limits that matter together (preflight,
//! agent, setup, tests, fence wait and the room to report) against the build's known
//! time-out, as `kiro-worker`'s start-up check does for the deployment's own values;
//! [`resolve`] turns every problem into `permanent-input` naming repository, file and key.

use super::file::{self, FILE, FileError, RepoFile};
use super::pattern::RepoPattern;
use super::{CoverageReport, DEFAULT_SETUP_TIMEOUT, Settings};
use crate::config::Config;
use crate::ranges::fits_in_build;
use kiro_protocol::{Failure, FailureClass, RepoName};
use kiro_runtime::range::named;
use std::path::Path;
use std::time::Duration;
use tracing::info;

/// The deployment's settings alone (a repository without the file).
pub fn deployment(cfg: &Config) -> Settings {
    let (path_setting, path) = match (&cfg.coverage_path, &cfg.lcov_path) {
        (Some(p), _) => (named("coverage-path", "KIRO_COVERAGE_PATH"), Some(p)),
        (None, Some(p)) => (named("lcov-path", "KIRO_LCOV_PATH"), Some(p)),
        (None, None) => (named("coverage-path", "KIRO_COVERAGE_PATH"), None),
    };
    Settings {
        file: None,
        setup: Vec::new(),
        setup_timeout: DEFAULT_SETUP_TIMEOUT,
        test_command: cfg.test_cmd.clone(),
        test_timeout: cfg.test_timeout.into(),
        coverage: vec![CoverageReport {
            format: cfg.coverage_format,
            path: path.map(|p| RepoPattern::Path(p.clone())),
            path_setting,
            format_setting: named("coverage-format", "KIRO_COVERAGE_FORMAT"),
        }],
        coverage_threshold: cfg.coverage_threshold,
        junit: cfg
            .junit_path
            .iter()
            .cloned()
            .map(RepoPattern::Path)
            .collect(),
        junit_setting: named("junit-path", "KIRO_JUNIT_PATH"),
        fix_rounds: cfg.fix_rounds,
        agent_timeout: cfg.agent_timeout.into(),
        never_commit: vec![RepoPattern::Path(FILE.into())],
    }
}

/// `f` over the deployment's settings; `Err` names the key(s) at fault.
pub fn merge(cfg: &Config, f: RepoFile) -> Result<Settings, FileError> {
    let mut s = deployment(cfg);
    s.file = Some(FILE);
    let timing_set: Vec<&str> = [
        ("setup", f.setup.as_ref().is_some_and(|v| !v.is_empty())),
        ("setup_timeout", f.setup_timeout.is_some()),
        ("test_timeout", f.test_timeout.is_some()),
        ("agent_timeout", f.agent_timeout.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, set)| set.then_some(k))
    .collect();
    if let Some(v) = f.setup {
        s.setup = v;
    }
    if let Some(v) = f.setup_timeout {
        s.setup_timeout = v;
    }
    if let Some(v) = f.test_command {
        s.test_command = v;
    }
    if let Some(v) = f.test_timeout {
        s.test_timeout = v;
    }
    if let Some(v) = f.coverage {
        s.coverage = v
            .into_iter()
            .enumerate()
            .map(|(i, e)| CoverageReport {
                format: e.format,
                path: e.path,
                path_setting: format!("coverage[{i}].path in {FILE}"),
                format_setting: format!("coverage[{i}].format in {FILE}"),
            })
            .collect();
    }
    if let Some(v) = f.coverage_threshold {
        s.coverage_threshold = v;
    }
    if let Some(v) = f.junit {
        s.junit = v;
        s.junit_setting = format!("junit in {FILE}");
    }
    if let Some(v) = f.fix_rounds {
        s.fix_rounds = v;
    }
    if let Some(v) = f.agent_timeout {
        s.agent_timeout = v;
    }
    if let Some(v) = f.never_commit {
        s.never_commit.extend(v);
    }
    if !timing_set.is_empty() {
        room_check(cfg, &s, &timing_set).map_err(|message| FileError {
            key: timing_set.join(", "),
            message,
        })?;
    }
    Ok(s)
}

/// The limits of this run inside the build's known time-out: each term named by the
/// file's key when the file set it, else by its flag and variable.
fn room_check(cfg: &Config, s: &Settings, from_file: &[&str]) -> Result<(), String> {
    let Some(build) = cfg.build_timeout.map(Duration::from) else {
        return Ok(());
    };
    let name = |key: &str, flag: &str, var: &str| {
        if from_file.contains(&key) {
            key.to_owned()
        } else {
            named(flag, var)
        }
    };
    let mut terms = vec![
        (
            named("agent-preflight-timeout", "KIRO_AGENT_PREFLIGHT_TIMEOUT"),
            Duration::from(cfg.agent_preflight_timeout),
        ),
        (
            name("agent_timeout", "agent-timeout", "KIRO_AGENT_TIMEOUT"),
            s.agent_timeout,
        ),
    ];
    if !s.setup.is_empty() {
        terms.push(("setup_timeout".to_owned(), s.setup_timeout));
    }
    terms.push((
        name("test_timeout", "test-timeout", "KIRO_TEST_TIMEOUT"),
        s.test_timeout,
    ));
    terms.push((
        named("fence-wait", "KIRO_FENCE_WAIT"),
        Duration::from(cfg.fence_wait),
    ));
    fits_in_build(&named("build-timeout", "KIRO_BUILD_TIMEOUT"), build, &terms)
}

/// The settings of `repo`'s run: its file in `checkout` over the deployment's defaults.
/// No file: the deployment's. Anything wrong with the file: `permanent-input` naming
/// `repo`, the file and the key.
pub fn resolve(cfg: &Config, repo: &RepoName, checkout: &Path) -> Result<Settings, Failure> {
    let bad = |what: String| Failure::new(FailureClass::PermanentInput, format!("{repo}: {what}"));
    let text =
        match crate::checkout_fs::read_confined(checkout, Path::new(FILE), file::MAX_FILE_BYTES) {
            Ok(t) => t,
            Err(e) if e.is_missing() => {
                info!(
                    file = FILE,
                    "no settings file: the deployment's settings apply"
                );
                return Ok(deployment(cfg));
            }
            Err(e) => return Err(bad(format!("the settings file {e}"))),
        };
    let settings = file::parse(&text)
        .and_then(|f| merge(cfg, f))
        .map_err(|e| bad(format!("{FILE}: {e}")))?;
    info!(
        file = FILE,
        test_command = %settings.test_command,
        threshold = settings.coverage_threshold,
        reports = settings.coverage.len(),
        junit = settings.junit.len(),
        setup = settings.setup.len(),
        fix_rounds = settings.fix_rounds,
        "the repository's settings apply"
    );
    Ok(settings)
}
