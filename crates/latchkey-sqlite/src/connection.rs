//! Opening the three kinds of connection: the writer, the readers and the checkpointer.

use crate::error::map_err;
use latchkey_store::{StoreError, StoreResult};
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Duration;

/// How long a statement waits for a lock held by another process before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Every SQL statement of the store fits in each connection's cache.
const STATEMENT_CACHE: usize = 128;

/// After the WAL is reset, its file is cut back to this size instead of staying at its peak.
/// It is above the size at which the checkpointer has the WAL started over (128 MiB, see
/// `checkpoint`), so that under a steady load the file is reused rather than cut and grown
/// again each time, which costs block allocation on every append.
const WAL_SIZE_LIMIT: i64 = 256 * 1024 * 1024;

pub(crate) fn open_writer(path: &Path, synchronous: &str) -> StoreResult<Connection> {
    let flags =
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(map_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(map_err)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0)).map_err(map_err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Other(format!("the database stays in journal mode {mode}, not WAL").into()));
    }
    // The checkpointer thread checkpoints; the writer never does it on a commit's path.
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY; \
         PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = {WAL_SIZE_LIMIT};"
    ))
    .map_err(map_err)?;
    Ok(conn)
}

pub(crate) fn configure_reader(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.execute_batch("PRAGMA temp_store = MEMORY;")
}

pub(crate) fn open_checkpointer(path: &Path, synchronous: &str) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // A checkpoint syncs as the commits it copies were promised to be synced.
    conn.execute_batch(&format!("PRAGMA synchronous = {synchronous}; PRAGMA wal_autocheckpoint = 0;"))?;
    Ok(conn)
}
