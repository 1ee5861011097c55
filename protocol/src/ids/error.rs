//! [`IdError`], the one error of every identifier parse, and the checks the parsers share.
//!
//! Invariant: an error never carries the raw value as given: [`quote_for_display`] escapes
//! and truncates it first, so hostile input cannot forge log lines or flood them.

use thiserror::Error;

/// A board value that failed to parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid {field} {value}: {reason}")]
pub struct IdError {
    /// The field's name as a user sees it (`branch`, `spec`, `repo`, …).
    pub field: &'static str,
    /// The offending value, quoted, escaped and truncated: safe to print.
    pub value: String,
    /// The rule it broke.
    pub reason: String,
}

impl IdError {
    pub fn new(field: &'static str, raw: &str, reason: impl Into<String>) -> Self {
        IdError {
            field,
            value: quote_for_display(raw),
            reason: reason.into(),
        }
    }
}

/// Quote a raw value for an error message: escape control and non-ASCII characters and
/// cut it to 64 characters, so hostile input cannot forge log lines or flood them.
pub fn quote_for_display(raw: &str) -> String {
    const MAX: usize = 64;
    let mut out = String::from("\"");
    for (n, c) in raw.chars().enumerate() {
        if n == MAX {
            out.push('…');
            break;
        }
        out.extend(c.escape_debug());
    }
    out.push('"');
    out
}

/// `raw` is 1 to `max` bytes.
pub(super) fn check_len(field: &'static str, raw: &str, max: usize) -> Result<(), IdError> {
    if raw.is_empty() {
        return Err(IdError::new(field, raw, "must not be empty"));
    }
    if raw.len() > max {
        return Err(IdError::new(field, raw, format!("longer than {max} bytes")));
    }
    Ok(())
}

/// Every character of `raw` is `allowed` (`what` says which are, for the message).
pub(super) fn check_charset(
    field: &'static str,
    raw: &str,
    allowed: impl Fn(char) -> bool,
    what: &str,
) -> Result<(), IdError> {
    if let Some(bad) = raw.chars().find(|c| !allowed(*c)) {
        return Err(IdError::new(
            field,
            raw,
            format!("character {} is not allowed ({what})", bad.escape_debug()),
        ));
    }
    Ok(())
}
