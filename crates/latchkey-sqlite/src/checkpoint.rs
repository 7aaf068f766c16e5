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

use rusqlite::Connection;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const INTERVAL: Duration = Duration::from_millis(200);

/// 32,768 pages: 128 MiB with 4 KiB pages.
const RESTART_FRAMES: i64 = 32_768;

/// What the writer's RESTART may have left to copy: about 16 MiB of pages. Writes wait while
/// it runs: about 120 ms in a database of 10M challenges. A tail of 512 frames made that
/// longer (280-620 ms), so the time is not the copy; see docs/benchmarks.md.
const TAIL_FRAMES: i64 = 4_096;

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
    pub(crate) fn start(conn: Connection, wal: Arc<WalState>) -> std::io::Result<Self> {
        let (stop, stopping) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || run(&conn, &stopping, &wal))?;
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

fn run(conn: &Connection, stopping: &mpsc::Receiver<()>, wal: &WalState) {
    let mut seen = wal.commits.load(Ordering::Relaxed);
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
            if frames.in_wal < RESTART_FRAMES {
                break;
            }
            rounds += 1;
            if frames.in_wal - frames.copied <= TAIL_FRAMES || rounds >= CATCH_UP_ROUNDS {
                wal.restart.store(true, Ordering::Release);
                break;
            }
            if stopping.try_recv().is_ok() {
                return;
            }
        }
    }
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
