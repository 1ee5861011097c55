//! What a [`GithubBoard`](super::GithubBoard) is pointed at and how it reads the board:
//! the project ([`ProjectRef`]), the field and option names ([`FieldConfig`], the mapping of
//! each [`ItemStatus`] to a status option) and the project-key rule ([`ProjectKeyRule`]).
//!
//! Invariant: plain data and pure functions; names on the board are compared with
//! [`same_name`] (trimmed, case-insensitive) everywhere.

use kiro_protocol::{ItemStatus, PortError};
use std::collections::HashMap;
use std::fmt;

/// Whose project it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerKind {
    Org,
    User,
}

/// A project: `orgs/<owner>/<number>` or `users/<owner>/<number>` (as in its URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectRef {
    pub owner: String,
    pub owner_kind: OwnerKind,
    pub number: u32,
}

impl ProjectRef {
    /// Parse `orgs/acme/7`, `users/alice/3`, or the project's URL
    /// (`https://github.com/orgs/acme/projects/7`).
    pub fn parse(raw: &str) -> Result<Self, PortError> {
        let bad = || {
            PortError::input(format!(
                "invalid GitHub project {}: expected orgs/<owner>/<number> or users/<owner>/<number>",
                kiro_protocol::ids::quote_for_display(raw)
            ))
        };
        let trimmed = raw
            .trim()
            .trim_start_matches("https://github.com/")
            .trim_end_matches('/');
        let parts: Vec<&str> = trimmed.split('/').filter(|p| *p != "projects").collect();
        let [kind, owner, number] = parts.as_slice() else {
            return Err(bad());
        };
        let owner_kind = match *kind {
            "orgs" | "org" => OwnerKind::Org,
            "users" | "user" => OwnerKind::User,
            _ => return Err(bad()),
        };
        if owner.is_empty()
            || !owner
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(bad());
        }
        Ok(ProjectRef {
            owner: (*owner).to_owned(),
            owner_kind,
            number: number.parse().map_err(|_| bad())?,
        })
    }

    /// The board's own key, `<owner>-<number>`.
    pub fn key(&self) -> String {
        format!("{}-{}", self.owner, self.number)
    }

    pub(super) fn owner_field(&self) -> &'static str {
        match self.owner_kind {
            OwnerKind::Org => "organization",
            OwnerKind::User => "user",
        }
    }
}

impl fmt::Display for ProjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.owner_kind {
            OwnerKind::Org => "orgs",
            OwnerKind::User => "users",
        };
        write!(f, "{kind}/{}/{}", self.owner, self.number)
    }
}

/// How an item's project key (the unit of ordering and mutual exclusion) is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectKeyRule {
    /// The text field of this name when set, else the repository's name.
    FieldOrRepoName(String),
    /// The repository's name (without the owner).
    RepoName,
    /// The same key for every item of the board.
    Fixed(String),
}

/// Field and option names on the board.
#[derive(Debug, Clone)]
pub struct FieldConfig {
    /// The single-select status field.
    pub status_field: String,
    /// Option names per status; missing entries use [`ItemStatus::default_name`].
    pub status_names: HashMap<ItemStatus, String>,
    /// A text field holding the spec path.
    pub spec_field: String,
    /// Branch prefixes from which the spec name is derived (`feature/` → `.kiro/specs/<rest>`).
    pub spec_branch_prefixes: Vec<String>,
    /// A text field for notes (rejections, dead-letter reasons).
    pub note_field: String,
    pub project_key: ProjectKeyRule,
}

impl Default for FieldConfig {
    fn default() -> Self {
        FieldConfig {
            status_field: "Status".into(),
            status_names: HashMap::new(),
            spec_field: "Spec".into(),
            spec_branch_prefixes: vec!["feature/".into()],
            note_field: "Kiro note".into(),
            project_key: ProjectKeyRule::FieldOrRepoName("Project".into()),
        }
    }
}

impl FieldConfig {
    /// The board's option name for `status`.
    pub fn status_name(&self, status: ItemStatus) -> &str {
        self.status_names
            .get(&status)
            .map(String::as_str)
            .unwrap_or_else(|| status.default_name())
    }

    /// Use `name` for `status`.
    pub fn with_status_name(mut self, status: ItemStatus, name: impl Into<String>) -> Self {
        self.status_names.insert(status, name.into());
        self
    }

    /// The spec path for `branch` by the prefix rule, or empty.
    pub fn spec_from_branch(&self, branch: &str) -> String {
        self.spec_branch_prefixes
            .iter()
            .find_map(|p| branch.strip_prefix(p.as_str()))
            .filter(|rest| !rest.is_empty())
            .map(|rest| format!(".kiro/specs/{rest}"))
            .unwrap_or_default()
    }
}

/// Whether two names on the board are the same (trimmed, case-insensitive).
pub(super) fn same_name(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_refs() {
        let p = ProjectRef::parse("orgs/acme/7").unwrap();
        assert_eq!(
            (p.owner.as_str(), p.owner_kind, p.number),
            ("acme", OwnerKind::Org, 7)
        );
        let p = ProjectRef::parse("https://github.com/users/alice/projects/3").unwrap();
        assert_eq!(
            (p.owner.as_str(), p.owner_kind, p.number),
            ("alice", OwnerKind::User, 3)
        );
        assert_eq!(p.to_string(), "users/alice/3");
        assert_eq!(p.key(), "alice-3");
        for bad in ["acme/7", "orgs/acme/x", "orgs/a b/1", "teams/acme/1", ""] {
            assert!(ProjectRef::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn spec_from_branch_rule() {
        let f = FieldConfig::default();
        assert_eq!(
            f.spec_from_branch("feature/add-login"),
            ".kiro/specs/add-login"
        );
        assert_eq!(f.spec_from_branch("main"), "");
        assert_eq!(f.spec_from_branch("feature/"), "");
        let f = FieldConfig {
            spec_branch_prefixes: vec!["kiro/".into(), "feature/".into()],
            ..FieldConfig::default()
        };
        assert_eq!(f.spec_from_branch("kiro/x"), ".kiro/specs/x");
    }

    #[test]
    fn status_names_configurable() {
        let f = FieldConfig::default().with_status_name(ItemStatus::Ready, "Todo");
        assert_eq!(f.status_name(ItemStatus::Ready), "Todo");
        assert_eq!(f.status_name(ItemStatus::Done), "Done");
    }
}
