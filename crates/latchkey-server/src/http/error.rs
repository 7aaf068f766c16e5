//! How failures look on the wire: the native shape `{"error", "message"}` and the OAuth 2.0
//! shape `{"error", "error_description"}`. Internal causes are logged here and never returned.

use crate::service::ServiceError;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Seconds a client should wait before retrying when the database is unavailable.
const RETRY_AFTER_UNAVAILABLE: &str = "5";

#[derive(Debug)]
pub enum ApiError {
    Service(ServiceError),
    /// The body could not be parsed.
    Malformed(String),
    TooLarge,
    UnsupportedMediaType,
    NotFound,
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        Self::Service(e)
    }
}

fn log_internal(e: &ServiceError) {
    match e {
        ServiceError::Internal(cause) => {
            tracing::error!(error = %cause, source = ?cause.source(), "internal error")
        }
        ServiceError::Unavailable(cause) => tracing::warn!(error = ?cause, "database unavailable"),
        _ => {}
    }
}

/// The native API's error response.
#[derive(Debug)]
pub struct Native(pub ApiError);

impl<E: Into<ApiError>> From<E> for Native {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for Native {
    fn into_response(self) -> Response {
        let (status, code, message, field) = match &self.0 {
            ApiError::Malformed(m) => (StatusCode::BAD_REQUEST, "malformed_request", m.clone(), None),
            ApiError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is too large".into(),
                None,
            ),
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send JSON or a form-encoded body".into(),
                None,
            ),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found", "no such endpoint".into(), None),
            ApiError::Service(e) => {
                log_internal(e);
                let message = e.to_string();
                match e {
                    ServiceError::InvalidField { field, .. } => {
                        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message, Some(*field))
                    }
                    ServiceError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, *code, message, None),
                    ServiceError::Unauthenticated => {
                        (StatusCode::UNAUTHORIZED, "unauthenticated", message, None)
                    }
                    ServiceError::AdminDisabled => (StatusCode::FORBIDDEN, "admin_disabled", message, None),
                    ServiceError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", message, None),
                    ServiceError::Forbidden { code, .. } => (StatusCode::FORBIDDEN, *code, message, None),
                    ServiceError::Gone { code, .. } => (StatusCode::GONE, *code, message, None),
                    ServiceError::Conflict { code, .. } => (StatusCode::CONFLICT, *code, message, None),
                    ServiceError::InvalidClient(_) => {
                        (StatusCode::UNAUTHORIZED, "invalid_client", message, None)
                    }
                    ServiceError::InvalidGrant(_) => {
                        (StatusCode::BAD_REQUEST, "invalid_grant", message, None)
                    }
                    ServiceError::InvalidRequest(_) => {
                        (StatusCode::BAD_REQUEST, "invalid_request", message, None)
                    }
                    ServiceError::UnsupportedGrantType(_) => {
                        (StatusCode::BAD_REQUEST, "unsupported_grant_type", message, None)
                    }
                    ServiceError::UnauthorizedClient(_) => {
                        (StatusCode::BAD_REQUEST, "unauthorized_client", message, None)
                    }
                    ServiceError::RateLimited { .. } => {
                        (StatusCode::TOO_MANY_REQUESTS, "rate_limited", message, None)
                    }
                    ServiceError::InvalidToken => (StatusCode::UNAUTHORIZED, "invalid_token", message, None),
                    ServiceError::Unavailable(_) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "service_unavailable",
                        "the service is temporarily unavailable; retry shortly".into(),
                        None,
                    ),
                    ServiceError::Internal(_) => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal_error",
                        "something went wrong on our side".into(),
                        None,
                    ),
                }
            }
        };
        let mut body = json!({ "error": code, "message": message });
        if let Some(field) = field {
            body["field"] = field.into();
        }
        let mut response = with_headers(status, Json(body).into_response());
        add_retry_after(&self.0, &mut response);
        response
    }
}

/// The OAuth 2.0 token endpoint's error response (RFC 6749 §5.2).
#[derive(Debug)]
pub struct OAuth(pub ApiError);

impl<E: Into<ApiError>> From<E> for OAuth {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for OAuth {
    fn into_response(self) -> Response {
        let (status, code, description) = match &self.0 {
            ApiError::Malformed(m) => (StatusCode::BAD_REQUEST, "invalid_request", m.clone()),
            ApiError::TooLarge => {
                (StatusCode::PAYLOAD_TOO_LARGE, "invalid_request", "the request body is too large".into())
            }
            ApiError::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_request", "send a form-encoded body".into())
            }
            ApiError::NotFound => (StatusCode::NOT_FOUND, "invalid_request", "no such endpoint".into()),
            ApiError::Service(e) => {
                log_internal(e);
                let d = e.to_string();
                match e {
                    ServiceError::InvalidClient(_) | ServiceError::Unauthenticated => {
                        (StatusCode::UNAUTHORIZED, "invalid_client", d)
                    }
                    ServiceError::InvalidGrant(_) => (StatusCode::BAD_REQUEST, "invalid_grant", d),
                    ServiceError::UnsupportedGrantType(_) => {
                        (StatusCode::BAD_REQUEST, "unsupported_grant_type", d)
                    }
                    ServiceError::UnauthorizedClient(_) => {
                        (StatusCode::BAD_REQUEST, "unauthorized_client", d)
                    }
                    ServiceError::InvalidRequest(_)
                    | ServiceError::InvalidField { .. }
                    | ServiceError::BadRequest { .. }
                    | ServiceError::Conflict { .. }
                    | ServiceError::NotFound(_)
                    | ServiceError::Forbidden { .. }
                    | ServiceError::Gone { .. }
                    | ServiceError::AdminDisabled => (StatusCode::BAD_REQUEST, "invalid_request", d),
                    ServiceError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "slow_down", d),
                    ServiceError::InvalidToken => (StatusCode::UNAUTHORIZED, "invalid_token", d),
                    ServiceError::Unavailable(_) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "temporarily_unavailable",
                        "the service is temporarily unavailable; retry shortly".into(),
                    ),
                    ServiceError::Internal(_) => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "server_error",
                        "something went wrong on our side".into(),
                    ),
                }
            }
        };
        let mut response = with_headers(
            status,
            Json(json!({ "error": code, "error_description": description })).into_response(),
        );
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        add_retry_after(&self.0, &mut response);
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"latchkey\""));
        }
        response
    }
}

fn add_retry_after(error: &ApiError, response: &mut Response) {
    if let ApiError::Service(ServiceError::RateLimited { retry_after }) = error {
        let secs = crate::service::retry_after_secs(*retry_after);
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
}

fn with_headers(status: StatusCode, mut response: Response) -> Response {
    *response.status_mut() = status;
    let headers = response.headers_mut();
    match status {
        StatusCode::SERVICE_UNAVAILABLE => {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_UNAVAILABLE));
        }
        StatusCode::UNAUTHORIZED => {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"latchkey\""));
        }
        _ => {}
    }
    response
}

/// Where a handler does not choose, an error takes the native shape.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        Native(self).into_response()
    }
}
