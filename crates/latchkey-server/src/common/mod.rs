//! What every face shares: body parsing, credentials from headers, fields every face parses
//! alike, the page shell, times, and
//! the middleware around every request (request ids, spans, logging internal causes once).

pub mod body;
pub mod credentials;
pub mod fields;
pub mod html;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use latchkey_core::id::RequestId;
use latchkey_service::{RETRY_AFTER_UNAVAILABLE, ServiceError, retry_after_secs};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId as TowerRequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

/// RFC 3339 in UTC to the second, as every face writes times.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0).unwrap_or(t).format(&Rfc3339).unwrap_or_default()
}

/// Why a request failed on our side, attached to its response by a face's error mapping and
/// logged once by [`log_causes`]; never sent.
#[derive(Debug, Clone)]
pub struct Cause {
    /// `true`: a fault of ours; `false`: the database was unavailable.
    pub internal: bool,
    pub text: String,
}

impl Cause {
    /// The cause behind a service error, when there is one to log.
    pub fn of(e: &ServiceError) -> Option<Self> {
        match e {
            ServiceError::Internal(cause) => {
                let source =
                    std::error::Error::source(&**cause).map(|s| format!(": {s}")).unwrap_or_default();
                Some(Self { internal: true, text: format!("{cause}{source}") })
            }
            ServiceError::Unavailable(cause) => Some(Self { internal: false, text: format!("{cause:?}") }),
            ServiceError::Refused(_) => None,
        }
    }

    /// Attaches the cause of `e`, if any, to `response`.
    pub fn attach(e: &ServiceError, response: &mut Response) {
        if let Some(cause) = Self::of(e) {
            response.extensions_mut().insert(cause);
        }
    }
}

async fn log_causes(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    if let Some(cause) = response.extensions().get::<Cause>() {
        if cause.internal {
            tracing::error!(error = %cause.text, "internal error");
            metrics::counter!("latchkey_internal_errors_total").increment(1);
        } else {
            tracing::warn!(error = %cause.text, "database unavailable");
            metrics::counter!("latchkey_database_unavailable_total").increment(1);
        }
    }
    response
}

/// Counts and times every request by its matched route (never its path: paths carry tokens).
async fn record_request(req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = method_label(req.method());
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let route = route.unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(req).await;
    let class = match response.status().as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    metrics::counter!("latchkey_http_requests_total", "method" => method, "route" => route.clone(), "status" => class)
        .increment(1);
    metrics::histogram!("latchkey_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// A bounded label: the methods the server answers, and `other`.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// `Retry-After` for a refusal to wait (seconds, rounded up) or an unavailable database.
pub fn retry_after(e: &ServiceError) -> Option<HeaderValue> {
    match e {
        ServiceError::Refused(latchkey_service::Refusal::RateLimited { retry_after }) => {
            Some(HeaderValue::from(retry_after_secs(*retry_after)))
        }
        ServiceError::Unavailable(_) => Some(HeaderValue::from(RETRY_AFTER_UNAVAILABLE.whole_seconds())),
        _ => None,
    }
}

/// The conversions every face's error type has, into its `Service` and `Body` variants: a
/// service error, a refusal, a body that could not be read.
#[macro_export]
macro_rules! face_error_conversions {
    ($error:ty) => {
        impl From<latchkey_service::ServiceError> for $error {
            fn from(e: latchkey_service::ServiceError) -> Self {
                Self::Service(e)
            }
        }

        impl From<latchkey_service::Refusal> for $error {
            fn from(r: latchkey_service::Refusal) -> Self {
                Self::Service(r.into())
            }
        }

        impl From<$crate::common::body::BodyError> for $error {
            fn from(e: $crate::common::body::BodyError) -> Self {
                Self::Body(e)
            }
        }
    };
}

/// An error answer as every face sends one: its body with its status, `WWW-Authenticate` on a
/// 401 (with the face's challenge), `Retry-After` when the service says to wait, and the
/// service's internal cause attached for [`log_causes`].
pub fn error_response(
    status: axum::http::StatusCode,
    body: impl serde::Serialize,
    service: Option<&ServiceError>,
    challenge: Option<&'static str>,
) -> Response {
    use axum::response::IntoResponse;
    let mut response = (status, axum::Json(body)).into_response();
    if let (axum::http::StatusCode::UNAUTHORIZED, Some(challenge)) = (status, challenge) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    }
    if let Some(e) = service {
        add_retry_after(e, &mut response);
        Cause::attach(e, &mut response);
    }
    response
}

/// Sets `Retry-After` on `response` when `e` calls for one.
pub fn add_retry_after(e: &ServiceError, response: &mut Response) {
    if let Some(v) = retry_after(e) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
}

/// The key set that signs every token of this server: public keys only, so cacheable.
pub fn key_set(service: &latchkey_service::Service) -> Response {
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
        (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300")),
    ];
    (headers, service.keys().jwks().to_string()).into_response()
}

/// Marks a response that carries a secret (a token, a link, a code) as never to be stored.
pub fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Every answer that does not say how to cache itself is never stored (API answers carry links,
/// codes, secrets and tokens), and JSON is never sniffed as anything else.
async fn api_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    let json = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("json"));
    if json {
        h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    }
    response
}

#[derive(Clone, Copy)]
struct MakeId;

impl MakeRequestId for MakeId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<TowerRequestId> {
        let id = RequestId::generate(OffsetDateTime::now_utc());
        HeaderValue::from_str(id.as_str()).ok().map(TowerRequestId::new)
    }
}

/// The middleware of every face. Spans name the matched route, never the URI: paths and query
/// strings carry link tokens and codes.
pub fn layers(router: Router) -> Router {
    let trace = TraceLayer::new_for_http().make_span_with(|req: &Request| {
        let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
        let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default();
        tracing::info_span!("request", method = %req.method(), route = route.as_deref().unwrap_or("unmatched"), request_id = %id)
    });
    router
        .layer(axum::middleware::from_fn(api_headers))
        .layer(axum::middleware::from_fn(log_causes))
        .layer(axum::middleware::from_fn(record_request))
        .layer(trace)
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeId))
}
