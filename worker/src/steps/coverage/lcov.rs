//! lcov tracefiles (`lcov.info`): what `lcov -a` and `lcov --summary` count.
//!
//! Invariant: the lines of a file are its `DA:<line>,<hits>` entries; the records of one
//! `SF` path — sharded runs concatenated into one file, or several reports — are merged
//! by line, a line hit when any record hit it, exactly as `lcov -a` merges tracefiles.
//! `LF`/`LH` are only checked (a count, `LH <= LF`), never summed: like lcov, the worker
//! counts a record's `DA` lines, so two shards of one file are not counted twice. A
//! record with no `DA` line holds no lines (lcov reads "no data" from it).

use super::ReadError;
use super::model::{FileCov, Hits, Report, line, shown_path};

/// Parse lcov text. Unknown lines are ignored; an `LF`/`LH`/`DA` that is not a count,
/// or a record with `LH > LF`, is an impossible report naming the record and the field.
pub fn parse_lcov(text: &str) -> Result<Report, ReadError> {
    #[derive(Default)]
    struct Rec {
        path: String,
        lf: Option<u64>,
        lh: Option<u64>,
        lines: FileCov,
        open: bool,
    }
    fn close(rec: &mut Rec, out: &mut Report) -> Result<(), ReadError> {
        if rec.open {
            if let (Some(found), Some(hit)) = (rec.lf, rec.lh)
                && hit > found
            {
                return Err(ReadError::Impossible(format!(
                    "LH {hit} > LF {found} in record {}",
                    shown_path(&rec.path)
                )));
            }
            out.add_file(&rec.path, std::mem::take(&mut rec.lines))?;
        }
        *rec = Rec::default();
        Ok(())
    }
    let not_a_count = |field: &str, n: &str, rec: &Rec| {
        ReadError::Impossible(format!(
            "{field} {:?} in record {} is not a count",
            n.trim().chars().take(40).collect::<String>(),
            shown_path(&rec.path)
        ))
    };
    let count = |field: &str, n: &str, rec: &Rec| {
        n.trim()
            .parse::<u64>()
            .map_err(|_| not_a_count(field, n, rec))
    };
    let mut report = Report::default();
    let mut rec = Rec::default();
    for l in text.lines() {
        let l = l.trim();
        if let Some(p) = l.strip_prefix("SF:") {
            close(&mut rec, &mut report)?;
            rec.path = p.to_owned();
            rec.open = true;
        } else if l == "end_of_record" {
            close(&mut rec, &mut report)?;
        } else if let Some(n) = l.strip_prefix("LF:") {
            rec.open = true;
            rec.lf = Some(count("LF", n, &rec)?);
        } else if let Some(n) = l.strip_prefix("LH:") {
            rec.open = true;
            rec.lh = Some(count("LH", n, &rec)?);
        } else if let Some(da) = l.strip_prefix("DA:") {
            rec.open = true;
            // `DA:<line>,<hits>[,<checksum>]`
            let mut parts = da.split(',');
            let n = count("DA line", parts.next().unwrap_or(""), &rec)?;
            let raw = parts.next().unwrap_or("").trim();
            let hit = match raw.parse::<u64>() {
                Ok(h) => h > 0,
                // Some tools write `1.0` or `1e+20`.
                Err(_) => match raw.parse::<f64>() {
                    Ok(h) if h.is_finite() && h >= 0.0 => h > 0.0,
                    _ => return Err(not_a_count("DA hits", raw, &rec)),
                },
            };
            let path = rec.path.clone();
            rec.lines
                .add_unit(line(n), Hits { weight: 1, hit }, &path)?;
        }
    }
    close(&mut rec, &mut report)?;
    Ok(report)
}
