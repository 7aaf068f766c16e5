//! Extractors that parse requests at the edge: bodies (JSON or form), the admin, the calling
//! application.

use super::error::{ApiError, Native};
use crate::service::{ClientCredentials, Service};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use latchkey_core::Application;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// The largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

/// A body as JSON or form-encoded. The content type decides when it says JSON or form; a
/// missing or `text/plain` one is sniffed (some SDKs mislabel their bodies). Unknown fields are
/// ignored; an empty body is an empty object.
#[derive(Debug)]
pub struct Input<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Input<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
        let bytes =
            axum::body::to_bytes(req.into_body(), BODY_LIMIT).await.map_err(|_| ApiError::TooLarge)?;
        let looks_json = bytes.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|b| *b == b'{');
        let json = match content_type.as_deref() {
            Some(ct) if ct == "application/json" || ct.ends_with("+json") => {
                looks_json || bytes.is_empty() || !looks_form(&bytes)
            }
            Some("application/x-www-form-urlencoded") => looks_json,
            None | Some("text/plain") => looks_json,
            Some(_) => return Err(ApiError::UnsupportedMediaType),
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return serde_json::from_slice(b"{}")
                .map(Input)
                .map_err(|e| ApiError::Malformed(describe(&e.to_string())));
        }
        if json {
            serde_json::from_slice(&bytes)
                .map(Input)
                .map_err(|e| ApiError::Malformed(format!("invalid JSON body: {}", describe(&e.to_string()))))
        } else {
            serde_html_form::from_bytes(&bytes)
                .map(Input)
                .map_err(|e| ApiError::Malformed(format!("invalid form body: {}", describe(&e.to_string()))))
        }
    }
}

fn looks_form(bytes: &[u8]) -> bool {
    bytes.contains(&b'=')
}

/// Parser messages name fields and types, never values; bound their length all the same.
fn describe(message: &str) -> String {
    message.chars().take(200).collect()
}

/// The admin, authenticated by the admin token.
#[derive(Debug)]
pub struct Admin;

impl FromRequestParts<Arc<Service>> for Admin {
    type Rejection = Native;

    async fn from_request_parts(parts: &mut Parts, service: &Arc<Service>) -> Result<Self, Self::Rejection> {
        service.authenticate_admin(bearer(&parts.headers)).map(|()| Admin).map_err(Native::from)
    }
}

/// The application calling the native API, by HTTP Basic or a bearer client secret.
#[derive(Debug)]
pub struct Caller(pub Application);

impl FromRequestParts<Arc<Service>> for Caller {
    type Rejection = Native;

    async fn from_request_parts(parts: &mut Parts, service: &Arc<Service>) -> Result<Self, Self::Rejection> {
        let creds = credentials(&parts.headers);
        service.authenticate_caller(&creds).await.map(Caller).map_err(Native::from)
    }
}

pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// The credentials of an `Authorization` header: Basic (client id and secret, each
/// form-urlencoded as RFC 6749 §2.3.1 says) or Bearer (a client secret).
pub fn credentials(headers: &HeaderMap) -> ClientCredentials {
    if let Some(secret) = bearer(headers) {
        return ClientCredentials { client_id: None, client_secret: Some(secret.to_owned()) };
    }
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .and_then(|(_, b64)| STANDARD.decode(b64.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok());
    let Some(pair) = basic else { return ClientCredentials::default() };
    let (id, secret) = pair.split_once(':').unwrap_or((&pair, ""));
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("v={s}").as_bytes()).next().map(|(_, v)| v.into_owned())
    };
    ClientCredentials { client_id: decode(id), client_secret: decode(secret) }
}
