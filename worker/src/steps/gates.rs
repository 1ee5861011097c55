//! The honest gates: which coverage and JUnit reports count, and which test artefacts
//! never reach the pull request's branch.
//!
//! Invariants:
//! - before the test command runs, every path a gate may read is removed from the
//!   checkout ([`clear_reports`]: every usual coverage path of every format, the
//!   configured coverage and JUnit paths, the usual JUnit paths), so a report committed
//!   earlier or written by the agent can never count;
//! - after the run, a report counts only when this run wrote it: modified between the
//!   start of the test command and its end (less [`CLOCK_SLACK`] for file-system
//!   timestamps); a missing or older (or newer) report is `report-missing`, never
//!   `coverage-below` or a pass, and its message names every path searched and the
//!   setting (flag and variable) to change;
//! - the report paths and the usual test artefacts ([`ARTEFACT_PATHS`]) are never
//!   staged, `.gitignore` or not ([`never_commit`]).
//!
//! Every path is relative to the checkout and resolved inside it
//! ([`crate::checkout_fs`]): nothing outside the checkout is removed or read.

use crate::config::Config;
use crate::steps::coverage::{self, CoverageFormat, MeasureError};
use crate::steps::junit;
use crate::steps::test_run::TestResult;
use kiro_protocol::{Failure, FailureClass};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tracing::{info, warn};

/// How far a report's modification time may lie outside the test run and still count
/// as written by it (file systems keep coarse timestamps; FAT's are 2 s).
pub const CLOCK_SLACK: Duration = Duration::from_secs(2);

/// Test artefacts the usual tools write besides their reports, relative to the
/// checkout: never committed, with or without a `.gitignore` entry.
pub const ARTEFACT_PATHS: [&str; 11] = [
    "coverage",
    ".nyc_output",
    "htmlcov",
    ".coverage",
    ".pytest_cache",
    "test-results",
    "target/nextest",
    "target/site/jacoco",
    "target/surefire-reports",
    "build/reports",
    "build/test-results",
];

/// The coverage setting in use (flag, variable) and its value, if set.
fn coverage_setting(cfg: &Config) -> (&'static str, Option<&Path>) {
    match (&cfg.coverage_path, &cfg.lcov_path) {
        (Some(p), _) => ("--coverage-path (KIRO_COVERAGE_PATH)", Some(p.as_path())),
        (None, Some(p)) => ("--lcov-path (KIRO_LCOV_PATH)", Some(p.as_path())),
        (None, None) => ("--coverage-path (KIRO_COVERAGE_PATH)", None),
    }
}

const JUNIT_SETTING: &str = "--junit-path (KIRO_JUNIT_PATH)";

/// Every path a gate may read: the usual coverage and JUnit paths and the configured
/// ones.
pub fn report_paths(cfg: &Config) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = coverage::known_report_paths()
        .into_iter()
        .chain(junit::KNOWN_REPORT_PATHS)
        .map(PathBuf::from)
        .collect();
    v.extend(coverage_setting(cfg).1.map(Path::to_owned));
    v.extend(cfg.junit_path.clone());
    v.sort();
    v.dedup();
    v
}

/// What is never staged: [`report_paths`] and [`ARTEFACT_PATHS`].
pub fn never_commit(cfg: &Config) -> Vec<PathBuf> {
    let mut v = report_paths(cfg);
    v.extend(ARTEFACT_PATHS.iter().map(PathBuf::from));
    v.sort();
    v.dedup();
    v
}

