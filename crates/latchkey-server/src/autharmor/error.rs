//! Auth Armor's one error shape: `{"error_message", "error_code": <number>, "tracking_id"}`.
//! Each refusal has its status and stable number here, and only here. The tracking id is the
//! request's id (`X-Request-Id`), filled in by [`track`] once the response exists.

use crate::common::body::BodyError;
use crate::common::error_response;
use crate::common::fields::FieldError;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use latchkey_service::{Refusal, ServiceError};
use serde_json::{Value, json};

#[derive(Debug)]
pub enum AuthArmorError {
    Service(ServiceError),
    Body(BodyError),
    /// A field missing or not acceptable, said in a sentence that names it.
    Field(String),
    UnsupportedGrantType,
    NoRoute,
    MethodNotAllowed,
}

impl AuthArmorError {
    pub fn field(message: impl Into<String>) -> Self {
        Self::Field(message.into())
    }
}

impl From<FieldError> for AuthArmorError {
    fn from(e: FieldError) -> Self {
        Self::field(e.message)
    }
}

crate::face_error_conversions!(AuthArmorError);

/// The numbers of `error_code`, one per case; the migration guide lists them.
mod code {
    pub const INVALID_REQUEST: u32 = 1000;
    pub const TOO_LARGE: u32 = 1001;
    pub const MEDIA_TYPE: u32 = 1002;
    pub const UNSUPPORTED_GRANT: u32 = 1003;
    pub const UNAUTHENTICATED: u32 = 2000;
    pub const PUBLIC_CLIENT: u32 = 2001;
    pub const REDIRECT_NOT_ALLOWED: u32 = 3000;
    pub const CLIENT_MISMATCH: u32 = 3001;
    pub const NOT_FOUND: u32 = 4000;
    pub const NO_ROUTE: u32 = 4001;
    pub const METHOD: u32 = 4002;
    pub const TAKEN: u32 = 4090;
    pub const GONE: u32 = 4100;
    pub const RATE_LIMITED: u32 = 4290;
    pub const INTERNAL: u32 = 5000;
    pub const UNAVAILABLE: u32 = 5030;
}

fn refusal(r: &Refusal) -> (StatusCode, u32) {
    use Refusal::*;
    match r {
        Unauthenticated => (StatusCode::UNAUTHORIZED, code::UNAUTHENTICATED),
        PublicClientCannotActForItself | PkceRequired => (StatusCode::BAD_REQUEST, code::PUBLIC_CLIENT),
        RedirectNotAllowed | RedirectRequired => (StatusCode::BAD_REQUEST, code::REDIRECT_NOT_ALLOWED),
        ClientMismatch => (StatusCode::FORBIDDEN, code::CLIENT_MISMATCH),
        NotFound(_) => (StatusCode::NOT_FOUND, code::NOT_FOUND),
        EmailTaken => (StatusCode::CONFLICT, code::TAKEN),
        NoLongerValid { .. } => (StatusCode::GONE, code::GONE),
        RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, code::RATE_LIMITED),
        _ => (StatusCode::BAD_REQUEST, code::INVALID_REQUEST),
    }
}

/// An error body waiting for its tracking id.
#[derive(Clone)]
struct Untracked(Value);

impl IntoResponse for AuthArmorError {
    fn into_response(self) -> Response {
        let (status, number, message) = match &self {
            Self::Body(e) => {
                let number = match e {
                    BodyError::Malformed(_) => code::INVALID_REQUEST,
                    BodyError::TooLarge => code::TOO_LARGE,
                    BodyError::UnsupportedMediaType => code::MEDIA_TYPE,
                };
                (e.status(), number, e.message())
            }
            Self::Field(m) => (StatusCode::BAD_REQUEST, code::INVALID_REQUEST, m.clone()),
            Self::UnsupportedGrantType => (
                StatusCode::BAD_REQUEST,
                code::UNSUPPORTED_GRANT,
                "grant_type must be client_credentials".into(),
            ),
            Self::NoRoute => (StatusCode::NOT_FOUND, code::NO_ROUTE, "no such endpoint".into()),
            Self::MethodNotAllowed => {
                (StatusCode::METHOD_NOT_ALLOWED, code::METHOD, "this method is not allowed here".into())
            }
            Self::Service(ServiceError::Refused(r)) => {
                let (status, number) = refusal(r);
                let message = match r {
                    Refusal::Unauthenticated => "a valid access token or API key is required".to_owned(),
                    other => other.to_string(),
                };
                (status, number, message)
            }
            Self::Service(ServiceError::Unavailable(_)) => (
                StatusCode::SERVICE_UNAVAILABLE,
                code::UNAVAILABLE,
                "the service is temporarily unavailable; retry shortly".into(),
            ),
            Self::Service(ServiceError::Internal(_)) => {
                (StatusCode::INTERNAL_SERVER_ERROR, code::INTERNAL, "something went wrong on our side".into())
            }
        };
        let body = json!({ "error_message": message, "error_code": number, "tracking_id": null });
        let service = if let Self::Service(e) = &self { Some(e) } else { None };
        let mut response = error_response(status, &body, service, Some("Bearer realm=\"latchkey\""));
        response.extensions_mut().insert(Untracked(body));
        response
    }
}

/// Puts the request's id into the face's error bodies as `tracking_id`, so that a customer's
/// report leads to the log lines of its request.
pub async fn track(req: Request, next: Next) -> Response {
    let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut response = next.run(req).await;
    if let Some(Untracked(mut body)) = response.extensions_mut().remove::<Untracked>() {
        body["tracking_id"] = id.into();
        *response.body_mut() = Body::from(body.to_string());
        response.headers_mut().remove(header::CONTENT_LENGTH);
    }
    response
}
