//! `POST /api/v2/oauth/token`: the client_credentials grant (an API token, a plain JWT whose
//! header names its issuer, as Cryptr's SDKs read it) and the exchange of a challenge's code,
//! with the application's credentials or with none (the code is then its own credential).

use super::{Body, CryptrError, Result};
use crate::common::body::Input;
use crate::common::credentials;
use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use latchkey_core::tokens::AccessTokenFormat;
use latchkey_service::{CodeExchange, Credentials, ExchangeRedirect, Service, TokenSet};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// Its parameters; `audience`, `domain` and `tenant_domain` are accepted and mean nothing here
/// (one deployment, one issuer).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TokenParams {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    code: Option<String>,
    code_verifier: Option<String>,
    redirect_uri: Option<String>,
}

fn required(name: &str, value: Option<String>) -> Result<String> {
    value.ok_or_else(|| CryptrError::BadRequest(format!("{name} is required")))
}

/// The exchange as Cryptr documents it: the code, and nothing else it must check against.
fn code_exchange(p: &TokenParams) -> Result<CodeExchange> {
    Ok(CodeExchange {
        code: required("code", p.code.clone())?,
        // Cryptr's documented exchange sends no redirect_uri: none given means none to compare.
        redirect_uri: p.redirect_uri.clone().map_or(
            ExchangeRedirect::Waived { because: "Cryptr's documented code exchange sends no redirect_uri" },
            ExchangeRedirect::Given,
        ),
        code_verifier: p.code_verifier.clone(),
    })
}

pub async fn token(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: Body<TokenParams>,
) -> Result<Response> {
    let Input(p) = body?;
    let creds = credentials::from_headers(&headers)
        .or(Credentials { client_id: p.client_id.clone(), secret: p.client_secret.clone() });
    let grant_type = required("grant_type", p.grant_type.clone())?;
    let answer = match grant_type.as_str() {
        "client_credentials" => {
            let app = service.authenticate_client(&creds).await?;
            let tokens = service.client_token_as(&app, AccessTokenFormat::PlainJwt).await?;
            json!({
                "access_token": tokens.access_token,
                "token_type": "Bearer",
                "expires_in": tokens.expires_in.whole_seconds(),
            })
        }
        "authorization_code" => {
            let cmd = code_exchange(&p)?;
            let tokens = if creds.is_empty() {
                service.exchange_code_alone(cmd).await?
            } else {
                let app = service.authenticate_caller(&creds).await?;
                service.exchange_code(&app, cmd).await?
            };
            sign_in_answer(&tokens)
        }
        _ => return Err(CryptrError::UnsupportedGrantType(grant_type)),
    };
    Ok(crate::common::no_store(Json(answer).into_response()))
}

/// The tokens of a sign-in, `scope` as a list as Cryptr's SDK models it.
fn sign_in_answer(tokens: &TokenSet) -> serde_json::Value {
    json!({
        "access_token": tokens.access_token,
        "id_token": tokens.id_token,
        "refresh_token": tokens.refresh_token,
        "token_type": "Bearer",
        "expires_in": tokens.expires_in.whole_seconds(),
        "scope": tokens.scope.split_whitespace().collect::<Vec<_>>(),
    })
}
