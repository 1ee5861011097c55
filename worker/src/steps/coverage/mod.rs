//! The coverage gate: read the coverage report(s) the tests wrote and compare their
//! total line coverage to the threshold.
//!
//! Invariant — each format's total is the number its own tool prints:
//! - lcov: `DA` lines, the records of one `SF` merged by line as `lcov -a` does (a
//!   line hit when hit in any record); `LF`/`LH` are checked, not summed ([`lcov`]).
//! - Cobertura: the `<line>`s of each `<class>`, merged per file (= `lines-covered /
//!   lines-valid`); a root without classes by those attributes, else `line-rate`.
//! - Clover: `coveredstatements / statements` of each `<file>`'s `<metrics>` (the
//!   project's when no file has any): Istanbul writes its lines there ([`xml`]).
//! - JaCoCo: the `<line>`s with `ci > 0` of each `<sourcefile>` (= the report-level
//!   `LINE` counter).
//! - Istanbul summary: each file's `lines` (= `total.lines`); Istanbul final: per file,
//!   the start lines of `statementMap`, covered when a statement starting there ran
//!   (Istanbul's `getLineCoverage()`).
//! - llvm-cov: each file's `summary.lines` (= `data[0].totals.lines`, llvm-cov's TOTAL).
//! - coverage.py JSON: `executed_lines` of `executed_lines + missing_lines` per file (=
//!   `totals.covered_lines / num_statements`, coverage.py's statement coverage, its
//!   printed total when branch coverage is off) ([`json`]).
//! - Go: statements of the profile's blocks, merged as `ParseProfiles` does (= `go
//!   tool cover -func`'s total) ([`go`]).
//!
//! Several reports (a monorepo) are merged into one total: a file named in two reports
//! merged as above, the other files' lines summed ([`model`]). A missing or empty
//! report, one that cannot be read in its (configured or detected) format, one that
//! holds no lines, or one with counts no tool writes (checked arithmetic: a hit count
//! above the lines found, a rate above 1, a negative or non-numeric count, an
//! overflowing sum) is never read as passing; every gate message names the format and
//! the file.

pub mod go;
pub mod json;
pub mod lcov;
pub mod model;
pub mod xml;

pub use lcov::parse_lcov;
pub use model::{Declared, FileCov, Report, Uncovered};

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
    /// Clover XML (Istanbul's `clover` reporter, PHPUnit, OpenClover).
    Clover,
    /// Istanbul's `coverage-final.json` (`json` reporter).
    IstanbulFinal,
    /// coverage.py's `coverage json`.
    CoveragePy,
    /// A Go coverage profile (`go test -coverprofile`).
    Go,
    /// JaCoCo XML.
    Jacoco,
}

impl CoverageFormat {
    /// The concrete formats, in the order `auto` looks for their usual files.
    pub const CONCRETE: [CoverageFormat; 9] = [
        CoverageFormat::Lcov,
        CoverageFormat::Cobertura,
        CoverageFormat::Istanbul,
        CoverageFormat::LlvmCov,
        CoverageFormat::Clover,
        CoverageFormat::IstanbulFinal,
        CoverageFormat::CoveragePy,
        CoverageFormat::Go,
        CoverageFormat::Jacoco,
    ];

    /// Where the tooling usually writes this format, relative to the checkout.
    pub fn default_path(self) -> &'static str {
        self.usual_paths()[0]
    }

    /// Every path where the usual tooling writes this format by default, the
    /// [`default_path`](Self::default_path) first.
    pub fn usual_paths(self) -> &'static [&'static str] {
        match self {
            CoverageFormat::Auto | CoverageFormat::Lcov => {
                &["coverage/lcov.info", "lcov.info", "coverage.lcov"]
            }
            CoverageFormat::Cobertura => &["coverage/cobertura-coverage.xml", "coverage.xml"],
            CoverageFormat::Istanbul => &["coverage/coverage-summary.json"],
            CoverageFormat::LlvmCov => &["coverage/llvm-cov.json"],
            CoverageFormat::Clover => &["coverage/clover.xml", "clover.xml"],
            CoverageFormat::IstanbulFinal => &["coverage/coverage-final.json"],
            CoverageFormat::CoveragePy => &["coverage.json"],
            CoverageFormat::Go => &["coverage.out", "cover.out"],
            CoverageFormat::Jacoco => &[
                "target/site/jacoco/jacoco.xml",
                "build/reports/jacoco/test/jacocoTestReport.xml",
            ],
        }
    }
}

/// Every usual report path of every format (for clearing stale reports before a run).
pub fn known_report_paths() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = CoverageFormat::CONCRETE
        .iter()
        .flat_map(|f| f.usual_paths().iter().copied())
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

impl fmt::Display for CoverageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CoverageFormat::Auto => "auto",
            CoverageFormat::Lcov => "lcov",
            CoverageFormat::Cobertura => "Cobertura XML",
            CoverageFormat::Istanbul => "Istanbul summary",
            CoverageFormat::LlvmCov => "llvm-cov JSON",
            CoverageFormat::Clover => "Clover XML",
            CoverageFormat::IstanbulFinal => "Istanbul coverage-final.json",
            CoverageFormat::CoveragePy => "coverage.py JSON",
            CoverageFormat::Go => "Go coverage profile",
            CoverageFormat::Jacoco => "JaCoCo XML",
        })
    }
}

