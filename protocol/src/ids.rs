//! Newtypes for every identifier that crosses a boundary.
//!
//! Values from the board are untrusted: they are parsed once, here, into types that can
//! only hold valid values ("parse, don't validate"). A parse error names the field, shows
//! the offending value escaped and truncated, and says which rule it broke. The rules
//! are deliberately stricter than what git or GitHub accept, so that no parsed value can
//! carry a shell metacharacter, a control character, or a path that leaves its folder.

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
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

fn check_len(field: &'static str, raw: &str, max: usize) -> Result<(), IdError> {
    if raw.is_empty() {
        return Err(IdError::new(field, raw, "must not be empty"));
    }
    if raw.len() > max {
        return Err(IdError::new(field, raw, format!("longer than {max} bytes")));
    }
    Ok(())
}

fn check_charset(
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

macro_rules! string_newtype {
    ($(#[$m:meta])* $name:ident, $field:literal) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The field name used in error messages.
            pub const FIELD: &'static str = $field;

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                $name::parse(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                $name::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_newtype!(
    /// A project key: the unit of ordering and mutual exclusion (the SQS message group and
    /// the lease key). 1–64 of `A-Z a-z 0-9 . _ -`, starting with a letter or digit.
    ProjectKey,
    "project"
);

impl ProjectKey {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        check_len(Self::FIELD, raw, 64)?;
        check_charset(
            Self::FIELD,
            raw,
            |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'),
            "use letters, digits, '.', '_' and '-'",
        )?;
        if !raw.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(IdError::new(
                Self::FIELD,
                raw,
                "must start with a letter or digit",
            ));
        }
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
        check_len(Self::FIELD, raw, 128)?;
        check_charset(
            Self::FIELD,
            raw,
            |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'),
            "use letters, digits, '.', '_', ':' and '-'",
        )?;
        // Ids name work directories and log files: `.` and `..` must never parse.
        if !raw.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(IdError::new(
                Self::FIELD,
                raw,
                "must start with a letter or digit",
            ));
        }
        Ok(ItemId(raw.to_owned()))
    }
}

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

/// A fencing token: bumped by every lease acquire, never reused for a project.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct Fence(pub u64);

impl fmt::Display for Fence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

macro_rules! opaque_id {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn new(s: impl Into<String>) -> Self {
                $name(s.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

opaque_id!(
    /// A build's id as its runner names it (CodeBuild's `project:uuid`, or a local id).
    BuildId
);
opaque_id!(
    /// A queue message id, assigned by the queue on send.
    MessageId
);
opaque_id!(
    /// The handle of one receive of a message; it changes on every receive.
    Receipt
);
opaque_id!(
    /// A FIFO deduplication id (at most 128 characters).
    DedupId
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn good_values_parse() {
        assert!(ProjectKey::parse("calc").is_ok());
        assert_eq!(RepoName::parse("acme/calc-app").unwrap().owner(), "acme");
        assert_eq!(RepoName::parse("acme/calc-app").unwrap().name(), "calc-app");
        assert!(BranchName::parse("feature/add-subtract").is_ok());
        assert!(BranchName::parse("release/1.2.3+build").is_ok());
        assert_eq!(
            SpecPath::parse(".kiro/specs/subtract/").unwrap().as_str(),
            ".kiro/specs/subtract"
        );
        assert_eq!(SpecPath::parse("subtract").unwrap().feature(), "subtract");
        assert_eq!(PrNumber::parse("#12").unwrap(), PrNumber(12));
        assert!(ItemId::parse("PVTI_lADOBx9Q").is_ok());
        for bad in [".", "..", "-x", "_x", ":x"] {
            assert_eq!(ItemId::parse(bad).expect_err(bad).field, "item id");
        }
    }

    #[test]
    fn hostile_branches_are_rejected_with_the_field_named() {
        for bad in [
            "feature/$(rm -rf /)",
            "a;b",
            "a b",
            "../etc",
            "a..b",
            "-rf",
            "a/",
            "/a",
            "a//b",
            "a.lock",
            "a/.hidden",
            "a.",
            "a~1",
            "a^",
            "a:b",
            "a@{1}",
            "a\nb",
            "a`id`",
            "HEAD",
            "",
        ] {
            let err = BranchName::parse(bad).expect_err(bad);
            assert_eq!(err.field, "branch");
            assert!(err.to_string().starts_with("invalid branch "), "{err}");
        }
        assert!(BranchName::parse(&"a".repeat(201)).is_err());
    }

    #[test]
    fn spec_paths_cannot_leave_the_specs_folder() {
        for bad in [
            "/etc/passwd",
            "../x",
            ".kiro/specs/../../x",
            ".kiro/specs/a/b",
            ".kiro/steering/x",
            ".kiro/specs/",
            "a\\b",
            "Feature",
            ".kiro/specs/.hidden",
            "x;rm",
        ] {
            let err = SpecPath::parse(bad).expect_err(bad);
            assert_eq!(err.field, "spec", "{bad}");
        }
    }

    #[test]
    fn repos_must_be_owner_slash_name() {
        for bad in [
            "calc", "acme/", "/calc", "a/b/c", "-a/b", "a--b/c", "acme/..", "acme/c d", "acme/$x",
        ] {
            assert_eq!(RepoName::parse(bad).expect_err(bad).field, "repo");
        }
    }

    #[test]
    fn error_values_are_escaped_and_truncated() {
        let e = BranchName::parse("evil\u{1b}[31m\nline").unwrap_err();
        let shown = e.to_string();
        assert!(
            !shown.contains('\n') && !shown.contains('\u{1b}'),
            "{shown}"
        );
        let long = ItemId::parse(&"x".repeat(500)).unwrap_err();
        assert!(long.value.chars().count() < 70);
    }

    #[test]
    fn deserialize_validates() {
        let r: Result<BranchName, _> = serde_json::from_str("\"a..b\"");
        assert!(r.is_err());
        let ok: SpecPath = serde_json::from_str("\"calc\"").unwrap();
        assert_eq!(ok.as_str(), ".kiro/specs/calc");
    }

    const SHELL_META: &[char] = &[
        '$', '`', ';', '|', '&', '>', '<', '(', ')', '{', '}', '\'', '"', '\\', '*', '?', '!', '#',
        '~', ' ', '\n', '\t', '\0',
    ];

    proptest! {
        #[test]
        fn parsed_values_never_hold_shell_metacharacters(s in "\\PC{0,80}") {
            if let Ok(b) = BranchName::parse(&s) {
                prop_assert!(!b.as_str().contains(SHELL_META));
            }
            if let Ok(p) = SpecPath::parse(&s) {
                prop_assert!(p.as_str().starts_with(".kiro/specs/"));
                prop_assert!(!p.as_str().contains(".."));
                prop_assert!(!p.as_str().contains(SHELL_META));
            }
            if let Ok(r) = RepoName::parse(&s) {
                prop_assert!(!r.as_str().contains(SHELL_META));
            }
            if let Ok(k) = ProjectKey::parse(&s) {
                prop_assert!(!k.as_str().contains(SHELL_META));
            }
        }

        /// Decoding (from the queue, a job record, …) never accepts what `parse` rejects,
        /// and accepts what it accepts.
        #[test]
        fn decode_accepts_exactly_what_parse_accepts(s in "\\PC{0,80}|[0-9#]{0,16}") {
            let json = serde_json::Value::String(s.clone());
            prop_assert_eq!(serde_json::from_value::<ItemId>(json.clone()).is_ok(), ItemId::parse(&s).is_ok());
            prop_assert_eq!(serde_json::from_value::<ProjectKey>(json.clone()).is_ok(), ProjectKey::parse(&s).is_ok());
            prop_assert_eq!(serde_json::from_value::<RepoName>(json.clone()).is_ok(), RepoName::parse(&s).is_ok());
            prop_assert_eq!(serde_json::from_value::<BranchName>(json.clone()).is_ok(), BranchName::parse(&s).is_ok());
            prop_assert_eq!(serde_json::from_value::<SpecPath>(json.clone()).is_ok(), SpecPath::parse(&s).is_ok());
            prop_assert_eq!(serde_json::from_value::<PrNumber>(json).is_ok(), PrNumber::parse(&s).is_ok());
        }

        #[test]
        fn a_decoded_pr_number_is_one_parse_accepts(n in any::<u64>()) {
            let decoded = serde_json::from_value::<PrNumber>(serde_json::json!(n));
            prop_assert_eq!(decoded.is_ok(), PrNumber::parse(&n.to_string()).is_ok());
            prop_assert_eq!(decoded.is_ok(), (1..=PrNumber::MAX).contains(&n));
        }

        #[test]
        fn valid_branches_round_trip(s in "[a-z][a-z0-9]{0,10}(/[a-z0-9][a-z0-9-]{0,10}){0,3}") {
            let b = BranchName::parse(&s).unwrap();
            prop_assert_eq!(b.as_str(), s.as_str());
        }
    }
}
