//! The hosted sign-in (OpenID Connect `/oauth/authorize`, §2.7): the e-mail page, the waiting
//! page and its status, the landing page of a hosted sign-in's link (same browser, or approval
//! from another device by number matching), the end states, and `/oauth/logout`.
//!
//! Looking (GET, HEAD) never consumes anything a person has not asked for: the link's page
//! consumes only on its form post, and a form post from another site is refused. The waiting
//! page and its status answer only the browser holding the request's cookie.

mod authorize;
mod cookies;
pub mod i18n;
pub(crate) mod render;

use super::{client_ip, cross_site};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cookies::{BROWSER, SESSION};
use latchkey_core::application::HostedPage;
use latchkey_core::{Application, EmailAddress};
use latchkey_service::{
    CodeOutcome, Decided, Decision, Finished, FoundLink, GoneReason, HostedLanding, Refusal, Service,
    ServiceError, WaitingView,
};
use minijinja::context;
use render::Look;
use std::net::SocketAddr;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/oauth/authorize", get(authorize::get).post(authorize::post))
        .route("/oauth/authorize/wait/{id}", get(wait).post(submit_code))
        .route("/oauth/authorize/wait/{id}/status", get(status))
        .route("/oauth/logout", get(logout))
        .route("/assets/hosted.js", get(script))
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300")),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        include_str!("assets/hosted.js"),
    )
        .into_response()
}

/// The page's language: `ui_locales`, then `Accept-Language`, then the application's default.
pub(super) fn language(
    ui_locales: Option<&str>,
    headers: &HeaderMap,
    app: Option<&Application>,
) -> &'static str {
    let accept = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).unwrap_or("");
    i18n::choose(ui_locales.unwrap_or("").split_whitespace())
        .or_else(|| i18n::choose(i18n::accept_language(accept)))
        .or_else(|| app.and_then(|a| a.settings.default_locale.as_deref()).and_then(|l| i18n::choose([l])))
        .unwrap_or("en")
}

/// A stored request's language (chosen when it started), else the browser's.
fn stored_language(stored: Option<&str>, headers: &HeaderMap, app: &Application) -> &'static str {
    stored.and_then(|l| i18n::choose([l])).unwrap_or_else(|| language(None, headers, Some(app)))
}

/// A use case that could not answer, as a hosted page.
pub(super) fn failure(look: &Look, e: &ServiceError) -> Response {
    let mut response = match e {
        ServiceError::Refused(Refusal::RateLimited { .. }) => {
            look.message(StatusCode::TOO_MANY_REQUESTS, "try_later_title", "try_later_body", None)
        }
        ServiceError::Refused(_) => {
            look.message(StatusCode::BAD_REQUEST, "error_title", "expired_body", None)
        }
        ServiceError::Unavailable(_) => {
            look.message(StatusCode::SERVICE_UNAVAILABLE, "try_later_title", "signed_out_body", None)
        }
        ServiceError::Internal(_) => {
            look.message(StatusCode::INTERNAL_SERVER_ERROR, "error_title", "expired_body", None)
        }
    };
    crate::common::add_retry_after(e, &mut response);
    crate::common::Cause::attach(e, &mut response);
    response
}

fn not_found(headers: &HeaderMap) -> Response {
    let look = Look::new(language(None, headers, None), None, None);
    look.message(StatusCode::NOT_FOUND, "expired_title", "expired_body", None)
}

/// 303 to the application with the code, and the browser session's cookie.
fn finished(service: &Service, done: Finished) -> Response {
    let mut response = see_other(&done.location);
    if let Some(session) = done.session {
        cookies::set(&mut response, service, SESSION, &session.value, Some(session.max_age.whole_seconds()));
    }
    response
}

pub(super) fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

