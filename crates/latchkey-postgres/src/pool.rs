//! The store's connections: a small pool that runs one statement per checkout.
//!
//! sqlx's own pool pings every connection when it comes back, one more round trip (and a
//! wake-up of the database's backend) per store call; here a connection goes back to the pool
//! as it is when its statement ended cleanly, and is closed instead when it did not (the
//! caller's future was dropped mid-statement, or the socket or protocol failed), so a connection
//! in the pool is never in an unknown state. Nearly every store call is one statement; the few
//! transactions ([`Tx`]) return their connection only once committed.

use crate::store::map_err;
use latchkey_store::{StoreError, StoreResult};
use sqlx::postgres::{PgArguments, PgConnectOptions, PgDatabaseError, PgQueryResult, PgRow, PgSeverity};
use sqlx::{Connection, Executor, PgConnection, Postgres};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, SemaphorePermit};

/// A query with its arguments.
pub(crate) type Query<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

/// How long a connection may sit idle before it is checked (one round trip) when handed out:
/// a server restart or a proxy may have cut it meanwhile. A busy connection was just seen alive.
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(1);
/// Idle connections are closed after this, so that a burst does not keep its backends forever.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Connections are replaced after this, so that a backend's caches do not grow without end.
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);

struct Idle {
    conn: PgConnection,
    created: Instant,
    since: Instant,
}

pub(crate) struct Pool {
    options: PgConnectOptions,
    acquire_timeout: Duration,
    permits: Semaphore,
    /// Most recently used last: the next checkout takes the warmest connection, and the ones at
    /// the front are those a quieter load no longer needs.
    idle: Mutex<Vec<Idle>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("available", &self.permits.available_permits()).finish_non_exhaustive()
    }
}

impl Pool {
    /// Opens one connection first, so that an unreachable or refusing server is an error here.
    pub(crate) async fn connect(
        options: PgConnectOptions,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> StoreResult<Self> {
        let size = usize::try_from(max_connections.max(1)).unwrap_or(1);
        let conn = tokio::time::timeout(acquire_timeout, PgConnection::connect_with(&options))
            .await
            .map_err(|_| StoreError::Unavailable(Box::new(sqlx::Error::PoolTimedOut)))?
            .map_err(map_err)?;
        let now = Instant::now();
        Ok(Self {
            options,
            acquire_timeout,
            permits: Semaphore::new(size),
            idle: Mutex::new(vec![Idle { conn, created: now, since: now }]),
        })
    }

    pub(crate) fn connect_options(&self) -> &PgConnectOptions {
        &self.options
    }

    /// Closes the idle connections and refuses checkouts from now on; a connection in use is
    /// closed when its statement ends.
    pub(crate) async fn close(&self) {
        self.permits.close();
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|e| e.into_inner()));
        for Idle { conn, .. } in idle {
            let _ = conn.close().await;
        }
    }

    async fn acquire(&self) -> StoreResult<Lease<'_>> {
        let unavailable = |e: sqlx::Error| StoreError::Unavailable(Box::new(e));
        let permit = match tokio::time::timeout(self.acquire_timeout, self.permits.acquire()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_closed)) => return Err(unavailable(sqlx::Error::PoolClosed)),
            Err(_elapsed) => return Err(unavailable(sqlx::Error::PoolTimedOut)),
        };
        while let Some(Idle { mut conn, created, since }) = self.take_idle() {
            if since.elapsed() < CHECK_AFTER_IDLE || conn.ping().await.is_ok() {
                return Ok(Lease { pool: self, conn: Some((conn, created)), clean: false, _permit: permit });
            }
            // Gone while it sat idle: drop it and try the next.
        }
        let conn = tokio::time::timeout(self.acquire_timeout, PgConnection::connect_with(&self.options))
            .await
            .map_err(|_| unavailable(sqlx::Error::PoolTimedOut))?
            .map_err(map_err)?;
        Ok(Lease { pool: self, conn: Some((conn, Instant::now())), clean: false, _permit: permit })
    }

    /// The most recently used idle connection, after closing those idle for too long.
    fn take_idle(&self) -> Option<Idle> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let stale = idle.iter().take_while(|i| i.since.elapsed() >= IDLE_TIMEOUT).count();
        // Dropping a connection closes its socket; the server ends the backend, quietly since
        // no transaction is open.
        idle.drain(..stale);
        idle.pop()
    }
}

