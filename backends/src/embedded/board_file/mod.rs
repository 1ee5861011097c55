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
//! `BoardItem::validate` names the bad field. An item id used by several items rejects
//! those items (by name, with their lines) and a pull request listed twice is refused by
//! `get`, while everything else still goes. Only a file that is not a regular UTF-8 file
//! of at most [`MAX_BOARD_FILE`] bytes, YAML that does not parse, or an unknown top-level
//! key fails the whole file, with an error naming the file (and the line where there is
//! one). The file is opened without blocking, so a FIFO given as the board is refused
//! instead of hanging the producer.

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
    #[error("board file {path} is {kind}, not a regular file")]
    NotAFile { path: PathBuf, kind: &'static str },
    #[error("board file {path} is larger than {limit} bytes")]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("board file {path}, line {line}: not UTF-8 text")]
    NotUtf8 { path: PathBuf, line: u64 },
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
    /// 1-based line of the pull request in the file (0 if unknown).
    pub line: u64,
    /// Every line listing this same pull request, when it is listed more than once.
    pub listed_on: Vec<u64>,
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

/// The largest board file read (a board of thousands of items is far smaller).
pub const MAX_BOARD_FILE: u64 = 16 * 1024 * 1024;

/// Read and parse the board file at `path`.
pub(crate) async fn load(path: &Path) -> Result<BoardFile, BoardFileError> {
    let owned = path.to_owned();
    let text = tokio::task::spawn_blocking(move || read_text(&owned))
        .await
        .map_err(|e| BoardFileError::Read {
            path: path.to_owned(),
            source: std::io::Error::other(e),
        })??;
    parse(path, &text)
}

/// Read and parse the board file at `path` synchronously (the check both embedded
/// adapters make when they open, so a broken file is reported at start-up).
pub(crate) fn load_now(path: &Path) -> Result<BoardFile, BoardFileError> {
    let text = read_text(path)?;
    parse(path, &text)
}

/// The file's text: a regular file (opened without blocking, so a FIFO cannot hang the
/// reader), at most [`MAX_BOARD_FILE`] bytes, UTF-8.
fn read_text(path: &Path) -> Result<String, BoardFileError> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let read_err = |source| BoardFileError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(read_err)?;
    let kind = file.metadata().map_err(read_err)?.file_type();
    if !kind.is_file() {
        let kind = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else {
            "not a regular file"
        };
        return Err(BoardFileError::NotAFile {
            path: path.to_owned(),
            kind,
        });
    }
    let mut bytes = Vec::new();
    file.take(MAX_BOARD_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_BOARD_FILE {
        return Err(BoardFileError::TooLarge {
            path: path.to_owned(),
            limit: MAX_BOARD_FILE,
        });
    }
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..valid]
            .iter()
            .filter(|b| **b == b'\n')
            .count() as u64;
        BoardFileError::NotUtf8 {
            path: path.to_owned(),
            line,
        }
    })
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
            conflict: None,
        };
        file.items.push(FileItem {
            item,
            status: r.status.0,
            line,
        });
    }
    // An id used by several items names none of them unambiguously: each is rejected
    // by name with the lines, and the other items go on.
    let mut lines_by_id: HashMap<String, Vec<u64>> = HashMap::new();
    for fi in &file.items {
        lines_by_id
            .entry(fi.item.id.clone())
            .or_default()
            .push(fi.line);
    }
    for fi in &mut file.items {
        let lines = &lines_by_id[&fi.item.id];
        if lines.len() > 1 {
            fi.item.conflict = Some(format!(
                "used by {} items of board file {} (lines {}); ids must be unique",
                lines.len(),
                path.display(),
                join_lines(lines)
            ));
        }
    }

    for spanned in raw.pull_requests.unwrap_or_default() {
        let line = spanned.referenced.line();
        let r = spanned.value;
        let number = r.number.0.trim_start_matches('#').to_owned();
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
            line,
            listed_on: Vec::new(),
        });
    }
    let mut lines_by_pull: HashMap<(String, String), Vec<u64>> = HashMap::new();
    for p in &file.pull_requests {
        lines_by_pull
            .entry((p.repo.clone(), p.number.clone()))
            .or_default()
            .push(p.line);
    }
    for p in &mut file.pull_requests {
        let lines = &lines_by_pull[&(p.repo.clone(), p.number.clone())];
        if lines.len() > 1 {
            p.listed_on = lines.clone();
        }
    }
    Ok(file)
}

fn join_lines(lines: &[u64]) -> String {
    lines
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl FilePull {
    /// `Err` naming the lines when this pull request is listed more than once (which
    /// entry is meant cannot be told).
    pub fn unambiguous(&self, path: &Path) -> Result<(), PortError> {
        if self.listed_on.is_empty() {
            return Ok(());
        }
        Err(PortError::input(format!(
            "board file {}: pull request {} #{} is listed {} times (lines {}); list it once",
            path.display(),
            quote_for_display(&self.repo),
            quote_for_display(&self.number),
            self.listed_on.len(),
            join_lines(&self.listed_on)
        )))
    }
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
    fn duplicate_ids_reject_those_items_by_name_and_the_rest_goes() {
        let f = p("items:\n  - id: A-1\n  - id: B-1\n  - id: A-1\n").unwrap();
        assert_eq!(f.items.len(), 3);
        let conflicts: Vec<_> = f.items.iter().map(|i| i.item.conflict.clone()).collect();
        let dup = "used by 2 items of board file board.yaml (lines 2, 4); ids must be unique";
        assert_eq!(
            conflicts,
            [Some(dup.to_owned()), None, Some(dup.to_owned())]
        );
        let err = f.items[0].item.validate().unwrap_err();
        assert_eq!(err.error.field, "id");
        assert_eq!(err.item, "\"A-1\"");
        assert!(f.items[1].item.conflict.is_none());

        let f = p("pull_requests:\n  - {repo: a/b, number: 1}\n  - {repo: a/b, number: '#1'}\n  - {repo: a/b, number: 2}\n")
            .unwrap();
        let err = f.pull_requests[0]
            .unambiguous(Path::new("board.yaml"))
            .unwrap_err();
        assert_eq!(err.class, FailureClass::PermanentInput);
        assert!(
            err.message.contains("listed 2 times (lines 2, 3)"),
            "{}",
            err.message
        );
        assert!(
            f.pull_requests[2]
                .unambiguous(Path::new("board.yaml"))
                .is_ok()
        );
    }

    /// What is not a regular UTF-8 file is refused at once, permanently, by name (a FIFO
    /// would otherwise block the reader forever).
    #[test]
    fn only_regular_utf8_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.yaml");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success(), "mkfifo");
        let bad_utf8 = dir.path().join("latin1.yaml");
        std::fs::write(&bad_utf8, b"items:\n  - id: A-1\n    title: caf\xe9\n").unwrap();
        let big = dir.path().join("big.yaml");
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(MAX_BOARD_FILE + 1).unwrap();
        let cases: [(&Path, &str); 4] = [
            (&fifo, "is a FIFO, not a regular file"),
            (dir.path(), "is a directory, not a regular file"),
            (&bad_utf8, "line 3: not UTF-8 text"),
            (&big, "is larger than 16777216 bytes"),
        ];
        for (path, want) in cases {
            let err = load_now(path).unwrap_err();
            assert!(err.to_string().contains(want), "{}: {err}", path.display());
            assert!(err.to_string().contains(&path.display().to_string()));
            let port: PortError = err.into();
            assert_eq!(
                port.class,
                FailureClass::PermanentInput,
                "{}",
                path.display()
            );
        }
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
