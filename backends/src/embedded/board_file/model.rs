//! The board file as parsed: its items and pull requests with their lines, and
//! [`BoardFileError`], why a whole file cannot be used.
//!
//! Invariant: an item keeps every field as the raw text the file holds (validation is the
//! producer's), and an entry's problem stays on that entry (`conflict`, `listed_on`).

use kiro_protocol::{BoardItem, FailureClass, ItemStatus, PortError};
use std::path::PathBuf;
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
