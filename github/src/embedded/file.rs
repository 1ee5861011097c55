//! The board file: a human-editable YAML document listing work items and pull requests.
//!
//! ```yaml
//! items:
//!   - id: CALC-1
//!     project: calc
//!     title: Add a subtract function
//!     status: For Implementation
//!     repo: acme/calc
//!     branch: feature/subtract
//!     spec: .kiro/specs/subtract
//!     pr: 1
//!     updated_at: "2026-11-01T10:00:00Z"
//! pull_requests:
//!   - repo: acme/calc
//!     number: 1
//!     head: feature/subtract
//!     title: Subtract
//! ```
//!
//! Invariant: one bad item never fails the file. Every item field is read as a raw string
//! (numbers and booleans become their text, a missing or null field an empty string, a
//! list or mapping a marker that no validator accepts), so the producer's
//! `BoardItem::validate` names the bad field. Only YAML that does not parse, an unknown
//! top-level key, or a duplicate item id (or pull request) fails the whole file, with an
//! error naming the file and the line.

use kiro_protocol::ids::quote_for_display;
use kiro_protocol::{BoardItem, FailureClass, ItemStatus, PortError};
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// A board file that cannot be used.
#[derive(Debug, Error)]
pub enum BoardFileError {
    #[error("cannot read board file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("board file {path}, line {line}: {message}")]
    Syntax {
        path: PathBuf,
        /// 1-based; 0 when the parser could not tell.
        line: u64,
        message: String,
    },
    #[error(
        "board file {path}, line {line}: duplicate item id {id} (first used on line {first_line})"
    )]
    DuplicateItem {
        path: PathBuf,
        id: String,
        line: u64,
        first_line: u64,
    },
    #[error(
        "board file {path}, line {line}: duplicate pull request {repo} #{number} (first listed on line {first_line})"
    )]
    DuplicatePull {
        path: PathBuf,
        repo: String,
        number: String,
        line: u64,
        first_line: u64,
    },
}

impl From<BoardFileError> for PortError {
    fn from(e: BoardFileError) -> Self {
        let class = match &e {
            BoardFileError::Read { source, .. }
                if source.kind() != std::io::ErrorKind::NotFound
                    && source.kind() != std::io::ErrorKind::PermissionDenied =>
            {
                FailureClass::Transient
            }
            _ => FailureClass::PermanentInput,
        };
        PortError::new(class, e.to_string())
    }
}

/// One item as the file holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileItem {
    pub item: BoardItem,
    /// The `status` value as written.
    pub status: String,
    /// 1-based line of the item in the file (0 if unknown).
    pub line: u64,
}

impl FileItem {
    /// The file's status for this item, when it names a known one.
    pub fn file_status(&self) -> Option<ItemStatus> {
        parse_status(&self.status)
    }
}

/// One pull request as the file holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FilePull {
    pub repo: String,
    pub number: String,
    pub head: String,
    pub title: String,
    pub url: String,
    pub open: bool,
}

/// The parsed file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BoardFile {
    pub items: Vec<FileItem>,
    pub pull_requests: Vec<FilePull>,
}

impl BoardFile {
    pub fn item(&self, id: &str) -> Option<&FileItem> {
        self.items.iter().find(|i| i.item.id == id)
    }
}

/// Parse a status name, case-insensitively, ignoring spacing, `-` and `_`:
/// "For Implementation" (or "Ready"), "Queued", "In Progress", "Done", "Failed".
pub fn parse_status(raw: &str) -> Option<ItemStatus> {
    let norm: String = raw
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect();
    match norm.as_str() {
        "forimplementation" | "ready" => Some(ItemStatus::Ready),
        "queued" => Some(ItemStatus::Queued),
        "inprogress" => Some(ItemStatus::InProgress),
        "done" => Some(ItemStatus::Done),
        "failed" => Some(ItemStatus::Failed),
        _ => None,
    }
}

/// Read and parse the board file at `path`.
pub(crate) async fn load(path: &Path) -> Result<BoardFile, BoardFileError> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|source| BoardFileError::Read {
            path: path.to_owned(),
            source,
        })?;
    parse(path, &text)
}

/// Read and parse the board file at `path` synchronously (the check both embedded
/// adapters make when they open, so a broken file is reported at start-up).
pub(crate) fn load_now(path: &Path) -> Result<BoardFile, BoardFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| BoardFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text)
}

