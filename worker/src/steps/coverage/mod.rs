//! The coverage gate: read the coverage report the tests wrote — lcov, Cobertura XML,
//! Istanbul `coverage-summary.json` or `cargo llvm-cov --json` — and compare its total
//! line coverage to the threshold.
//!
//! Invariant: a missing or empty report, one that cannot be read in its (configured or
//! detected) format, or one that holds no lines, is never read as passing; every gate
//! message names the format and the file. lcov's total is `sum(LH) / sum(LF) * 100` over
//! every file record (falling back to counting `DA` lines when a record has no `LF`/`LH`);
//! Cobertura's is `lines-covered / lines-valid`, else `line-rate`, on the root
//! `<coverage>`; Istanbul's is `total.lines.pct`; llvm-cov's `data[0].totals.lines.percent`.

use kiro_protocol::{Failure, FailureClass};
use quick_xml::events::Event;
use std::fmt;
use std::path::{Path, PathBuf};

/// The coverage report's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CoverageFormat {
    /// Detected from the file's content.
    Auto,
    Lcov,
    Cobertura,
    /// Istanbul's `coverage-summary.json` (`json-summary` reporter).
    Istanbul,
    /// `cargo llvm-cov --json` (llvm-cov export).
    LlvmCov,
}

impl CoverageFormat {
    /// The concrete formats, in the order `auto` looks for their usual files.
    pub const CONCRETE: [CoverageFormat; 4] = [
        CoverageFormat::Lcov,
        CoverageFormat::Cobertura,
        CoverageFormat::Istanbul,
        CoverageFormat::LlvmCov,
    ];

    /// Where the tooling usually writes this format, relative to the checkout.
    pub fn default_path(self) -> &'static str {
        match self {
            CoverageFormat::Auto | CoverageFormat::Lcov => "coverage/lcov.info",
            CoverageFormat::Cobertura => "coverage/cobertura-coverage.xml",
            CoverageFormat::Istanbul => "coverage/coverage-summary.json",
            CoverageFormat::LlvmCov => "coverage/llvm-cov.json",
        }
    }
}

impl fmt::Display for CoverageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CoverageFormat::Auto => "auto",
            CoverageFormat::Lcov => "lcov",
            CoverageFormat::Cobertura => "Cobertura XML",
            CoverageFormat::Istanbul => "Istanbul summary",
            CoverageFormat::LlvmCov => "llvm-cov JSON",
        })
    }
}

/// The report to read: `configured` (relative to the checkout) when given; otherwise the
/// format's usual path, or for `auto` the first usual path that exists in `checkout`.
pub fn report_path(checkout: &Path, configured: Option<&Path>, format: CoverageFormat) -> PathBuf {
    if let Some(p) = configured {
        return p.to_owned();
    }
    if format == CoverageFormat::Auto {
        for f in CoverageFormat::CONCRETE {
            if checkout.join(f.default_path()).is_file() {
                return PathBuf::from(f.default_path());
            }
        }
    }
    PathBuf::from(format.default_path())
}

/// One `SF` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCoverage {
    pub path: String,
    pub found: u64,
    pub hit: u64,
}

/// A parsed lcov report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coverage {
    pub files: Vec<FileCoverage>,
}

fn sum(mut counts: impl Iterator<Item = u64>, field: &str) -> Result<u64, ReadError> {
    counts.try_fold(0u64, |a, n| {
        a.checked_add(n).ok_or_else(|| {
            ReadError::Impossible(format!(
                "the sum of the {field} counts overflows a 64-bit number"
            ))
        })
    })
}

impl Coverage {
    /// Lines found (`LF`) over every record; an overflowing sum is an impossible report.
    pub fn found(&self) -> Result<u64, ReadError> {
        sum(self.files.iter().map(|f| f.found), "LF")
    }

    /// Lines hit (`LH`) over every record; an overflowing sum is an impossible report.
    pub fn hit(&self) -> Result<u64, ReadError> {
        sum(self.files.iter().map(|f| f.hit), "LH")
    }

