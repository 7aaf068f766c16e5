//! Filling the database with old challenges, straight into the `challenges` table (the HTTP API
//! would take hours for millions), to see how the cost of each step grows with the table.
//!
//! Rows look like real ones of the last hours: a UUIDv7-style `ml_…` id in creation order,
//! random 32-byte `link_hash` and `otp_hash`, seven in ten `consumed` and the rest `expired`,
//! one millisecond apart up to an hour before the bench ran, for the bench's application.

use crate::server::Database;
use anyhow::Context;
use sqlx::Connection as _;
use std::fmt::Write as _;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// Rows per multi-row INSERT (SQLite) or per COPY chunk (PostgreSQL).
const ROWS_PER_STATEMENT: u64 = 500;
/// Rows per transaction.
const ROWS_PER_TRANSACTION: u64 = 100_000;

const COLUMNS: &str = "id, purpose, app_id, email, redirect_uri, create_user, link_hash, otp_hash, \
                       otp_attempts, status, created_at, expires_at, otp_expires_at, consumed_at";

/// One seeded row, made from its index.
struct Row {
    id: String,
    email: String,
    link_hash: String,
    otp_hash: String,
    consumed: bool,
    created_at: i64,
}

/// How long before the bench the last seeded row was created.
const LAST_ROW_AGE_MS: i64 = 3600 * 1000;

/// Row 0's creation time for seeding up to `rows` rows one millisecond apart, the last an hour
/// before `now_ms`: all of them have expired (challenges live 15 minutes), and up to about 80M
/// rows none expired more than a day ago, which is when the server's maintenance purges a
/// challenge. Older rows would be deleted under the measurement, 30 s after the server starts.
pub fn origin_ms(now_ms: i64, rows: u64) -> i64 {
    now_ms - LAST_ROW_AGE_MS - rows as i64
}

/// Makes rows `index` of a seeding whose row 0 was created at `origin_ms`.
struct RowMaker {
    origin_ms: i64,
    rng: SplitMix64,
}

impl RowMaker {
    fn new(origin_ms: i64, seed: u64) -> Self {
        Self { origin_ms, rng: SplitMix64(seed) }
    }

    fn row(&mut self, index: u64) -> Row {
        let created_at = self.origin_ms + index as i64;
        let hex = |rng: &mut SplitMix64| {
            let mut s = String::with_capacity(64);
            for _ in 0..4 {
                let _ = write!(s, "{:016x}", rng.next());
            }
            s
        };
        let link_hash = hex(&mut self.rng);
        let otp_hash = hex(&mut self.rng);
        let random = self.rng.next();
        Row {
            id: challenge_id(created_at as u64, random),
            email: format!("seed-{index}@seed.example"),
            link_hash,
            otp_hash,
            consumed: index % 10 < 7,
            created_at,
        }
    }
}

/// `ml_` and a UUIDv7 (time in the top 48 bits) in lower-case Crockford base32, as the server
/// makes them, so that seeded ids look and sort like real ones.
fn challenge_id(unix_ms: u64, random: u64) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
    let rand_a = (random >> 52) as u128 & 0xfff;
    let rand_b = random as u128 & ((1 << 62) - 1);
    let bits: u128 =
        ((unix_ms as u128 & 0xffff_ffff_ffff) << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b;
    let mut id = String::with_capacity(29);
    id.push_str("ml_");
    for i in (0..26).rev() {
        id.push(ALPHABET[((bits >> (i * 5)) & 0x1f) as usize] as char);
    }
    id
}

/// A small, fast generator; the hashes only need to be distinct, not secret.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

const FIFTEEN_MINUTES_MS: i64 = 15 * 60 * 1000;
const TEN_MINUTES_MS: i64 = 10 * 60 * 1000;

/// Adds rows `from..to` for application `app_id`; `origin_ms` is row 0's creation time.
/// Prints progress to standard error. Returns how long it took.
pub async fn seed(
    database: &Database,
    app_id: &str,
    origin_ms: i64,
    from: u64,
    to: u64,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut maker = RowMaker::new(origin_ms, 0x5eed ^ from);
    match database {
        Database::Sqlite { path, .. } => seed_sqlite(path, app_id, &mut maker, from, to, started).await?,
        Database::Postgres { url, .. } => seed_postgres(url, app_id, &mut maker, from, to, started).await?,
    }
    Ok(started.elapsed())
}

fn progress(done: u64, from: u64, to: u64, started: Instant) {
    let secs = started.elapsed().as_secs_f64().max(1e-3);
    eprintln!("  seeded {done} of {to} challenges ({:.0} rows/s)", (done - from) as f64 / secs);
}

