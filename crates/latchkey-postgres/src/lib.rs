//! The [`Store`](latchkey_store::Store) on PostgreSQL, for several instances sharing one
//! database.
//!
//! Single use and leases rest on row locks taken by conditional updates under READ COMMITTED;
//! the outbox is drained with `FOR UPDATE SKIP LOCKED`, so workers never wait on each other.
//! Each write of a request is one statement (data-modifying CTEs, rate limits counted by a
//! PL/pgSQL function), atomic without `BEGIN` and `COMMIT` round trips of its own.

mod events;
mod import;
mod pool;
mod store;
pub mod testing;

pub use import::import;
pub use store::{PostgresOptions, PostgresStore};
