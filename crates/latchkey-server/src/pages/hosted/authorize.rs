//! `/oauth/authorize` (GET, or form POST) for `response_type=code`, per OpenID Connect Core:
//! an unknown client or a redirect URI off its list is an error page (never a redirect); any
//! other problem goes back to the application as `error`, with `state` and `iss` (RFC 9207).
//! A browser session answers at once; otherwise the e-mail page, whose own form post (same
//! origin only) starts the sign-in.

use super::render::Look;
use super::{Peer, cookies, failure, language, requester, see_other};
use crate::pages::cross_site;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use latchkey_core::application::HostedPage;
use latchkey_core::challenge::StateText;
use latchkey_core::pkce::CodeChallenge;
use latchkey_core::{Application, EmailAddress, OpaqueToken, RedirectUri};
use latchkey_mail::Locale;
use latchkey_service::{Authorization, Refusal, Service, ServiceError};
use minijinja::context;
use std::sync::Arc;

/// The parameters the e-mail page carries over to its own form post.
const CARRIED: [&str; 12] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "login_hint",
    "prompt",
    "max_age",
    "ui_locales",
];

type Fields = Vec<(String, String)>;

fn field<'a>(fields: &'a Fields, name: &str) -> Option<&'a str> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
}

/// A request that passed every check.
struct Valid {
    app: Application,
    authz: Authorization,
    prompt_none: bool,
    login_hint: Option<String>,
    lang: &'static str,
    carried: Fields,
}

/// Where an error goes back to the application.
fn error_redirect(
    service: &Service,
    uri: &RedirectUri,
    error: &str,
    description: &str,
    state: Option<&str>,
) -> Response {
    let mut params = vec![("error", error), ("error_description", description)];
    if let Some(state) = state {
        params.push(("state", state));
    }
    params.push(("iss", service.issuer()));
    see_other(&uri.with_params(params))
}

/// The response of a refused request (boxed: a response is large).
type Refused = Box<Response>;

async fn validate(service: &Service, fields: &Fields, headers: &HeaderMap) -> Result<Valid, Refused> {
    let early = |e: Option<ServiceError>| -> Refused {
        let look = Look::new(language(field(fields, "ui_locales"), headers, None), None, None);
        Box::new(match e {
            Some(ServiceError::Refused(_)) | None => {
                look.message(StatusCode::BAD_REQUEST, "error_title", "error_body", None)
            }
            Some(e) => failure(&look, &e),
        })
    };
    // Repeated parameters are refused (OAuth 2.0 §3.1) before anything else, as an error page:
    // which client or redirect URI was meant is not certain.
    for name in CARRIED {
        if fields.iter().filter(|(k, _)| k == name).count() > 1 {
            return Err(early(None));
        }
    }
    let Some(client_id) = field(fields, "client_id") else { return Err(early(None)) };
    let (app, uri) = match service.authorization_client(client_id, field(fields, "redirect_uri")).await {
        Ok(found) => found,
        Err(e) => return Err(early(Some(e))),
    };
    let state = field(fields, "state");
    let Ok(state_text) = state.map(StateText::parse).transpose() else {
        return Err(Box::new(error_redirect(service, &uri, "invalid_request", "state is too long", None)));
    };
    let fail = |error: &str, description: &str| {
        Err(Box::new(error_redirect(service, &uri, error, description, state)))
    };
    match field(fields, "response_type") {
        Some("code") => {}
        None => return fail("invalid_request", "response_type is required"),
        Some(_) => return fail("unsupported_response_type", "only response_type=code is supported"),
    }
    if !field(fields, "scope").unwrap_or("").split_whitespace().any(|s| s == "openid") {
        return fail("invalid_scope", "scope must contain openid");
    }
    let Ok(nonce) = field(fields, "nonce").map(StateText::parse).transpose() else {
        return fail("invalid_request", "nonce is too long");
    };
    let code_challenge = match (field(fields, "code_challenge"), field(fields, "code_challenge_method")) {
        (None, None) => None,
        (None, Some(_)) => return fail("invalid_request", "code_challenge_method without code_challenge"),
        (Some(_), method) if method != Some("S256") => {
            return fail("invalid_request", "code_challenge_method must be S256");
        }
        (Some(c), method) => match CodeChallenge::parse(c, method) {
            Ok(c) => Some(c),
            Err(_) => return fail("invalid_request", "code_challenge is not a valid S256 challenge"),
        },
    };
    if app.public && code_challenge.is_none() {
        return fail("invalid_request", "a public client must send a code_challenge (S256)");
    }
    let prompts: Vec<&str> = field(fields, "prompt").unwrap_or("").split_whitespace().collect();
    let prompt_none = prompts.contains(&"none");
    if prompt_none && prompts.len() > 1 {
        return fail("invalid_request", "prompt=none cannot be combined with other values");
    }
    let max_age = match field(fields, "max_age") {
        None => None,
        Some(m) => match m.parse::<u32>() {
            Ok(m) => Some(i64::from(m)),
            Err(_) => return fail("invalid_request", "max_age must be a number of seconds"),
        },
    };
    let lang = language(field(fields, "ui_locales"), headers, Some(&app));
    let carried = CARRIED
        .iter()
        .filter_map(|name| field(fields, name).map(|v| ((*name).to_owned(), v.to_owned())))
        .collect();
    Ok(Valid {
        authz: Authorization {
            redirect_uri: uri,
            state: state_text,
            nonce,
            code_challenge,
            fresh: prompts.contains(&"login") || max_age == Some(0),
            max_age,
        },
        app,
        prompt_none,
        login_hint: field(fields, "login_hint").filter(|h| h.len() <= 254).map(str::to_owned),
        lang,
        carried,
    })
}

