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
//!   setting to change (flag and variable, or the key of the repository's settings
//!   file); a configured glob that matches nothing is missing too;
//! - several coverage reports (entries, glob matches) are merged into one total, and
//!   several JUnit reports' counts summed;
//! - the report paths and globs, the usual test artefacts ([`ARTEFACT_PATHS`]), the
//!   repository's never-commit paths and globs and its settings file are never staged,
//!   `.gitignore` or not ([`never_commit`]).
//!
//! What the gates read comes from the run's [`Settings`] (the repository's settings
//! file over the deployment's defaults), never from the worker's configuration.
//!
//! Every path is relative to the checkout and resolved inside it
//! ([`crate::checkout_fs`]): nothing outside the checkout is removed or read.

use crate::repo_settings::{CoverageReport, RepoPattern, Settings};
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

/// Every literal path a gate may read: the usual coverage and JUnit paths and the
/// configured ones (the configured globs are in [`report_globs`]).
pub fn report_paths(settings: &Settings) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = coverage::known_report_paths()
        .into_iter()
        .chain(junit::KNOWN_REPORT_PATHS)
        .map(PathBuf::from)
        .collect();
    let configured = settings
        .coverage
        .iter()
        .filter_map(|c| c.path.as_ref())
        .chain(&settings.junit);
    for p in configured {
        if let RepoPattern::Path(p) = p {
            v.push(p.clone());
        }
    }
    v.sort();
    v.dedup();
    v
}

/// The configured report globs (coverage and JUnit).
pub fn report_globs(settings: &Settings) -> Vec<RepoPattern> {
    settings
        .coverage
        .iter()
        .filter_map(|c| c.path.as_ref())
        .chain(&settings.junit)
        .filter(|p| p.is_glob())
        .cloned()
        .collect()
}

/// What is never staged: [`report_paths`], [`ARTEFACT_PATHS`], the repository's own
/// never-commit paths and the settings file; and, as globs, [`report_globs`] and the
/// repository's never-commit globs.
pub fn never_commit(settings: &Settings) -> (Vec<PathBuf>, Vec<RepoPattern>) {
    let mut v = report_paths(settings);
    v.extend(ARTEFACT_PATHS.iter().map(PathBuf::from));
    v.extend(settings.never_commit_paths());
    v.sort();
    v.dedup();
    let mut globs = report_globs(settings);
    globs.extend(
        settings
            .never_commit
            .iter()
            .filter(|p| p.is_glob())
            .cloned(),
    );
    (v, globs)
}

/// A glob that cannot be expanded (it walks too much of the checkout).
fn unexpandable(why: String) -> Failure {
    Failure::new(FailureClass::PermanentInput, why)
}

