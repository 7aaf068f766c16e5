//! Cryptr's error shape, `{"error": {"type", "message", "doc_urls": []}}`, for every answer
//! under `/api/v2/`: each refusal of the use cases gets its status and a stable `type` here.

use crate::common::body::BodyError;
use crate::common::error_response;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use latchkey_service::{Refusal, ServiceError};
use serde_json::json;

#[derive(Debug)]
pub enum CryptrError {
    Service(ServiceError),
    Body(BodyError),
    /// A parameter missing or malformed (400), said for a person.
    BadRequest(String),
    UnsupportedGrantType(String),
    NoRoute,
    MethodNotAllowed,
}

crate::face_error_conversions!(CryptrError);

/// Status and `type` of a refusal.
fn refusal(r: &Refusal) -> (StatusCode, &'static str) {
    use Refusal::*;
    match r {
        Unauthenticated | AccessTokenInvalid => (StatusCode::UNAUTHORIZED, "unauthorized"),
        AdminDisabled | ClientMismatch | EmailOutsideOrganization => (StatusCode::FORBIDDEN, "forbidden"),
        RedirectNotAllowed | RedirectRequired | PkceRequired => {
            (StatusCode::BAD_REQUEST, "invalid_redirect_uri")
        }
        OrganizationUnknown => (StatusCode::NOT_FOUND, "organization_not_found"),
        EmailTaken | OrganizationTaken | NotPending(_) => (StatusCode::CONFLICT, "conflict"),
        RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
        CodeInvalid
        | RedirectMismatch
        | RedirectMissing
        | VerifierRequired
        | VerifierMismatch
        | PublicClientWithoutPkce
        | OtpInvalid
        | RefreshTokenInvalid => (StatusCode::BAD_REQUEST, "invalid_grant"),
        PublicClientCannotActForItself => (StatusCode::BAD_REQUEST, "unauthorized_client"),
        NoLongerValid { .. } => (StatusCode::GONE, "gone"),
        NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        Invalid { .. } | PublicClientHasNoSecrets | LastSecret => (StatusCode::BAD_REQUEST, "bad_request"),
    }
}

impl IntoResponse for CryptrError {
    fn into_response(self) -> Response {
        let (status, kind, message) = match &self {
            Self::Service(ServiceError::Refused(r)) => {
                let (status, kind) = refusal(r);
                (status, kind, r.to_string())
            }
            Self::Service(ServiceError::Unavailable(_)) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "the service is temporarily unavailable; retry shortly".into(),
            ),
            Self::Service(ServiceError::Internal(_)) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "something went wrong on our side".into(),
            ),
            Self::Body(e) => {
                let kind = match e {
                    BodyError::Malformed(_) => "bad_request",
                    BodyError::TooLarge => "payload_too_large",
                    BodyError::UnsupportedMediaType => "unsupported_media_type",
                };
                (e.status(), kind, e.message())
            }
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m.clone()),
            Self::UnsupportedGrantType(g) => (
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!("grant_type {:?} is not supported", latchkey_core::bounded::excerpt(g, 100)),
            ),
            Self::NoRoute => (StatusCode::NOT_FOUND, "not_found", "no such endpoint".into()),
            Self::MethodNotAllowed => {
                (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this endpoint takes POST".into())
            }
        };
        let body = json!({ "error": { "type": kind, "message": message, "doc_urls": [] } });
        let service = if let Self::Service(e) = &self { Some(e) } else { None };
        error_response(status, body, service, Some("Bearer"))
    }
}

pub async fn not_found() -> CryptrError {
    CryptrError::NoRoute
}

pub async fn method_not_allowed() -> CryptrError {
    CryptrError::MethodNotAllowed
}
