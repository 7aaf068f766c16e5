//! The pages a person sees: the landing page of a link. Looking (GET, HEAD) never consumes;
//! only the button's POST does, so mail scanners that fetch links burn nothing.

use super::error::Native;
use crate::service::{Browser, Landing, Service};
use axum::Router;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use latchkey_core::ChallengeStatus;
use std::net::SocketAddr;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Service>> {
    Router::new().route("/l/{token}", get(landing).post(consume)).route("/oauth/authorize", get(authorize))
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{margin:0;font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;background:#f5f5f7;color:#1d1d1f}\
main{max-width:440px;margin:12vh auto;background:#fff;border-radius:12px;padding:32px;box-shadow:0 1px 3px rgba(0,0,0,.08)}\
h1{font-size:22px;margin:0 0 12px}p{line-height:1.5}button{font:inherit;font-weight:600;background:#2f5bea;color:#fff;border:0;\
border-radius:8px;padding:12px 20px;cursor:pointer;width:100%}a{color:#2f5bea}code,pre{font-family:Menlo,Consolas,monospace}\
pre{white-space:pre-wrap;word-break:break-all;background:#f5f5f7;padding:12px;border-radius:8px;font-size:13px}\
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:6px;border-bottom:1px solid #eee;vertical-align:top}";

/// A whole page with the security headers every page sends.
pub fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><title>{}</title><style>{STYLE}</style></head>\
         <body><main>{body}</main></body></html>",
        escape(title)
    );
    let mut response = (status, html).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' https: data:; frame-ancestors 'none'; base-uri 'none'"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

fn not_found() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Link not found",
        "<h1>This link is not valid</h1><p>Check that you opened the whole link from the e-mail, \
         or ask for a new one from the application you were signing in to.</p>",
    )
}

fn gone(status: ChallengeStatus, product: &str, back: Option<&str>) -> Response {
    let why = match status {
        ChallengeStatus::Consumed => "This link has already been used.",
        ChallengeStatus::Expired => "This link has expired.",
        _ => "This link is no longer valid.",
    };
    let back = back
        .map(|b| format!("<p><a href=\"{}\">Back to {}</a></p>", escape(b), escape(product)))
        .unwrap_or_default();
    page(
        StatusCode::GONE,
        "Link no longer valid",
        &format!(
            "<h1>{why}</h1><p>Each sign-in link works once and for a limited time. Ask {} for a new one.</p>{back}",
            escape(product)
        ),
    )
}

fn render(landing: Landing) -> Response {
    match landing {
        Landing::NotFound => not_found(),
        Landing::Gone { status, product, back } => gone(status, &product, back.as_deref()),
        Landing::OtherDevice { product } => page(
            StatusCode::FORBIDDEN,
            "Finish on your other device",
            &format!(
                "<h1>Finish on the device where you started</h1><p>This link was opened in another browser than \
                 the one that asked to sign in to {product}, which this sign-in does not allow.</p>\
                 <p>Go back to {product} on the device where you started and type the 6-digit code from the \
                 same e-mail.</p>",
                product = escape(&product)
            ),
        ),
        Landing::Ready(view) => page(
            StatusCode::OK,
            &format!("Sign in to {}", view.product),
            &format!(
                "<h1>Sign in to {product}</h1><p>You are signing in as <strong>{email}</strong>.</p>\
                 <form method=\"post\"><button type=\"submit\">Continue to {product}</button></form>{other_device}\
                 <p style=\"color:#6e6e73;font-size:13px\">If you did not ask to sign in, close this page.</p>",
                product = escape(&view.product),
                email = escape(view.email.as_str()),
                other_device = if view.bound { OTHER_DEVICE_HINT } else { "" }
            ),
        ),
    }
}

/// Shown when the sign-in is bound to the device that started it: the button only helps there.
const OTHER_DEVICE_HINT: &str = "<p>Started on another device or in another browser? Pressing the button here \
     will not sign you in there: type the 6-digit code from the same e-mail on that device instead.</p>";

async fn landing(State(service): State<Arc<Service>>, Path(token): Path<String>) -> Result<Response, Native> {
    Ok(render(service.view_link(&token).await?))
}

/// A cross-site form post could sign the victim in as the attacker (login CSRF): refuse it.
fn cross_site(headers: &HeaderMap, service: &Service) -> bool {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    fetch_site == Some("cross-site") || origin.is_some_and(|o| o != "null" && o != service.issuer_origin())
}

/// The browser's address: the first `X-Forwarded-For` hop when a proxy sets one, else the peer.
fn client_ip(headers: &HeaderMap, peer: SocketAddr) -> Option<String> {
    let forwarded =
        headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()).and_then(|v| v.split(',').next());
    Some(forwarded.map(|f| f.trim().to_owned()).unwrap_or_else(|| peer.ip().to_string()))
}

async fn consume(
    State(service): State<Arc<Service>>,
    Path(token): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, Native> {
    if cross_site(&headers, &service) {
        return Ok(page(
            StatusCode::FORBIDDEN,
            "Open the link from your e-mail",
            "<h1>Open the link from your e-mail</h1><p>This sign-in can only be confirmed from the page the link opens.</p>",
        ));
    }
    let browser = Browser {
        ip: client_ip(&headers, peer),
        user_agent: headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned),
    };
    Ok(match service.consume_link(&token, &browser).await? {
        Ok(location) => {
            let mut response = StatusCode::SEE_OTHER.into_response();
            let h = response.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&location) {
                h.insert(header::LOCATION, v);
            }
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
            response
        }
        Err(landing) => render(landing),
    })
}

async fn authorize() -> Response {
    page(
        StatusCode::BAD_REQUEST,
        "Sign in from your application",
        "<h1>Sign in from your application</h1><p>This server does not host a sign-in form. \
         Sign-in starts when the application's back end asks for a magic link or a code.</p>",
    )
}