/// Signs in with the browser's session when it has a usable one; `None`: the e-mail page.
async fn with_session(service: &Service, valid: &Valid, headers: &HeaderMap) -> Option<Response> {
    let cookie = cookies::get(headers, cookies::SESSION);
    let look = || Look::new(valid.lang, Some(&valid.app), None);
    let session = match service.usable_session(cookie.as_deref(), &valid.authz).await {
        Ok(s) => s,
        Err(e) => return Some(failure(&look(), &e)),
    };
    let state = valid.authz.state.as_ref().map(|s| s.as_str());
    match session {
        Some(session) => Some(match service.sign_in_with_session(&valid.app, &valid.authz, &session).await {
            Ok(location) => see_other(&location),
            Err(e) => failure(&look(), &e),
        }),
        None if valid.prompt_none => Some(error_redirect(
            service,
            &valid.authz.redirect_uri,
            "login_required",
            "the browser has no session that this request accepts",
            state,
        )),
        None => None,
    }
}

fn email_page(valid: &Valid, email: Option<&str>, error: Option<String>, status: StatusCode) -> Response {
    let look = Look::new(valid.lang, Some(&valid.app), None);
    look.page(
        status,
        HostedPage::Email,
        "email_title",
        false,
        context! {
            hidden => valid.carried.iter().map(|(k, v)| vec![k.clone(), v.clone()]).collect::<Vec<_>>(),
            login_hint => email.map(str::to_owned).or_else(|| valid.login_hint.clone()).unwrap_or_default(),
            error,
        },
    )
}

async fn answer(service: &Service, fields: Fields, headers: &HeaderMap) -> Response {
    let valid = match validate(service, &fields, headers).await {
        Ok(v) => v,
        Err(response) => return *response,
    };
    if let Some(response) = with_session(service, &valid, headers).await {
        return response;
    }
    email_page(&valid, None, None, StatusCode::OK)
}

pub async fn get(
    State(service): State<Arc<Service>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let fields: Fields = serde_html_form::from_str(query.as_deref().unwrap_or("")).unwrap_or_default();
    answer(&service, fields, &headers).await
}

/// A form post: the application's authorization request (answered as a GET is), or the
/// e-mail page's own form (same origin only), which starts the sign-in.
pub async fn post(
    State(service): State<Arc<Service>>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields: Fields = serde_html_form::from_bytes(&body).unwrap_or_default();
    let typed = fields.iter().find(|(k, _)| k == "email").map(|(_, v)| v.clone());
    let Some(typed) = typed.filter(|_| !cross_site(&headers, &service)) else {
        return answer(&service, fields, &headers).await;
    };
    let valid = match validate(&service, &fields, &headers).await {
        Ok(v) => v,
        Err(response) => return *response,
    };
    let look = Look::new(valid.lang, Some(&valid.app), None);
    let Ok(email) = EmailAddress::parse(typed.trim()) else {
        return email_page(&valid, Some(&typed), Some(look.word("email_invalid")), StatusCode::BAD_REQUEST);
    };
    let existing = cookies::get(&headers, cookies::BROWSER).filter(|c| c.len() <= 128);
    let browser = existing.clone().unwrap_or_else(|| OpaqueToken::generate().expose().to_owned());
    let (ip, user_agent) = requester(&headers, peer.0);
    let restart = format!(
        "/oauth/authorize?{}",
        url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&valid.carried).finish()
    );
    let locale = Locale::parse(valid.lang).ok();
    let started = service
        .start_hosted_sign_in(
            &valid.app,
            &valid.authz,
            email,
            &browser,
            ip,
            user_agent,
            locale,
            Some(restart),
        )
        .await;
    let mut response = match started {
        Ok(id) => see_other(&format!("/oauth/authorize/wait/{id}")),
        Err(ServiceError::Refused(Refusal::Invalid { .. })) => {
            return email_page(
                &valid,
                Some(&typed),
                Some(look.word("email_invalid")),
                StatusCode::BAD_REQUEST,
            );
        }
        Err(e) => return failure(&look, &e),
    };
    if existing.is_none() {
        cookies::set(&mut response, &service, cookies::BROWSER, &browser, Some(cookies::BROWSER_MAX_AGE));
    }
    response
}
