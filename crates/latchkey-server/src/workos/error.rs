//! The WorkOS error shapes, so that the SDKs raise their own exception classes: `{code,
//! message}` with the status they map (401, 404, 409, 429 with `Retry-After`), 422 as
//! `{code: "invalid_request_parameters", message, errors: [{code, field}]}`, and, on the two
//! token endpoints, the RFC 6749 `{error, error_description}` beside them.

use crate::common::body::BodyError;
use crate::common::error_response;
use crate::common::fields::{FieldError, Problem};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use latchkey_service::{Refusal, ServiceError};
use serde_json::{Value, json};

#[derive(Debug)]
pub enum WorkosError {
    Service(ServiceError),
    /// A refusal of a token endpoint (`/sso/token`, `/user_management/authenticate`), which
    /// also says it as OAuth does.
    Grant(ServiceError),
    Body(BodyError),
    /// A parameter that is missing or does not parse (422).
    Invalid {
        field: &'static str,
        code: &'static str,
        message: String,
    },
    UnsupportedGrantType,
    NoRoute,
    WrongMethod,
}

impl WorkosError {
    pub fn invalid(field: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid { field, code, message: message.into() }
    }

    pub fn required(field: &'static str) -> Self {
        Self::invalid(field, "required", format!("{field} is required"))
    }

    /// The same failure, said by a token endpoint.
    pub fn grant(self) -> Self {
        match self {
            Self::Service(e) => Self::Grant(e),
            other => other,
        }
    }
}

crate::face_error_conversions!(WorkosError);

impl From<FieldError> for WorkosError {
    fn from(e: FieldError) -> Self {
        let code = match e.problem {
            Problem::Missing => "required",
            Problem::Invalid => "invalid",
        };
        Self::Invalid { field: e.field, code, message: e.message }
    }
}

/// How a refusal is said: status, code, and the field of a 422.
fn refusal(r: &Refusal) -> (StatusCode, &'static str, Option<&'static str>) {
    use Refusal::*;
    match r {
        Unauthenticated | AccessTokenInvalid | AdminDisabled => {
            (StatusCode::UNAUTHORIZED, "unauthorized", None)
        }
        RedirectNotAllowed => {
            (StatusCode::UNPROCESSABLE_ENTITY, "redirect_uri_not_allowed", Some("redirect_uri"))
        }
        RedirectRequired => (StatusCode::UNPROCESSABLE_ENTITY, "redirect_uri_required", Some("redirect_uri")),
        Invalid { field, .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid", Some(*field)),
        OrganizationUnknown | EmailOutsideOrganization => {
            (StatusCode::UNPROCESSABLE_ENTITY, "organization_invalid", Some("email"))
        }
        RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded", None),
        OtpInvalid => (StatusCode::BAD_REQUEST, "invalid_one_time_code", None),
        CodeInvalid
        | RedirectMismatch
        | RedirectMissing
        | VerifierRequired
        | VerifierMismatch
        | PublicClientWithoutPkce
        | RefreshTokenInvalid => (StatusCode::BAD_REQUEST, "invalid_grant", None),
        PkceRequired | PublicClientCannotActForItself => {
            (StatusCode::BAD_REQUEST, "unauthorized_client", None)
        }
        NoLongerValid { .. } | NotPending(_) => {
            (StatusCode::UNPROCESSABLE_ENTITY, "session_not_pending", Some("id"))
        }
        NotFound(_) => (StatusCode::NOT_FOUND, "entity_not_found", None),
        EmailTaken | OrganizationTaken | ClientMismatch | PublicClientHasNoSecrets | LastSecret => {
            (StatusCode::CONFLICT, "conflict", None)
        }
    }
}

/// The OAuth word for a token endpoint's refusal.
fn oauth_error(status: StatusCode, code: &'static str) -> &'static str {
    match (status, code) {
        (StatusCode::UNAUTHORIZED, _) => "invalid_client",
        (_, "invalid_one_time_code" | "invalid_grant") => "invalid_grant",
        (_, "unauthorized_client") => "unauthorized_client",
        (_, "unsupported_grant_type") => "unsupported_grant_type",
        (StatusCode::TOO_MANY_REQUESTS, _) => "rate_limit_exceeded",
        _ => "invalid_request",
    }
}

fn body(code: &str, message: &str, field: Option<&str>) -> Value {
    let mut body = json!({ "code": code, "message": message });
    if let Some(field) = field {
        body["code"] = "invalid_request_parameters".into();
        body["errors"] = json!([{ "code": code, "field": field }]);
    }
    body
}

impl IntoResponse for WorkosError {
    fn into_response(self) -> Response {
        let (status, code, message, field) = match &self {
            Self::Body(e) => {
                let code = match e {
                    BodyError::Malformed(_) => "invalid_request",
                    BodyError::TooLarge => "payload_too_large",
                    BodyError::UnsupportedMediaType => "unsupported_media_type",
                };
                (e.status(), code, e.message(), None)
            }
            Self::Invalid { field, code, message } => {
                (StatusCode::UNPROCESSABLE_ENTITY, *code, message.clone(), Some(*field))
            }
            Self::UnsupportedGrantType => (
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "grant_type is not supported here".into(),
                None,
            ),
            Self::NoRoute => (StatusCode::NOT_FOUND, "not_found", "no such endpoint".into(), None),
            Self::WrongMethod => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this method is not allowed here".into(),
                None,
            ),
            Self::Service(e) | Self::Grant(e) => match e {
                ServiceError::Refused(r) => {
                    let (status, code, field) = refusal(r);
                    (status, code, r.to_string(), field)
                }
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
            },
        };
        let mut json = body(code, &message, field);
        if status == StatusCode::BAD_REQUEST && json.get("errors").is_none() {
            // With `errors`, the Node SDK raises its BadRequestException rather than a generic one.
            json["errors"] = json!([]);
        }
        let token_endpoint = matches!(self, Self::Grant(_) | Self::UnsupportedGrantType);
        if token_endpoint && status.is_client_error() {
            json["error"] = oauth_error(status, code).into();
            json["error_description"] = message.into();
        }
        let service = if let Self::Service(e) | Self::Grant(e) = &self { Some(e) } else { None };
        // WorkOS sends no challenge with its 401s.
        error_response(status, json, service, None)
    }
}