fn gone_page(look: &Look, reason: GoneReason, restart: Option<&str>, status: StatusCode) -> Response {
    let (title, body) = match reason {
        GoneReason::Used => ("used_title", "used_body"),
        GoneReason::Approved => ("approved_title", "approved_body"),
        GoneReason::Declined => ("declined_title", "declined_body"),
        GoneReason::Cancelled => ("cancelled_title", "cancelled_body"),
        GoneReason::Expired => ("expired_title", "expired_body"),
    };
    look.message(status, title, body, restart.map(|r| ("start_again", r.to_owned())))
}

fn wait_page(look: &Look, view: &WaitingView, error: Option<String>, status: StatusCode) -> Response {
    let wait_url = format!("/oauth/authorize/wait/{}", view.request.id);
    look.page(
        status,
        HostedPage::Wait,
        "wait_title",
        true,
        context! {
            number => format!("{:02}", view.request.match_number),
            status_url => format!("{wait_url}/status"),
            wait_url,
            error,
        },
    )
}

/// The waiting page: goes on to the application once approved elsewhere, says why when the
/// request ended, and otherwise shows the number to match and the code form.
async fn wait(
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
    method: axum::http::Method,
    headers: HeaderMap,
) -> Response {
    let (view, look) = match waiting_view(&service, &id, &headers).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    // Only a real visit goes on (a HEAD only looks).
    if method != axum::http::Method::HEAD {
        match service.continue_approved(&view).await {
            Ok(Some(done)) => return finished(&service, done),
            Ok(None) => {}
            Err(e) => return failure(&look, &e),
        }
    }
    match service.gone_reason(&view.request, Some(&view.challenge)) {
        // Approved by another device: a GET goes on to the application, which a HEAD must not.
        Some(GoneReason::Approved) if method == axum::http::Method::HEAD => {
            wait_page(&look, &view, None, StatusCode::OK)
        }
        // Approved by another device, then already continued: this browser went on.
        Some(GoneReason::Approved) => {
            gone_page(&look, GoneReason::Used, view.request.restart.as_deref(), StatusCode::GONE)
        }
        Some(reason) => gone_page(&look, reason, view.request.restart.as_deref(), StatusCode::GONE),
        None => wait_page(&look, &view, None, StatusCode::OK),
    }
}

/// The request of a waiting page, for the browser holding its cookie, and how its pages look;
/// anyone else gets the not-found page.
async fn waiting_view(
    service: &Service,
    id: &str,
    headers: &HeaderMap,
) -> Result<(WaitingView, Look), Response> {
    let browser = cookies::get(headers, BROWSER);
    let view = match service.waiting(id, browser.as_deref()).await {
        Ok(Some(view)) => view,
        Ok(None) => return Err(not_found(headers)),
        Err(e) => return Err(failure(&Look::new(language(None, headers, None), None, None), &e)),
    };
    let look = Look::new(
        stored_language(view.request.locale.as_deref(), headers, &view.app),
        Some(&view.app),
        Some(view.email().as_str()),
    );
    Ok((view, look))
}

/// The code typed on the waiting page.
async fn submit_code(
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if cross_site(&headers, &service) {
        return super::refused_cross_site();
    }
    let (view, look) = match waiting_view(&service, &id, &headers).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let code: Option<String> = serde_html_form::from_bytes::<Vec<(String, String)>>(&body)
        .ok()
        .and_then(|fields| fields.into_iter().find(|(k, _)| k == "code").map(|(_, v)| v));
    match service.submit_hosted_code(&view, code.as_deref().unwrap_or("")).await {
        Ok(CodeOutcome::Finished(done)) => finished(&service, done),
        Ok(CodeOutcome::Wrong) => {
            wait_page(&look, &view, Some(look.word("code_wrong")), StatusCode::BAD_REQUEST)
        }
        Ok(CodeOutcome::Gone(reason)) => {
            gone_page(&look, reason, view.request.restart.as_deref(), StatusCode::GONE)
        }
        Err(e) => failure(&look, &e),
    }
}

