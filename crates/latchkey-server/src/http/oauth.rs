//! OAuth 2.0 and OpenID Connect: the token endpoint, discovery and the key set.

use super::error::{ApiError, OAuth};
use super::extract::{Input, bearer, credentials};
use crate::service::{ClientCredentials, OTP_GRANT, Service, TokenRequest, TokenResponse};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use latchkey_core::signing::SigningAlg;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/oauth/token", post(token))
        .route("/oauth/userinfo", get(userinfo).post(userinfo))
        .route("/oauth/revoke", post(revoke))
        .route("/oauth/introspect", post(introspect))
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

async fn userinfo(State(service): State<Arc<Service>>, headers: HeaderMap) -> Result<Response, OAuth> {
    let body = service.userinfo(bearer(&headers)).await?;
    let mut response = Json(body).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TokenParam {
    token: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// Header credentials, completed by the body's (client_secret_post).
fn creds(headers: &HeaderMap, body: &TokenParam) -> ClientCredentials {
    let header = credentials(headers);
    ClientCredentials {
        client_id: header.client_id.or(body.client_id.clone()),
        client_secret: header.client_secret.or(body.client_secret.clone()),
    }
}

async fn revoke(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: Result<Input<TokenParam>, ApiError>,
) -> Result<Response, OAuth> {
    let Input(body) = body?;
    service.revoke(&creds(&headers, &body), body.token.as_deref()).await?;
    Ok(([(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], Json(json!({}))).into_response())
}

async fn introspect(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: Result<Input<TokenParam>, ApiError>,
) -> Result<Response, OAuth> {
    let Input(body) = body?;
    let answer = service.introspect(&creds(&headers, &body), body.token.as_deref()).await?;
    Ok(([(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], Json(answer)).into_response())
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
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials", OTP_GRANT],
        "userinfo_endpoint": service.url("/oauth/userinfo"),
        "revocation_endpoint": service.url("/oauth/revoke"),
        "introspection_endpoint": service.url("/oauth/introspect"),
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["openid", "email"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "email", "email_verified", "amr"],
    });
    ([(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"))], Json(body)).into_response()
}
