//! Operations: liveness, readiness and metrics.

pub mod metrics;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use latchkey_service::{RETRY_AFTER_UNAVAILABLE, Readiness, Service};
use serde_json::json;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Service>> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).merge(metrics::routes())
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(service): State<Arc<Service>>) -> Response {
    let why = match service.readiness().await {
        Readiness::Ready => return Json(json!({ "ready": true })).into_response(),
        Readiness::DatabaseUnavailable => json!({ "ready": false, "error": "database_unavailable" }),
        Readiness::MigrationsPending(n) => {
            json!({ "ready": false, "error": "migrations_pending", "pending_migrations": n })
        }
        Readiness::OutboxWorkerStopped => json!({ "ready": false, "error": "outbox_worker_stopped" }),
    };
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(why)).into_response();
    let wait = HeaderValue::from(RETRY_AFTER_UNAVAILABLE.whole_seconds());
    response.headers_mut().insert(header::RETRY_AFTER, wait);
    response
}
