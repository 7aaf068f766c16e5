//! OAuth 2.0 and OpenID Connect: the token endpoint, discovery and the key set.

use super::error::{ApiError, OAuth};
use super::extract::{Input, credentials};
use crate::service::{Service, TokenRequest, TokenResponse};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use latchkey_core::signing::SigningAlg;
use serde_json::json;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/oauth/token", post(token))
        .route("/oauth/jwks", get(jwks))
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/.well-known/oauth-authorization-server", get(discovery))
}

async fn token(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: Result<Input<TokenRequest>, ApiError>,
) -> Result<Response, OAuth> {
    let Input(req) = body?;
    let tokens: TokenResponse = service.token(credentials(&headers), req).await?;
    let mut response = Json(tokens).into_response();
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}

async fn jwks(State(service): State<Arc<Service>>) -> Response {
    let body = service.keys().jwks();
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300")),
        ],
        body.to_string(),
    )
        .into_response()
}

async fn discovery(State(service): State<Arc<Service>>) -> Response {
    let issuer = service.issuer();
    let algs: Vec<&str> = SigningAlg::ALL.iter().map(|a| a.as_str()).collect();
    let body = json!({
        "issuer": issuer,
        "authorization_endpoint": service.url("/oauth/authorize"),
        "token_endpoint": service.url("/oauth/token"),
        "jwks_uri": service.url("/oauth/jwks"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["openid", "email"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "email", "email_verified", "amr"],
    });
    ([(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"))], Json(body)).into_response()
}
