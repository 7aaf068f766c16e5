//! OAuth 2.0 and OpenID Connect: the token endpoint (one use case per grant), discovery, the
//! key set, userinfo, revocation (RFC 7009) and introspection (RFC 7662).

mod error;

pub use error::OAuthError;

use crate::common::body::{BodyError, Input};
use crate::common::credentials;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use latchkey_core::signing::SigningAlg;
use latchkey_core::{EmailAddress, Otp};
use latchkey_service::{
    CodeExchange, Credentials, ExchangeRedirect, Introspection, OtpExchange, Refusal, Service, TokenSet,
};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// Latchkey's grant for a sign-in by the e-mail's one-time code.
pub const OTP_GRANT: &str = "urn:latchkey:params:oauth:grant-type:email-otp";

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

type Result<T> = std::result::Result<T, OAuthError>;
type Body<T> = std::result::Result<Input<T>, BodyError>;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TokenBody {
    pub grant_type: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub refresh_token: Option<String>,
    pub email: Option<String>,
    pub otp: Option<String>,
}

impl TokenBody {
    /// The authorization_code grant's command, as the client sent it.
    fn code_exchange(&self) -> Result<CodeExchange> {
        Ok(CodeExchange {
            code: required("code", self.code.clone())?,
            redirect_uri: ExchangeRedirect::from_request(self.redirect_uri.clone()),
            code_verifier: self.code_verifier.clone(),
        })
    }
}

/// The calling application's credentials: the `Authorization` header's, completed by the
/// body's `client_id` and `client_secret` (client_secret_post).
pub fn client(headers: &HeaderMap, client_id: Option<String>, client_secret: Option<String>) -> Credentials {
    credentials::from_headers(headers).or(Credentials { client_id, secret: client_secret })
}

fn required(name: &str, value: Option<String>) -> Result<String> {
    value.ok_or_else(|| OAuthError::InvalidRequest(format!("{name} is required")))
}

/// The token response (RFC 6749 §5.1), never cached.
pub fn token_response(tokens: &TokenSet) -> Response {
    let mut body = json!({
        "access_token": tokens.access_token,
        "token_type": "Bearer",
        "expires_in": tokens.expires_in.whole_seconds(),
        "scope": tokens.scope,
    });
    if let Some(id) = &tokens.id_token {
        body["id_token"] = id.as_str().into();
    }
    if let Some(refresh) = &tokens.refresh_token {
        body["refresh_token"] = refresh.as_str().into();
    }
    let mut response = Json(body).into_response();
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

async fn token(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: Body<TokenBody>,
) -> Result<Response> {
    let Input(req) = body?;
    let grant_type = required("grant_type", req.grant_type.clone())?;
    if !matches!(
        grant_type.as_str(),
        "authorization_code" | "refresh_token" | "client_credentials" | OTP_GRANT
    ) {
        return Err(OAuthError::UnsupportedGrantType(grant_type));
    }
    let creds = client(&headers, req.client_id.clone(), req.client_secret.clone());
    if grant_type == "authorization_code" && creds.is_empty() {
        // No client authentication at all: only a code that is a credential on its own.
        return Ok(token_response(&service.exchange_code_alone(req.code_exchange()?).await?));
    }
    let app = service.authenticate_client(&creds).await?;
    let tokens = match grant_type.as_str() {
        "authorization_code" => service.exchange_code(&app, req.code_exchange()?).await?,
        "refresh_token" => service.refresh(&app, &required("refresh_token", req.refresh_token)?).await?,
        "client_credentials" => service.client_token(&app).await?,
        _ => {
            let email = required("email", req.email)?;
            let otp = required("otp", req.otp)?;
            // An address or code that does not parse is simply not the right code.
            let email = EmailAddress::parse(&email).map_err(|_| Refusal::OtpInvalid)?;
            let otp = Otp::parse(&otp).ok_or(Refusal::OtpInvalid)?;
            service.exchange_otp(&app, OtpExchange { email, otp }).await?
        }
    };
    Ok(token_response(&tokens))
}

async fn userinfo(State(service): State<Arc<Service>>, headers: HeaderMap) -> Result<Response> {
    let info = service.userinfo(credentials::bearer(&headers)).await?;
    let mut body =
        json!({ "sub": info.sub, "email": info.email.as_str(), "email_verified": info.email_verified });
    if let Some(name) = &info.name {
        body["name"] = name.as_str().into();
    }
    Ok(crate::common::no_store(Json(body).into_response()))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TokenParam {
    token: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

async fn revoke(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: Body<TokenParam>,
) -> Result<Response> {
    let Input(body) = body?;
    let app = service.authenticate_client(&client(&headers, body.client_id, body.client_secret)).await?;
    service.revoke(&app, &required("token", body.token)?).await?;
    Ok(crate::common::no_store(Json(json!({})).into_response()))
}

async fn introspect(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: Body<TokenParam>,
) -> Result<Response> {
    let Input(body) = body?;
    let app = service.authenticate_client(&client(&headers, body.client_id, body.client_secret)).await?;
    let answer = match service.introspect(&app, &required("token", body.token)?).await? {
        Introspection::Inactive => json!({ "active": false }),
        Introspection::Refresh { client_id, sub, scope, issued_at, expires_at } => json!({
            "active": true, "token_type": "refresh_token", "client_id": client_id, "sub": sub,
            "scope": scope, "iat": issued_at.unix_timestamp(), "exp": expires_at.unix_timestamp(),
            "iss": service.issuer(),
        }),
        Introspection::Access(c) => json!({
            "active": true, "token_type": "access_token", "iss": c.iss, "sub": c.sub, "aud": c.aud,
            "client_id": c.client_id, "scope": c.scope, "exp": c.exp, "iat": c.iat, "jti": c.jti,
        }),
    };
    Ok(crate::common::no_store(Json(answer).into_response()))
}

async fn jwks(State(service): State<Arc<Service>>) -> Response {
    crate::common::key_set(&service)
}

async fn discovery(State(service): State<Arc<Service>>) -> Response {
    let issuer = service.issuer();
    let algs: Vec<&str> = SigningAlg::ALL.iter().map(|a| a.as_str()).collect();
    let body = json!({
        "issuer": issuer,
        "authorization_endpoint": service.url("/oauth/authorize"),
        "end_session_endpoint": service.url("/oauth/logout"),
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
        "authorization_response_iss_parameter_supported": true,
        "ui_locales_supported": ["en", "fr", "de", "es"],
        "prompt_values_supported": ["none", "login"],
        "scopes_supported": ["openid", "email", "profile"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "email", "email_verified", "amr"],
    });
    ([(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"))], Json(body)).into_response()
}
