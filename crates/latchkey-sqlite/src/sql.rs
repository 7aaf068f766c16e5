//! Running a cached statement and decoding its rows with `latchkey_store::rows`.

use crate::error::map_err;
use latchkey_store::StoreError;
use latchkey_store::StoreResult;
use latchkey_store::rows::RowReader;
use rusqlite::types::FromSql;
use rusqlite::{Connection, Params, Row, Statement};

pub(crate) type Decode<T> = fn(&dyn RowReader) -> StoreResult<T>;

/// A row and its statement's column names, read once per statement: rusqlite's lookup by
/// name asks SQLite for every column's name on every call.
pub(crate) struct R<'a, 'stmt> {
    row: &'a Row<'stmt>,
    names: &'a [String],
}

impl<'a, 'stmt> R<'a, 'stmt> {
    pub(crate) fn new(row: &'a Row<'stmt>, names: &'a [String]) -> Self {
        Self { row, names }
    }

    fn get<T: FromSql>(&self, col: &str) -> Result<Option<T>, StoreError> {
        let Some(idx) = self.names.iter().position(|name| name == col) else {
            return Err(map_err(rusqlite::Error::InvalidColumnName(col.to_owned())));
        };
        self.row.get(idx).map_err(map_err)
    }
}

pub(crate) fn column_names(stmt: &Statement<'_>) -> Vec<String> {
    stmt.column_names().into_iter().map(str::to_owned).collect()
}

impl RowReader for R<'_, '_> {
    fn text(&self, col: &str) -> Result<Option<String>, StoreError> {
        self.get(col)
    }
    fn int(&self, col: &str) -> Result<Option<i64>, StoreError> {
        self.get(col)
    }
    fn bytes(&self, col: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(col)
    }
    fn boolean(&self, col: &str) -> Result<Option<bool>, StoreError> {
        self.get(col)
    }
}

/// The first row, decoded.
pub(crate) fn one<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    decode: Decode<T>,
) -> StoreResult<Option<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(map_err)?;
    let names = column_names(&stmt);
    let mut rows = stmt.query(params).map_err(map_err)?;
    match rows.next().map_err(map_err)? {
        Some(row) => decode(&R::new(row, &names)).map(Some),
        None => Ok(None),
    }
}

/// Every row, decoded.
pub(crate) fn all<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    decode: Decode<T>,
) -> StoreResult<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(map_err)?;
    let names = column_names(&stmt);
    let mut rows = stmt.query(params).map_err(map_err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(map_err)? {
        out.push(decode(&R::new(row, &names))?);
    }
    Ok(out)
}

/// The first column of every row.
pub(crate) fn column<T: FromSql>(conn: &Connection, sql: &str, params: impl Params) -> StoreResult<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(map_err)?;
    let values = stmt.query_map(params, |row| row.get(0)).map_err(map_err)?;
    values.collect::<Result<_, _>>().map_err(map_err)
}

/// Runs a statement that returns no rows; the rows it changed.
pub(crate) fn exec(conn: &Connection, sql: &str, params: impl Params) -> StoreResult<usize> {
    conn.prepare_cached(sql).map_err(map_err)?.execute(params).map_err(map_err)
}
