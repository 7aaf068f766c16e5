//! The [`Store`] on an embedded SQLite database.
//!
//! One file in WAL mode. Writes go through a single connection, so they queue in-process
//! instead of contending for SQLite's lock; reads use a pool of read-only connections.

mod store;

pub use store::{SqliteOptions, SqliteStore, Synchronous};
