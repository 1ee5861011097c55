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

impl Coverage {
    pub fn found(&self) -> u64 {
        self.files.iter().map(|f| f.found).sum()
    }

    pub fn hit(&self) -> u64 {
        self.files.iter().map(|f| f.hit).sum()
    }

    /// Total line coverage in percent; `None` when the report holds no lines.
    pub fn percent(&self) -> Option<f64> {
        let found = self.found();
        (found > 0).then(|| self.hit().min(found) as f64 * 100.0 / found as f64)
    }
}

/// Parse lcov text. Unknown lines are ignored.
pub fn parse_lcov(text: &str) -> Coverage {
    #[derive(Default)]
    struct Rec {
        path: String,
        lf: Option<u64>,
        lh: Option<u64>,
        da_found: u64,
        da_hit: u64,
        open: bool,
    }
    fn close(rec: &mut Rec, out: &mut Vec<FileCoverage>) {
        if rec.open {
            out.push(FileCoverage {
                path: std::mem::take(&mut rec.path),
                found: rec.lf.unwrap_or(rec.da_found),
                hit: rec.lh.unwrap_or(rec.da_hit),
            });
        }
        *rec = Rec::default();
    }
    let mut files = Vec::new();
    let mut rec = Rec::default();
    for line in text.lines() {
        let line = line.trim();
        if let Some(p) = line.strip_prefix("SF:") {
            close(&mut rec, &mut files);
            rec.path = p.to_owned();
            rec.open = true;
        } else if line == "end_of_record" {
            close(&mut rec, &mut files);
        } else if let Some(n) = line.strip_prefix("LF:") {
            rec.open = true;
            rec.lf = n.trim().parse().ok();
        } else if let Some(n) = line.strip_prefix("LH:") {
            rec.open = true;
            rec.lh = n.trim().parse().ok();
        } else if let Some(da) = line.strip_prefix("DA:") {
            rec.open = true;
            rec.da_found += 1;
            let hits = da
                .split(',')
                .nth(1)
                .and_then(|h| h.trim().parse::<u64>().ok());
            if hits.is_some_and(|h| h > 0) {
                rec.da_hit += 1;
            }
        }
    }
    close(&mut rec, &mut files);
    Coverage { files }
}

/// Why a report could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("is not valid {0}: {1}")]
    Malformed(CoverageFormat, String),
    #[error("holds no lines")]
    NoLines,
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
        CoverageFormat::Auto | CoverageFormat::Lcov => parse_lcov(text).percent(),
        CoverageFormat::Cobertura => cobertura_percent(text).map_err(|e| (e, format))?,
        CoverageFormat::Istanbul => {
            json_percent(text, format, &["total", "lines"], "pct").map_err(|e| (e, format))?
        }
        CoverageFormat::LlvmCov => {
            json_percent(text, format, &["data", "0", "totals", "lines"], "percent")
                .map_err(|e| (e, format))?
        }
    };
    value
        .filter(|v| v.is_finite())
        .map(|v| (v.clamp(0.0, 100.0), format))
        .ok_or((ReadError::NoLines, format))
}