    /// Total line coverage in percent; `None` when the report holds no lines.
    pub fn percent(&self) -> Result<Option<f64>, ReadError> {
        let found = self.found()?;
        let hit = self.hit()?;
        Ok((found > 0).then(|| hit as f64 * 100.0 / found as f64))
    }
}

/// Parse lcov text. Unknown lines are ignored; an `LF`/`LH` that is not a count, or a
/// record with `LH > LF`, is an impossible report naming the record and the field.
pub fn parse_lcov(text: &str) -> Result<Coverage, ReadError> {
    #[derive(Default)]
    struct Rec {
        path: String,
        lf: Option<u64>,
        lh: Option<u64>,
        da_found: u64,
        da_hit: u64,
        open: bool,
    }
    fn close(rec: &mut Rec, out: &mut Vec<FileCoverage>) -> Result<(), ReadError> {
        if rec.open {
            let found = rec.lf.unwrap_or(rec.da_found);
            let hit = rec.lh.unwrap_or(rec.da_hit);
            if hit > found {
                return Err(ReadError::Impossible(format!(
                    "LH {hit} > LF {found} in record {}",
                    shown_record(&rec.path)
                )));
            }
            out.push(FileCoverage {
                path: std::mem::take(&mut rec.path),
                found,
                hit,
            });
        }
        *rec = Rec::default();
        Ok(())
    }
    fn count(field: &str, n: &str, rec: &Rec) -> Result<u64, ReadError> {
        n.trim().parse::<u64>().map_err(|_| {
            ReadError::Impossible(format!(
                "{field} {:?} in record {} is not a count",
                n.trim().chars().take(40).collect::<String>(),
                shown_record(&rec.path)
            ))
        })
    }
    let mut files = Vec::new();
    let mut rec = Rec::default();
    for line in text.lines() {
        let line = line.trim();
        if let Some(p) = line.strip_prefix("SF:") {
            close(&mut rec, &mut files)?;
            rec.path = p.to_owned();
            rec.open = true;
        } else if line == "end_of_record" {
            close(&mut rec, &mut files)?;
        } else if let Some(n) = line.strip_prefix("LF:") {
            rec.open = true;
            rec.lf = Some(count("LF", n, &rec)?);
        } else if let Some(n) = line.strip_prefix("LH:") {
            rec.open = true;
            rec.lh = Some(count("LH", n, &rec)?);
        } else if let Some(da) = line.strip_prefix("DA:") {
            rec.open = true;
            rec.da_found = rec.da_found.saturating_add(1);
            let hits = da
                .split(',')
                .nth(1)
                .and_then(|h| h.trim().parse::<u64>().ok());
            if hits.is_some_and(|h| h > 0) {
                rec.da_hit = rec.da_hit.saturating_add(1);
            }
        }
    }
    close(&mut rec, &mut files)?;
    Ok(Coverage { files })
}

/// A record's path as shown in a message: at most 200 characters, `(unnamed)` if empty.
fn shown_record(path: &str) -> String {
    if path.is_empty() {
        return "(unnamed)".to_owned();
    }
    let mut s: String = path.chars().take(200).collect();
    if path.chars().count() > 200 {
        s.push('…');
    }
    s
}

/// Why a report could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("is not valid {0}: {1}")]
    Malformed(CoverageFormat, String),
    #[error("holds no lines")]
    NoLines,
    /// Counts no real report can hold (`LH > LF`, a rate above 1, a negative or
    /// non-numeric count, a total that overflows): named by field.
    #[error("is impossible: {0}")]
    Impossible(String),
    #[error(
        "is not in a known coverage format (lcov, Cobertura XML, Istanbul summary, llvm-cov JSON)"
    )]
    Unknown,
}

