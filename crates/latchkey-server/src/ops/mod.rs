//! Operations: liveness, readiness and metrics.

pub mod metrics;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use latchkey_service::{RETRY_AFTER_UNAVAILABLE, Service};
use serde_json::json;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Service>> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).merge(metrics::routes())
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(service): State<Arc<Service>>) -> Response {
    if service.ready().await {
        Json(json!({ "ready": true })).into_response()
    } else {
        let mut response = (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "error": "database_unavailable" })),
        )
            .into_response();
        let wait = HeaderValue::from(RETRY_AFTER_UNAVAILABLE.whole_seconds());
        response.headers_mut().insert(header::RETRY_AFTER, wait);
        response
    }
}
