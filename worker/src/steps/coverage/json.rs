//! The JSON formats: Istanbul `coverage-summary.json` and `coverage-final.json`,
//! `llvm-cov export` (`cargo llvm-cov --json`) and coverage.py's `coverage json`.
//!
//! Invariant (which number each total is):
//! - Istanbul summary: each file's `lines.covered / lines.total`, summed — what
//!   Istanbul's own `total.lines` is; `total.lines` when no file is listed.
//! - Istanbul final: per file, Istanbul's `getLineCoverage()`: each statement of
//!   `statementMap` counts on its start line, a line covered when any statement
//!   starting there ran (`s[id] > 0`); the line lists of one path are merged.
//! - llvm-cov: each file's `summary.lines.covered / count`, summed — what llvm-cov's
//!   `TOTAL` and `data[0].totals.lines` are; the totals when no file is listed.
//! - coverage.py: each file's statements, `executed_lines` hit and `missing_lines`
//!   not (its `summary.covered_lines / num_statements` when those lists disagree with
//!   it), summed: `totals.covered_lines / num_statements`, i.e. coverage.py's
//!   `percent_statements_covered`. With `--branch` coverage.py's printed total
//!   (`percent_covered`) also counts branches; the worker's stays line (statement)
//!   coverage.
//!
//! The reports' own totals are checked (a count, covered not above total, a percent
//! not above 100) even where the files' figures are used.

use super::model::{Declared, FileCov, Hits, Report, line, shown_path};
use super::{CoverageFormat, ReadError};
use serde_json::Value;
use std::collections::BTreeMap;

fn parse(text: &str, f: CoverageFormat) -> Result<Value, ReadError> {
    serde_json::from_str(text).map_err(|e| ReadError::Malformed(f, e.to_string()))
}

/// A whole, non-negative number; `None` when absent or not a number (Istanbul writes
/// `"Unknown"`).
fn count_at(v: Option<&Value>, what: impl FnOnce() -> String) -> Result<Option<u64>, ReadError> {
    let Some(Value::Number(n)) = v else {
        return Ok(None);
    };
    if let Some(x) = n.as_u64() {
        return Ok(Some(x));
    }
    match n.as_f64() {
        Some(x) if x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x < 9.007e15 => {
            Ok(Some(x as u64))
        }
        _ => Err(ReadError::Impossible(format!(
            "{} {n} is not a count",
            what()
        ))),
    }
}

/// `(found, hit)` from `total`/`covered` fields named `found_key`/`hit_key` at `what`.
fn pair(
    v: Option<&Value>,
    found_key: &str,
    hit_key: &str,
    what: &str,
) -> Result<Option<(u64, u64)>, ReadError> {
    let Some(v) = v else {
        return Ok(None);
    };
    let found = count_at(v.get(found_key), || format!("{what}.{found_key}"))?;
    let hit = count_at(v.get(hit_key), || format!("{what}.{hit_key}"))?;
    match (found, hit) {
        (Some(f), Some(h)) if h > f => Err(ReadError::Impossible(format!(
            "{what}.{hit_key} {h} > {what}.{found_key} {f}"
        ))),
        (Some(f), Some(h)) => Ok(Some((f, h))),
        _ => Ok(None),
    }
}

/// The report's own total at `path`: its counts (`total` or `count`, and `covered`),
/// else the percent at `leaf`; `Counts(0, 0)` when it counts no lines. Checked.
fn declared(
    v: &Value,
    format: CoverageFormat,
    path: &[&str],
    leaf: &str,
) -> Result<Option<Declared>, ReadError> {
    let mut at = v;
    for key in path {
        let next = match key.parse::<usize>() {
            Ok(i) => at.get(i),
            Err(_) => at.get(*key),
        };
        at = next.ok_or_else(|| {
            ReadError::Malformed(format, format!("no {} in the document", path.join(".")))
        })?;
    }
    let at_path = path.join(".");
    let field = |k: &str| -> Result<Option<f64>, ReadError> {
        match at.get(k) {
            Some(Value::Number(n)) => match n.as_f64() {
                Some(x) if x.is_finite() && x >= 0.0 => Ok(Some(x)),
                _ => Err(ReadError::Impossible(format!(
                    "{at_path}.{k} {n} is not a non-negative number"
                ))),
            },
            // Istanbul writes `"pct": "Unknown"` for a file with no lines.
            _ => Ok(None),
        }
    };
    let total_key = if at.get("total").is_some() {
        "total"
    } else {
        "count"
    };
    let lines = field(total_key)?;
    let covered = field("covered")?;
    if let (Some(c), Some(t)) = (covered, lines)
        && c > t
    {
        return Err(ReadError::Impossible(format!(
            "{at_path}.covered {c} > {at_path}.{total_key} {t}"
        )));
    }
    let pct = field(leaf)?;
    if let Some(p) = pct.filter(|p| *p > 100.0) {
        return Err(ReadError::Impossible(format!(
            "{at_path}.{leaf} {p} is above 100"
        )));
    }
    if lines == Some(0.0) {
        return Ok(Some(Declared::Counts { found: 0, hit: 0 }));
    }
    if let Some((found, hit)) = pair(Some(at), total_key, "covered", &at_path)? {
        return Ok(Some(Declared::Counts { found, hit }));
    }
    match pct {
        Some(p) => Ok(Some(Declared::Percent(p))),
        None => Err(ReadError::Malformed(
            format,
            format!("no number at {at_path}.{leaf}"),
        )),
    }
}

