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
//!
//! This module holds the file's model and reads it from disk; [`parse`] turns its text
//! into that model.

mod parse;

pub(crate) use parse::parse;

use kiro_protocol::{BoardItem, FailureClass, ItemStatus, PortError};
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

#[cfg(test)]
mod tests;
