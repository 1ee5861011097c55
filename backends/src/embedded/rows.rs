//! Tolerant reading of stored rows: one column that does not hold what the schema says
//! (a hand edit, an older version's bug, a damaged page) must not make every read of its
//! table fail.
//!
//! Invariant: reading never loses what is stored. A column is returned as text whatever
//! SQLite holds in it — a BLOB that is not UTF-8 comes back hex-encoded — and every
//! departure from the schema is named (column and what is wrong) in the row's problems,
//! so the caller can quarantine the row with a reason instead of failing.

use rusqlite::types::Value;

/// The columns of one row, read as SQLite values, with what was found wrong so far.
#[derive(Debug)]
pub struct RawRow {
    values: Vec<Value>,
    names: &'static [&'static str],
    problems: Vec<String>,
}

impl RawRow {
    /// Read every column of `r` (named `names`, in order) without interpreting it.
    pub fn read(r: &rusqlite::Row<'_>, names: &'static [&'static str]) -> rusqlite::Result<Self> {
        let values = (0..names.len())
            .map(|i| r.get::<_, Value>(i))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(RawRow {
            values,
            names,
            problems: Vec::new(),
        })
    }

    /// Column `i` as text. NULL becomes "" and a non-UTF-8 BLOB is kept hex-encoded;
    /// both are recorded as problems.
    pub fn text(&mut self, i: usize) -> String {
        let name = self.names[i];
        match std::mem::replace(&mut self.values[i], Value::Null) {
            Value::Text(s) => s,
            Value::Integer(n) => n.to_string(),
            Value::Real(x) => x.to_string(),
            Value::Null => {
                self.problems.push(format!("column `{name}` is NULL"));
                String::new()
            }
            Value::Blob(bytes) => match String::from_utf8(bytes) {
                Ok(s) => s,
                Err(e) => {
                    self.problems.push(format!(
                        "column `{name}` is not UTF-8 text (kept hex-encoded)"
                    ));
                    hex(e.as_bytes())
                }
            },
        }
    }

    /// Column `i` as an integer; anything else is a problem and reads as 0.
    pub fn int(&mut self, i: usize) -> i64 {
        match &self.values[i] {
            Value::Integer(n) => *n,
            other => {
                self.problems.push(format!(
                    "column `{}` holds {} instead of an integer",
                    self.names[i],
                    kind(other)
                ));
                0
            }
        }
    }

    /// Record a problem found while interpreting a column's text.
    pub fn problem(&mut self, column: &str, what: impl std::fmt::Display) {
        self.problems.push(format!("column `{column}`: {what}"));
    }

    /// Everything found wrong with the row, in reading order.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "NULL",
        Value::Integer(_) => "an integer",
        Value::Real(_) => "a real",
        Value::Text(_) => "text",
        Value::Blob(_) => "a BLOB",
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(values: Vec<Value>) -> RawRow {
        RawRow {
            values,
            names: &["a", "b"],
            problems: Vec::new(),
        }
    }

    #[test]
    fn good_values_read_without_problems() {
        let mut r = row(vec![Value::Text("x".into()), Value::Integer(3)]);
        assert_eq!((r.text(0), r.int(1)), ("x".to_owned(), 3));
        assert!(r.problems().is_empty());
    }

    #[test]
    fn bad_values_are_kept_and_named() {
        let mut r = row(vec![Value::Blob(vec![0xff, 0x01]), Value::Text("x".into())]);
        assert_eq!(r.text(0), "ff01");
        assert_eq!(r.int(1), 0);
        assert_eq!(
            r.problems(),
            [
                "column `a` is not UTF-8 text (kept hex-encoded)",
                "column `b` holds text instead of an integer"
            ]
        );
        let mut n = row(vec![Value::Null, Value::Null]);
        assert_eq!(n.text(0), "");
        assert_eq!(n.problems(), ["column `a` is NULL"]);
    }
}
