//! The OAuth 2.0 error shape (RFC 6749 §5.2): `{"error", "error_description"}`. Every
//! refusal of the token endpoint, revocation, introspection and userinfo is mapped here.

use crate::common::body::BodyError;
use crate::common::{error_response, no_store};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use latchkey_service::{Refusal, ServiceError};
use serde_json::json;

#[derive(Debug)]
pub enum OAuthError {
    Service(ServiceError),
    Body(BodyError),
    /// `invalid_request`: a parameter is missing or malformed.
    InvalidRequest(String),
    UnsupportedGrantType(String),
}

crate::face_error_conversions!(OAuthError);

fn refusal(r: &Refusal) -> (StatusCode, &'static str) {
    use Refusal::*;
    match r {
        // An application that is not authenticated is, in OAuth's words, an invalid client.
        Unauthenticated => (StatusCode::UNAUTHORIZED, "invalid_client"),
        CodeInvalid
        | RedirectMismatch
        | RedirectMissing
        | VerifierRequired
        | VerifierMismatch
        | PublicClientWithoutPkce
        | OtpInvalid
        | RefreshTokenInvalid => (StatusCode::BAD_REQUEST, "invalid_grant"),
        PublicClientCannotActForItself => (StatusCode::BAD_REQUEST, "unauthorized_client"),
        RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "slow_down"),
        AccessTokenInvalid => (StatusCode::UNAUTHORIZED, "invalid_token"),
        _ => (StatusCode::BAD_REQUEST, "invalid_request"),
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let (status, code, description) = match &self {
            // A token endpoint takes forms: that is all it asks for.
            Self::Body(BodyError::UnsupportedMediaType) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_request", "send a form-encoded body".into())
            }
            Self::Body(e) => (e.status(), "invalid_request", e.message()),
            Self::InvalidRequest(m) => (StatusCode::BAD_REQUEST, "invalid_request", m.clone()),
            Self::UnsupportedGrantType(g) => (
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!("grant_type {:?} is not supported", latchkey_core::bounded::excerpt(g, 100)),
            ),
            Self::Service(ServiceError::Refused(r)) => {
                let (status, code) = refusal(r);
                let description = match r {
                    Refusal::Unauthenticated => "client authentication failed".to_owned(),
                    other => other.to_string(),
                };
                (status, code, description)
            }
            Self::Service(ServiceError::Unavailable(_)) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the service is temporarily unavailable; retry shortly".into(),
            ),
            Self::Service(ServiceError::Internal(_)) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "server_error", "something went wrong on our side".into())
            }
        };
        let body = json!({ "error": code, "error_description": description });
        let service = if let Self::Service(e) = &self { Some(e) } else { None };
        no_store(error_response(status, body, service, Some("Basic realm=\"latchkey\"")))
    }
}
