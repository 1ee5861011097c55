//! [`DbError`]: the error of a closure run on the state database's connection.
//!
//! Invariant: the classification of SQLite errors lives here only — a busy or locked
//! database is transient (another process holds the write lock; try again later),
//! any other SQLite error is internal. A [`PortError`] raised inside a closure passes
//! through unchanged.

use kiro_protocol::PortError;
use rusqlite::ErrorCode;

/// What a closure over the connection fails with. `?` converts a [`rusqlite::Error`]
/// and a [`PortError`] into it, and it into a [`PortError`], so adapters write `?`
/// where they used to classify by hand.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite failed a statement (or a row did not convert).
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A failure the adapter classified itself (an unreadable row, a value out of range).
    #[error(transparent)]
    Port(#[from] PortError),
}

impl DbError {
    /// Whether SQLite reported the database busy or locked (another writer holds it).
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            DbError::Sqlite(rusqlite::Error::SqliteFailure(f, _))
                if matches!(f.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
        )
    }
}

impl From<DbError> for PortError {
    /// A busy or locked database is transient, anything else SQLite reports internal.
    fn from(e: DbError) -> Self {
        let busy = e.is_busy();
        match e {
            DbError::Port(p) => p,
            DbError::Sqlite(e) if busy => PortError::transient(format!("state database busy: {e}")),
            DbError::Sqlite(e) => PortError::internal(format!("state database: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiro_protocol::FailureClass;

    fn failure(code: ErrorCode, extended: i32) -> DbError {
        DbError::from(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error {
                code,
                extended_code: extended,
            },
            None,
        ))
    }

    #[test]
    fn busy_and_locked_are_transient() {
        for (code, extended) in [
            (ErrorCode::DatabaseBusy, rusqlite::ffi::SQLITE_BUSY),
            (ErrorCode::DatabaseLocked, rusqlite::ffi::SQLITE_LOCKED),
        ] {
            let e = PortError::from(failure(code, extended));
            assert_eq!(e.class, FailureClass::Transient, "{e}");
            assert!(e.message.starts_with("state database busy: "), "{e}");
        }
    }

    #[test]
    fn other_sqlite_errors_are_internal() {
        let e = PortError::from(failure(
            ErrorCode::ConstraintViolation,
            rusqlite::ffi::SQLITE_CONSTRAINT,
        ));
        assert_eq!(e.class, FailureClass::Internal);
        assert!(e.message.starts_with("state database: "), "{e}");
        let e = PortError::from(DbError::from(rusqlite::Error::QueryReturnedNoRows));
        assert_eq!(e.class, FailureClass::Internal);
        assert_eq!(e.message, "state database: Query returned no rows");
    }

    #[test]
    fn a_port_error_passes_through() {
        let original = PortError::input("bad row");
        assert_eq!(PortError::from(DbError::from(original.clone())), original);
    }
}
