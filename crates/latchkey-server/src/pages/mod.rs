//! The pages a person sees: the landing page of a link, and the hosted sign-in (`hosted/`).
//! Looking (GET, HEAD) never consumes; only the button's POST does, so mail scanners that
//! fetch links burn nothing. Failures are pages too ([`PageError`]).

pub(crate) mod hosted;

use crate::common::html::{escape, page};
use crate::common::{Cause, add_retry_after};
use axum::Router;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use latchkey_core::ChallengeStatus;
use latchkey_core::link_view::ViewMethod;
use latchkey_service::{Browser, Landing, OpenedLink, Service, ServiceError};
use std::net::SocketAddr;
use std::sync::Arc;

/// A use case that could not answer, said as a page.
#[derive(Debug)]
pub struct PageError(pub ServiceError);

impl From<ServiceError> for PageError {
    fn from(e: ServiceError) -> Self {
        Self(e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let mut response = match &self.0 {
            ServiceError::Refused(r) => page(
                StatusCode::BAD_REQUEST,
                "Something is not right",
                &format!("<h1>Something is not right</h1><p>{}</p>", escape(&r.to_string())),
            ),
            ServiceError::Unavailable(_) => page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again in a moment",
                "<h1>Try again in a moment</h1><p>The service is briefly unavailable. Reload this page shortly.</p>",
            ),
            ServiceError::Internal(_) => page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "<h1>Something went wrong</h1><p>Something went wrong on our side. Try again later.</p>",
            ),
        };
        add_retry_after(&self.0, &mut response);
        Cause::attach(&self.0, &mut response);
        response
    }
}

pub fn routes() -> Router<Arc<Service>> {
    Router::new().route("/l/{token}", get(landing).post(consume)).merge(hosted::routes())
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

/// GET, and HEAD (which axum answers with the same handler): shows the page, records the view.
async fn landing(
    State(service): State<Arc<Service>>,
    Path(token): Path<String>,
    method: Method,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let method = if method == Method::HEAD { ViewMethod::Head } else { ViewMethod::Get };
    let cookie = hosted::browser_cookie(&headers);
    Ok(match service.open_link(&token, method, &browser(&headers, peer), cookie.as_deref()).await? {
        OpenedLink::Hosted(landing) => hosted::render_landing(*landing, &headers),
        OpenedLink::Ordinary(landing) => render(landing),
    })
}

/// A form post from anywhere but this server's own page could sign the victim in as the
/// attacker (login CSRF): accept only a same-origin post, or one that says nothing of where it
/// comes from (old clients). `Origin: null` (sandboxed frames) unless `Sec-Fetch-Site` says
/// same-origin, `same-site`, several `Origin`
/// or `Sec-Fetch-Site` headers, or an unreadable one are refused.
pub(crate) fn cross_site(headers: &HeaderMap, service: &Service) -> bool {
    let single = |name| {
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (None, _) => Ok(None),
            (Some(v), None) => v.to_str().map(Some).map_err(|_| ()),
            (Some(_), Some(_)) => Err(()),
        }
    };
    let (Ok(fetch_site), Ok(origin)) = (single("sec-fetch-site"), single(header::ORIGIN.as_str())) else {
        return true;
    };
    let site_ok = matches!(fetch_site, None | Some("same-origin") | Some("none"));
    // Our pages send `Referrer-Policy: no-referrer`, under which Chromium sends `Origin: null`
    // even for a post from our own page; its `Sec-Fetch-Site: same-origin` (which no page can
    // forge, and which a sandboxed frame gets as `cross-site`) then says where it comes from.
    let own_null = origin == Some("null") && fetch_site == Some("same-origin");
    let origin_ok = own_null || origin.is_none_or(|o| o == service.issuer_origin());
    !(site_ok && origin_ok)
}

/// The browser's address: the first `X-Forwarded-For` hop when a proxy sets one, else the peer.
pub(crate) fn client_ip(headers: &HeaderMap, peer: SocketAddr) -> Option<String> {
    let forwarded =
        headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()).and_then(|v| v.split(',').next());
    Some(forwarded.map(|f| f.trim().to_owned()).unwrap_or_else(|| peer.ip().to_string()))
}

fn browser(headers: &HeaderMap, peer: SocketAddr) -> Browser {
    Browser {
        ip: client_ip(headers, peer),
        user_agent: headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned),
    }
}

async fn consume(
    State(service): State<Arc<Service>>,
    Path(token): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, PageError> {
    if cross_site(&headers, &service) {
        return Ok(refused_cross_site());
    }
    let Some(link) = service.find_link(&token).await? else { return Ok(render(Landing::NotFound)) };
    if let Some(landing) = service.hosted_landing(&link, hosted::browser_cookie(&headers).as_deref()) {
        return Ok(hosted::consume(&service, &link, landing, &headers, &body).await);
    }
    Ok(match service.consume_link(link, &browser(&headers, peer)).await? {
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

/// A form post from another site: nothing is done.
pub(crate) fn refused_cross_site() -> Response {
    page(
        StatusCode::FORBIDDEN,
        "Open the link from your e-mail",
        "<h1>Open the link from your e-mail</h1><p>This sign-in can only be confirmed from the page the link opens.</p>",
    )
}
