//! Go coverage profiles (`go test -coverprofile`).
//!
//! Invariant: the total is statements, Go's unit: the blocks
//! `file:startLine.startCol,endLine.endCol numStmt count` are merged as Go's
//! `ParseProfiles` merges them (one block seen in several test binaries or concatenated
//! profiles is one block, run when any record ran it; its statement count must agree),
//! and `sum(numStmt of blocks run) / sum(numStmt)` is the total — `go test -cover`'s
//! "coverage: N% of statements" and `go tool cover -func`'s total (which counts only
//! blocks inside function declarations: every block, in practice). A `mode:` line may
//! repeat (two profiles concatenated with `cat`; `go tool cover` itself rejects that).

use super::model::{Hits, Report};
use super::{CoverageFormat, ReadError};

/// The first non-empty line is `mode: set|count|atomic`.
pub fn looks_like(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .is_some_and(|l| l.starts_with("mode:"))
}

/// Parse a Go coverage profile.
pub fn parse(text: &str) -> Result<Report, ReadError> {
    let f = CoverageFormat::Go;
    if !looks_like(text) {
        return Err(ReadError::Malformed(
            f,
            "the first line is not `mode: …`".into(),
        ));
    }
    let mut report = Report::default();
    for (i, l) in text.lines().enumerate() {
        let l = l.trim();
        if l.is_empty() || l.starts_with("mode:") {
            continue;
        }
        let at = || format!("line {}", i + 1);
        let bad = |why: &str| ReadError::Malformed(f, format!("{} {why}", at()));
        let (file, rest) = l.rsplit_once(':').ok_or_else(|| bad("is not a block"))?;
        let mut fields = rest.split_whitespace();
        let (Some(range), Some(stmts), Some(count), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(bad("is not `file:l.c,l.c statements count`"));
        };
        let pos = |p: &str| -> Option<(u64, u64)> {
            let (a, b) = p.split_once('.')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        };
        let (Some((sl, sc)), Some((el, ec))) = range
            .split_once(',')
            .map_or((None, None), |(s, e)| (pos(s), pos(e)))
        else {
            return Err(bad("has no `l.c,l.c` block range"));
        };
        let number = |field: &str, v: &str| {
            v.parse::<u64>().map_err(|_| {
                ReadError::Impossible(format!(
                    "{field} {:?} on {} is not a count",
                    v.chars().take(40).collect::<String>(),
                    at()
                ))
            })
        };
        let weight = number("the statement count", stmts)?;
        let hit = number("the execution count", count)? > 0;
        let mut one = super::model::FileCov::default();
        one.add_unit((sl, sc, el, ec), Hits { weight, hit }, file)?;
        report.add_file(file, one)?;
    }
    Ok(report)
}
