//! Development pages (`--dev` and the development mailbox): start a sign-in for the demo
//! application, read the mail it sent, and see the tokens it ends with. They answer only
//! requests from loopback addresses or carrying the admin token, since they show live links.

use crate::common::body::{BodyError, Input};
use crate::common::credentials::bearer;
use crate::common::html::{escape, page};
use crate::pages::PageError;
use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey_core::EmailAddress;
use latchkey_service::{CodeExchange, ExchangeRedirect, NewMagicLink, Service};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/dev", get(home))
        .route("/dev/sign-in", post(sign_in))
        .route("/dev/callback", get(callback))
        .route("/dev/mailbox", get(mailbox))
        .route("/dev/mailbox/{n}", get(message))
        .route("/dev/mailbox/{n}/{view}", get(message_as_text))
}

fn allowed(service: &Service, peer: SocketAddr, headers: &HeaderMap) -> bool {
    peer.ip().is_loopback() || service.authenticate_admin(bearer(headers)).is_ok()
}

fn refused() -> Response {
    page(
        StatusCode::FORBIDDEN,
        "Not allowed",
        "<h1>Not allowed</h1><p>Development pages answer only loopback requests or the admin token.</p>",
    )
}

fn not_an_address() -> Response {
    page(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Not an e-mail address",
        "<h1>Not an e-mail address</h1><p>Type an address such as you@example.com. <a href=\"/dev\">Back</a></p>",
    )
}

fn off() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Not available",
        "<h1>Not available</h1><p>Start the server with <code>--dev</code> for the development pages.</p>",
    )
}

async fn home(
    State(service): State<Arc<Service>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if service.demo_app().is_none() {
        return off();
    }
    if !allowed(&service, peer, &headers) {
        return refused();
    }
    page(
        StatusCode::OK,
        "Latchkey development",
        "<h1>Try a sign-in</h1><p>Enter any address: the e-mail goes to the development mailbox \
         (or your SMTP server), the link signs you in to the demo application, and you see its tokens.</p>\
         <form method=\"post\" action=\"/dev/sign-in\"><p><input name=\"email\" type=\"email\" required \
         placeholder=\"you@example.com\" style=\"width:100%;padding:10px;font:inherit;box-sizing:border-box\"></p>\
         <button type=\"submit\">Send me a sign-in link</button></form>\
         <p><a href=\"/dev/mailbox\">Open the development mailbox</a></p>",
    )
}

#[derive(Debug, Deserialize)]
struct SignInForm {
    email: String,
}

async fn sign_in(
    State(service): State<Arc<Service>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Input<SignInForm>, BodyError>,
) -> Result<Response, PageError> {
    if service.demo_app().is_none() {
        return Ok(off());
    }
    if !allowed(&service, peer, &headers) {
        return Ok(refused());
    }
    let Ok(Input(form)) = form else { return Ok(not_an_address()) };
    let Ok(email) = EmailAddress::parse(&form.email) else { return Ok(not_an_address()) };
    let app = service.demo_application().await?;
    service.create_magic_link(&app, NewMagicLink::new(email)).await?;
    let next = if service.dev_mailbox().is_some() { "/dev/mailbox" } else { "/dev" };
    Ok(Redirect::to(next).into_response())
}

async fn mailbox(
    State(service): State<Arc<Service>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let Some(mailbox) = service.dev_mailbox().cloned() else { return off() };
    if !allowed(&service, peer, &headers) {
        return refused();
    }
    let rows: String = mailbox
        .messages()
        .iter()
        .enumerate()
        .map(|(i, m)| {
            format!(
                "<tr><td>{}</td><td><a href=\"/dev/mailbox/{i}\">{}</a><br><small>From {} · \
                 <a href=\"/dev/mailbox/{i}\">HTML</a> · <a href=\"/dev/mailbox/{i}/text\">text</a> · \
                 <a href=\"/dev/mailbox/{i}/source\">source</a></small></td></tr>\
                 <tr><td colspan=\"2\"><pre>{}</pre></td></tr>",
                escape(&m.to),
                escape(&m.subject),
                escape(&m.from),
                escape(&m.text)
            )
        })
        .collect();
    let body = if rows.is_empty() {
        "<h1>Development mailbox</h1><p>No messages yet. <a href=\"/dev\">Send one</a>.</p>".to_owned()
    } else {
        format!(
            "<h1>Development mailbox</h1><p>Newest first.</p><table><tr><th>To</th><th>Subject</th></tr>{rows}</table>"
        )
    };
    page(StatusCode::OK, "Development mailbox", &body)
}

