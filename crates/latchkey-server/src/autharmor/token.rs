//! `/connect/token`: an access token for the application itself (client_credentials), asked
//! for with a form `POST` or, as `autharmor-sdk` does, a `GET` with the query string.

use super::{AuthArmorError, Body, Result, only};
use crate::common::body::{BodyError, Input};
use crate::common::{credentials, no_store};
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use latchkey_service::{Credentials, Service};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Service>> {
    Router::new().route("/connect/token", only(get(from_query).post(from_body)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TokenRequest {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

async fn from_query(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let request = serde_html_form::from_str(query.as_deref().unwrap_or_default())
        .map_err(|_| BodyError::Malformed("the query string is not valid".into()))?;
    issue(&service, &headers, request).await
}

async fn from_body(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: Body<TokenRequest>,
) -> Result<Response> {
    let Input(request) = body?;
    issue(&service, &headers, request).await
}

async fn issue(service: &Service, headers: &HeaderMap, request: TokenRequest) -> Result<Response> {
    match request.grant_type.as_deref() {
        Some("client_credentials") => {}
        None => return Err(AuthArmorError::field("grant_type is required")),
        Some(_) => return Err(AuthArmorError::UnsupportedGrantType),
    }
    let given = Credentials { client_id: request.client_id, secret: request.client_secret };
    let app = service.authenticate_client(&credentials::from_headers(headers).or(given)).await?;
    let tokens = service.client_token(&app).await?;
    Ok(no_store(
        Json(json!({
            "access_token": tokens.access_token,
            "token_type": "Bearer",
            "scope": tokens.scope,
            "expires_in": tokens.expires_in.whole_seconds(),
        }))
        .into_response(),
    ))
}
