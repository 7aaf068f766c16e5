//! Reads on the calling task, against a small pool of read-only connections.
//!
//! A read blocks the async worker that runs it, and that is deliberate: every read of this
//! store is an index lookup or bounded by a `limit` (at most 100 rows), which SQLite answers
//! in microseconds from its page cache, less than handing the read to another thread and
//! waking the task again would cost. WAL mode means a reader never waits for the writer.

use crate::error::{WriterError, map_err};
use latchkey_store::StoreResult;
use rusqlite::{Connection, OpenFlags};
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug)]
pub(crate) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// Connections kept between reads; more are opened when all are busy, then closed.
    keep: usize,
    closed: AtomicBool,
    /// Dropped after the connections (see `SqliteStore::open_now`).
    _database: Arc<File>,
}

impl Readers {
    pub(crate) fn new(path: PathBuf, keep: usize, database: Arc<File>) -> StoreResult<Self> {
        let readers = Self {
            path,
            idle: Mutex::new(Vec::new()),
            keep: keep.max(1),
            closed: AtomicBool::new(false),
            _database: database,
        };
        // Open one now, so that a file that cannot be read fails the open, not the first read.
        let first = readers.open()?;
        readers.lock().push(first);
        Ok(readers)
    }

    /// Runs `read` on an idle connection (opening one when none is idle).
    pub(crate) fn run<T>(&self, read: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(WriterError::closed().into_store());
        }
        let idle = self.lock().pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.open()?,
        };
        let out = read(&conn);
        let mut idle = self.lock();
        if idle.len() < self.keep && !self.closed.load(Ordering::Relaxed) {
            idle.push(conn);
        }
        out
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // Nothing panics while holding the lock; a poisoned one still holds valid connections.
        self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn open(&self) -> StoreResult<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags).map_err(map_err)?;
        crate::connection::configure_reader(&conn).map_err(map_err)?;
        Ok(conn)
    }
}
