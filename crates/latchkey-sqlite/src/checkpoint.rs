//! Checkpoints off the request path.
//!
//! The writer never checkpoints on a commit (`wal_autocheckpoint = 0`): a checkpoint copies
//! the WAL into the database and syncs it, which would hold every caller of the group that
//! triggered it. This thread runs a PASSIVE checkpoint, which neither waits for nor blocks the
//! writer, whenever a group was committed since its last look, at most every [`INTERVAL`].
//!
//! Under a steady load the writer appends while each checkpoint runs, so the WAL is never
//! wholly copied at the moment a transaction starts, which is when SQLite would start it over
//! from the beginning, and the file would grow without bound. Once it passes
//! [`RESTART_FRAMES`], this thread keeps running PASSIVE checkpoints until what is left to
//! copy is a short tail, then asks the writer ([`WalState::restart`]) to run a RESTART
//! checkpoint itself, between two groups. That checkpoint holds writes while it copies the
//! tail and waits for the readers of older frames, so it is kept short; run from this thread
//! instead, it would also leave the writer asleep in its busy handler after it ended.
//!
//! SQLite syncs the database file only when a checkpoint reaches the end of the WAL, which
//! under load only the writer's RESTART does: it would then wait for every page copied since
//! the last restart to reach the disk, and at 10M challenges those are tens of thousands of
//! pages scattered over the file. So this thread syncs the file after each PASSIVE checkpoint
//! that copied something, off the request path, and asks for the restart only once a
//! checkpoint and the sync after it both left little behind.

use rusqlite::Connection;
use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const INTERVAL: Duration = Duration::from_millis(200);

/// 32,768 pages: 128 MiB with 4 KiB pages.
const RESTART_FRAMES: i64 = 32_768;

/// What a PASSIVE checkpoint may leave for the writer's RESTART to copy (4 MiB of pages).
const TAIL_FRAMES: i64 = 1_024;

/// A sync of the database file short enough that the writer appended little meanwhile: what
/// it appended is copied, and synced, by the RESTART while writes wait.
const QUICK_SYNC: Duration = Duration::from_millis(10);

/// A restart that holds writes this long is worth telling the operator about.
const SLOW_RESTART: Duration = Duration::from_millis(500);

/// PASSIVE checkpoints in a row, waiting for the tail to shrink, before the writer is asked to
/// restart the WAL anyway (a write load faster than copying never lets it shrink).
const CATCH_UP_ROUNDS: u32 = 8;

/// What the writer and the checkpointer share about the WAL.
#[derive(Debug, Default)]
pub(crate) struct WalState {
    /// Transactions the writer has ended, committed or not.
    pub(crate) commits: AtomicU64,
    /// Set by the checkpointer; the writer restarts the WAL before its next group and clears it.
    pub(crate) restart: AtomicBool,
}