/// Runs a statement on a connection of the pool, checked out for it alone.
pub(crate) trait Run {
    async fn fetch_optional_on(self, pool: &Pool) -> StoreResult<Option<PgRow>>;
    async fn fetch_one_on(self, pool: &Pool) -> StoreResult<PgRow>;
    async fn fetch_all_on(self, pool: &Pool) -> StoreResult<Vec<PgRow>>;
    async fn execute_on(self, pool: &Pool) -> StoreResult<PgQueryResult>;
}

impl Run for Query<'_> {
    async fn fetch_optional_on(self, pool: &Pool) -> StoreResult<Option<PgRow>> {
        let mut lease = pool.acquire().await?;
        let result = self.fetch_optional(lease.conn()).await;
        lease.settle(result)
    }

    async fn fetch_one_on(self, pool: &Pool) -> StoreResult<PgRow> {
        let mut lease = pool.acquire().await?;
        let result = self.fetch_one(lease.conn()).await;
        lease.settle(result)
    }

    async fn fetch_all_on(self, pool: &Pool) -> StoreResult<Vec<PgRow>> {
        let mut lease = pool.acquire().await?;
        let result = self.fetch_all(lease.conn()).await;
        lease.settle(result)
    }

    async fn execute_on(self, pool: &Pool) -> StoreResult<PgQueryResult> {
        let mut lease = pool.acquire().await?;
        let result = self.execute(lease.conn()).await;
        lease.settle(result)
    }
}

/// A transaction on a connection of its own, for the few writes that cannot be one statement.
/// Unless it is committed, its connection is closed rather than returned, and the server rolls
/// the transaction back.
pub(crate) struct Tx<'a>(Lease<'a>);

impl Tx<'_> {
    pub(crate) async fn begin(pool: &Pool) -> StoreResult<Tx<'_>> {
        let mut lease = pool.acquire().await?;
        let begun = lease.conn().execute("BEGIN").await;
        lease.settle(begun)?;
        lease.clean = false;
        Ok(Tx(lease))
    }

    pub(crate) fn conn(&mut self) -> &mut PgConnection {
        self.0.conn()
    }

    pub(crate) async fn commit(mut self) -> StoreResult<()> {
        let committed = self.0.conn().execute("COMMIT").await;
        self.0.settle(committed).map(drop)
    }
}

/// A connection checked out for one statement, and the permit that counts it.
struct Lease<'a> {
    pool: &'a Pool,
    conn: Option<(PgConnection, Instant)>,
    /// Set once the statement ended in a way that leaves the connection ready for the next.
    clean: bool,
    _permit: SemaphorePermit<'a>,
}

impl Lease<'_> {
    fn conn(&mut self) -> &mut PgConnection {
        &mut self.conn.as_mut().expect("a lease holds its connection until dropped").0
    }

    /// Notes whether the connection can be reused, and maps the error.
    fn settle<T>(&mut self, result: Result<T, sqlx::Error>) -> StoreResult<T> {
        self.clean = match &result {
            Ok(_) => true,
            // The server refused the statement and is ready for the next one, unless the
            // refusal ends the session (shutdown, terminated backend).
            Err(sqlx::Error::Database(db)) => !db
                .try_downcast_ref::<PgDatabaseError>()
                .is_some_and(|e| matches!(e.severity(), PgSeverity::Fatal | PgSeverity::Panic)),
            Err(_) => false,
        };
        result.map_err(map_err)
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let Some((conn, created)) = self.conn.take() else { return };
        if self.clean && !self.pool.permits.is_closed() && created.elapsed() < MAX_LIFETIME {
            let idle = Idle { conn, created, since: Instant::now() };
            self.pool.idle.lock().unwrap_or_else(|e| e.into_inner()).push(idle);
        }
        // Otherwise the connection is dropped here, which closes it.
    }
}
