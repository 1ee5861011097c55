//! [`SpecPath`]: the spec folder of a feature, always `.kiro/specs/<feature>`.
//!
//! Invariant: a parsed spec path names one folder directly inside `.kiro/specs/`, whatever
//! form the board gave it in.

use super::error::{IdError, check_charset, check_len, quote_for_display};
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

/// The spec folder of a feature, always `.kiro/specs/<feature>` with `<feature>` of
/// `a-z 0-9 . _ -` (starting with a letter or digit, at most 100). The board may give the
/// full path (with or without a trailing `/`) or the feature name alone.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct SpecPath(String);

impl SpecPath {
    pub const FIELD: &'static str = "spec";
    pub const ROOT: &'static str = ".kiro/specs";

    pub fn parse(raw: &str) -> Result<Self, IdError> {
        const F: &str = SpecPath::FIELD;
        check_len(F, raw, 160)?;
        if raw.starts_with('/') {
            return Err(IdError::new(
                F,
                raw,
                "must be a relative path inside .kiro/specs/",
            ));
        }
        let trimmed = raw.strip_suffix('/').unwrap_or(raw);
        let feature = match trimmed.strip_prefix(".kiro/specs/") {
            Some(rest) => rest,
            None if trimmed.contains('/') || trimmed.contains('\\') => {
                return Err(IdError::new(F, raw, "must stay inside .kiro/specs/"));
            }
            None => trimmed,
        };
        if feature.is_empty() || feature.len() > 100 {
            return Err(IdError::new(
                F,
                raw,
                "feature name must be 1 to 100 characters",
            ));
        }
        if feature.contains('/') || feature.contains('\\') || feature.contains("..") {
            return Err(IdError::new(
                F,
                raw,
                "must name one folder directly inside .kiro/specs/ (no '/', no '..')",
            ));
        }
        check_charset(
            F,
            feature,
            |c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'),
            "feature names are lower-case letters, digits, '.', '_' and '-'",
        )
        .map_err(|e| IdError {
            value: quote_for_display(raw),
            ..e
        })?;
        if !feature.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(IdError::new(
                F,
                raw,
                "feature name must start with a letter or digit",
            ));
        }
        Ok(SpecPath(format!("{}/{feature}", Self::ROOT)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The feature name (the last path component).
    pub fn feature(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or_default()
    }
}

impl fmt::Display for SpecPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SpecPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        SpecPath::parse(&raw).map_err(serde::de::Error::custom)
    }
}
