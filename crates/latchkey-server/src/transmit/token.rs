//! `POST /oidc/token`: the client_credentials grant (the application's access token for the
//! other endpoints) and the authorization_code grant.

use super::{Body, Result, TransmitError, required};
use crate::common::body::Input;
use crate::common::credentials;
use crate::common::no_store;
use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use latchkey_service::{CodeExchange, Credentials, ExchangeRedirect, Service};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// Its parameters; `resource` is accepted and means nothing here (one audience).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TokenParams {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
}

pub async fn token(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: Body<TokenParams>,
) -> Result<Response> {
    let Input(p) = body?;
    let grant_type = required("grant_type", p.grant_type)?;
    if !matches!(grant_type.as_str(), "client_credentials" | "authorization_code") {
        let shown = latchkey_core::bounded::excerpt(&grant_type, 100);
        return Err(TransmitError::BadRequest(format!("grant_type {shown:?} is not supported")));
    }
    let creds = credentials::from_headers(&headers)
        .or(Credentials { client_id: p.client_id, secret: p.client_secret });
    let app = service.authenticate_client(&creds).await?;
    let tokens = if grant_type == "client_credentials" {
        service.client_token(&app).await?
    } else {
        let cmd = CodeExchange {
            code: required("code", p.code)?,
            redirect_uri: ExchangeRedirect::from_request(p.redirect_uri),
            code_verifier: p.code_verifier,
        };
        service.exchange_code(&app, cmd).await?
    };
    let mut answer = json!({
        "access_token": tokens.access_token,
        "token_type": "Bearer",
        "expires_in": tokens.expires_in.whole_seconds(),
        "scope": tokens.scope,
    });
    if let (Some(id), Some(refresh)) = (&tokens.id_token, &tokens.refresh_token) {
        answer["id_token"] = id.as_str().into();
        answer["refresh_token"] = refresh.as_str().into();
    }
    Ok(no_store(Json(answer).into_response()))
}
