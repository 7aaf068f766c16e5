//! Transmit's error shape, `{"error_code": <HTTP status>, "message"}`, for every answer under
//! `/cis/` and `/oidc/`: each refusal of the use cases gets its status here.

use crate::common::body::BodyError;
use crate::common::error_response;
use crate::common::fields::FieldError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use latchkey_service::{Refusal, ServiceError};
use serde_json::json;

#[derive(Debug)]
pub enum TransmitError {
    Service(ServiceError),
    Body(BodyError),
    /// A parameter missing or malformed (400), said for a person.
    BadRequest(String),
    NoRoute,
    MethodNotAllowed,
}

impl From<FieldError> for TransmitError {
    fn from(e: FieldError) -> Self {
        Self::BadRequest(e.message)
    }
}

crate::face_error_conversions!(TransmitError);

fn status_of(r: &Refusal) -> StatusCode {
    use Refusal::*;
    match r {
        Unauthenticated | AccessTokenInvalid => StatusCode::UNAUTHORIZED,
        AdminDisabled | ClientMismatch | EmailOutsideOrganization => StatusCode::FORBIDDEN,
        EmailTaken | OrganizationTaken | NotPending(_) => StatusCode::CONFLICT,
        RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        NoLongerValid { .. } => StatusCode::GONE,
        NotFound(_) => StatusCode::NOT_FOUND,
        RedirectNotAllowed
        | RedirectRequired
        | PkceRequired
        | OrganizationUnknown
        | CodeInvalid
        | RedirectMismatch
        | RedirectMissing
        | VerifierRequired
        | VerifierMismatch
        | PublicClientWithoutPkce
        | OtpInvalid
        | RefreshTokenInvalid
        | PublicClientCannotActForItself
        | Invalid { .. }
        | PublicClientHasNoSecrets
        | LastSecret => StatusCode::BAD_REQUEST,
    }
}

impl IntoResponse for TransmitError {
    fn into_response(self) -> Response {
        let (status, message) = match &self {
            Self::Service(ServiceError::Refused(r)) => (status_of(r), r.to_string()),
            Self::Service(ServiceError::Unavailable(_)) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the service is temporarily unavailable; retry shortly".into(),
            ),
            Self::Service(ServiceError::Internal(_)) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "something went wrong on our side".into())
            }
            Self::Body(e) => (e.status(), e.message()),
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, m.clone()),
            Self::NoRoute => (StatusCode::NOT_FOUND, "no such endpoint".into()),
            Self::MethodNotAllowed => {
                (StatusCode::METHOD_NOT_ALLOWED, "this method is not allowed on this endpoint".into())
            }
        };
        let body = json!({ "error_code": status.as_u16(), "message": message });
        let service = if let Self::Service(e) = &self { Some(e) } else { None };
        error_response(status, body, service, Some("Bearer"))
    }
}

pub async fn not_found() -> TransmitError {
    TransmitError::NoRoute
}

pub async fn method_not_allowed() -> TransmitError {
    TransmitError::MethodNotAllowed
}
