//! Writing a whole database in, for `latchkey migrate-data` (see `latchkey_store::transfer`).

use crate::store::map_err;
use latchkey_store::transfer::{Batch, Copied, NOT_COPIED, Transfer, Value};
use latchkey_store::{StoreError, StoreResult};
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{Connection, PgConnection, Postgres, Row};
use std::collections::HashMap;
use tokio::sync::mpsc::Receiver;

/// Bind parameters per statement stay under PostgreSQL's limit of 65,535.
const MAX_PARAMS: usize = 60_000;

/// Copies `batches` into the database of `url`, which must have this build's schema and hold no
/// data, in one transaction: a failure, or a reader that stops before [`Transfer::Done`], leaves
/// it as it was. Checks every table's row count
/// afterwards; returns them.
pub async fn import(url: &str, mut batches: Receiver<Transfer>) -> StoreResult<Copied> {
    let mut conn = PgConnection::connect(url).await.map_err(map_err)?;
    let types = column_types(&mut conn).await?;
    for table in types.keys() {
        let sql = format!("SELECT EXISTS (SELECT 1 FROM \"{table}\")");
        let taken: bool = sqlx::query(&sql).fetch_one(&mut conn).await.map_err(map_err)?.get(0);
        if taken {
            return Err(other(format!(
                "the PostgreSQL database already holds data (table {table}): copy into an empty database"
            )));
        }
    }
    let mut copied: Copied = Vec::new();
    let mut tx = conn.begin().await.map_err(map_err)?;
    loop {
        let batch = match batches.recv().await {
            Some(Transfer::Rows(batch)) => batch,
            Some(Transfer::Done) => break,
            None => return Err(other("the reader stopped before the end: nothing was written".into())),
        };
        let table_types = types.get(&batch.table).ok_or_else(|| {
            other(format!("PostgreSQL has no table {}: are both databases of this build?", batch.table))
        })?;
        let column_types = batch
            .columns
            .iter()
            .map(|c| {
                table_types.get(c).map(String::as_str).ok_or_else(|| {
                    other(format!(
                        "PostgreSQL has no column {}.{c}: are both databases of this build?",
                        batch.table
                    ))
                })
            })
            .collect::<StoreResult<Vec<&str>>>()?;
        match copied.last_mut() {
            Some((table, n)) if *table == batch.table => *n += batch.rows.len() as u64,
            _ => copied.push((batch.table.clone(), batch.rows.len() as u64)),
        }
        let per_statement = (MAX_PARAMS / batch.columns.len().max(1)).max(1);
        for rows in batch.rows.chunks(per_statement) {
            let sql = insert_sql(&batch, &column_types, rows.len());
            let mut query = sqlx::query(&sql);
            for row in rows {
                for ((value, ty), column) in row.iter().zip(&column_types).zip(&batch.columns) {
                    query = bind(query, value, ty).ok_or_else(|| {
                        other(format!("cannot copy {value:?} into {}.{column} ({ty})", batch.table))
                    })?;
                }
            }
            query.execute(&mut *tx).await.map_err(map_err)?;
        }
    }
    for (table, expected) in &copied {
        let sql = format!("SELECT COUNT(*) FROM \"{table}\"");
        let found: i64 = sqlx::query(&sql).fetch_one(&mut *tx).await.map_err(map_err)?.get(0);
        if found as u64 != *expected {
            return Err(other(format!("{table}: {expected} rows read but {found} written")));
        }
    }
    tx.commit().await.map_err(map_err)?;
    let _ = conn.close().await;
    Ok(copied)
}

fn other(message: String) -> StoreError {
    StoreError::Other(message.into())
}

/// Each data table's columns and their types.
async fn column_types(conn: &mut PgConnection) -> StoreResult<HashMap<String, HashMap<String, String>>> {
    let rows = sqlx::query(
        "SELECT c.table_name::text, c.column_name::text, c.data_type::text FROM information_schema.columns c \
         JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
         WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' AND c.table_name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(map_err)?;
    let mut types: HashMap<String, HashMap<String, String>> = HashMap::new();
    for row in rows {
        let (table, column, ty): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        if !NOT_COPIED.contains(&table.as_str()) {
            types.entry(table).or_default().insert(column, ty);
        }
    }
    Ok(types)
}

fn insert_sql(batch: &Batch, types: &[&str], rows: usize) -> String {
    let columns: Vec<String> = batch.columns.iter().map(|c| format!("\"{c}\"")).collect();
    let mut sql = format!("INSERT INTO \"{}\" ({}) VALUES ", batch.table, columns.join(", "));
    let mut n = 0;
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        let params: Vec<String> = types
            .iter()
            .map(|ty| {
                n += 1;
                format!("${n}::{ty}")
            })
            .collect();
        sql.push('(');
        sql.push_str(&params.join(", "));
        sql.push(')');
    }
    sql
}

/// Binds a SQLite value as the PostgreSQL column's type; `None` when it cannot be.
fn bind<'q>(
    query: Query<'q, Postgres, PgArguments>,
    value: &Value,
    ty: &str,
) -> Option<Query<'q, Postgres, PgArguments>> {
    Some(match (ty, value) {
        ("boolean", Value::Int(i)) => query.bind(Some(*i != 0)),
        ("boolean", Value::Null) => query.bind(None::<bool>),
        ("bigint" | "integer" | "smallint", Value::Int(i)) => query.bind(Some(*i)),
        ("bigint" | "integer" | "smallint", Value::Null) => query.bind(None::<i64>),
        ("double precision" | "real", Value::Real(r)) => query.bind(Some(*r)),
        ("double precision" | "real", Value::Int(i)) => query.bind(Some(*i as f64)),
        ("double precision" | "real", Value::Null) => query.bind(None::<f64>),
        ("bytea", Value::Blob(b)) => query.bind(Some(b.clone())),
        ("bytea", Value::Null) => query.bind(None::<Vec<u8>>),
        ("text" | "character varying" | "jsonb" | "json", Value::Text(t)) => query.bind(Some(t.clone())),
        ("text" | "character varying" | "jsonb" | "json", Value::Int(i)) => query.bind(Some(i.to_string())),
        ("text" | "character varying" | "jsonb" | "json", Value::Null) => query.bind(None::<String>),
        _ => return None,
    })
}