/// One message's HTML part, as sent.
async fn message(
    State(service): State<Arc<Service>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(n): Path<usize>,
) -> Response {
    let Some(mailbox) = service.dev_mailbox().cloned() else { return off() };
    if !allowed(&service, peer, &headers) {
        return refused();
    }
    match mailbox.messages().get(n) {
        Some(m) => {
            let mut response = (StatusCode::OK, m.html.clone()).into_response();
            let h = response.headers_mut();
            h.insert(header::CONTENT_TYPE, "text/html; charset=utf-8".parse().expect("static header"));
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:"
                    .parse()
                    .expect("static header"),
            );
            h.insert(header::CACHE_CONTROL, "no-store".parse().expect("static header"));
            response
        }
        None => page(StatusCode::NOT_FOUND, "No such message", "<h1>No such message</h1>"),
    }
}

/// One message's text part (`text`), or the whole message as it goes over SMTP (`source`):
/// headers, `Date`, `Message-ID` and both MIME parts.
async fn message_as_text(
    State(service): State<Arc<Service>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path((n, view)): Path<(usize, String)>,
) -> Response {
    let Some(mailbox) = service.dev_mailbox().cloned() else { return off() };
    if !allowed(&service, peer, &headers) {
        return refused();
    }
    let body = match view.as_str() {
        "text" => mailbox.messages().get(n).map(|m| m.text.clone()),
        "source" => mailbox.source(n),
        _ => None,
    };
    match body {
        Some(body) => {
            let mut response = (StatusCode::OK, body).into_response();
            let h = response.headers_mut();
            h.insert(header::CONTENT_TYPE, "text/plain; charset=utf-8".parse().expect("static header"));
            h.insert(header::X_CONTENT_TYPE_OPTIONS, "nosniff".parse().expect("static header"));
            h.insert(header::CACHE_CONTROL, "no-store".parse().expect("static header"));
            response
        }
        None => page(StatusCode::NOT_FOUND, "No such message", "<h1>No such message</h1>"),
    }
}

#[derive(Debug, Deserialize)]
struct CallbackQuery {
    code: Option<String>,
}

/// The demo application's redirect target: exchanges the code and shows the decoded tokens.
async fn callback(
    State(service): State<Arc<Service>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Response {
    if service.demo_app().is_none() {
        return off();
    }
    if !allowed(&service, peer, &headers) {
        return refused();
    }
    let Some(code) = query.code else {
        return page(
            StatusCode::BAD_REQUEST,
            "No code",
            "<h1>No code</h1><p>This page is where the demo application's sign-ins land.</p>",
        );
    };
    let cmd = CodeExchange { code, redirect_uri: ExchangeRedirect::NotGiven, code_verifier: None };
    let exchanged = match service.demo_application().await {
        Ok(app) => service.exchange_code(&app, cmd).await,
        Err(e) => Err(e),
    };
    match exchanged {
        Ok(tokens) => {
            let body = format!(
                "<h1>Signed in</h1><p>The demo application exchanged its code for these tokens.</p>\
                 <h2>id_token</h2><pre>{}</pre><h2>access_token</h2><pre>{}</pre><p><a href=\"/dev\">Again</a></p>",
                escape(&decode_jwt(tokens.id_token.as_deref().unwrap_or_default())),
                escape(&decode_jwt(&tokens.access_token))
            );
            page(StatusCode::OK, "Signed in", &body)
        }
        Err(e) => page(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            &format!(
                "<h1>Sign-in failed</h1><p>{}</p><p><a href=\"/dev\">Try again</a></p>",
                escape(&e.to_string())
            ),
        ),
    }
}

/// The header and claims of a JWT, pretty-printed.
fn decode_jwt(jwt: &str) -> String {
    jwt.split('.')
        .take(2)
        .filter_map(|part| URL_SAFE_NO_PAD.decode(part).ok())
        .filter_map(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .map(|v| serde_json::to_string_pretty(&v).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}
