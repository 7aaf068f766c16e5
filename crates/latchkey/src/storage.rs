//! Choosing the store from the database URL: the one place that knows both engines.

use crate::Config;
use anyhow::{Context, bail};
use latchkey_postgres::{PostgresOptions, PostgresStore};
use latchkey_sqlite::{SqliteOptions, SqliteStore, Synchronous};
use latchkey_store::Store;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub enum Database {
    Sqlite(PathBuf),
    Postgres(String),
}

/// Copies the database of `url` to the new file `to` while a server may be writing to it;
/// answers the file copied. SQLite only: PostgreSQL has its own tools.
pub fn backup(url: &str, to: &std::path::Path) -> anyhow::Result<PathBuf> {
    match Database::from_url(url)? {
        Database::Sqlite(from) => {
            latchkey_sqlite::backup(&from, to)
                .with_context(|| format!("cannot back up {} to {}", from.display(), to.display()))?;
            Ok(from)
        }
        Database::Postgres(_) => {
            bail!("back up PostgreSQL with its own tools (pg_dump, or the server's backups)")
        }
    }
}

impl Database {
    pub fn from_url(url: &str) -> anyhow::Result<Self> {
        if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            let path = path.split('?').next().unwrap_or(path);
            if path.is_empty() {
                bail!("the SQLite URL names no file (sqlite://PATH)");
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_owned()));
        }
        bail!("the database URL must start with sqlite:// or postgres://")
    }

    /// Opens the store and applies pending migrations.
    pub async fn open(&self, config: &Config) -> anyhow::Result<Arc<dyn Store>> {
        match self {
            Self::Sqlite(path) => {
                let synchronous = match config.sqlite_synchronous.as_str() {
                    "normal" => Synchronous::Normal,
                    "full" => Synchronous::Full,
                    other => bail!("sqlite_synchronous must be normal or full, not {other:?}"),
                };
                let options = SqliteOptions { synchronous, ..SqliteOptions::default() };
                let store = SqliteStore::open(path, &options)
                    .await
                    .with_context(|| format!("cannot open the SQLite database {}", path.display()))?;
                Ok(Arc::new(store))
            }
            Self::Postgres(url) => {
                let timeout = config.database_statement_timeout_ms;
                let options = PostgresOptions {
                    max_connections: config.database_max_connections.max(1),
                    statement_timeout: (timeout > 0).then(|| Duration::from_millis(timeout)),
                    ..PostgresOptions::default()
                };
                let store =
                    PostgresStore::connect(url, &options).await.context("cannot connect to PostgreSQL")?;
                store.migrate().await.context("cannot migrate the PostgreSQL database")?;
                Ok(Arc::new(store))
            }
        }
    }
}

/// Copies the SQLite database of the configuration into the empty PostgreSQL database of `to`
/// (migrated first to this build's schema), in one transaction; the rows copied per table.
pub async fn migrate_data(config: &Config, to: &str) -> anyhow::Result<latchkey_store::transfer::Copied> {
    let Database::Sqlite(from) = Database::from_url(&config.database_url)? else {
        bail!(
            "migrate-data copies a SQLite database to PostgreSQL, and the configured database is not SQLite"
        );
    };
    if !from.exists() {
        bail!("{} does not exist", from.display());
    }
    let target = Database::from_url(to)?;
    let Database::Postgres(url) = &target else { bail!("--to takes a postgres:// URL") };
    drop(target.open(config).await?);
    let (send, receive) = tokio::sync::mpsc::channel(4);
    let reader = tokio::task::spawn_blocking(move || {
        latchkey_sqlite::export(&from, 5_000, |transfer| send.blocking_send(transfer).is_ok())
    });
    let copied = latchkey_postgres::import(url, receive).await;
    reader.await.context("the reader stopped")?.context("cannot read the SQLite database")?;
    copied.context("cannot copy into PostgreSQL")
}