/// The format of `text`, judged from its content (`file_name` breaks ties).
pub fn detect(text: &str, file_name: &str) -> Option<CoverageFormat> {
    let t = text.trim_start_matches('\u{feff}').trim_start();
    if t.starts_with('<') {
        return t.contains("<coverage").then_some(CoverageFormat::Cobertura);
    }
    if t.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(t).ok()?;
        if v.get("data").is_some_and(|d| d.is_array()) {
            return Some(CoverageFormat::LlvmCov);
        }
        if v.get("total").is_some_and(|d| d.is_object()) {
            return Some(CoverageFormat::Istanbul);
        }
        return None;
    }
    let lcov_line = |l: &str| {
        let l = l.trim();
        ["SF:", "DA:", "LF:", "LH:", "TN:"]
            .iter()
            .any(|p| l.starts_with(p))
            || l == "end_of_record"
    };
    if t.lines().any(lcov_line) || file_name.ends_with(".info") || file_name.ends_with(".lcov") {
        return Some(CoverageFormat::Lcov);
    }
    None
}

/// Total line coverage in percent of `text` read as `format` (`auto`: detected), and the
/// concrete format used.
pub fn read(
    text: &str,
    file_name: &str,
    format: CoverageFormat,
) -> Result<(f64, CoverageFormat), (ReadError, CoverageFormat)> {
    let format = match format {
        CoverageFormat::Auto => {
            detect(text, file_name).ok_or((ReadError::Unknown, CoverageFormat::Auto))?
        }
        f => f,
    };
    let value = match format {
        CoverageFormat::Auto | CoverageFormat::Lcov => parse_lcov(text)
            .and_then(|c| c.percent())
            .map_err(|e| (e, format))?,
        CoverageFormat::Cobertura => cobertura_percent(text).map_err(|e| (e, format))?,
        CoverageFormat::Istanbul => {
            json_percent(text, format, &["total", "lines"], "pct").map_err(|e| (e, format))?
        }
        CoverageFormat::LlvmCov => {
            json_percent(text, format, &["data", "0", "totals", "lines"], "percent")
                .map_err(|e| (e, format))?
        }
    };
    match value {
        None => Err((ReadError::NoLines, format)),
        // Every parser rejects what is not a finite 0–100; this only guards that.
        Some(v) if !(0.0..=100.0).contains(&v) => {
            Err((ReadError::Impossible(format!("a total of {v}%")), format))
        }
        Some(v) => Ok((v, format)),
    }
}

/// The root `<coverage>` element's `lines-covered / lines-valid`, else `line-rate`.
fn cobertura_percent(text: &str) -> Result<Option<f64>, ReadError> {
    let bad = |m: String| ReadError::Malformed(CoverageFormat::Cobertura, m);
    let impossible = ReadError::Impossible;
    let mut reader = quick_xml::Reader::from_str(text);
    loop {
        match reader.read_event() {
            Ok(Event::Start(e) | Event::Empty(e)) => {
                if e.local_name().as_ref() != "coverage" {
                    return Err(bad("the root element is not <coverage>".into()));
                }
                let mut attrs = std::collections::HashMap::new();
                for a in e.attributes() {
                    let a = a.map_err(|e| bad(e.to_string()))?;
                    attrs.insert(a.key.as_ref().to_owned(), a.value.trim().to_owned());
                }
                // An attribute that is present must be a finite, non-negative number.
                let num = |k: &str| -> Result<Option<f64>, ReadError> {
                    let Some(v) = attrs.get(k) else {
                        return Ok(None);
                    };
                    match v.parse::<f64>() {
                        Ok(n) if n.is_finite() && n >= 0.0 => Ok(Some(n)),
                        _ => Err(impossible(format!(
                            "{k}=\"{}\" is not a non-negative number",
                            v.chars().take(40).collect::<String>()
                        ))),
                    }
                };
                let (covered, valid) = (num("lines-covered")?, num("lines-valid")?);
                let rate = num("line-rate")?;
                if let Some(r) = rate.filter(|r| *r > 1.0) {
                    return Err(impossible(format!("line-rate {r} is above 1")));
                }
                return Ok(match (covered, valid) {
                    (Some(c), Some(v)) if c > v => {
                        return Err(impossible(format!("lines-covered {c} > lines-valid {v}")));
                    }
                    (Some(c), Some(v)) if v > 0.0 => Some(c * 100.0 / v),
                    (_, Some(v)) if v <= 0.0 => None,
                    _ => rate.map(|r| r * 100.0),
                });
            }
            Ok(Event::Eof) => return Err(bad("no <coverage> element".into())),
            Ok(_) => {}
            Err(e) => return Err(bad(e.to_string())),
        }
    }
}

