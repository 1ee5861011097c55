//! The system's own keys on a board item: [`ProjectKey`] (the unit of ordering and mutual
//! exclusion) and [`ItemId`].
//!
//! Invariant: both are 1 to a bounded number of `A-Z a-z 0-9` and a few punctuation
//! characters, starting with a letter or digit, so neither can be `.`, `..` or carry a
//! shell metacharacter.

use super::error::{IdError, check_charset, check_len};
use super::newtype::string_newtype;
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

string_newtype!(
    /// A project key: the unit of ordering and mutual exclusion (the SQS message group and
    /// the lease key). 1–64 of `A-Z a-z 0-9 . _ -`, starting with a letter or digit.
    ProjectKey,
    "project"
);

impl ProjectKey {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        check_key(
            Self::FIELD,
            raw,
            64,
            |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'),
            "use letters, digits, '.', '_' and '-'",
        )?;
        Ok(ProjectKey(raw.to_owned()))
    }
}

string_newtype!(
    /// A board item's id (a GitHub Projects item node id such as `PVTI_lADO…`, or a local
    /// id such as `CALC-1`). 1–128 of `A-Z a-z 0-9 . _ : -`, starting with a letter or
    /// digit (so `.` and `..` never parse).
    ItemId,
    "item id"
);

impl ItemId {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        // Ids name work directories and log files: `.` and `..` must never parse (a key
        // starts with a letter or digit).
        check_key(
            Self::FIELD,
            raw,
            128,
            |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'),
            "use letters, digits, '.', '_', ':' and '-'",
        )?;
        Ok(ItemId(raw.to_owned()))
    }
}

/// `raw` is 1 to `max` bytes of `allowed` characters (`what` names them) and starts with a
/// letter or digit.
fn check_key(
    field: &'static str,
    raw: &str,
    max: usize,
    allowed: impl Fn(char) -> bool,
    what: &str,
) -> Result<(), IdError> {
    check_len(field, raw, max)?;
    check_charset(field, raw, allowed, what)?;
    if !raw.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(IdError::new(
            field,
            raw,
            "must start with a letter or digit",
        ));
    }
    Ok(())
}
