//! A copy of a database file taken while a server writes to it (SQLite's online backup):
//! consistent as of the moment it ends, owner-only like the database itself.

use crate::error::map_err;
use latchkey_store::{StoreError, StoreResult};
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Duration;

/// Pages copied per step; between steps, writers go on.
const PAGES_PER_STEP: i32 = 1024;

/// Copies the database at `from` into `to`, a file that must not exist yet.
pub fn backup(from: &Path, to: &Path) -> StoreResult<()> {
    if to.exists() {
        return Err(StoreError::Other(format!("{} exists already", to.display()).into()));
    }
    create_owner_only(to)?;
    let source = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(map_err)?;
    let mut copy = Connection::open(to).map_err(map_err)?;
    let backup = rusqlite::backup::Backup::new(&source, &mut copy).map_err(map_err)?;
    backup.run_to_completion(PAGES_PER_STEP, Duration::from_millis(5), None).map_err(map_err)?;
    Ok(())
}

#[cfg(unix)]
fn create_owner_only(path: &Path) -> StoreResult<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(|e| StoreError::Other(Box::new(e)))
}

#[cfg(not(unix))]
fn create_owner_only(path: &Path) -> StoreResult<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map(drop)
        .map_err(|e| StoreError::Other(Box::new(e)))
}