/// The root `<coverage>` element's `lines-covered / lines-valid`, else `line-rate`.
fn cobertura_percent(text: &str) -> Result<Option<f64>, ReadError> {
    let bad = |m: String| ReadError::Malformed(CoverageFormat::Cobertura, m);
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
                let num = |k: &str| attrs.get(k).and_then(|v| v.parse::<f64>().ok());
                return Ok(match (num("lines-covered"), num("lines-valid")) {
                    (Some(c), Some(v)) if v > 0.0 => Some(c.min(v) * 100.0 / v),
                    (_, Some(v)) if v <= 0.0 => None,
                    _ => num("line-rate").map(|r| r * 100.0),
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
    let lines = ["total", "count"]
        .iter()
        .find_map(|k| at.get(*k).and_then(serde_json::Value::as_f64));
    if lines == Some(0.0) {
        return Ok(None);
    }
    match at.get(leaf).and_then(serde_json::Value::as_f64) {
        Some(p) => Ok(Some(p)),
        None => Err(ReadError::Malformed(
            format,
            format!("no number at {}.{leaf}", path.join(".")),
        )),
    }
}

/// `62.5`, `80`, `83.33`: at most two decimals, no trailing zeros.
pub fn pct(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_owned()
}

/// Read the report at `file` (shown as `shown`) in `format` and check it against
/// `threshold`. `Ok` carries the total line coverage; a failure carries it too when it
/// could be computed.
pub fn gate(
    file: &Path,
    shown: &Path,
    format: CoverageFormat,
    threshold: f64,
) -> Result<f64, (Failure, Option<f64>)> {
    let fail = |reason: String, value: Option<f64>| {
        (Failure::new(FailureClass::CoverageBelow, reason), value)
    };
    let text = std::fs::read_to_string(file).map_err(|_| {
        let what = match format {
            CoverageFormat::Auto => String::new(),
            f => format!("{f} "),
        };
        fail(
            format!("no {what}coverage report at {}", shown.display()),
            None,
        )
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
mod tests {
    use super::*;

    const LCOV: &str = "TN:\nSF:src/a.js\nFN:2,add\nDA:1,1\nDA:2,0\nLH:5\nLF:10\nend_of_record\n\
SF:test/a.test.js\nDA:1,1\nDA:2,3\nDA:3,0\nend_of_record\n";

    fn fixture(name: &str) -> String {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/coverage")
            .join(name);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    #[test]
    fn totals_sum_lh_over_lf() {
        let c = parse_lcov(LCOV);
        assert_eq!(c.files.len(), 2);
        assert_eq!((c.files[0].found, c.files[0].hit), (10, 5));
        assert_eq!((c.files[1].found, c.files[1].hit), (3, 2), "DA fallback");
        assert_eq!(c.found(), 13);
        assert!((c.percent().unwrap() - 700.0 / 13.0).abs() < 1e-9);
        assert_eq!(parse_lcov("").percent(), None);
        assert_eq!(
            parse_lcov("SF:x\nLF:0\nLH:0\nend_of_record\n").percent(),
            None
        );
    }

    fn auto(name: &str) -> (f64, CoverageFormat) {
        read(&fixture(name), name, CoverageFormat::Auto).unwrap()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn every_format_is_read_and_detected() {
        let (v, f) = auto("lcov.info");
        assert_eq!(f, CoverageFormat::Lcov);
        assert!(close(v, 85.0), "{v}");
        let (v, f) = auto("cobertura.xml");
        assert_eq!(f, CoverageFormat::Cobertura);
        assert!(
            close(v, 72.0 * 100.0 / 90.0),
            "lines-covered / lines-valid: {v}"
        );
        let (v, f) = auto("cobertura-rate-only.xml");
        assert_eq!(f, CoverageFormat::Cobertura);
        assert!(close(v, 91.3), "line-rate: {v}");
        let (v, f) = auto("coverage-summary.json");
        assert_eq!(f, CoverageFormat::Istanbul);
        assert!(close(v, 78.26), "{v}");
        let (v, f) = auto("llvm-cov.json");
        assert_eq!(f, CoverageFormat::LlvmCov);
        assert!(close(v, 88.235_294_117_647_06), "{v}");
    }

    #[test]
    fn configured_formats_and_bad_reports() {
        let xml = fixture("cobertura.xml");
        // A configured format that does not match the file is a clear error.
        let (e, f) = read(&xml, "x", CoverageFormat::Istanbul).unwrap_err();
        assert_eq!(f, CoverageFormat::Istanbul);
        assert!(matches!(e, ReadError::Malformed(..)), "{e}");
        assert!(read(&xml, "x", CoverageFormat::Cobertura).is_ok());
        // No lines at all.
        let empty = "<?xml version=\"1.0\"?><coverage lines-valid=\"0\" lines-covered=\"0\" line-rate=\"1\"/>";
        assert_eq!(
            read(empty, "c.xml", CoverageFormat::Auto).unwrap_err().0,
            ReadError::NoLines
        );
        let json = r#"{"total":{"lines":{"total":0,"covered":0,"skipped":0,"pct":"Unknown"}}}"#;
        assert_eq!(
            read(json, "s.json", CoverageFormat::Auto).unwrap_err().0,
            ReadError::NoLines
        );
        assert_eq!(
            read("hello", "x.txt", CoverageFormat::Auto).unwrap_err().0,
            ReadError::Unknown
        );
        assert_eq!(
            read("<html/>", "x.xml", CoverageFormat::Auto)
                .unwrap_err()
                .0,
            ReadError::Unknown
        );
        assert!(matches!(
            read("<report/>", "x.xml", CoverageFormat::Cobertura)
                .unwrap_err()
                .0,
            ReadError::Malformed(..)
        ));
    }

    #[test]
    fn auto_finds_the_usual_paths() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(
            report_path(d, None, CoverageFormat::Auto),
            Path::new("coverage/lcov.info")
        );
        std::fs::create_dir_all(d.join("coverage")).unwrap();
        std::fs::write(d.join("coverage/coverage-summary.json"), "{}").unwrap();
        assert_eq!(
            report_path(d, None, CoverageFormat::Auto),
            Path::new("coverage/coverage-summary.json")
        );
        assert_eq!(
            report_path(d, None, CoverageFormat::LlvmCov),
            Path::new("coverage/llvm-cov.json")
        );
        assert_eq!(
            report_path(d, Some(Path::new("x/y.xml")), CoverageFormat::Auto),
            Path::new("x/y.xml")
        );
    }

    #[test]
    fn gate_messages() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lcov.info");
        let shown = Path::new("coverage/lcov.info");
        let auto = CoverageFormat::Auto;
        let (f, v) = gate(&p, shown, auto, 80.0).unwrap_err();
        assert_eq!(f.class, FailureClass::CoverageBelow);
        assert_eq!(f.reason, "no coverage report at coverage/lcov.info");
        assert_eq!(v, None);
        let (f, _) = gate(&p, shown, CoverageFormat::Lcov, 80.0).unwrap_err();
        assert_eq!(f.reason, "no lcov coverage report at coverage/lcov.info");
        std::fs::write(&p, "").unwrap();
        assert_eq!(
            gate(&p, shown, CoverageFormat::Lcov, 80.0)
                .unwrap_err()
                .0
                .reason,
            "the lcov coverage report at coverage/lcov.info holds no lines"
        );
        std::fs::write(&p, "SF:a\nLF:8\nLH:5\nend_of_record\n").unwrap();
        let (f, v) = gate(&p, shown, auto, 80.0).unwrap_err();
        assert_eq!(
            f.reason,
            "line coverage 62.5% is below the 80% threshold (lcov report coverage/lcov.info)"
        );
        assert_eq!(v, Some(62.5));
        std::fs::write(&p, "SF:a\nLF:5\nLH:4\nend_of_record\n").unwrap();
        assert_eq!(gate(&p, shown, auto, 80.0).unwrap(), 80.0);
        assert_eq!(pct(83.333), "83.33");

        let x = dir.path().join("cov.xml");
        std::fs::write(&x, fixture("cobertura.xml")).unwrap();
        let (f, v) = gate(&x, Path::new("cov.xml"), auto, 90.0).unwrap_err();
        assert_eq!(
            f.reason,
            "line coverage 80% is below the 90% threshold (Cobertura XML report cov.xml)"
        );
        assert_eq!(v, Some(80.0));
    }
}