/// Istanbul's `coverage-summary.json` (`json-summary` reporter).
pub fn istanbul_summary(text: &str) -> Result<Report, ReadError> {
    let f = CoverageFormat::Istanbul;
    let v = parse(text, f)?;
    let mut r = Report {
        declared: declared(&v, f, &["total", "lines"], "pct")?,
        ..Report::default()
    };
    for (path, entry) in v.as_object().into_iter().flatten() {
        if path == "total" {
            continue;
        }
        let what = format!("{}.lines", shown_path(path));
        if let Some((found, hit)) = pair(entry.get("lines"), "total", "covered", &what)? {
            r.add_file(path, FileCov::Counts { found, hit })?;
        }
    }
    Ok(r)
}

/// Istanbul's `coverage-final.json` (`json` reporter): lines as `getLineCoverage()`.
pub fn istanbul_final(text: &str) -> Result<Report, ReadError> {
    let f = CoverageFormat::IstanbulFinal;
    let v = parse(text, f)?;
    let files = v
        .as_object()
        .ok_or_else(|| ReadError::Malformed(f, "not an object of files".into()))?;
    let mut r = Report::default();
    for (path, entry) in files {
        let shown = shown_path(path);
        // Some tools keep the `FileCoverage` wrapper: `{"data": {…}}`.
        let data = entry
            .get("data")
            .filter(|d| d.get("statementMap").is_some())
            .unwrap_or(entry);
        let (Some(map), Some(s)) = (
            data.get("statementMap").and_then(Value::as_object),
            data.get("s").and_then(Value::as_object),
        ) else {
            return Err(ReadError::Malformed(
                f,
                format!("{shown} has no statementMap and s"),
            ));
        };
        let mut file = FileCov::default();
        for (id, c) in s {
            let Some(st) = map.get(id) else {
                continue; // Istanbul skips these too.
            };
            let n = st
                .pointer("/start/line")
                .and_then(Value::as_u64)
                .ok_or_else(|| {
                    ReadError::Malformed(
                        f,
                        format!("{shown}.statementMap.{id}.start.line is not a line number"),
                    )
                })?;
            let hit = match c.as_f64() {
                Some(x) if x.is_finite() && x >= 0.0 => x > 0.0,
                _ => {
                    return Err(ReadError::Impossible(format!(
                        "{shown}.s.{id} {c} is not a count"
                    )));
                }
            };
            file.add_unit(line(n), Hits { weight: 1, hit }, path)?;
        }
        r.add_file(path, file)?;
    }
    Ok(r)
}

/// `llvm-cov export` JSON (`cargo llvm-cov --json`, with or without `--summary-only`).
pub fn llvm_cov(text: &str) -> Result<Report, ReadError> {
    let f = CoverageFormat::LlvmCov;
    let v = parse(text, f)?;
    let mut r = Report {
        declared: declared(&v, f, &["data", "0", "totals", "lines"], "percent")?,
        ..Report::default()
    };
    let data = v
        .get("data")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    for file in data.filter_map(|d| d.get("files")?.as_array()).flatten() {
        let path = file.get("filename").and_then(Value::as_str).unwrap_or("");
        let what = format!("{}: summary.lines", shown_path(path));
        let lines = file.pointer("/summary/lines");
        if let Some((found, hit)) = pair(lines, "count", "covered", &what)? {
            r.add_file(path, FileCov::Counts { found, hit })?;
        }
    }
    Ok(r)
}

/// A list of line numbers, or `None` when absent or not one.
fn line_list(v: Option<&Value>) -> Option<Vec<u64>> {
    v?.as_array()?.iter().map(Value::as_u64).collect()
}

/// coverage.py's `coverage json`.
pub fn coverage_py(text: &str) -> Result<Report, ReadError> {
    let f = CoverageFormat::CoveragePy;
    let v = parse(text, f)?;
    let totals = pair(v.get("totals"), "num_statements", "covered_lines", "totals")?;
    let pct = v.pointer("/totals/percent_covered").and_then(Value::as_f64);
    if let Some(p) = pct.filter(|p| !(0.0..=100.0).contains(p)) {
        return Err(ReadError::Impossible(format!(
            "totals.percent_covered {p} is not between 0 and 100"
        )));
    }
    let files = v
        .get("files")
        .and_then(Value::as_object)
        .ok_or_else(|| ReadError::Malformed(f, "no files object".into()))?;
    let mut r = Report {
        declared: totals.map(|(found, hit)| Declared::Counts { found, hit }),
        ..Report::default()
    };
    for (path, entry) in files {
        let what = format!("files.{}.summary", shown_path(path));
        let summary = pair(
            entry.get("summary"),
            "num_statements",
            "covered_lines",
            &what,
        )?;
        let mut units: BTreeMap<_, Hits> = BTreeMap::new();
        for (list, hit) in [("missing_lines", false), ("executed_lines", true)] {
            for n in line_list(entry.get(list)).unwrap_or_default() {
                units.insert(line(n), Hits { weight: 1, hit });
            }
        }
        let from_lists = FileCov::Units(units);
        let cov = match summary {
            Some((found, hit)) if from_lists.counts()? != (found, hit) => {
                FileCov::Counts { found, hit }
            }
            _ => from_lists,
        };
        r.add_file(path, cov)?;
    }
    Ok(r)
}
