//! Reading the reports from the checkout and gating on their merged total.
//!
//! Invariant: every report named is read (confined to the checkout by
//! [`crate::checkout_fs`]); a missing one is [`MeasureError::Missing`] naming every path
//! that is missing, never "no coverage" or a pass (the gate classifies it
//! `report-missing`, not `coverage-below`); several reports are merged into one total
//! ([`Report::merge`]).

use super::{CoverageFormat, MAX_REPORT_BYTES, ReadError, Report, parse, pct, total};
use kiro_protocol::{Failure, FailureClass};
use std::fmt;
use std::path::{Path, PathBuf};

/// The merged total of the reports read.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// Total line coverage in percent.
    pub percent: f64,
    /// `(found, hit)`; `None` for a report that gives only a rate.
    pub counts: Option<(u64, u64)>,
    /// Each report read and the format it was read as.
    pub reports: Vec<(PathBuf, CoverageFormat)>,
    /// The merged report (for the uncovered files and lines).
    pub report: Report,
}

/// Why the reports give no total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeasureError {
    /// These reports do not exist.
    Missing {
        paths: Vec<PathBuf>,
        format: CoverageFormat,
    },
    /// A report could not be read from the checkout (outside it, not a regular file,
    /// too large, not UTF-8); `reason` names the path.
    Unreadable {
        reason: String,
        format: CoverageFormat,
    },
    /// A report could not be read in its format, or the reports hold no lines.
    Bad {
        paths: Vec<PathBuf>,
        format: CoverageFormat,
        error: ReadError,
    },
}

impl MeasureError {
    pub fn is_missing(&self) -> bool {
        matches!(self, MeasureError::Missing { .. })
    }
}

fn joined(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `lcov ` for a concrete format, nothing for `auto`.
fn format_word(f: CoverageFormat) -> String {
    match f {
        CoverageFormat::Auto => String::new(),
        f => format!("{f} "),
    }
}

impl fmt::Display for MeasureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MeasureError::Missing { paths, format } if paths.is_empty() => {
                write!(f, "no {}coverage report was named", format_word(*format))
            }
            MeasureError::Missing { paths, format } => write!(
                f,
                "no {}coverage report at {}",
                format_word(*format),
                joined(paths)
            ),
            MeasureError::Unreadable { reason, format } => {
                write!(f, "the {}coverage report {reason}", format_word(*format))
            }
            MeasureError::Bad {
                paths,
                format,
                error,
            } => match paths.as_slice() {
                [one] => write!(
                    f,
                    "the {}coverage report at {} {error}",
                    format_word(*format),
                    one.display()
                ),
                _ => {
                    let error = error.to_string().replace("holds no", "hold no");
                    write!(f, "the coverage reports at {} {error}", joined(paths))
                }
            },
        }
    }
}

/// Read the reports at `shown` (relative to `checkout`) as `format` (`auto`: each
/// detected) and merge them into one total.
pub fn measure(
    checkout: &Path,
    shown: &[PathBuf],
    format: CoverageFormat,
) -> Result<Measured, MeasureError> {
    let each: Vec<(PathBuf, CoverageFormat)> = shown.iter().map(|p| (p.clone(), format)).collect();
    measure_each(checkout, &each)
}

/// [`measure`] with a format of its own for each report (`auto`: detected).
pub fn measure_each(
    checkout: &Path,
    reports_named: &[(PathBuf, CoverageFormat)],
) -> Result<Measured, MeasureError> {
    let shown: Vec<PathBuf> = reports_named.iter().map(|(p, _)| p.clone()).collect();
    let shown = shown.as_slice();
    // The format messages name when nothing could be read: the one format, if one.
    let format = match reports_named {
        [(_, f), rest @ ..] if rest.iter().all(|(_, g)| g == f) => *f,
        _ => CoverageFormat::Auto,
    };
    let mut texts = Vec::new();
    let mut missing = Vec::new();
    for (p, f) in reports_named {
        match crate::checkout_fs::read_confined(checkout, p, MAX_REPORT_BYTES) {
            Ok(t) => texts.push((p, *f, t)),
            Err(e) if e.is_missing() => missing.push(p.clone()),
            Err(e) => {
                return Err(MeasureError::Unreadable {
                    reason: e.to_string(),
                    format: *f,
                });
            }
        }
    }
    if !missing.is_empty() || shown.is_empty() {
        return Err(MeasureError::Missing {
            paths: missing,
            format,
        });
    }
    let mut merged = Report::default();
    let mut reports = Vec::new();
    for (p, format, text) in texts {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bad = |error, format| MeasureError::Bad {
            paths: vec![p.clone()],
            format,
            error,
        };
        let (report, used) = parse(&text, &name, format).map_err(|(e, f)| bad(e, f))?;
        if shown.len() > 1 {
            // Each report on its own must be readable, not only the sum.
            total(&report).map_err(|e| bad(e, used))?;
        }
        tracing::info!(format = %used, file = %p.display(), "coverage report read");
        if shown.len() == 1 {
            merged = report;
        } else {
            let label = p.display().to_string();
            merged.merge(report, &label).map_err(|e| bad(e, used))?;
        }
        reports.push((p.clone(), used));
    }
    let single = match reports.as_slice() {
        [(_, f)] => *f,
        _ => CoverageFormat::Auto,
    };
    let whole = |error| MeasureError::Bad {
        paths: shown.to_vec(),
        format: single,
        error,
    };
    let percent = total(&merged).map_err(whole)?;
    let counts = merged.counts().map_err(whole)?;
    Ok(Measured {
        percent,
        counts,
        reports,
        report: merged,
    })
}

/// Read the report at `shown` (relative to `checkout`, confined to it by
/// [`crate::checkout_fs`]) in `format` and check it against `threshold`. `Ok` carries the
/// total line coverage; a failure carries it too when it could be computed.
pub fn gate(
    checkout: &Path,
    shown: &Path,
    format: CoverageFormat,
    threshold: f64,
) -> Result<f64, (Failure, Option<f64>)> {
    gate_all(checkout, &[shown.to_owned()], format, threshold)
}

/// [`gate`] over several reports merged into one total.
pub fn gate_all(
    checkout: &Path,
    shown: &[PathBuf],
    format: CoverageFormat,
    threshold: f64,
) -> Result<f64, (Failure, Option<f64>)> {
    match measure(checkout, shown, format) {
        Ok(m) => judge(&m, threshold),
        // A report the tests did not write is not low coverage: its own class.
        Err(e @ MeasureError::Missing { .. }) => Err((
            Failure::new(FailureClass::ReportMissing, e.to_string()),
            None,
        )),
        Err(e) => Err((
            Failure::new(FailureClass::CoverageBelow, e.to_string()),
            None,
        )),
    }
}

/// The reports measured, against `threshold`: `Ok` with the total, or `coverage-below`
/// naming the total, the threshold and each report.
pub fn judge(m: &Measured, threshold: f64) -> Result<f64, (Failure, Option<f64>)> {
    let fail = |reason: String, value: Option<f64>| {
        (Failure::new(FailureClass::CoverageBelow, reason), value)
    };
    tracing::info!(
        coverage = m.percent,
        reports = m.reports.len(),
        "coverage read"
    );
    if m.percent + 1e-9 < threshold {
        let from = m
            .reports
            .iter()
            .map(|(p, f)| format!("{f} report {}", p.display()))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(fail(
            format!(
                "line coverage {}% is below the {}% threshold ({from})",
                pct(m.percent),
                pct(threshold),
            ),
            Some(m.percent),
        ));
    }
    Ok(m.percent)
}
