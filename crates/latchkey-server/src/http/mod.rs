//! The HTTP adapters and the middleware every request goes through.

mod admin;
mod dev;
pub mod error;
pub mod extract;
mod native;

/// The JSON shapes of applications, for the command line's `--json` output.
pub mod native_json {
    pub use super::native::{
        application_json as application, created_application_json as created_application,
    };
}
mod oauth;
mod ops;
pub mod pages;
mod registrations;
mod templates;

use crate::service::Service;
use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::response::IntoResponse;
use error::{ApiError, Native};
use latchkey_core::id::RequestId;
use std::sync::Arc;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId as TowerRequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0).unwrap_or(t).format(&Rfc3339).unwrap_or_default()
}

#[derive(Clone, Copy)]
struct MakeId;

impl MakeRequestId for MakeId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<TowerRequestId> {
        HeaderValue::from_str(RequestId::generate().as_str()).ok().map(TowerRequestId::new)
    }
}

/// The whole router. Spans name the matched route, never the URI: paths and query strings
/// carry link tokens and codes.
pub fn router(service: Arc<Service>) -> Router {
    let trace = TraceLayer::new_for_http().make_span_with(|req: &Request| {
        let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
        let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default();
        tracing::info_span!("request", method = %req.method(), route = route.as_deref().unwrap_or("unmatched"), request_id = %id)
    });
    Router::new()
        .merge(native::routes())
        .merge(admin::routes())
        .merge(registrations::routes())
        .merge(templates::routes())
        .merge(oauth::routes())
        .merge(pages::routes())
        .merge(dev::routes())
        .merge(ops::routes())
        .fallback(|| async { Native(ApiError::NotFound).into_response() })
        .with_state(service)
        .layer(trace)
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeId))
}
