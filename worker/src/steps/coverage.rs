//! The coverage gate: read an lcov report and compare total line coverage to the
//! threshold.
//!
//! Invariant: total line coverage is `sum(LH) / sum(LF) * 100` over every file record
//! (falling back to counting `DA` lines when a record has no `LF`/`LH`); a missing or
//! empty report, or one with no lines at all, is never read as passing.

use kiro_protocol::{Failure, FailureClass};
use std::path::Path;

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

/// `62.5`, `80`, `83.33`: at most two decimals, no trailing zeros.
pub fn pct(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_owned()
}

/// Read the report at `lcov` and check it against `threshold`. `Ok` carries the total
/// line coverage; a failure carries it too when it could be computed.
pub fn gate(lcov: &Path, shown: &Path, threshold: f64) -> Result<f64, (Failure, Option<f64>)> {
    let missing = || {
        (
            Failure::new(
                FailureClass::CoverageBelow,
                format!("no coverage report at {}", shown.display()),
            ),
            None,
        )
    };
    let text = std::fs::read_to_string(lcov).map_err(|_| missing())?;
    let Some(total) = parse_lcov(&text).percent() else {
        return Err(missing());
    };
    if total + 1e-9 < threshold {
        return Err((
            Failure::new(
                FailureClass::CoverageBelow,
                format!(
                    "line coverage {}% is below the {}% threshold",
                    pct(total),
                    pct(threshold)
                ),
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

    #[test]
    fn gate_messages() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lcov.info");
        let shown = Path::new("coverage/lcov.info");
        let (f, v) = gate(&p, shown, 80.0).unwrap_err();
        assert_eq!(f.class, FailureClass::CoverageBelow);
        assert_eq!(f.reason, "no coverage report at coverage/lcov.info");
        assert_eq!(v, None);
        std::fs::write(&p, "").unwrap();
        assert_eq!(gate(&p, shown, 80.0).unwrap_err().0.reason, f.reason);
        std::fs::write(&p, "SF:a\nLF:8\nLH:5\nend_of_record\n").unwrap();
        let (f, v) = gate(&p, shown, 80.0).unwrap_err();
        assert_eq!(f.reason, "line coverage 62.5% is below the 80% threshold");
        assert_eq!(v, Some(62.5));
        std::fs::write(&p, "SF:a\nLF:5\nLH:4\nend_of_record\n").unwrap();
        assert_eq!(gate(&p, shown, 80.0).unwrap(), 80.0);
        assert_eq!(pct(83.333), "83.33");
    }
}
