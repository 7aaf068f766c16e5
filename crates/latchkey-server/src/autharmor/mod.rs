//! The Auth Armor compatible face: `/connect/token`, the v4 magic-link e-mail registration and
//! sign-in calls, and the v3 validations that the `autharmor-sdk` Python package makes. Its
//! request and response types, its caller ([`Caller`]) and its one error shape
//! ([`AuthArmorError`]) live here; everything it does is a use case of `latchkey-service`.
//!
//! Words: an Auth Armor API key is an application's client secret, its client id is the
//! application's `client_id`; a user's `username` is their e-mail address.

mod error;
mod registrations;
mod sign_in;
mod token;

pub use error::AuthArmorError;

use crate::common::body::{BodyError, Input};
use crate::common::credentials;
use crate::common::rfc3339;
use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::routing::{MethodRouter, any};
use latchkey_core::bounded::Bounded;
use latchkey_core::challenge::ChallengeLifetime;
use latchkey_core::{Application, Challenge};
use latchkey_service::Service;
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Service>> {
    let unknown = || any(|| async { AuthArmorError::NoRoute });
    Router::new()
        .merge(token::routes())
        .merge(registrations::routes())
        .merge(sign_in::routes())
        .route("/connect/", unknown())
        .route("/connect/{*rest}", unknown())
        .route("/v3/", unknown())
        .route("/v3/{*rest}", unknown())
        .route("/v4/", unknown())
        .route("/v4/{*rest}", unknown())
        .layer(axum::middleware::from_fn(error::track))
}

/// A route's methods, any other method answered in the face's error shape.
fn only(methods: MethodRouter<Arc<Service>>) -> MethodRouter<Arc<Service>> {
    methods.fallback(|| async { AuthArmorError::MethodNotAllowed })
}

type Result<T> = std::result::Result<T, AuthArmorError>;
/// A body, or why it could not be read (answered in the face's shape).
type Body<T> = std::result::Result<Input<T>, BodyError>;

/// The application calling: `Authorization: Bearer` with an access token from
/// `/connect/token`, or with the API key (client secret) itself.
#[derive(Debug)]
pub struct Caller(pub Application);

impl FromRequestParts<Arc<Service>> for Caller {
    type Rejection = AuthArmorError;

    async fn from_request_parts(parts: &mut Parts, service: &Arc<Service>) -> Result<Self> {
        let creds = credentials::from_headers(&parts.headers);
        Ok(Caller(service.authenticate_caller(&creds).await?))
    }
}

/// A required field.
fn required<T>(name: &str, value: Option<T>) -> Result<T> {
    value.ok_or_else(|| AuthArmorError::field(format!("{name} is required")))
}

/// An optional text field of at most `MAX` bytes.
fn bounded<const MAX: usize>(name: &'static str, value: Option<String>) -> Result<Option<Bounded<MAX>>> {
    Ok(crate::common::fields::bounded(name, value)?)
}

/// How long a request just started lives, as both start calls answer it.
fn timeout_json(c: &Challenge) -> Value {
    json!({
        "timeout_in_seconds": (c.expires_at - c.created_at).whole_seconds(),
        "timeout_utc_datetime": rfc3339(c.expires_at),
    })
}

/// `timeout_in_seconds`, within the bounds of a challenge's lifetime.
fn timeout(value: Option<i64>) -> Result<Option<ChallengeLifetime>> {
    value
        .map(ChallengeLifetime::from_secs)
        .transpose()
        .map_err(|e| AuthArmorError::field(format!("timeout_in_seconds {e}")))
}