/// The number at `path` + `leaf` of a JSON document; `None` when the object at `path`
/// counts no lines (`count`/`total` of 0).
fn json_percent(
    text: &str,
    format: CoverageFormat,
    path: &[&str],
    leaf: &str,
) -> Result<Option<f64>, ReadError> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| ReadError::Malformed(format, e.to_string()))?;
    let mut at = &v;
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
            None => Ok(None),
            Some(serde_json::Value::Number(n)) => match n.as_f64() {
                Some(x) if x.is_finite() && x >= 0.0 => Ok(Some(x)),
                _ => Err(ReadError::Impossible(format!(
                    "{at_path}.{k} {n} is not a non-negative number"
                ))),
            },
            // Istanbul writes `"pct": "Unknown"` for a file with no lines.
            Some(_) => Ok(None),
        }
    };
    let lines = match field("total")? {
        Some(t) => Some(t),
        None => field("count")?,
    };
    if let (Some(c), Some(t)) = (field("covered")?, lines)
        && c > t
    {
        return Err(ReadError::Impossible(format!(
            "{at_path}.covered {c} > {at_path}.{} {t}",
            if at.get("total").is_some() {
                "total"
            } else {
                "count"
            }
        )));
    }
    if lines == Some(0.0) {
        return Ok(None);
    }
    match field(leaf)? {
        Some(p) if p > 100.0 => Err(ReadError::Impossible(format!(
            "{at_path}.{leaf} {p} is above 100"
        ))),
        Some(p) => Ok(Some(p)),
        None => Err(ReadError::Malformed(
            format,
            format!("no number at {at_path}.{leaf}"),
        )),
    }
}

/// `62.5`, `80`, `83.33`: at most two decimals, no trailing zeros.
pub fn pct(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_owned()
}

/// The largest coverage report read, in bytes.
pub const MAX_REPORT_BYTES: u64 = 64 * 1024 * 1024;

/// Read the report at `shown` (relative to `checkout`, confined to it by
/// [`crate::checkout_fs`]) in `format` and check it against `threshold`. `Ok` carries the
/// total line coverage; a failure carries it too when it could be computed.
pub fn gate(
    checkout: &Path,
    shown: &Path,
    format: CoverageFormat,
    threshold: f64,
) -> Result<f64, (Failure, Option<f64>)> {
    let fail = |reason: String, value: Option<f64>| {
        (Failure::new(FailureClass::CoverageBelow, reason), value)
    };
    let text =
        crate::checkout_fs::read_confined(checkout, shown, MAX_REPORT_BYTES).map_err(|e| {
            let what = match format {
                CoverageFormat::Auto => String::new(),
                f => format!("{f} "),
            };
            if e.is_missing() {
                fail(
                    format!("no {what}coverage report at {}", shown.display()),
                    None,
                )
            } else {
                fail(format!("the {what}coverage report {e}"), None)
            }
        })?;
    let name = shown
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (total, used) = read(&text, &name, format).map_err(|(e, f)| {
        let what = match f {
            CoverageFormat::Auto => "coverage".to_owned(),
            f => format!("{f} coverage"),
        };
        fail(
            format!("the {what} report at {} {e}", shown.display()),
            None,
        )
    })?;
    tracing::info!(format = %used, file = %shown.display(), coverage = total, "coverage read");
    if total + 1e-9 < threshold {
        return Err(fail(
            format!(
                "line coverage {}% is below the {}% threshold ({used} report {})",
                pct(total),
                pct(threshold),
                shown.display()
            ),
            Some(total),
        ));
    }
    Ok(total)
}

#[cfg(test)]
mod tests;
