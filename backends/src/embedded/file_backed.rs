//! [`FileBacked`]: what the board and the forge of one-machine runs share — the board
//! file they read, the state database their own table lives in, and the clock that
//! stamps their changes.
//!
//! Invariant: opening parses the board file once, so a broken file is reported at
//! start-up, and creates the adapter's table before any use.

use super::board_file as file;
use kiro_protocol::{Clock, PortError, SystemClock};
use kiro_statedb::EmbeddedDb;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub(super) struct FileBacked {
    pub(super) file: PathBuf,
    pub(super) db: EmbeddedDb,
    pub(super) clock: Arc<dyn Clock>,
}

impl FileBacked {
    /// Check `board_file` parses and create `schema` in `db`; the system clock.
    pub(super) fn open(board_file: &Path, db: EmbeddedDb, schema: &str) -> Result<Self, PortError> {
        file::load_now(board_file)?;
        db.migrate(schema)?;
        Ok(FileBacked {
            file: board_file.to_owned(),
            db,
            clock: Arc::new(SystemClock),
        })
    }
}