/// Remove every report a gate may read from the checkout, right before the tests run.
/// A path that resolves outside the checkout is left alone (a read of it is refused
/// later); one that cannot be removed fails the run, since it could still count.
pub fn clear_reports(checkout: &Path, settings: &Settings) -> Result<(), Failure> {
    let mut paths = report_paths(settings);
    for glob in report_globs(settings) {
        paths.extend(glob.expand(checkout).map_err(unexpandable)?);
    }
    for rel in paths {
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

/// The reports of one coverage entry this run wrote, or the failure saying why there
/// are none: its path; the matches of its glob; or, with neither, the first of the
/// format's usual paths ([`coverage::search_paths`]) that exists.
fn reports_of(
    checkout: &Path,
    report: &CoverageReport,
    run: RunWindow,
) -> Result<Vec<PathBuf>, (Failure, Option<f64>)> {
    let (setting, format) = (&report.path_setting, report.format);
    let hint = match &report.path {
        Some(_) => format!(
            "make the test command write its report there, or change {setting} to where \
             it does"
        ),
        None => format!(
            "set {setting} to the report your test command writes{}",
            if format == CoverageFormat::Auto {
                format!(
                    " (and {} if its format is not detected)",
                    report.format_setting
                )
            } else {
                String::new()
            }
        ),
    };
    let what = match format {
        CoverageFormat::Auto => "coverage report".to_owned(),
        f => format!("{f} coverage report"),
    };
    if let Some(glob @ RepoPattern::Glob { .. }) = &report.path {
        let found = glob.expand(checkout).map_err(|e| (unexpandable(e), None))?;
        if found.is_empty() {
            return Err(missing(format!(
                "the tests wrote no {what} matching {glob}; {hint}"
            )));
        }
        for rel in &found {
            if let Err(stale) = written_by_run(checkout, rel, run, "coverage report") {
                return Err(missing(format!("{stale}: {hint}")));
            }
        }
        return Ok(found);
    }
    let configured = match &report.path {
        Some(RepoPattern::Path(p)) => Some(p.as_path()),
        _ => None,
    };
    let searched = coverage::search_paths(configured, format);
    for rel in &searched {
        match written_by_run(checkout, rel, run, "coverage report") {
            Ok(false) => continue,
            Ok(true) => return Ok(vec![rel.clone()]),
            Err(stale) => return Err(missing(format!("{stale}: {hint}"))),
        }
    }
    let paths: Vec<String> = searched.iter().map(|p| p.display().to_string()).collect();
    Err(missing(format!(
        "the tests wrote no {what}: searched {}; {hint}",
        paths.join(", ")
    )))
}

/// The coverage gate over the reports this run wrote, merged into one total. `Ok`
/// carries the total; a failure carries it too when it could be computed.
pub fn coverage(checkout: &Path, settings: &Settings, run: RunWindow) -> CoverageVerdict {
    coverage_and_gaps(checkout, settings, run).0
}

/// The coverage gate's verdict: the total, or the failure (with the total when known).
pub type CoverageVerdict = Result<f64, (Failure, Option<f64>)>;

/// [`coverage`], with the files whose lines the tests never ran (the most missed first;
/// empty when no report was read) for the failure brief.
pub fn coverage_and_gaps(
    checkout: &Path,
    settings: &Settings,
    run: RunWindow,
) -> (CoverageVerdict, Vec<coverage::Uncovered>) {
    match coverage_read(checkout, settings, run) {
        Ok(m) => {
            let gaps = m.report.uncovered().unwrap_or_default();
            (coverage::judge(&m, settings.coverage_threshold), gaps)
        }
        Err(e) => (Err(e), Vec::new()),
    }
}

/// The reports this run wrote, measured and merged (not judged).
fn coverage_read(
    checkout: &Path,
    settings: &Settings,
    run: RunWindow,
) -> Result<coverage::Measured, (Failure, Option<f64>)> {
    let mut reports: Vec<(PathBuf, CoverageFormat)> = Vec::new();
    for report in &settings.coverage {
        for rel in reports_of(checkout, report, run)? {
            if !reports.iter().any(|(p, _)| *p == rel) {
                reports.push((rel, report.format));
            }
        }
    }
    let settings_hint = |e: &MeasureError| match settings.coverage.as_slice() {
        [one] => format!(
            "{e}: make the test command write its report there, or change {} to where it \
             does",
            one.path_setting
        ),
        _ => e.to_string(),
    };
    match coverage::measure_each(checkout, &reports) {
        Ok(m) => Ok(m),
        Err(e @ MeasureError::Missing { .. }) => Err(missing(settings_hint(&e))),
        Err(e) => Err((
            Failure::new(FailureClass::CoverageBelow, e.to_string()),
            None,
        )),
    }
}

/// Read the configured JUnit reports into `r` (their counts, summed; failures in them
/// fail the tests). `Some` when tests that passed by their exit code did not write one
/// of them this run (a glob: no match); tests that failed are judged by their exit code
/// whatever the reports.
pub fn junit(
    checkout: &Path,
    settings: &Settings,
    run: RunWindow,
    r: &mut TestResult,
) -> Option<Failure> {
    if settings.junit.is_empty() {
        return None;
    }
    let setting = &settings.junit_setting;
    let hint = format!(
        "make the test command write it there, or change {setting} (unset, the tests are \
         judged by their exit code alone)"
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
    let mut files = Vec::new();
    for pattern in &settings.junit {
        let found = match pattern {
            RepoPattern::Path(p) => vec![p.clone()],
            glob => match glob.expand(checkout) {
                Ok(found) => found,
                Err(e) => return Some(unexpandable(e)),
            },
        };
        if found.is_empty() {
            return report_missing(format!(
                "wrote no JUnit report matching {pattern} ({setting})"
            ));
        }
        for rel in found {
            match written_by_run(checkout, &rel, run, "JUnit report") {
                Ok(true) => files.push(rel),
                Ok(false) => {
                    return report_missing(format!(
                        "wrote no JUnit report at {} ({setting})",
                        rel.display()
                    ));
                }
                Err(stale) => return report_missing(stale),
            }
        }
    }
    let mut total: Option<junit::TestCounts> = None;
    for rel in &files {
        match read_junit(checkout, rel, r) {
            JunitRead::Counts(c) => {
                total = Some(match total {
                    None => c,
                    Some(t) => match t.checked_add(c) {
                        Ok(sum) => sum,
                        Err(e) => {
                            r.passed = false;
                            r.summary = format!("the JUnit reports {e}");
                            return None;
                        }
                    },
                });
            }
            JunitRead::Skipped => {}
            JunitRead::Missing => {
                return report_missing(format!(
                    "wrote no JUnit report at {} ({setting})",
                    rel.display()
                ));
            }
            JunitRead::Refused => return None,
        }
    }
    if let Some(c) = total {
        if c.failed() && r.passed {
            r.passed = false;
            r.summary = format!("exit code 0, but the JUnit report has {c}");
        }
        r.counts = Some(c);
    }
    None
}

/// What reading one JUnit report gave.
enum JunitRead {
    Counts(junit::TestCounts),
    /// Unreadable XML: logged, not counted.
    Skipped,
    Missing,
    /// Refused or impossible: `r` now says the tests failed, and why.
    Refused,
}

fn read_junit(checkout: &Path, rel: &Path, r: &mut TestResult) -> JunitRead {
    match crate::checkout_fs::read_confined(checkout, rel, junit::MAX_REPORT_BYTES) {
        Err(e) if e.is_missing() => JunitRead::Missing,
        // A report outside the checkout, a FIFO, a device, too large: never read as
        // "no failures".
        Err(e) => {
            r.passed = false;
            r.summary = format!("the JUnit report {e}");
            JunitRead::Refused
        }
        Ok(text) => match junit::counts(&text) {
            Err(e @ junit::JunitError::Malformed(_)) => {
                warn!(file = %rel.display(), error = %e, "unreadable JUnit report");
                JunitRead::Skipped
            }
            // Counts no run produces: never read as "no failures".
            Err(e @ junit::JunitError::Impossible(_)) => {
                r.passed = false;
                r.summary = format!("the JUnit report at {} {e}", rel.display());
                JunitRead::Refused
            }
            Ok(c) => {
                if c.failed() {
                    // For the failure brief: which cases failed, with their messages
                    // (several reports: the cases of each).
                    r.failed_cases.extend(
                        junit::failed_cases(&text, crate::steps::brief::MESSAGE_CHARS)
                            .unwrap_or_default(),
                    );
                }
                JunitRead::Counts(c)
            }
        },
    }
}
