//! `GET /metrics`: the Prometheus text format, rendered by the `metrics` exporter from what every
//! layer records (the use cases, the outbox worker, the HTTP middleware in `common`). Served
//! behind the admin token, or without it on a listener of its own (`LATCHKEY_METRICS_LISTEN`).

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use latchkey_service::{Refusal, Service, ServiceError};
use metrics::{describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::{Arc, OnceLock};

/// Latency buckets, in seconds, for every `_seconds` histogram.
const BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// The process's one recorder: installed on first use (a server installs it as it starts, so
/// that nothing recorded before the first scrape is lost).
pub fn install() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(BUCKETS)
            .map(PrometheusBuilder::build_recorder)
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("metrics: another recorder is installed; /metrics shows only what it renders");
        }
        describe();
        gauge!("latchkey_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        handle.clone()
    })
}

/// `GET /metrics` behind the admin token.
pub fn routes() -> Router<Arc<Service>> {
    Router::new().route("/metrics", get(admin_metrics))
}

/// `GET /metrics` with no authentication, for a listener of its own.
pub fn listener_routes() -> Router<Arc<Service>> {
    Router::new().route("/metrics", get(render))
}

async fn admin_metrics(State(service): State<Arc<Service>>, headers: axum::http::HeaderMap) -> Response {
    match service.authenticate_admin(crate::common::credentials::bearer(&headers)) {
        Ok(()) => render(State(service)).await,
        Err(ServiceError::Refused(Refusal::AdminDisabled)) => refuse(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "the admin API is off: set an admin token, or use LATCHKEY_METRICS_LISTEN",
        ),
        Err(_) => refuse(StatusCode::UNAUTHORIZED, "unauthenticated", "the admin token is missing or wrong"),
    }
}

fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "error": code, "message": message });
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"latchkey\""));
    }
    response
}

/// What is read at scrape time rather than counted: the mail queue and the database.
async fn render(State(service): State<Arc<Service>>) -> Response {
    let handle = install();
    match service.outbox_backlog().await {
        Ok(backlog) => {
            gauge!("latchkey_database_up").set(1.0);
            gauge!("latchkey_mail_queue_depth").set(backlog.queued as f64);
            let age = backlog.oldest_queued_at.map(|at| (service.now() - at).as_seconds_f64().max(0.0));
            gauge!("latchkey_mail_queue_oldest_age_seconds").set(age.unwrap_or(0.0));
        }
        Err(_) => gauge!("latchkey_database_up").set(0.0),
    }
    let text_format = HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");
    ([(header::CONTENT_TYPE, text_format)], handle.render()).into_response()
}

/// Every metric, with what it means (shown as `# HELP`).
fn describe() {
    describe_counter!(
        "latchkey_http_requests_total",
        "HTTP requests answered, by method, matched route and status class"
    );
    describe_histogram!(
        "latchkey_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time to answer an HTTP request, by method and matched route"
    );
    describe_counter!(
        "latchkey_challenges_created_total",
        "Challenges created (sign-in, registration, verification), by purpose and application"
    );
    describe_counter!(
        "latchkey_challenges_consumed_total",
        "Challenges used up, by purpose, application and method (link, code, token)"
    );
    describe_counter!(
        "latchkey_challenges_expired_total",
        "Challenges presented after they had expired, by purpose and application"
    );
    describe_counter!(
        "latchkey_challenges_revoked_total",
        "Challenges revoked by their application, by purpose and application"
    );
    describe_counter!(
        "latchkey_link_views_total",
        "Requests for a link's landing page and presses of its button, by method and class (likely_scanner or unclassified, from the signs a request shows on arrival)"
    );
    describe_counter!(
        "latchkey_link_views_dropped_total",
        "Landing-page views not recorded because the recording queue was full"
    );
    describe_counter!("latchkey_otp_failures_total", "Wrong one-time codes, by application");
    describe_counter!(
        "latchkey_otp_burned_total",
        "Challenges burned by their last wrong one-time code, by application"
    );
    describe_counter!("latchkey_tokens_issued_total", "Token sets issued, by grant");
    describe_counter!(
        "latchkey_refresh_token_reuse_total",
        "Refresh tokens presented after rotation (their family is revoked)"
    );
    describe_counter!(
        "latchkey_rate_limited_total",
        "Requests refused by a rate limit, by kind (email, ip, application)"
    );
    describe_counter!(
        "latchkey_mail_deliveries_total",
        "Delivery attempts, by outcome (sent, retried, failed)"
    );
    describe_histogram!(
        "latchkey_mail_delivery_seconds",
        metrics::Unit::Seconds,
        "Time from queueing an e-mail to the SMTP server accepting it"
    );
    describe_gauge!("latchkey_mail_queue_depth", "E-mails waiting to be delivered");
    describe_gauge!(
        "latchkey_mail_queue_oldest_age_seconds",
        "Age of the oldest e-mail waiting to be delivered (0 when none)"
    );
    describe_gauge!("latchkey_database_up", "Whether the database answered the last scrape (1) or not (0)");
    describe_counter!(
        "latchkey_database_unavailable_total",
        "Requests answered 503 because the database was unavailable"
    );
    describe_counter!("latchkey_internal_errors_total", "Requests answered 500 (the cause is in the log)");
    describe_gauge!("latchkey_build_info", "Always 1; the version is a label");
}