/// The waiting page's live wait: the request's status, for the browser holding its cookie only.
async fn status(State(service): State<Arc<Service>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let browser = cookies::get(&headers, BROWSER);
    let (code, body) = match service.waiting(&id, browser.as_deref()).await {
        Ok(Some(view)) => {
            let status = match service.gone_reason(&view.request, Some(&view.challenge)) {
                None => "waiting",
                Some(GoneReason::Approved) => "approved",
                Some(GoneReason::Used) => "completed",
                Some(GoneReason::Declined) => "declined",
                Some(GoneReason::Cancelled) => "cancelled",
                Some(GoneReason::Expired) => "expired",
            };
            (StatusCode::OK, serde_json::json!({ "status": status }))
        }
        Ok(None) => (StatusCode::NOT_FOUND, serde_json::json!({ "error": "not_found" })),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({ "error": "unavailable" })),
    };
    let mut response = (code, axum::Json(body)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The browser cookie of the hosted sign-in, if the request carries one.
pub(super) fn browser_cookie(headers: &HeaderMap) -> Option<String> {
    cookies::get(headers, BROWSER)
}

pub(super) fn render_landing(landing: HostedLanding, headers: &HeaderMap) -> Response {
    match landing {
        HostedLanding::SameBrowser { email, app, .. } => {
            let look = Look::new(language(None, headers, Some(&app)), Some(&app), Some(email.as_str()));
            look.page(StatusCode::OK, HostedPage::SameBrowser, "same_title", false, context! {})
        }
        HostedLanding::Approve { email, app, request, .. } => {
            let look = Look::new(language(None, headers, Some(&app)), Some(&app), Some(email.as_str()));
            approval_page(&look, &request, &email)
        }
        HostedLanding::Gone { status, app, .. } => {
            let look = Look::new(language(None, headers, Some(&app)), Some(&app), None);
            gone_page(&look, status, None, StatusCode::GONE)
        }
    }
}

fn approval_page(
    look: &Look,
    request: &latchkey_core::hosted::HostedRequest,
    _email: &EmailAddress,
) -> Response {
    let when = request
        .created_at
        .format(time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC"))
        .unwrap_or_default();
    look.page(
        StatusCode::OK,
        HostedPage::Approve,
        "approve_title",
        false,
        context! {
            when,
            browser => describe_browser(request.user_agent.as_deref()),
            ip => request.ip.clone().unwrap_or_else(|| "?".into()),
            choices => request.choices.iter().map(|n| format!("{n:02}")).collect::<Vec<_>>(),
        },
    )
}

/// "Firefox on Linux", from a user agent, as far as it says.
fn describe_browser(ua: Option<&str>) -> String {
    let ua = ua.unwrap_or("");
    let browser = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
    ]
    .iter()
    .find(|(needle, _)| ua.contains(needle))
    .map_or("A browser", |(_, name)| name);
    let os = [
        ("Android", "Android"),
        ("iPhone", "iOS"),
        ("iPad", "iPadOS"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("CrOS", "ChromeOS"),
        ("Linux", "Linux"),
    ]
    .iter()
    .find(|(needle, _)| ua.contains(needle))
    .map(|(_, name)| *name);
    match os {
        Some(os) => format!("{browser} on {os}"),
        None => browser.to_owned(),
    }
}

/// The landing page's form post for a hosted sign-in's link (already checked as same-site):
/// the waiting browser finishes; another device approves by its pick, or declines.
/// `landing` is what `link` shows to this browser.
pub(super) async fn consume(
    service: &Service,
    link: &FoundLink,
    landing: HostedLanding,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let browser = browser_cookie(headers);
    let fields: Vec<(String, String)> = serde_html_form::from_bytes(body).unwrap_or_default();
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    match landing {
        HostedLanding::SameBrowser { ref app, ref email, .. } => {
            let look = Look::new(language(None, headers, Some(app)), Some(app), Some(email.as_str()));
            match service.hosted_consume_link(link, browser.as_deref()).await {
                Ok(Some(Ok(done))) => finished(service, done),
                Ok(Some(Err(reason))) => gone_page(&look, reason, None, StatusCode::GONE),
                Ok(None) => gone_page(&look, GoneReason::Used, None, StatusCode::GONE),
                Err(e) => failure(&look, &e),
            }
        }
        HostedLanding::Approve { ref app, ref email, ref request, .. } => {
            let look = Look::new(language(None, headers, Some(app)), Some(app), Some(email.as_str()));
            let decision = if field("decline").is_some() {
                Decision::Decline
            } else if let Some(n) = field("choice").and_then(|c| c.trim().parse::<u8>().ok()) {
                Decision::Pick(n)
            } else {
                // A post that chose nothing (a scanner pressing the page's first form) changes nothing.
                return approval_page(&look, request, email);
            };
            match service.decide(link, decision).await {
                Ok(Some(Decided::Approved)) => {
                    look.message(StatusCode::OK, "approved_title", "approved_body", None)
                }
                Ok(Some(Decided::Declined)) => {
                    look.message(StatusCode::OK, "declined_title", "declined_body", None)
                }
                Ok(Some(Decided::Cancelled)) => {
                    look.message(StatusCode::OK, "cancelled_title", "cancelled_body", None)
                }
                Ok(Some(Decided::TooLate(reason))) => gone_page(&look, reason, None, StatusCode::GONE),
                Ok(None) => gone_page(&look, GoneReason::Used, None, StatusCode::GONE),
                Err(e) => failure(&look, &e),
            }
        }
        landing @ HostedLanding::Gone { .. } => render_landing(landing, headers),
    }
}

/// OpenID Connect RP-Initiated Logout: ends the browser session, then goes back to the
/// application when it names a `post_logout_redirect_uri` it registered.
async fn logout(
    State(service): State<Arc<Service>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let fields: Vec<(String, String)> =
        serde_html_form::from_str(query.as_deref().unwrap_or("")).unwrap_or_default();
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let look = Look::new(language(field("ui_locales"), &headers, None), None, None);
    let target = match field("post_logout_redirect_uri") {
        Some(uri) => match service.logout_target(field("client_id"), field("id_token_hint"), uri).await {
            Ok(Some(target)) => Some(target),
            Ok(None) => {
                return look.message(StatusCode::BAD_REQUEST, "error_title", "signed_out_body", None);
            }
            Err(e) => return failure(&look, &e),
        },
        None => None,
    };
    if let Err(e) = service.end_session(cookies::get(&headers, SESSION).as_deref()).await {
        return failure(&look, &e);
    }
    let mut response = match target {
        Some(uri) => {
            let mut params = vec![];
            if let Some(state) = field("state") {
                params.push(("state", state));
            }
            let location = match latchkey_core::RedirectUri::parse(&uri) {
                Ok(u) => u.with_params(params),
                Err(_) => uri,
            };
            see_other(&location)
        }
        None => look.message(StatusCode::OK, "signed_out_title", "signed_out_body", None),
    };
    cookies::set(&mut response, &service, SESSION, "", Some(0));
    response
}

/// Used by the e-mail page's form post: the browser's address and user agent.
pub(super) fn requester(headers: &HeaderMap, peer: SocketAddr) -> (Option<String>, Option<String>) {
    let ua = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned);
    (client_ip(headers, peer), ua)
}

pub(super) type Peer = ConnectInfo<SocketAddr>;

#[cfg(test)]
mod tests {
    use super::describe_browser;

    #[test]
    fn describes_common_browsers() {
        let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
        assert_eq!(describe_browser(Some(chrome)), "Chrome on Linux");
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Version/17.0 Mobile/15E148 Safari/604.1";
        assert_eq!(describe_browser(Some(iphone)), "Safari on iOS");
        assert_eq!(describe_browser(None), "A browser");
    }
}
