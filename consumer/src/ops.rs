//! Operator views: job records and dead letters as aligned text tables or JSON.
//!
//! Invariant: these views only read; nothing here changes a job or a message. Values
//! shown come from typed records (no raw environment), so no secret can appear.

use kiro_protocol::{DeadLetterEntry, Envelope, JobRecord, Timestamp};
use serde_json::json;

/// Render rows as a left-aligned table with a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.trim_end().to_owned()
    };
    let mut out = line(header.iter().map(|h| (*h).to_owned()).collect());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.clone()));
        out.push('\n');
    }
    out
}

fn coverage(c: Option<f64>) -> String {
    c.map(|c| format!("{c:.1}%")).unwrap_or_else(|| "-".into())
}

/// The job-records table: project, item, state, attempts, fence, build, last failure, coverage.
pub fn jobs_table(jobs: &[JobRecord]) -> String {
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            vec![
                j.project.to_string(),
                j.item.to_string(),
                j.state.to_string(),
                j.attempts.to_string(),
                j.fence.to_string(),
                j.build_id
                    .clone()
                    .or_else(|| j.history.last().and_then(|a| a.build_id.clone()))
                    .map(|b| b.to_string())
                    .unwrap_or_else(|| "-".into()),
                j.last_failure
                    .as_ref()
                    .map(|f| f.class.to_string())
                    .unwrap_or_else(|| "-".into()),
                coverage(j.coverage),
            ]
        })
        .collect();
    table(
        &[
            "PROJECT",
            "ITEM",
            "STATE",
            "ATTEMPTS",
            "FENCE",
            "BUILD",
            "LAST FAILURE",
            "COVERAGE",
        ],
        &rows,
    )
}

pub fn jobs_json(jobs: &[JobRecord]) -> serde_json::Value {
    serde_json::to_value(jobs).unwrap_or_default()
}

/// The item id inside a dead letter's body, if it decodes.
fn item_of(e: &DeadLetterEntry) -> String {
    Envelope::decode(&e.body)
        .map(|env| env.item.id.to_string())
        .unwrap_or_else(|_| "?".into())
}

fn age(now: Timestamp, then: Timestamp) -> String {
    let s = now.since(then).as_secs();
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        _ => format!("{}h", s / 3600),
    }
}

pub fn dlq_table(entries: &[DeadLetterEntry], now: Timestamp) -> String {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.id.to_string(),
                e.group.clone(),
                item_of(e),
                e.letter.class.to_string(),
                e.letter.attempts.len().to_string(),
                age(now, e.dead_lettered_at),
                e.letter.reason.chars().take(100).collect(),
            ]
        })
        .collect();
    table(
        &[
            "MESSAGE", "PROJECT", "ITEM", "CLASS", "ATTEMPTS", "AGE", "REASON",
        ],
        &rows,
    )
}

pub fn dlq_json(entries: &[DeadLetterEntry], now: Timestamp) -> serde_json::Value {
    serde_json::Value::Array(
        entries
            .iter()
            .map(|e| {
                json!({
                    "message": e.id.as_str(),
                    "original_message": e.original_id.as_str(),
                    "project": e.group,
                    "item": item_of(e),
                    "class": e.letter.class.as_str(),
                    "reason": e.letter.reason,
                    "attempts": e.letter.attempts,
                    "fence": e.letter.fence,
                    "build_id": e.letter.build_id,
                    "age_seconds": now.since(e.dead_lettered_at).as_secs(),
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let t = table(
            &["A", "BB"],
            &[vec!["xxx".into(), "y".into()], vec!["z".into(), "w".into()]],
        );
        assert_eq!(t, "A    BB\nxxx  y\nz    w\n");
    }

    #[test]
    fn ages_are_human() {
        assert_eq!(age(Timestamp(200_000), Timestamp(0)), "3m");
        assert_eq!(age(Timestamp(5_000), Timestamp(0)), "5s");
    }
}
