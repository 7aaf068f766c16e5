//! The writer: one thread owns the only write connection and runs the store's writes as jobs,
//! with group commit.
//!
//! The thread takes every job that is queued (up to [`GROUP_CAP`]), opens one
//! `BEGIN IMMEDIATE`, runs each job in its own savepoint, commits once, and only then answers
//! the callers. A job that fails, or decides to undo its writes (a refused rate limit), is
//! rolled back to its savepoint without touching its neighbours. Nobody hears of a write
//! before the commit that made it durable; when the commit fails, every job of the group gets
//! the error.

use crate::checkpoint::{self, WalState};
use crate::error::{WriterError, map_err};
use latchkey_store::StoreResult;
use rusqlite::Connection;
use std::fs::File;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use tokio::sync::oneshot;

/// The most jobs one transaction takes: enough to amortise the commit, few enough that the
/// first caller of a group does not wait long for the last.
const GROUP_CAP: usize = 256;

/// What a job did: keep its writes, or undo them and still answer with a value.
pub(crate) enum Write<T> {
    Keep(T),
    Undo(T),
}

/// A queued write, type-erased for the channel.
trait Job: Send {
    /// Runs the job inside the group's transaction; `false` when its writes must be undone.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the group's commit has succeeded (`Ok`) or failed.
    fn answer(self: Box<Self>, commit: Result<(), &WriterError>);
}

struct Call<T, F> {
    work: Option<F>,
    outcome: Option<StoreResult<Write<T>>>,
    reply: oneshot::Sender<StoreResult<T>>,
}

impl<T, F> Job for Call<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> StoreResult<Write<T>> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(work) = self.work.take() else { return false };
        let outcome = catch_unwind(AssertUnwindSafe(|| work(conn)))
            .unwrap_or_else(|_| Err(WriterError::panicked().into_store()));
        let keep = matches!(outcome, Ok(Write::Keep(_)));
        self.outcome = Some(outcome);
        keep
    }

    fn answer(self: Box<Self>, commit: Result<(), &WriterError>) {
        let answer = match (self.outcome, commit) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(Write::Keep(v) | Write::Undo(v))), Ok(())) => Ok(v),
            (_, Err(e)) => Err(e.clone().into_store()),
            (None, Ok(())) => Err(WriterError::panicked().into_store()),
        };
        // The caller may have gone away; its write stands all the same.
        let _ = self.reply.send(answer);
    }
}

enum Msg {
    Job(Box<dyn Job>),
    Close(oneshot::Sender<()>),
}

/// The handle through which callers queue writes.
#[derive(Debug)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Msg>,
    wal: Arc<WalState>,
}

impl Writer {
    /// Starts the writer thread on `conn`; `database` is let go after it (see
    /// `SqliteStore::open_now`).
    pub(crate) fn start(conn: Connection, database: Arc<File>) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel();
        let wal = Arc::new(WalState::default());
        let shared = wal.clone();
        std::thread::Builder::new().name("sqlite-writer".into()).spawn(move || {
            run(conn, queue, &shared);
            drop(database);
        })?;
        Ok(Self { jobs, wal })
    }

    /// What the checkpointer shares with the thread: the count of its transactions, and the
    /// flag by which it asks the thread to start the WAL over.
    pub(crate) fn wal(&self) -> Arc<WalState> {
        self.wal.clone()
    }

    /// Runs `work` in the writer's next group and answers after its commit.
    pub(crate) async fn write<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.write_or_undo(move |conn| work(conn).map(Write::Keep)).await
    }

    /// Like [`Writer::write`], but the job may undo its own writes and still answer.
    pub(crate) async fn write_or_undo<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<Write<T>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Call { work: Some(work), outcome: None, reply };
        self.jobs.send(Msg::Job(Box::new(job))).map_err(|_| WriterError::closed().into_store())?;
        answer.await.map_err(|_| WriterError::closed().into_store())?
    }

    /// Lets the queued jobs finish, then closes the write connection.
    pub(crate) async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.jobs.send(Msg::Close(done)).is_ok() {
            let _ = closed.await;
        }
    }
}

