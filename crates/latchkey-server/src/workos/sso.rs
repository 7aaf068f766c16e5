//! SSO over the sign-in by link: the authorization code of the link's redirect for a profile
//! and an access token, the profile again for that token, and the signing keys.

use super::{Body, Result, WorkosError, objects, route};
use crate::common::body::Input;
use crate::common::{credentials, key_set, no_store};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use latchkey_service::{CodeExchange, Credentials, ExchangeRedirect, Service};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/sso/token", route(post(token)))
        .route("/sso/profile", route(get(profile)))
        .route("/sso/jwks/{client_id}", route(get(jwks)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TokenBody {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    code: Option<String>,
    code_verifier: Option<String>,
}

/// `POST /sso/token`: JSON from the Python SDK, a form from the Node one.
async fn token(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: Body<TokenBody>,
) -> Result<Response> {
    let Input(body) = body?;
    let creds = credentials::from_headers(&headers)
        .or(Credentials { client_id: body.client_id, secret: body.client_secret });
    let exchanged = async {
        let app = service.authenticate_client(&creds).await?;
        match body.grant_type.as_deref() {
            Some("authorization_code") => {}
            None => return Err(WorkosError::required("grant_type")),
            Some(_) => return Err(WorkosError::UnsupportedGrantType),
        }
        let code = body.code.ok_or_else(|| WorkosError::required("code"))?;
        let waived = ExchangeRedirect::Waived { because: "WorkOS's /sso/token sends no redirect_uri" };
        let cmd = CodeExchange { code, redirect_uri: waived, code_verifier: body.code_verifier };
        let tokens = service.exchange_code(&app, cmd).await?;
        let signed_in = service.signed_in(Some(&tokens.access_token)).await?;
        Ok(json!({
            "token_type": "Bearer",
            "access_token": tokens.access_token,
            "expires_in": tokens.expires_in.whole_seconds(),
            "profile": objects::profile(&signed_in),
        }))
    };
    let body = exchanged.await.map_err(WorkosError::grant)?;
    Ok(no_store(Json(body).into_response()))
}

/// `GET /sso/profile` with the access token as bearer.
async fn profile(State(service): State<Arc<Service>>, headers: HeaderMap) -> Result<Json<Value>> {
    let signed_in = service.signed_in(credentials::bearer(&headers)).await?;
    Ok(Json(objects::profile(&signed_in)))
}

/// The key set that signs every token of this server, whatever the client id.
async fn jwks(State(service): State<Arc<Service>>) -> Response {
    key_set(&service)
}