#[derive(Debug)]
pub(crate) struct Checkpointer {
    stop: mpsc::Sender<()>,
    stopped: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    /// `database` is the database file, synced after the checkpoints that copy into it, and
    /// let go after `conn` is closed (see `SqliteStore::open_now`).
    pub(crate) fn start(conn: Connection, database: Arc<File>, wal: Arc<WalState>) -> std::io::Result<Self> {
        let (stop, stopping) = mpsc::channel();
        let thread = std::thread::Builder::new().name("sqlite-checkpoint".into()).spawn(move || {
            run(&conn, &database, &stopping, &wal);
            drop(conn);
            drop(database);
        })?;
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

fn run(conn: &Connection, database: &File, stopping: &mpsc::Receiver<()>, wal: &WalState) {
    let mut seen = wal.commits.load(Ordering::Relaxed);
    // Frames copied (counted since the WAL last started over) when the file was last synced.
    let mut synced = 0;
    // Ends on `stop` or when the store is dropped.
    while let Err(mpsc::RecvTimeoutError::Timeout) = stopping.recv_timeout(INTERVAL) {
        // A PASSIVE checkpoint running here would make the writer's RESTART wait for it.
        if wal.restart.load(Ordering::Acquire) {
            continue;
        }
        let now = wal.commits.load(Ordering::Relaxed);
        if now == seen {
            continue;
        }
        seen = now;
        let mut rounds = 0;
        loop {
            let frames = match checkpoint(conn, "PASSIVE") {
                Ok(frames) => frames,
                Err(e) => {
                    tracing::warn!(error = %e, "WAL checkpoint failed");
                    break;
                }
            };
            let sync_took = if frames.copied != synced {
                synced = frames.copied;
                sync(database)
            } else {
                Duration::ZERO
            };
            if frames.in_wal < RESTART_FRAMES {
                break;
            }
            rounds += 1;
            let tail = frames.in_wal - frames.copied;
            if time_to_restart(tail, sync_took, rounds) {
                tracing::debug!(
                    frames = frames.in_wal,
                    tail,
                    rounds,
                    sync_ms = sync_took.as_millis(),
                    "asking the writer to start the WAL over"
                );
                wal.restart.store(true, Ordering::Release);
                break;
            }
            if stopping.try_recv().is_ok() {
                return;
            }
        }
    }
}

/// Whether the writer's RESTART would have little to copy and sync: the tail the last
/// PASSIVE checkpoint left, and what the writer appended while the file was synced after it.
/// After [`CATCH_UP_ROUNDS`] it restarts anyway.
fn time_to_restart(tail: i64, sync_took: Duration, rounds: u32) -> bool {
    (tail <= TAIL_FRAMES && sync_took <= QUICK_SYNC) || rounds >= CATCH_UP_ROUNDS
}

/// Syncs the database file; how long that took.
fn sync(database: &File) -> Duration {
    let started = Instant::now();
    if let Err(e) = database.sync_data() {
        tracing::warn!(error = %e, "syncing the database file after a checkpoint failed");
    }
    started.elapsed()
}

/// Run by the writer between groups, when [`WalState::restart`] asks for it.
pub(crate) fn restart(conn: &Connection) {
    let started = Instant::now();
    match checkpoint(conn, "RESTART") {
        Ok(frames) if frames.busy => {
            tracing::warn!(frames = frames.in_wal, "the WAL is large and readers kept it from starting over");
        }
        Ok(frames) => {
            let took = started.elapsed();
            if took >= SLOW_RESTART {
                tracing::warn!(
                    frames = frames.in_wal,
                    took_ms = took.as_millis(),
                    "restarting the WAL held writes"
                );
            } else {
                tracing::debug!(frames = frames.in_wal, took_ms = took.as_millis(), "WAL started over");
            }
        }
        Err(e) => tracing::warn!(error = %e, "the WAL is large and cannot start over"),
    }
}

struct Frames {
    /// The checkpoint could not finish: a reader or writer held it up past the busy timeout.
    busy: bool,
    in_wal: i64,
    copied: i64,
}

fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<Frames> {
    let sql = format!("PRAGMA wal_checkpoint({mode})");
    conn.query_row(&sql, [], |row| {
        Ok(Frames { busy: row.get::<_, i64>(0)? != 0, in_wal: row.get(1)?, copied: row.get(2)? })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_restart_waits_for_a_short_tail_and_a_quick_sync() {
        let quick = Duration::from_millis(3);
        let slow = Duration::from_millis(120);
        assert!(time_to_restart(0, quick, 1));
        assert!(time_to_restart(TAIL_FRAMES, QUICK_SYNC, 1));
        assert!(!time_to_restart(TAIL_FRAMES + 1, quick, 1), "a long tail is copied first");
        assert!(!time_to_restart(0, slow, 1), "the writer appended while the file was synced");
        assert!(time_to_restart(TAIL_FRAMES * 8, slow, CATCH_UP_ROUNDS), "but never without end");
    }
}