/// Parse board-file text; `path` is only used in errors.
pub(crate) fn parse(path: &Path, text: &str) -> Result<BoardFile, BoardFileError> {
    let blank = text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
    if blank {
        return Ok(BoardFile::default());
    }
    let raw: RawFile = serde_saphyr::from_str(text).map_err(|e| {
        let line = e.location().map(|l| l.line()).unwrap_or(0);
        let message = e
            .without_snippet()
            .to_string()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        BoardFileError::Syntax {
            path: path.to_owned(),
            line,
            message,
        }
    })?;

    let mut file = BoardFile::default();
    let mut seen: HashMap<String, u64> = HashMap::new();
    for spanned in raw.items.unwrap_or_default() {
        let line = spanned.referenced.line();
        let r = spanned.value;
        let item = BoardItem {
            id: r.id.0,
            project: r.project.0,
            title: r.title.0,
            repo: r.repo.0,
            branch: r.branch.0,
            spec: r.spec.0,
            pr: r.pr.0,
            updated_at: r.updated_at.0,
        };
        if let Some(first_line) = seen.insert(item.id.clone(), line) {
            return Err(BoardFileError::DuplicateItem {
                path: path.to_owned(),
                id: quote_for_display(&item.id),
                line,
                first_line,
            });
        }
        file.items.push(FileItem {
            item,
            status: r.status.0,
            line,
        });
    }

    let mut seen_pulls: HashMap<(String, String), u64> = HashMap::new();
    for spanned in raw.pull_requests.unwrap_or_default() {
        let line = spanned.referenced.line();
        let r = spanned.value;
        let number = r.number.0.trim_start_matches('#').to_owned();
        if let Some(first_line) = seen_pulls.insert((r.repo.0.clone(), number.clone()), line) {
            return Err(BoardFileError::DuplicatePull {
                path: path.to_owned(),
                repo: quote_for_display(&r.repo.0),
                number: quote_for_display(&number),
                line,
                first_line,
            });
        }
        let open = !matches!(
            r.open.0.trim().to_ascii_lowercase().as_str(),
            "false" | "no" | "closed"
        );
        file.pull_requests.push(FilePull {
            repo: r.repo.0,
            number,
            head: r.head.0,
            title: r.title.0,
            url: r.url.0,
            open,
        });
    }
    Ok(file)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    items: Option<Vec<Spanned<RawItem>>>,
    #[serde(default)]
    pull_requests: Option<Vec<Spanned<RawPull>>>,
}

/// Unknown keys inside an item are ignored (one typo must not fail the file); the field
/// they were meant to be is then missing, and validation names it.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RawItem {
    id: Raw,
    project: Raw,
    title: Raw,
    status: Raw,
    repo: Raw,
    branch: Raw,
    spec: Raw,
    pr: Raw,
    updated_at: Raw,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawPull {
    repo: Raw,
    number: Raw,
    head: Raw,
    title: Raw,
    url: Raw,
    open: Raw,
}

/// Any YAML value, read leniently as text.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Raw(String);

