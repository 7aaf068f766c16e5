//! The native API's one error shape: `{"error": "<code>", "message": "…"}`, with `field` on
//! 422. Each refusal of the use cases has its status and stable code here, and only here.

use crate::common::body::BodyError;
use crate::common::error_response;
use crate::common::fields::FieldError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use latchkey_service::{Refusal, ServiceError};
use serde::Serialize;
use utoipa::ToSchema;

/// What every native error answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable code for the case (`invalid_field`, `rate_limited`, `not_found`, …).
    pub error: &'static str,
    /// A sentence for a person.
    pub message: String,
    /// The field that did not parse (422).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'static str>,
}

#[derive(Debug)]
pub enum NativeError {
    Service(ServiceError),
    Body(BodyError),
    /// A value that does not parse (422).
    Field {
        field: &'static str,
        message: String,
    },
    /// A request that cannot be served as asked (400), with its code.
    BadRequest {
        code: &'static str,
        message: String,
    },
    /// No such endpoint.
    NoRoute,
}

impl NativeError {
    pub fn field(field: &'static str, message: impl Into<String>) -> Self {
        Self::Field { field, message: message.into() }
    }
}

crate::face_error_conversions!(NativeError);

impl From<FieldError> for NativeError {
    fn from(e: FieldError) -> Self {
        Self::Field { field: e.field, message: e.message }
    }
}

/// Status, code and field of a refusal, as the native API says it.
fn refusal(r: &Refusal) -> (StatusCode, &'static str, Option<&'static str>) {
    use Refusal::*;
    match r {
        Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated", None),
        AdminDisabled => (StatusCode::FORBIDDEN, "admin_disabled", None),
        RedirectNotAllowed => (StatusCode::BAD_REQUEST, "redirect_uri_not_allowed", None),
        RedirectRequired => (StatusCode::BAD_REQUEST, "redirect_uri_required", None),
        PkceRequired => (StatusCode::BAD_REQUEST, "pkce_required", None),
        OrganizationUnknown => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", Some("organization")),
        EmailOutsideOrganization => (StatusCode::FORBIDDEN, "email_domain_not_in_organization", None),
        EmailTaken => (StatusCode::CONFLICT, "email_taken", None),
        RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited", None),
        CodeInvalid
        | RedirectMismatch
        | RedirectMissing
        | VerifierRequired
        | VerifierMismatch
        | PublicClientWithoutPkce
        | OtpInvalid
        | RefreshTokenInvalid => (StatusCode::BAD_REQUEST, "invalid_grant", None),
        AccessTokenInvalid => (StatusCode::UNAUTHORIZED, "invalid_token", None),
        PublicClientCannotActForItself => (StatusCode::BAD_REQUEST, "unauthorized_client", None),
        ClientMismatch => (StatusCode::FORBIDDEN, "client_mismatch", None),
        NoLongerValid { .. } => (StatusCode::GONE, "no_longer_valid", None),
        NotPending(_) => (StatusCode::CONFLICT, "not_pending", None),
        NotFound(_) => (StatusCode::NOT_FOUND, "not_found", None),
        Invalid { field, .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", Some(*field)),
        OrganizationTaken => (StatusCode::CONFLICT, "organization_conflict", None),
        PublicClientHasNoSecrets => (StatusCode::CONFLICT, "public_client", None),
        LastSecret => (StatusCode::CONFLICT, "last_secret", None),
    }
}

impl IntoResponse for NativeError {
    fn into_response(self) -> Response {
        let (status, code, message, field) = match &self {
            Self::Body(e) => {
                let code = match e {
                    BodyError::Malformed(_) => "malformed_request",
                    BodyError::TooLarge => "payload_too_large",
                    BodyError::UnsupportedMediaType => "unsupported_media_type",
                };
                (e.status(), code, e.message(), None)
            }
            Self::Field { field, message } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message.clone(), Some(*field))
            }
            Self::BadRequest { code, message } => (StatusCode::BAD_REQUEST, *code, message.clone(), None),
            Self::NoRoute => (StatusCode::NOT_FOUND, "not_found", "no such endpoint".into(), None),
            Self::Service(ServiceError::Refused(r)) => {
                let (status, code, field) = refusal(r);
                (status, code, r.to_string(), field)
            }
            Self::Service(ServiceError::Unavailable(_)) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "the service is temporarily unavailable; retry shortly".into(),
                None,
            ),
            Self::Service(ServiceError::Internal(_)) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "something went wrong on our side".into(),
                None,
            ),
        };
        let service = if let Self::Service(e) = &self { Some(e) } else { None };
        error_response(
            status,
            ErrorBody { error: code, message, field },
            service,
            Some("Bearer realm=\"latchkey\""),
        )
    }
}

/// Where a handler does not take the body's failure itself, it is said in the native shape.
impl IntoResponse for BodyError {
    fn into_response(self) -> Response {
        NativeError::Body(self).into_response()
    }
}

/// How the command line says a native refusal: which field, and why.
impl std::fmt::Display for NativeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Field { field, message } => write!(f, "{field}: {message}"),
            Self::BadRequest { message, .. } => f.write_str(message),
            Self::Body(e) => write!(f, "{e:?}"),
            Self::NoRoute => f.write_str("no such endpoint"),
            Self::Service(ServiceError::Refused(Refusal::Invalid { field, reason })) => {
                write!(f, "{field}: {reason}")
            }
            Self::Service(e) => write!(f, "{e}"),
        }
    }
}
