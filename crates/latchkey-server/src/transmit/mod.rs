//! The Transmit Mosaic-compatible face: its token endpoint (`/oidc/token`), users
//! (`/cis/v1/users`), e-mail magic links (`/cis/v1/auth/link/email/…`) and key set
//! (`/cis/oidc/jwks`), translated to the use cases. Every answer under `/cis/` and `/oidc/` is
//! JSON, errors in Transmit's shape ([`TransmitError`]).

mod error;
mod links;
mod token;
mod users;

pub use error::TransmitError;

use crate::common::body::{BodyError, Input};
use crate::common::credentials;
use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::{any, get, post};
use latchkey_core::Application;
use latchkey_service::Service;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Service>> {
    let not_allowed = error::method_not_allowed;
    Router::new()
        .route("/oidc/token", post(token::token).fallback(not_allowed))
        .route("/cis/v1/users", post(users::create).fallback(not_allowed))
        .route("/cis/v1/auth/link/email/send", post(links::send).fallback(not_allowed))
        .route("/cis/v1/auth/link/email/authenticate", post(links::authenticate).fallback(not_allowed))
        .route("/cis/oidc/jwks", get(jwks).fallback(not_allowed))
        .route("/oidc", any(error::not_found))
        .route("/oidc/{*rest}", any(error::not_found))
        .route("/cis", any(error::not_found))
        .route("/cis/{*rest}", any(error::not_found))
}

type Result<T> = std::result::Result<T, TransmitError>;
type Body<T> = std::result::Result<Input<T>, BodyError>;

/// The application calling: `Authorization: Bearer` with a client access token from
/// `/oidc/token` (or its client secret; HTTP Basic works too).
#[derive(Debug)]
pub struct Caller(pub Application);

impl FromRequestParts<Arc<Service>> for Caller {
    type Rejection = TransmitError;

    async fn from_request_parts(parts: &mut Parts, service: &Arc<Service>) -> Result<Self> {
        let creds = credentials::from_headers(&parts.headers);
        Ok(Caller(service.authenticate_caller(&creds).await?))
    }
}

async fn jwks(State(service): State<Arc<Service>>) -> Response {
    crate::common::key_set(&service)
}

fn required<T>(name: &str, value: Option<T>) -> Result<T> {
    value.ok_or_else(|| TransmitError::BadRequest(format!("{name} is required")))
}
