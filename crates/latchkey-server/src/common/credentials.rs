//! Credentials as the `Authorization` header carries them.

use axum::http::{HeaderMap, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use latchkey_service::Credentials;

pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// The credentials of an `Authorization` header: Basic (client id and secret, each
/// form-urlencoded as RFC 6749 §2.3.1 says) or Bearer (a client secret or a client token).
pub fn from_headers(headers: &HeaderMap) -> Credentials {
    if let Some(secret) = bearer(headers) {
        return Credentials { client_id: None, secret: Some(secret.to_owned()) };
    }
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .and_then(|(_, b64)| STANDARD.decode(b64.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok());
    let Some(pair) = basic else { return Credentials::default() };
    let (id, secret) = pair.split_once(':').unwrap_or((&pair, ""));
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("v={s}").as_bytes()).next().map(|(_, v)| v.into_owned())
    };
    Credentials { client_id: decode(id), secret: decode(secret) }
}
