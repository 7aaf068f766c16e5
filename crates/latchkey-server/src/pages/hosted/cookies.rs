//! The two cookies of the hosted sign-in: the browser's (binding a request to the browser that
//! started it) and the session's. Random values, HttpOnly, SameSite=Lax, Secure over https.

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use latchkey_service::Service;

pub const BROWSER: &str = "latchkey_browser";
pub const SESSION: &str = "latchkey_session";

/// How long the browser cookie lasts: longer than any sign-in request.
pub const BROWSER_MAX_AGE: i64 = 24 * 60 * 60;

/// The value of a cookie the request carries.
pub fn get(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

pub fn set(response: &mut Response, service: &Service, name: &str, value: &str, max_age: Option<i64>) {
    let secure = if service.issuer().starts_with("https://") { "; Secure" } else { "" };
    let age = max_age.map(|a| format!("; Max-Age={a}")).unwrap_or_default();
    let cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax{secure}{age}");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}
