//! `/readyz`: an instance that should get no traffic says so, and why: the database does not
//! answer (see `multi_instance`), it lacks migrations of this build, or its outbox worker is not
//! running.

use crate::helpers::{Backend, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;

async fn readyz(app: &TestApp) -> (StatusCode, Value, bool) {
    let res = app.http.get(app.url("/readyz")).send().await.unwrap();
    let status = res.status();
    let retry_after = res.headers().contains_key("retry-after");
    (status, res.json().await.unwrap(), retry_after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_while_migrations_are_pending_or_the_outbox_worker_is_stopped() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    assert_eq!(readyz(&app).await, (StatusCode::OK, json!({ "ready": true }), false));

    // The database falls one migration behind this build (as when an older schema is restored).
    let path = app.config.database_url.trim_start_matches("sqlite://").to_owned();
    let db = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = db.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    db.execute_batch(&format!("PRAGMA user_version = {}", version - 1)).unwrap();
    let (status, body, retry_after) = readyz(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, json!({ "ready": false, "error": "migrations_pending", "pending_migrations": 1 }));
    assert!(retry_after);
    db.execute_batch(&format!("PRAGMA user_version = {version}")).unwrap();
    assert_eq!(readyz(&app).await.0, StatusCode::OK);

    // The outbox worker ends (its task's end clears this flag; here the flag itself).
    let worker = app.server.as_ref().unwrap().service.outbox_worker_flag();
    worker.store(false, Ordering::Relaxed);
    let (status, body, retry_after) = readyz(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, json!({ "ready": false, "error": "outbox_worker_stopped" }));
    assert!(retry_after);
    worker.store(true, Ordering::Relaxed);
    assert_eq!(readyz(&app).await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_says_so_in_its_readiness() {
    let mut app = TestApp::spawn(Backend::Sqlite).await;
    let flag = app.server.as_ref().unwrap().service.outbox_worker_flag();
    assert!(flag.load(Ordering::Relaxed), "a running server's worker runs");
    app.server.take().unwrap().shutdown().await;
    assert!(!flag.load(Ordering::Relaxed), "once its worker has ended, the flag says so");
}
