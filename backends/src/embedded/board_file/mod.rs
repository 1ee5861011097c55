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
//! This module reads the file from disk; `model` is what the file holds once parsed
//! ([`BoardFileError`] when it cannot be used), and `parse` turns its text into that.

mod model;
mod parse;

pub(crate) use model::{BoardFile, FileItem};
pub use model::{BoardFileError, parse_status};
pub(crate) use parse::parse;

use std::path::Path;

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
