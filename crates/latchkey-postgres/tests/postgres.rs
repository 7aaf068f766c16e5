//! What only shows on PostgreSQL: several instances (here, several pools) on one database,
//! and the mapping of server errors. Skipped, but for the first, without
//! `LATCHKEY_TEST_DATABASE_URL`.

use latchkey_core::challenge::NewAuthorizationCode;
use latchkey_core::id::OutboxId;
use latchkey_core::secret::HashPurpose;
use latchkey_postgres::testing::TestDatabase;
use latchkey_postgres::{PostgresOptions, PostgresStore};
use latchkey_store::conformance::{application, challenge, key, t0};
use latchkey_store::{ConsumeOutcome, NewOutboxMessage, Store, StoreError, StoredSigningKey};
use sqlx::{Connection, Executor, PgConnection};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

async fn instances(db: &TestDatabase, n: usize, options: &PostgresOptions) -> Vec<Arc<PostgresStore>> {
    let mut stores = Vec::new();
    for _ in 0..n {
        stores.push(Arc::new(PostgresStore::connect(&db.url, options).await.expect("connect")));
    }
    stores
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    let options = PostgresOptions { acquire_timeout: Duration::from_secs(2), ..Default::default() };
    let err = PostgresStore::connect("postgres://postgres@127.0.0.1:1/none", &options).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_migrate_together() {
    let Some(db) = TestDatabase::from_env().await else { return };
    let stores = instances(&db, 4, &PostgresOptions::default()).await;
    let mut tasks = JoinSet::new();
    for store in &stores {
        let store = store.clone();
        tasks.spawn(async move { store.migrate().await });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap().expect("every instance migrates");
    }
    stores[0].migrate().await.expect("migrating again does nothing");
    stores[0].ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_new_address_signing_in_twice_at_once_gets_one_user() {
    let Some(db) = TestDatabase::from_env().await else { return };
    let stores = instances(&db, 2, &PostgresOptions::default()).await;
    stores[0].migrate().await.unwrap();
    let app = application("Twice");
    stores[0].insert_application(&app, None).await.unwrap();
    for round in 0..20 {
        let email = format!("new{round}@example.com");
        let mut tasks = JoinSet::new();
        for store in &stores {
            let (c, token) = challenge(&app, &email, t0());
            store.insert_challenge(&c, None).await.unwrap();
            let (store, app) = (store.clone(), app.clone());
            tasks.spawn(async move {
                let code = NewAuthorizationCode::generate(&app, &key(), t0());
                store.consume_link(&key().hash(HashPurpose::LinkToken, &token), &code, t0()).await
            });
        }
        let mut users = HashSet::new();
        while let Some(done) = tasks.join_next().await {
            match done.unwrap() {
                Ok(ConsumeOutcome::Consumed { user, .. }) => users.insert(user.id),
                other => panic!("both challenges consume: {other:?}"),
            };
        }
        assert_eq!(users.len(), 1, "one user for one address");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_drain_the_outbox_without_sharing_a_message() {
    let Some(db) = TestDatabase::from_env().await else { return };
    let stores = instances(&db, 4, &PostgresOptions::default()).await;
    stores[0].migrate().await.unwrap();
    let app = application("Drain");
    stores[0].insert_application(&app, None).await.unwrap();
    let mut queued = HashSet::new();
    for i in 0..200 {
        let (c, _) = challenge(&app, &format!("d{i}@example.com"), t0());
        let mail = NewOutboxMessage {
            id: OutboxId::generate(),
            app_id: Some(app.id.clone()),
            challenge_id: Some(c.id.clone()),
            sealed: vec![1],
            created_at: t0(),
        };
        queued.insert(mail.id.clone());
        stores[0].insert_challenge(&c, Some(&mail)).await.unwrap();
    }

    let lease = t0() + time::Duration::minutes(5);
    let mut workers = JoinSet::new();
    for store in stores.iter().chain(stores.iter()) {
        let store = store.clone();
        workers.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = store.claim_outbox(t0(), lease, 7).await.expect("claim");
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch.into_iter().map(|m| m.id));
            }
        });
    }
    let mut claimed = Vec::new();
    while let Some(done) = workers.join_next().await {
        claimed.extend(done.unwrap());
    }
    let distinct: HashSet<_> = claimed.iter().cloned().collect();
    assert_eq!(distinct.len(), claimed.len(), "a message was handed to two workers");
    assert_eq!(distinct, queued);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_classified() {
    let Some(db) = TestDatabase::from_env().await else { return };
    let options =
        PostgresOptions { statement_timeout: Some(Duration::from_millis(200)), ..Default::default() };
    let store = PostgresStore::connect(&db.url, &options).await.unwrap();
    store.migrate().await.unwrap();

    let signing_key = StoredSigningKey {
        kid: "k1".into(),
        alg: latchkey_core::signing::SigningAlg::ES256,
        sealed_pkcs8: vec![1],
        created_at: t0(),
        retired_at: None,
    };
    store.insert_signing_key(&signing_key).await.unwrap();
    let err = store.insert_signing_key(&signing_key).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    // A statement stuck behind another session's lock is cancelled by the statement timeout.
    let app = application("Slow");
    store.insert_application(&app, None).await.unwrap();
    let mut other = PgConnection::connect(&db.url).await.unwrap();
    other.execute("BEGIN").await.unwrap();
    other.execute("LOCK TABLE applications IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let err = store.application(&app.id).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    other.execute("ROLLBACK").await.unwrap();
    assert!(store.application(&app.id).await.unwrap().is_some());

    // The migrator runs without the statement timeout, so it waits for locks instead of failing.
    store.close().await;
    let store = PostgresStore::connect(&db.url, &options).await.unwrap();
    other.execute("BEGIN").await.unwrap();
    other.execute("LOCK TABLE _sqlx_migrations IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let migrating = tokio::spawn({
        let store = store.clone();
        async move { store.migrate().await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    other.execute("ROLLBACK").await.unwrap();
    migrating.await.unwrap().expect("migrate waits past the statement timeout");
    store.close().await;
}
