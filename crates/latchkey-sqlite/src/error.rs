//! From SQLite's errors to the store's: one mapping for every statement.

use latchkey_store::StoreError;
use rusqlite::ErrorCode;
use rusqlite::ffi;
use std::fmt;

pub(crate) fn map_err(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _) if is_unique_violation(f) => StoreError::Conflict("unique"),
        // The file is held by another process for longer than the busy timeout.
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) =>
        {
            StoreError::Unavailable(Box::new(e))
        }
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::InvalidColumnName(_)
        | rusqlite::Error::InvalidColumnIndex(_) => {
            tracing::error!(error = %e, "stored row does not decode");
            StoreError::Corrupt("row")
        }
        _ => StoreError::Other(Box::new(e)),
    }
}

fn is_unique_violation(f: &ffi::Error) -> bool {
    f.code == ErrorCode::ConstraintViolation
        && matches!(f.extended_code, ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

/// Why a job got no answer of its own: the writer is gone, or its group could not be
/// committed. Every job of a failed group gets one of these.
#[derive(Debug, Clone)]
pub(crate) struct WriterError {
    busy: bool,
    message: String,
}

impl WriterError {
    pub(crate) fn closed() -> Self {
        Self { busy: true, message: "the SQLite writer has stopped".into() }
    }

    pub(crate) fn from_sqlite(context: &str, e: &rusqlite::Error) -> Self {
        let busy = matches!(e.sqlite_error_code(), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked));
        Self { busy, message: format!("{context}: {e}") }
    }

    pub(crate) fn panicked() -> Self {
        Self { busy: false, message: "a write panicked and was rolled back".into() }
    }

    pub(crate) fn into_store(self) -> StoreError {
        if self.busy { StoreError::Unavailable(Box::new(self)) } else { StoreError::Other(Box::new(self)) }
    }
}

impl fmt::Display for WriterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for WriterError {}
