use latchkey_sqlite::{SqliteOptions, SqliteStore};
use latchkey_store::conformance::TestStore;
use std::sync::Arc;

async fn fresh() -> TestStore {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open(&dir.path().join("test.db"), &SqliteOptions::default())
        .await
        .expect("open SQLite store");
    TestStore { store: Arc::new(store), guard: Box::new(dir) }
}

latchkey_store::conformance_tests!(fresh);