/// What a list or a mapping in a scalar field becomes: text no validator accepts.
const LIST_MARKER: &str = "<a list>";
const MAP_MARKER: &str = "<a mapping>";

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Raw, E> {
        Ok(Raw(v))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Raw, E> {
        Ok(Raw(v.to_string()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Raw, E> {
        Ok(Raw(v.to_string()))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Raw, E> {
        Ok(Raw(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw(v.to_string()))
    }
    fn visit_char<E: de::Error>(self, v: char) -> Result<Raw, E> {
        Ok(Raw(v.to_string()))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Raw, E> {
        Ok(Raw(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw::default())
    }
    fn visit_none<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw::default())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
        Raw::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Raw(LIST_MARKER.to_owned()))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Raw(MAP_MARKER.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<BoardFile, BoardFileError> {
        parse(Path::new("board.yaml"), text)
    }

    #[test]
    fn the_documented_format_parses_with_numbers_as_text() {
        let f = p(r#"
# comments allowed
items:
  - id: CALC-1
    project: calc
    title: Add a subtract function
    status: For Implementation     # any status name
    repo: acme/calc
    branch: feature/subtract
    spec: .kiro/specs/subtract
    pr: 1
    updated_at: "2026-11-01T10:00:00Z"
  - id: 42
    project: 7
    status: in progress
    pr: 3.5
    updated_at: 2026-11-01T10:00:00Z
pull_requests:
  - repo: acme/calc
    number: 1
    head: feature/subtract
    title: Subtract
"#)
        .unwrap();
        assert_eq!(f.items.len(), 2);
        let a = &f.items[0];
        assert_eq!(a.item.pr, "1");
        assert_eq!(a.item.spec, ".kiro/specs/subtract");
        assert_eq!(a.item.updated_at, "2026-11-01T10:00:00Z");
        assert_eq!(a.file_status(), Some(ItemStatus::Ready));
        assert_eq!(a.line, 4);
        let b = &f.items[1];
        assert_eq!(b.item.id, "42");
        assert_eq!(b.item.project, "7");
        assert_eq!(b.item.pr, "3.5");
        assert_eq!(b.item.updated_at, "2026-11-01T10:00:00Z");
        assert_eq!(b.file_status(), Some(ItemStatus::InProgress));
        assert_eq!(f.pull_requests.len(), 1);
        assert_eq!(f.pull_requests[0].number, "1");
        assert!(f.pull_requests[0].open);
    }

    #[test]
    fn missing_null_and_structured_fields_do_not_fail_the_file() {
        let f = p(r#"
items:
  - id: A-1
    project: calc
    branch: ~
    spec: [a, b]
    repo: {owner: acme}
    surprise: ignored
  - id: A-2
"#)
        .unwrap();
        let a = &f.items[0].item;
        assert_eq!(a.branch, "");
        assert_eq!(a.title, "");
        assert_eq!(a.spec, LIST_MARKER);
        assert_eq!(a.repo, MAP_MARKER);
        let err = a.validate().unwrap_err();
        assert_eq!(err.error.field, "repo");
        assert_eq!(f.items[1].item.project, "");
        assert_eq!(f.items[1].file_status(), None);
        assert!(f.items[1].item.validate().is_err());
    }

    #[test]
    fn malformed_yaml_names_file_and_line() {
        let err = p("items:\n  - id: A-1\n    title: [unclosed\n  - id: A-2\n").unwrap_err();
        let shown = err.to_string();
        assert!(shown.starts_with("board file board.yaml, line "), "{shown}");
        assert!(
            matches!(err, BoardFileError::Syntax { line, .. } if line > 0),
            "{shown}"
        );
        assert!(!shown.contains('\n'), "{shown}");
    }

    #[test]
    fn unknown_top_level_keys_are_errors() {
        let err = p("itemz:\n  - id: A-1\n").unwrap_err();
        assert!(matches!(err, BoardFileError::Syntax { .. }), "{err}");
        assert!(err.to_string().contains("itemz"), "{err}");
    }

    #[test]
    fn duplicate_ids_name_the_id_and_both_lines() {
        let err = p("items:\n  - id: A-1\n  - id: B-1\n  - id: A-1\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "board file board.yaml, line 4: duplicate item id \"A-1\" (first used on line 2)"
        );
        let err = p("pull_requests:\n  - {repo: a/b, number: 1}\n  - {repo: a/b, number: '#1'}\n")
            .unwrap_err();
        assert!(matches!(err, BoardFileError::DuplicatePull { .. }), "{err}");
    }

    #[test]
    fn empty_and_comment_only_files_are_empty_boards() {
        assert_eq!(p("").unwrap(), BoardFile::default());
        assert_eq!(p("# nothing yet\n\n").unwrap(), BoardFile::default());
        assert_eq!(p("items:\n").unwrap(), BoardFile::default());
    }

    #[test]
    fn status_names_are_case_and_spacing_insensitive() {
        assert_eq!(parse_status("FOR IMPLEMENTATION"), Some(ItemStatus::Ready));
        assert_eq!(parse_status("for-implementation"), Some(ItemStatus::Ready));
        assert_eq!(parse_status("In Progress"), Some(ItemStatus::InProgress));
        assert_eq!(parse_status("in_progress"), Some(ItemStatus::InProgress));
        assert_eq!(parse_status(" done "), Some(ItemStatus::Done));
        assert_eq!(parse_status("Failed"), Some(ItemStatus::Failed));
        assert_eq!(parse_status("Queued"), Some(ItemStatus::Queued));
        assert_eq!(parse_status("Backlog"), None);
        assert_eq!(parse_status(""), None);
        for s in ItemStatus::ALL {
            assert_eq!(parse_status(s.default_name()), Some(s));
        }
    }
}
