//! The conformance suite against a fresh database per test, on the server named by
//! `LATCHKEY_TEST_DATABASE_URL`. Every case is ignored by a plain `cargo test`; run with
//! `--include-ignored`, a case fails when the variable is not set.

use latchkey_postgres::testing::TestDatabase;
use latchkey_postgres::{PostgresOptions, PostgresStore};
use latchkey_store::Store;
use latchkey_store::conformance::TestStore;
use std::sync::Arc;

/// Closes the pool before the database is dropped.
struct Guard(Arc<PostgresStore>, Option<TestDatabase>);

impl Drop for Guard {
    fn drop(&mut self) {
        let store = self.0.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            if let Ok(runtime) = runtime {
                runtime.block_on(store.close());
            }
        })
        .join();
        drop(self.1.take());
    }
}

async fn fresh() -> TestStore {
    let db = TestDatabase::from_env().await;
    let store =
        Arc::new(PostgresStore::connect(&db.url, &PostgresOptions::default()).await.expect("connect"));
    store.migrate().await.expect("migrate");
    TestStore { store: store.clone(), guard: Box::new(Guard(store, Some(db))) }
}

latchkey_store::conformance_tests!(fresh, #[ignore = "needs LATCHKEY_TEST_DATABASE_URL (PostgreSQL)"]);