async fn seed_sqlite(
    path: &std::path::Path,
    app_id: &str,
    maker: &mut RowMaker,
    from: u64,
    to: u64,
    started: Instant,
) -> anyhow::Result<()> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteSynchronous};
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
        .busy_timeout(Duration::from_secs(60))
        .synchronous(SqliteSynchronous::Off)
        .pragma("cache_size", "-1048576");
    let mut conn = sqlx::SqliteConnection::connect_with(&options).await.context("opening the SQLite file")?;
    let mut index = from;
    while index < to {
        let end = (index + ROWS_PER_TRANSACTION).min(to);
        let mut tx = conn.begin().await?;
        while index < end {
            let stop = (index + ROWS_PER_STATEMENT).min(end);
            let mut sql = String::with_capacity(((stop - index) * 320) as usize);
            let _ = write!(sql, "INSERT INTO challenges ({COLUMNS}) VALUES ");
            for i in index..stop {
                let r = maker.row(i);
                let (status, consumed_at) = if r.consumed {
                    ("consumed", (r.created_at + 30_000).to_string())
                } else {
                    ("expired", "NULL".into())
                };
                let _ = write!(
                    sql,
                    "{}('{}','login','{app_id}','{}','https://bench.example/cb',1,X'{}',X'{}',0,'{status}',{},{},{},{consumed_at})",
                    if i == index { "" } else { "," },
                    r.id,
                    r.email,
                    r.link_hash,
                    r.otp_hash,
                    r.created_at,
                    r.created_at + FIFTEEN_MINUTES_MS,
                    r.created_at + TEN_MINUTES_MS,
                );
            }
            sqlx::query(&sql).execute(&mut *tx).await.context("inserting challenges")?;
            index = stop;
        }
        tx.commit().await?;
        if index.is_multiple_of(1_000_000) || index == to {
            progress(index, from, to, started);
        }
    }
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut conn).await?;
    conn.close().await?;
    Ok(())
}

async fn seed_postgres(
    url: &str,
    app_id: &str,
    maker: &mut RowMaker,
    from: u64,
    to: u64,
    started: Instant,
) -> anyhow::Result<()> {
    let mut conn = sqlx::PgConnection::connect(url).await.context("connecting to PostgreSQL")?;
    sqlx::query("SET synchronous_commit = off").execute(&mut conn).await?;
    let mut index = from;
    while index < to {
        let end = (index + ROWS_PER_TRANSACTION).min(to);
        let mut copy = conn
            .copy_in_raw(&format!("COPY challenges ({COLUMNS}) FROM STDIN (FORMAT csv)"))
            .await
            .context("starting COPY")?;
        while index < end {
            let stop = (index + ROWS_PER_STATEMENT * 20).min(end);
            let mut csv = String::with_capacity(((stop - index) * 300) as usize);
            for i in index..stop {
                let r = maker.row(i);
                let (status, consumed_at) = if r.consumed {
                    ("consumed", (r.created_at + 30_000).to_string())
                } else {
                    ("expired", String::new())
                };
                let _ = writeln!(
                    csv,
                    "{},login,{app_id},{},https://bench.example/cb,t,\\x{},\\x{},0,{status},{},{},{},{consumed_at}",
                    r.id,
                    r.email,
                    r.link_hash,
                    r.otp_hash,
                    r.created_at,
                    r.created_at + FIFTEEN_MINUTES_MS,
                    r.created_at + TEN_MINUTES_MS,
                );
            }
            copy.send(csv.into_bytes()).await.context("sending COPY data")?;
            index = stop;
        }
        copy.finish().await.context("finishing COPY")?;
        if index.is_multiple_of(1_000_000) || index == to {
            progress(index, from, to, started);
        }
    }
    sqlx::query("ANALYZE challenges").execute(&mut conn).await?;
    conn.close().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_well_formed_and_sort_by_time() {
        let a = challenge_id(1_700_000_000_000, 42);
        let b = challenge_id(1_700_000_000_001, 7);
        assert_eq!(a.len(), 29);
        assert!(a.starts_with("ml_") && a[3..].bytes().all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()));
        assert!(a < b);
    }

    #[test]
    fn seeded_rows_have_all_expired_and_none_is_old_enough_to_purge() {
        let now = 1_800_000_000_000;
        let rows = 10_000_000;
        let origin = origin_ms(now, rows);
        let mut maker = RowMaker::new(origin, 1);
        let (first, last) = (maker.row(0), maker.row(rows - 1));
        let day = 24 * 3600 * 1000;
        assert!(last.created_at + FIFTEEN_MINUTES_MS < now, "the newest has expired");
        assert!(first.created_at + FIFTEEN_MINUTES_MS > now - day, "the oldest expired less than a day ago");
    }

    #[test]
    fn rows_are_distinct() {
        let mut maker = RowMaker::new(1_700_000_000_000, 1);
        let (r0, r1) = (maker.row(0), maker.row(1));
        assert_ne!(r0.id, r1.id);
        assert_ne!(r0.link_hash, r1.link_hash);
        assert_eq!(r0.link_hash.len(), 64);
        assert_eq!(r1.created_at - r0.created_at, 1);
    }
}
