//! Moving a whole database from one engine to another (`latchkey migrate-data`): rows travel
//! as plain values, a table at a time, in batches, so that neither side holds a whole table.

/// A column's value as SQLite keeps it; the importing engine converts it to its column's type.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// Some rows of one table, with the names of their columns in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub table: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

/// What travels from the reader to the writer: rows, then `Done` once the reader has read
/// everything. A writer that does not hear `Done` writes nothing.
#[derive(Debug, Clone, PartialEq)]
pub enum Transfer {
    Rows(Batch),
    Done,
}

/// Tables that belong to a running instance rather than to the data (who holds the maintenance
/// lease): not copied.
pub const NOT_COPIED: &[&str] = &["leases"];

/// How many rows of each table were copied.
pub type Copied = Vec<(String, u64)>;
