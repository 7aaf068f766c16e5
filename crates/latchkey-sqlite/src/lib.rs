//! The [`Store`](latchkey_store::Store) on an embedded SQLite database.
//!
//! One file in WAL mode, three kinds of connection:
//!
//! - one write connection, owned by a thread of its own ([`writer`]): every write of the store
//!   is a job sent to it, and the thread commits whatever jobs are queued together, each in a
//!   savepoint, answering callers only after the commit (group commit);
//! - a small pool of read-only connections ([`readers`]) that the calling task uses directly,
//!   because an indexed read costs less than a hand-off to another thread;
//! - a checkpointer thread ([`checkpoint`]) that copies the WAL into the database, so that no
//!   commit waits for a checkpoint.
//!
//! The schema is in `migrations/`, embedded and applied at open ([`migrate`]).

mod backup;
mod checkpoint;
mod connection;
mod error;
mod export;
mod migrate;
mod readers;
mod sql;
mod store;
#[cfg(test)]
mod tests;
mod writer;

pub use backup::backup;
pub use export::export;
pub use store::{SqliteOptions, SqliteStore, Synchronous};
