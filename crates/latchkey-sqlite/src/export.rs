//! Reading a whole database out, for `latchkey migrate-data` (see `latchkey_store::transfer`).

use crate::error::map_err;
use crate::migrate;
use latchkey_store::transfer::{Batch, NOT_COPIED, Transfer, Value};
use latchkey_store::{StoreError, StoreResult};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Duration;

/// Reads every table of the database at `path` in one read transaction (so that the copy is
/// consistent even while a server writes), parents before the tables that reference them, and
/// hands the rows to `send` in batches of at most `batch_rows`; each table ends with a batch
/// that may be empty, so that the receiver hears of every table, and the whole with
/// [`Transfer::Done`]. Stops when `send` answers `false`. The database must have this build's
/// schema.
pub fn export(path: &Path, batch_rows: usize, mut send: impl FnMut(Transfer) -> bool) -> StoreResult<()> {
    if !path.exists() {
        return Err(StoreError::Other(format!("{} does not exist", path.display()).into()));
    }
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(map_err)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(map_err)?;
    if migrate::pending(&conn)? > 0 {
        return Err(StoreError::Other(
            "the SQLite database is older than this build: run `latchkey migrate` on it first".into(),
        ));
    }
    conn.execute_batch("BEGIN").map_err(map_err)?;
    for table in tables_parents_first(&conn)? {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{table}\"")).map_err(map_err)?;
        let columns: Vec<String> = stmt.column_names().into_iter().map(str::to_owned).collect();
        let mut rows = stmt.query([]).map_err(map_err)?;
        let mut batch = Vec::new();
        while let Some(row) = rows.next().map_err(map_err)? {
            let values = (0..columns.len())
                .map(|i| row.get_ref(i).map(value))
                .collect::<Result<Vec<_>, _>>()
                .map_err(map_err)?;
            batch.push(values);
            if batch.len() >= batch_rows {
                let rows = std::mem::take(&mut batch);
                if !send(Transfer::Rows(Batch { table: table.clone(), columns: columns.clone(), rows })) {
                    return Ok(());
                }
            }
        }
        if !send(Transfer::Rows(Batch { table: table.clone(), columns, rows: batch })) {
            return Ok(());
        }
    }
    conn.execute_batch("COMMIT").map_err(map_err)?;
    send(Transfer::Done);
    Ok(())
}

fn value(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(r) => Value::Real(r),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

/// The data's tables, each after every table its foreign keys name.
fn tables_parents_first(conn: &Connection) -> StoreResult<Vec<String>> {
    let mut stmt = conn
        .prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
             AND name <> '_sqlx_migrations' ORDER BY name",
        )
        .map_err(map_err)?;
    let names = stmt.query_map([], |row| row.get::<_, String>(0)).map_err(map_err)?;
    let mut pending: Vec<(String, Vec<String>)> = Vec::new();
    for name in names {
        let name = name.map_err(map_err)?;
        if NOT_COPIED.contains(&name.as_str()) {
            continue;
        }
        let mut fks = conn.prepare(&format!("PRAGMA foreign_key_list(\"{name}\")")).map_err(map_err)?;
        let parents = fks
            .query_map([], |row| row.get::<_, String>("table"))
            .map_err(map_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_err)?;
        pending.push((name, parents));
    }
    let mut ordered: Vec<String> = Vec::new();
    while !pending.is_empty() {
        let ready = pending
            .iter()
            .position(|(name, parents)| parents.iter().all(|p| p == name || ordered.contains(p)))
            .ok_or_else(|| StoreError::Other("the tables' foreign keys form a cycle".into()))?;
        ordered.push(pending.remove(ready).0);
    }
    Ok(ordered)
}