/// Where to look for the report, in order: `configured` (relative to the checkout)
/// alone when given; otherwise the format's usual paths, or for `auto` every format's, in
/// [`CoverageFormat::CONCRETE`] order. The gate reads the first that this run wrote.
pub fn search_paths(configured: Option<&Path>, format: CoverageFormat) -> Vec<PathBuf> {
    if let Some(p) = configured {
        return vec![p.to_owned()];
    }
    let formats = match format {
        CoverageFormat::Auto => CoverageFormat::CONCRETE.to_vec(),
        f => vec![f],
    };
    let mut v: Vec<PathBuf> = Vec::new();
    for p in formats.iter().flat_map(|f| f.usual_paths()) {
        if !v.iter().any(|x| x == Path::new(p)) {
            v.push(PathBuf::from(p));
        }
    }
    v
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
        "is not in a known coverage format (lcov, Cobertura XML, Clover XML, JaCoCo XML, \
         Istanbul summary or coverage-final.json, llvm-cov JSON, coverage.py JSON, Go \
         coverage profile)"
    )]
    Unknown,
    /// A report that cannot be merged with others (a bare rate).
    #[error("cannot be merged with other reports: {0}")]
    Unmergeable(String),
}

/// The format of `text`, judged from its content (`file_name` breaks ties).
pub fn detect(text: &str, file_name: &str) -> Option<CoverageFormat> {
    let t = text.trim_start_matches('\u{feff}').trim_start();
    if t.starts_with('<') {
        let (root, attrs, child) = xml::root_and_child(t)?;
        return match root.as_str() {
            "coverage" if attrs.get("clover").is_some() || child.as_deref() == Some("project") => {
                Some(CoverageFormat::Clover)
            }
            "coverage" => Some(CoverageFormat::Cobertura),
            "report"
                if t.contains("//JACOCO//")
                    || matches!(
                        child.as_deref(),
                        Some("sessioninfo" | "package" | "group" | "counter")
                    ) =>
            {
                Some(CoverageFormat::Jacoco)
            }
            _ => None,
        };
    }
    if t.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(t).ok()?;
        let is_obj = |k: &str| v.get(k).is_some_and(|d| d.is_object());
        if v.get("data").is_some_and(|d| d.is_array()) {
            return Some(CoverageFormat::LlvmCov);
        }
        if is_obj("meta") && is_obj("files") {
            return Some(CoverageFormat::CoveragePy);
        }
        if is_obj("total") {
            return Some(CoverageFormat::Istanbul);
        }
        let files = v.as_object()?;
        let raw = |e: &serde_json::Value| {
            e.get("statementMap").is_some() || e.pointer("/data/statementMap").is_some()
        };
        return (!files.is_empty() && files.values().all(raw))
            .then_some(CoverageFormat::IstanbulFinal);
    }
    if go::looks_like(t) {
        return Some(CoverageFormat::Go);
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

/// `text` read as `format` (`auto`: detected), and the concrete format used.
pub fn parse(
    text: &str,
    file_name: &str,
    format: CoverageFormat,
) -> Result<(Report, CoverageFormat), (ReadError, CoverageFormat)> {
    let format = match format {
        CoverageFormat::Auto => {
            detect(text, file_name).ok_or((ReadError::Unknown, CoverageFormat::Auto))?
        }
        f => f,
    };
    let report = match format {
        CoverageFormat::Auto | CoverageFormat::Lcov => parse_lcov(text),
        CoverageFormat::Cobertura => xml::cobertura(text),
        CoverageFormat::Clover => xml::clover(text),
        CoverageFormat::Jacoco => xml::jacoco(text),
        CoverageFormat::Istanbul => json::istanbul_summary(text),
        CoverageFormat::IstanbulFinal => json::istanbul_final(text),
        CoverageFormat::LlvmCov => json::llvm_cov(text),
        CoverageFormat::CoveragePy => json::coverage_py(text),
        CoverageFormat::Go => go::parse(text),
    };
    report.map(|r| (r, format)).map_err(|e| (e, format))
}

/// The total of a report: a percent in 0–100, or why there is none.
pub fn total(report: &Report) -> Result<f64, ReadError> {
    match report.percent()? {
        None => Err(ReadError::NoLines),
        // Every parser rejects what is not a finite 0–100; this only guards that.
        Some(v) if !(0.0..=100.0).contains(&v) => {
            Err(ReadError::Impossible(format!("a total of {v}%")))
        }
        Some(v) => Ok(v),
    }
}

/// Total line coverage in percent of `text` read as `format` (`auto`: detected), and the
/// concrete format used.
pub fn read(
    text: &str,
    file_name: &str,
    format: CoverageFormat,
) -> Result<(f64, CoverageFormat), (ReadError, CoverageFormat)> {
    let (report, format) = parse(text, file_name, format)?;
    total(&report).map(|v| (v, format)).map_err(|e| (e, format))
}

/// `62.5`, `80`, `83.33`: at most two decimals, no trailing zeros.
pub fn pct(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_owned()
}

/// The largest coverage report read, in bytes.
pub const MAX_REPORT_BYTES: u64 = 64 * 1024 * 1024;

mod measure;
pub use measure::{MeasureError, Measured, gate, gate_all, judge, measure, measure_each};

#[cfg(test)]
mod real_tests;
#[cfg(test)]
mod tests;
