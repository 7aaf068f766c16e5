//! The conformance suite against a fresh database per test, on the server named by
//! `LATCHKEY_TEST_DATABASE_URL`; every test is skipped when it is not set.
//!
//! `latchkey_store::conformance_tests!` cannot skip, so the cases are listed here: keep them
//! in step with that macro.

use latchkey_postgres::testing::TestDatabase;
use latchkey_postgres::{PostgresOptions, PostgresStore};
use latchkey_store::Store;
use std::sync::Arc;

async fn fresh() -> Option<(Arc<PostgresStore>, TestDatabase)> {
    let db = TestDatabase::from_env().await?;
    let store = PostgresStore::connect(&db.url, &PostgresOptions::default()).await.expect("connect");
    store.migrate().await.expect("migrate");
    Some((Arc::new(store), db))
}

macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some((store, db)) = fresh().await else { return };
                latchkey_store::conformance::$case(store.clone()).await;
                store.close().await;
                drop(db);
            }
        )*
    };
}

cases!(
    applications_round_trip,
    secrets_find_their_application,
    challenge_is_written_with_its_mail,
    link_consumes_once_and_creates_a_verified_user,
    unusable_links_say_why,
    concurrent_link_consumption_has_one_winner,
    authorization_code_redeems_once_for_its_own_application,
    concurrent_code_redemption_has_one_winner,
    outbox_leases_retries_and_settles,
    signing_keys_round_trip,
    deleting_an_application_removes_what_it_owns,
);
