//! Checkpoints off the request path.
//!
//! The writer never checkpoints (`wal_autocheckpoint = 0`): a checkpoint copies the WAL into
//! the database and syncs it, which would hold every caller of the group that triggered it.
//! This thread runs a PASSIVE checkpoint, which neither waits for nor blocks the writer,
//! whenever a group was committed since its last look, at most every [`INTERVAL`]. Once a
//! checkpoint has copied the whole WAL, the writer starts it over from the beginning.
//!
//! A PASSIVE checkpoint cannot copy frames that a reader still needs, so readers that never
//! pause could keep the WAL from being reused. When the WAL passes [`RESTART_FRAMES`] the
//! thread runs a RESTART checkpoint instead, which waits for those readers (and holds new
//! writes meanwhile) so that the WAL cannot grow without bound.

use rusqlite::Connection;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

const INTERVAL: Duration = Duration::from_millis(200);

/// 32,768 pages: 128 MiB with 4 KiB pages.
const RESTART_FRAMES: i64 = 32_768;

#[derive(Debug)]
pub(crate) struct Checkpointer {
    stop: mpsc::Sender<()>,
    stopped: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    pub(crate) fn start(conn: Connection, commits: Arc<AtomicU64>) -> std::io::Result<Self> {
        let (stop, stopping) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || run(&conn, &stopping, &commits))?;
        Ok(Self { stop, stopped: Some(thread) })
    }

    /// Stops the thread and waits for a checkpoint in progress to end.
    pub(crate) fn stop(mut self) {
        let _ = self.stop.send(());
        if let Some(thread) = self.stopped.take() {
            let _ = thread.join();
        }
    }
}

fn run(conn: &Connection, stopping: &mpsc::Receiver<()>, commits: &AtomicU64) {
    let mut seen = commits.load(Ordering::Relaxed);
    // Ends on `stop` or when the store is dropped.
    while let Err(mpsc::RecvTimeoutError::Timeout) = stopping.recv_timeout(INTERVAL) {
        let now = commits.load(Ordering::Relaxed);
        if now == seen {
            continue;
        }
        seen = now;
        match checkpoint(conn, "PASSIVE") {
            Ok(frames) if frames >= RESTART_FRAMES => {
                if let Err(e) = checkpoint(conn, "RESTART") {
                    tracing::warn!(error = %e, frames, "the WAL is large and cannot be restarted");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
        }
    }
}

/// Runs one checkpoint; returns the frames in the WAL.
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<i64> {
    let sql = format!("PRAGMA wal_checkpoint({mode})");
    conn.query_row(&sql, [], |row| row.get::<_, i64>(1))
}
