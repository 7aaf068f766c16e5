//! The embedded migrations and the small migrator that applies them.
//!
//! The version applied last is kept in `PRAGMA user_version`. Databases created before this
//! migrator recorded their versions in sqlx's `_sqlx_migrations` table instead: those count
//! as applied, so existing files keep opening. Files are applied in order, in the caller's
//! transaction, and are never edited once released.

use crate::error::map_err;
use latchkey_store::{StoreError, StoreResult};
use rusqlite::Connection;

struct Migration {
    version: i64,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, sql: include_str!("../migrations/0001_initial.sql") },
    Migration { version: 2, sql: include_str!("../migrations/0002_sessions_events_limits.sql") },
    Migration { version: 3, sql: include_str!("../migrations/0003_one_active_key_per_algorithm.sql") },
    Migration { version: 4, sql: include_str!("../migrations/0004_organizations_and_purposes.sql") },
    Migration { version: 5, sql: include_str!("../migrations/0005_user_locale.sql") },
    Migration { version: 6, sql: include_str!("../migrations/0006_code_is_credential.sql") },
    Migration { version: 7, sql: include_str!("../migrations/0007_redirect_uri_given.sql") },
    Migration { version: 8, sql: include_str!("../migrations/0008_hosted_sign_in.sql") },
    Migration { version: 10, sql: include_str!("../migrations/0010_link_views.sql") },
    Migration { version: 11, sql: include_str!("../migrations/0011_mail.sql") },
];

/// Applies every migration not applied yet; runs inside a write transaction, so that two
/// processes opening one new file apply each migration once.
/// The schema version this build migrates to.
pub(crate) fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// How many of this build's migrations `conn`'s database lacks.
pub(crate) fn pending(conn: &Connection) -> StoreResult<u32> {
    let recorded: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0)).map_err(map_err)?;
    let from_sqlx = sqlx_versions(conn)?;
    let missing = MIGRATIONS.iter().filter(|m| m.version > recorded && !from_sqlx.contains(&m.version));
    Ok(missing.count() as u32)
}

pub(crate) fn apply(conn: &Connection) -> StoreResult<()> {
    let recorded: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0)).map_err(map_err)?;
    let from_sqlx = sqlx_versions(conn)?;
    let latest = latest_version();
    if recorded > latest || from_sqlx.iter().any(|v| *v > latest) {
        return Err(StoreError::Other(
            "the database was migrated by a newer version of Latchkey than this one".into(),
        ));
    }
    let mut applied = recorded;
    for migration in MIGRATIONS {
        if migration.version <= recorded || from_sqlx.contains(&migration.version) {
            applied = applied.max(migration.version);
            continue;
        }
        conn.execute_batch(migration.sql).map_err(map_err)?;
        applied = migration.version;
    }
    if applied != recorded {
        conn.execute_batch(&format!("PRAGMA user_version = {applied}")).map_err(map_err)?;
    }
    Ok(())
}

/// The versions sqlx recorded as applied, if this file was ever migrated by it.
fn sqlx_versions(conn: &Connection) -> StoreResult<Vec<i64>> {
    let exists: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = '_sqlx_migrations')",
            [],
            |row| row.get(0),
        )
        .map_err(map_err)?;
    if !exists {
        return Ok(Vec::new());
    }
    let mut stmt = conn
        .prepare("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .map_err(map_err)?;
    let versions = stmt.query_map([], |row| row.get(0)).map_err(map_err)?;
    versions.collect::<Result<_, _>>().map_err(map_err)
}
