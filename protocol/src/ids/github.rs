//! Names git and GitHub give, as the board hands them over: [`RepoName`] (`owner/name`),
//! [`BranchName`], [`PrNumber`] and [`Login`] (a user's or bot's login, e.g. an assignee).
//!
//! Invariant: the rules are stricter than git's or GitHub's, so no parsed value holds a
//! shell metacharacter, a control character or a path that leaves its folder.

use super::error::{IdError, check_charset, check_len};
use super::newtype::string_newtype;
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

string_newtype!(
    /// A GitHub repository as `owner/name`. The owner follows GitHub's login rules
    /// (letters, digits and single inner hyphens, at most 39); the name is 1–100 of
    /// `A-Z a-z 0-9 . _ -` and is neither `.` nor `..`.
    RepoName,
    "repo"
);

impl RepoName {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        const F: &str = RepoName::FIELD;
        check_len(F, raw, 140)?;
        let Some((owner, name)) = raw.split_once('/') else {
            return Err(IdError::new(F, raw, "must be owner/name"));
        };
        if owner.is_empty() || owner.len() > 39 {
            return Err(IdError::new(F, raw, "owner must be 1 to 39 characters"));
        }
        if !owner.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            || owner.starts_with('-')
            || owner.ends_with('-')
            || owner.contains("--")
        {
            return Err(IdError::new(
                F,
                raw,
                "owner may hold letters, digits and single inner hyphens only",
            ));
        }
        if name.is_empty() || name.len() > 100 {
            return Err(IdError::new(F, raw, "name must be 1 to 100 characters"));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(IdError::new(
                F,
                raw,
                "name may hold letters, digits, '.', '_' and '-' only",
            ));
        }
        if name == "." || name == ".." {
            return Err(IdError::new(F, raw, "name must not be '.' or '..'"));
        }
        Ok(RepoName(raw.to_owned()))
    }

    pub fn owner(&self) -> &str {
        self.0.split_once('/').map(|(o, _)| o).unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.0.split_once('/').map(|(_, n)| n).unwrap_or_default()
    }
}

string_newtype!(
    /// A GitHub user's or bot's login, such as an item's assignee: 1–39 ASCII letters,
    /// digits and hyphens, not starting or ending with a hyphen (`octo-cat`, `Copilot`).
    /// Without `@`: a mention is written `@{login}`.
    Login,
    "login"
);

impl Login {
    /// The longest login GitHub gives (characters).
    pub const MAX: usize = 39;

    pub fn parse(raw: &str) -> Result<Self, IdError> {
        const F: &str = Login::FIELD;
        check_len(F, raw, Login::MAX)?;
        check_charset(
            F,
            raw,
            |c| c.is_ascii_alphanumeric() || c == '-',
            "use letters, digits and '-'",
        )?;
        if raw.starts_with('-') || raw.ends_with('-') {
            return Err(IdError::new(F, raw, "must not start or end with '-'"));
        }
        Ok(Login(raw.to_owned()))
    }
}

string_newtype!(
    /// A branch name, valid under `git check-ref-format --branch` and further restricted to
    /// `A-Z a-z 0-9 . _ / + -` (no shell metacharacters, no spaces), at most 200 bytes.
    BranchName,
    "branch"
);

impl BranchName {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        const F: &str = BranchName::FIELD;
        check_len(F, raw, 200)?;
        check_charset(
            F,
            raw,
            |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '+' | '-'),
            "use letters, digits, '.', '_', '/', '+' and '-'",
        )?;
        let rule = |reason: &str| Err(IdError::new(F, raw, reason));
        if raw.starts_with('-') {
            return rule("must not start with '-'");
        }
        if raw.starts_with('/') || raw.ends_with('/') {
            return rule("must not start or end with '/'");
        }
        if raw.contains("//") {
            return rule("must not contain '//'");
        }
        if raw.contains("..") {
            return rule("must not contain '..'");
        }
        if raw.ends_with('.') {
            return rule("must not end with '.'");
        }
        if raw == "HEAD" {
            return rule("must not be HEAD");
        }
        for component in raw.split('/') {
            if component.starts_with('.') {
                return rule("no path component may start with '.'");
            }
            if component.ends_with(".lock") {
                return rule("no path component may end with '.lock'");
            }
        }
        Ok(BranchName(raw.to_owned()))
    }
}

/// A pull-request number (positive, at most 12 digits). Decoding goes through
/// [`PrNumber::parse`] (a JSON number or string), so a queue message cannot carry a
/// number the board validation would refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct PrNumber(pub u64);

impl PrNumber {
    pub const FIELD: &'static str = "pull request";
    /// The largest number accepted (12 digits).
    pub const MAX: u64 = 999_999_999_999;

    pub fn parse(raw: &str) -> Result<Self, IdError> {
        let digits = raw.strip_prefix('#').unwrap_or(raw);
        match digits.parse::<u64>() {
            Ok(n) if n > 0 && digits.len() <= 12 => Ok(PrNumber(n)),
            _ => Err(IdError::new(
                Self::FIELD,
                raw,
                "must be a positive number such as 42",
            )),
        }
    }
}

impl<'de> Deserialize<'de> for PrNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        let raw = match Raw::deserialize(d) {
            Ok(Raw::Number(n)) => n.to_string(),
            Ok(Raw::Text(s)) => s,
            Err(_) => {
                return Err(serde::de::Error::custom(
                    "invalid pull request: must be a positive number such as 42",
                ));
            }
        };
        PrNumber::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for PrNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}
