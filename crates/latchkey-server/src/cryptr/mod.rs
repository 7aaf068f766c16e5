//! The Cryptr-compatible face: its token endpoint (`/api/v2/oauth/token`) and its magic-link
//! challenge (`/api/v2/magic-link-challenge`), translated to the use cases. The code a
//! challenge sends back is exchanged here or at the standard `/oauth/token`, with the
//! application's credentials or, as Cryptr documents it, with none: this face's challenges
//! make their codes credentials on their own. Every answer under `/api/v2/` is JSON, errors in
//! Cryptr's shape ([`CryptrError`]).

mod challenge;
mod error;
mod token;

pub use error::CryptrError;

use crate::common::body::{BodyError, Input};
use crate::common::credentials;
use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::routing::{any, post};
use latchkey_core::Application;
use latchkey_service::Service;
use serde::{Deserialize, Deserializer};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/api/v2/oauth/token", post(token::token).fallback(error::method_not_allowed))
        .route("/api/v2/magic-link-challenge", post(challenge::create).fallback(error::method_not_allowed))
        .route("/api/v2", any(error::not_found))
        .route("/api/v2/{*rest}", any(error::not_found))
}

type Result<T> = std::result::Result<T, CryptrError>;
type Body<T> = std::result::Result<Input<T>, BodyError>;

/// The application calling: `Authorization: Bearer` with its API key (a client secret) or an
/// API token from the client_credentials grant (HTTP Basic works too).
#[derive(Debug)]
pub struct Caller(pub Application);

impl FromRequestParts<Arc<Service>> for Caller {
    type Rejection = CryptrError;

    async fn from_request_parts(parts: &mut Parts, service: &Arc<Service>) -> Result<Self> {
        let creds = credentials::from_headers(&parts.headers);
        Ok(Caller(service.authenticate_caller(&creds).await?))
    }
}

/// A yes or no as JSON (`false`) or as text (`"false"`, from a form or a query string).
fn flag<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Text(String),
    }
    match Option::<Flag>::deserialize(d)? {
        None => Ok(None),
        Some(Flag::Bool(b)) => Ok(Some(b)),
        Some(Flag::Text(t)) => match t.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(Some(true)),
            "false" | "0" => Ok(Some(false)),
            _ => Err(serde::de::Error::custom("expected true or false")),
        },
    }
}