fn run(conn: Connection, queue: mpsc::Receiver<Msg>, wal: &WalState) {
    let mut group: Vec<Box<dyn Job>> = Vec::with_capacity(GROUP_CAP);
    let mut closing = None;
    // Ends when every handle is dropped (the queue is drained first) or on `Close`.
    while let Ok(first) = queue.recv() {
        if wal.restart.load(Ordering::Acquire) {
            checkpoint::restart(&conn);
            wal.restart.store(false, Ordering::Release);
        }
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Job(job) => group.push(job),
                Msg::Close(done) => {
                    closing = Some(done);
                    break;
                }
            }
            if group.len() < GROUP_CAP {
                next = queue.try_recv().ok();
            }
        }
        if !group.is_empty() {
            commit_group(&conn, &mut group, &wal.commits);
        }
        if closing.is_some() {
            break;
        }
    }
    // Jobs queued after `Close` are dropped unanswered: their callers hear that the writer
    // stopped.
    drop(queue);
    drop(conn);
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

/// Runs the jobs in one transaction and answers each of them.
fn commit_group(conn: &Connection, group: &mut Vec<Box<dyn Job>>, commits: &AtomicU64) {
    let mut jobs = group.drain(..);
    while jobs.len() > 0 {
        // A job alone in its transaction needs no savepoint: undoing it is rolling back.
        let alone = jobs.len() == 1;
        if let Err(e) = statement(conn, "BEGIN IMMEDIATE") {
            let failed = WriterError::from_sqlite("cannot begin a write", &e);
            jobs.for_each(|job| job.answer(Err(&failed)));
            return;
        }
        let mut ran: Vec<Box<dyn Job>> = Vec::with_capacity(jobs.len());
        let mut lost = None;
        let mut kept = false;
        for mut job in jobs.by_ref() {
            match run_job(conn, &mut *job, alone) {
                Ok(keep) => kept |= keep,
                Err(e) => {
                    // SQLite rolled the whole transaction back (out of memory or disk, I/O):
                    // the jobs run so far are lost; the rest start a new transaction.
                    lost = Some(WriterError::from_sqlite("the write transaction was rolled back", &e));
                    if !conn.is_autocommit() {
                        let _ = statement(conn, "ROLLBACK");
                    }
                    ran.push(job);
                    break;
                }
            }
            ran.push(job);
        }
        let outcome = match lost {
            Some(lost) => Err(lost),
            None if alone && !kept => {
                statement(conn, "ROLLBACK").map_err(|e| WriterError::from_sqlite("cannot roll back", &e))
            }
            None => statement(conn, "COMMIT").map_err(|e| {
                let failed = WriterError::from_sqlite("cannot commit", &e);
                if !conn.is_autocommit() {
                    let _ = statement(conn, "ROLLBACK");
                }
                failed
            }),
        };
        // Counted before anyone hears of it, so that a caller's answer implies the count.
        commits.fetch_add(1, Ordering::Relaxed);
        for job in ran {
            job.answer(outcome.as_ref().map(|_| ()));
        }
    }
}

/// Runs one job, in its own savepoint unless it is `alone` in the transaction; whether its
/// writes are kept. `Err` only when the transaction itself is gone.
fn run_job(conn: &Connection, job: &mut dyn Job, alone: bool) -> rusqlite::Result<bool> {
    if !alone {
        statement(conn, "SAVEPOINT job")?;
    }
    let keep = job.run(conn);
    if conn.is_autocommit() {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
            Some("the transaction was rolled back by SQLite".into()),
        ));
    }
    if !alone {
        if !keep {
            statement(conn, "ROLLBACK TO job")?;
        }
        statement(conn, "RELEASE job")?;
    }
    Ok(keep)
}

fn statement(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Runs `work` in a transaction of its own on a connection that no writer thread owns yet
/// (the migrations at open).
pub(crate) fn in_transaction<T>(
    conn: &Connection,
    work: impl FnOnce(&Connection) -> StoreResult<T>,
) -> StoreResult<T> {
    conn.execute_batch("BEGIN IMMEDIATE").map_err(map_err)?;
    match work(conn) {
        Ok(v) => {
            conn.execute_batch("COMMIT").map_err(map_err)?;
            Ok(v)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}