/// Remove every report a gate may read from the checkout, right before the tests run.
/// A path that resolves outside the checkout is left alone (a read of it is refused
/// later); one that cannot be removed fails the run, since it could still count.
pub fn clear_reports(checkout: &Path, cfg: &Config) -> Result<(), Failure> {
    for rel in report_paths(cfg) {
        match crate::checkout_fs::remove_confined(checkout, &rel) {
            Ok(true) => info!(file = %rel.display(), "removed a report left before the tests ran"),
            Ok(false) => {}
            Err(e) if e.rule == crate::checkout_fs::Rule::OutsideCheckout => {
                warn!(error = %e, "not removing a report path outside the checkout")
            }
            Err(e) => {
                return Err(Failure::new(
                    FailureClass::BuildFailed,
                    format!(
                        "cannot remove the report left before the tests ran: {e}; \
                         a report the tests did not write must not count"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// When the test command ran.
#[derive(Debug, Clone, Copy)]
pub struct RunWindow {
    pub started: SystemTime,
    pub ended: SystemTime,
}

/// Whether this run wrote the report at `rel`: `Ok(true)` yes, `Ok(false)` there is
/// none, `Err` with why it does not count (written outside the run). A path that cannot
/// be examined is left for the read, which names why.
fn written_by_run(checkout: &Path, rel: &Path, run: RunWindow, what: &str) -> Result<bool, String> {
    let modified = match crate::checkout_fs::modified_confined(checkout, rel) {
        Ok(m) => m,
        Err(e) if e.is_missing() => return Ok(false),
        Err(_) => return Ok(true),
    };
    let after_start = run
        .started
        .checked_sub(CLOCK_SLACK)
        .is_none_or(|from| modified >= from);
    let before_end = modified <= run.ended + CLOCK_SLACK;
    if after_start && before_end {
        return Ok(true);
    }
    let when = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
    Err(format!(
        "the {what} at {} was not written by this test run (modified {}, the tests ran \
         from {} to {})",
        rel.display(),
        when(modified),
        when(run.started),
        when(run.ended)
    ))
}

fn missing(reason: String) -> (Failure, Option<f64>) {
    (Failure::new(FailureClass::ReportMissing, reason), None)
}

/// The coverage gate over the report this run wrote: the first of the search paths
/// ([`coverage::search_paths`]) that exists. `Ok` carries the total; a failure carries it
/// too when it could be computed.
pub fn coverage(
    checkout: &Path,
    cfg: &Config,
    run: RunWindow,
) -> Result<f64, (Failure, Option<f64>)> {
    coverage_and_gaps(checkout, cfg, run).0
}

/// The coverage gate's verdict: the total, or the failure (with the total when known).
pub type CoverageVerdict = Result<f64, (Failure, Option<f64>)>;

/// [`coverage`], with the files whose lines the tests never ran (the most missed first;
/// empty when no report was read) for the failure brief.
pub fn coverage_and_gaps(
    checkout: &Path,
    cfg: &Config,
    run: RunWindow,
) -> (CoverageVerdict, Vec<coverage::Uncovered>) {
    match coverage_read(checkout, cfg, run) {
        Ok(m) => {
            let gaps = m.report.uncovered().unwrap_or_default();
            (coverage::judge(&m, cfg.coverage_threshold), gaps)
        }
        Err(e) => (Err(e), Vec::new()),
    }
}

fn coverage_read(
    checkout: &Path,
    cfg: &Config,
    run: RunWindow,
) -> Result<coverage::Measured, (Failure, Option<f64>)> {
    let (setting, configured) = coverage_setting(cfg);
    let format = cfg.coverage_format;
    let searched = coverage::search_paths(configured, format);
    let hint = match configured {
        Some(_) => format!(
            "make the test command write its report there, or change {setting} to where \
             it does"
        ),
        None => format!(
            "set {setting} to the report your test command writes{}",
            if format == CoverageFormat::Auto {
                " (and --coverage-format (KIRO_COVERAGE_FORMAT) if its format is not \
                 detected)"
            } else {
                ""
            }
        ),
    };
    let mut found = None;
    for rel in &searched {
        match written_by_run(checkout, rel, run, "coverage report") {
            Ok(false) => continue,
            Ok(true) => {
                found = Some(rel.clone());
                break;
            }
            Err(stale) => return Err(missing(format!("{stale}: {hint}"))),
        }
    }
    let Some(rel) = found else {
        let paths: Vec<String> = searched.iter().map(|p| p.display().to_string()).collect();
        let what = match format {
            CoverageFormat::Auto => "coverage report".to_owned(),
            f => format!("{f} coverage report"),
        };
        return Err(missing(format!(
            "the tests wrote no {what}: searched {}; {hint}",
            paths.join(", ")
        )));
    };
    match coverage::measure(checkout, std::slice::from_ref(&rel), format) {
        Ok(m) => Ok(m),
        Err(e @ MeasureError::Missing { .. }) => Err(missing(format!("{e}: {hint}"))),
        Err(e) => Err((
            Failure::new(FailureClass::CoverageBelow, e.to_string()),
            None,
        )),
    }
}

/// Read the configured JUnit report into `r` (its counts; failures in it fail the
/// tests). `Some` when tests that passed by their exit code wrote no report this run;
/// tests that failed are judged by their exit code whatever the report.
pub fn junit(checkout: &Path, cfg: &Config, run: RunWindow, r: &mut TestResult) -> Option<Failure> {
    let rel = cfg.junit_path.as_deref()?;
    let hint = format!(
        "make the test command write it there, or change {JUNIT_SETTING} (unset, the \
         tests are judged by their exit code alone)"
    );
    let passed = r.passed;
    let report_missing = |why: String| {
        passed.then(|| {
            Failure::new(
                FailureClass::ReportMissing,
                format!("the tests passed but {why}: {hint}"),
            )
        })
    };
    match written_by_run(checkout, rel, run, "JUnit report") {
        Ok(true) => {}
        Ok(false) => {
            return report_missing(format!(
                "wrote no JUnit report at {} ({JUNIT_SETTING})",
                rel.display()
            ));
        }
        Err(stale) => return report_missing(stale),
    }
    match crate::checkout_fs::read_confined(checkout, rel, junit::MAX_REPORT_BYTES) {
        Err(e) if e.is_missing() => {
            return report_missing(format!(
                "wrote no JUnit report at {} ({JUNIT_SETTING})",
                rel.display()
            ));
        }
        // A report outside the checkout, a FIFO, a device, too large: never read as
        // "no failures".
        Err(e) => {
            r.passed = false;
            r.summary = format!("the JUnit report {e}");
        }
        Ok(text) => match junit::counts(&text) {
            Err(e @ junit::JunitError::Malformed(_)) => {
                warn!(file = %rel.display(), error = %e, "unreadable JUnit report")
            }
            // Counts no run produces: never read as "no failures".
            Err(e @ junit::JunitError::Impossible(_)) => {
                r.passed = false;
                r.summary = format!("the JUnit report at {} {e}", rel.display());
            }
            Ok(c) => {
                if c.failed() {
                    // For the failure brief: which cases failed, with their messages.
                    r.failed_cases = junit::failed_cases(&text, crate::steps::brief::MESSAGE_CHARS)
                        .unwrap_or_default();
                }
                if c.failed() && r.passed {
                    r.passed = false;
                    r.summary = format!("exit code 0, but the JUnit report has {c}");
                }
                r.counts = Some(c);
            }
        },
    }
    None
}
