//! The embedded default's SQLite database: one file (`kiro.db`) in the state directory,
//! shared by the consumer, the producer, the local build processes and the worker.
//!
//! Invariant: the database is opened in WAL mode with a busy timeout, so several
//! processes can use it at once and a crash of any of them leaves it consistent (every
//! state change is one transaction). Blocking SQLite calls run on tokio's blocking pool
//! through [`EmbeddedDb::call`], never on a runtime thread.

use crate::DbError;
use kiro_protocol::{FailureClass, PortError};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The database file's name inside the state directory.
pub const DB_FILE: &str = "kiro.db";

/// A shared handle on the state database. Cloning is cheap and shares one connection.
#[derive(Clone)]
pub struct EmbeddedDb {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for EmbeddedDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedDb")
            .field("path", &self.path)
            .finish()
    }
}

impl EmbeddedDb {
    /// Open (creating if needed) `<state_dir>/kiro.db`.
    pub fn open_dir(state_dir: &Path) -> Result<Self, PortError> {
        std::fs::create_dir_all(state_dir).map_err(|e| {
            PortError::new(
                FailureClass::PermanentInput,
                format!("cannot create state directory {}: {e}", state_dir.display()),
            )
        })?;
        Self::open(&state_dir.join(DB_FILE))
    }

    /// Open (creating if needed) the database file at `path`.
    pub fn open(path: &Path) -> Result<Self, PortError> {
        let conn = Connection::open(path).map_err(|e| {
            PortError::new(
                FailureClass::PermanentInput,
                format!("cannot open {}: {e}", path.display()),
            )
        })?;
        let setup = || -> Result<(), DbError> {
            conn.busy_timeout(Duration::from_secs(10))?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.pragma_update(None, "foreign_keys", "ON")?;
            Ok(())
        };
        setup()?;
        Ok(EmbeddedDb {
            path: path.to_owned(),
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run `f` with the connection on the blocking pool. `f` writes `?` on SQLite calls;
    /// its [`DbError`] reaches the caller classified (see [`DbError`]).
    pub async fn call<T, F>(&self, f: F) -> Result<T, PortError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, DbError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| PortError::internal("state database lock poisoned"))?;
            Ok(f(&mut guard)?)
        })
        .await
        .map_err(|e| PortError::internal(format!("database task failed: {e}")))?
    }

    /// Run `f` with the connection on the current thread (for synchronous callers such as
    /// start-up migrations and the local build process).
    pub fn call_sync<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, DbError>,
    ) -> Result<T, PortError> {
        let mut guard = self
            .conn
            .lock()
            .map_err(|_| PortError::internal("state database lock poisoned"))?;
        Ok(f(&mut guard)?)
    }

    /// Apply a schema (idempotent `CREATE … IF NOT EXISTS` statements).
    pub fn migrate(&self, schema: &str) -> Result<(), PortError> {
        self.call_sync(|c| Ok(c.execute_batch(schema)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn opens_in_wal_mode_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let db = EmbeddedDb::open_dir(dir.path()).unwrap();
        let mode: String = db
            .call(|c| Ok(c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(mode.to_lowercase(), "wal");
        db.migrate("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
            .unwrap();
        db.call(|c| Ok(c.execute("INSERT INTO t VALUES (7)", [])?))
            .await
            .unwrap();
        drop(db);
        let again = EmbeddedDb::open_dir(dir.path()).unwrap();
        let x: i64 = again
            .call_sync(|c| Ok(c.query_row("SELECT x FROM t", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(x, 7);
    }
}
