//! Magic links: create (send the e-mail, or hand link and code to the caller), read, revoke.

use super::{Body, Caller, NativeError, Result, parse};
use crate::common::body::Input;
use crate::common::{no_store, rfc3339};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use latchkey_core::id::ChallengeId;
use latchkey_service::{LinkViewReport, NewMagicLink, Refusal, Resource, Service};
use latchkey_store::ChallengeRecord;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn routes() -> OpenApiRouter<Arc<Service>> {
    OpenApiRouter::new()
        .routes(routes!(create_magic_link))
        .routes(routes!(read_magic_link, revoke_magic_link))
}

/// A sign-in for one address: an e-mail with a link and a one-time code.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default)]
pub struct MagicLinkBody {
    pub email: Option<String>,
    pub redirect_uri: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub expires_in: Option<i64>,
    pub send_email: Option<bool>,
    pub organization: Option<String>,
    pub create_user: Option<bool>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub locale: Option<String>,
}

impl TryFrom<MagicLinkBody> for NewMagicLink {
    type Error = NativeError;

    fn try_from(b: MagicLinkBody) -> Result<Self> {
        let email = parse::email(b.email.as_deref())?;
        let redirect_uri = parse::requested_redirect(b.redirect_uri.as_deref())?;
        let expires_in = parse::expires_in(b.expires_in)?;
        let code_challenge = parse::code_challenge(b.code_challenge, b.code_challenge_method)?;
        let organization = parse::bounded("organization", b.organization)
            .map_err(|_| NativeError::field("organization", "organization is an id or a slug"))?;
        Ok(NewMagicLink {
            email,
            redirect_uri,
            state: parse::bounded("state", b.state)?,
            nonce: parse::bounded("nonce", b.nonce)?,
            expires_in,
            send_email: b.send_email.unwrap_or(true),
            organization,
            create_user: b.create_user.unwrap_or(true),
            code_challenge,
            client_ip: parse::bounded("client_ip", b.client_ip)?,
            user_agent: parse::bounded("user_agent", b.user_agent)?,
            locale: parse::locale("locale", b.locale.as_deref())?,
            style: None,
            code_is_credential: false,
        })
    }
}

/// A magic link just made; `link` and `otp` only when the caller delivers them itself
/// (`send_email: false`).
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedMagicLinkView {
    pub id: String,
    /// Always `magic_link`.
    pub object: &'static str,
    pub email: String,
    pub expires_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otp: Option<String>,
}

/// A magic link's state, delivery included.
#[derive(Debug, Serialize, ToSchema)]
pub struct MagicLinkView {
    pub id: String,
    /// Always `magic_link`.
    pub object: &'static str,
    /// `pending`, `consumed`, `expired` or `revoked`.
    pub status: &'static str,
    pub email: String,
    pub redirect_uri: String,
    pub created_at: String,
    pub expires_at: String,
    pub consumed_at: Option<String>,
    pub delivery: DeliveryView,
    /// Who requested the landing page (answered by `GET` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub views: Option<LinkViewsView>,
}

/// The requests for a link's landing page: how many, and the first ones in full.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkViewsView {
    /// Every `GET`, `HEAD` and press of the button, including those no longer kept in full.
    pub total: u64,
    /// The first requests (`GET` and `HEAD`), oldest first.
    pub kept: Vec<ViewView>,
}

/// One request for a link's landing page.
#[derive(Debug, Serialize, ToSchema)]
pub struct ViewView {
    pub at: String,
    /// `GET` or `HEAD`.
    pub method: &'static str,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// Milliseconds from the mail server's acceptance of the e-mail to this request.
    pub since_delivery_ms: Option<i64>,
    /// Whether the button was pressed after this request.
    pub followed_by_press: bool,
    /// Whether the request shows any sign of a mail scanner.
    pub likely_scanner: bool,
    /// `head`, `too_soon`, `scanner_agent`, `never_pressed`.
    pub signs: Vec<&'static str>,
}

impl From<LinkViewReport> for LinkViewsView {
    fn from(report: LinkViewReport) -> Self {
        let kept = report
            .views
            .into_iter()
            .map(|v| ViewView {
                likely_scanner: v.likely_scanner(),
                at: rfc3339(v.view.at),
                method: v.view.method.as_str(),
                ip: v.view.ip,
                user_agent: v.view.user_agent,
                since_delivery_ms: v.since_delivery.map(|d| d.whole_milliseconds() as i64),
                followed_by_press: v.followed_by_press,
                signs: v.signs.iter().map(|s| s.as_str()).collect(),
            })
            .collect();
        Self { total: report.total, kept }
    }
}

/// Where the e-mail of a challenge is.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    /// `queued`, `sent`, `failed` or `not_sent` (the caller delivers it).
    pub status: &'static str,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// The SMTP relay that took the message (`host:port`), once sent.
    pub relay: Option<String>,
}

/// Create a magic link: the e-mail is queued in the same transaction, or link and code are
/// handed to the caller.
#[utoipa::path(post, path = "/v1/magic-links", tag = "magic links", security(("client_basic" = []), ("client_bearer" = [])),
    request_body(content = MagicLinkBody, content_type = "application/json"),
    responses((status = 201, description = "Created", body = CreatedMagicLinkView)))]
async fn create_magic_link(
    State(service): State<Arc<Service>>,
    Caller(app): Caller,
    body: Body<MagicLinkBody>,
) -> Result<Response> {
    let Input(body) = body?;
    let created = service.create_magic_link(&app, NewMagicLink::try_from(body)?).await?;
    let view = CreatedMagicLinkView {
        id: created.id.to_string(),
        object: "magic_link",
        email: created.email.as_str().to_owned(),
        expires_at: rfc3339(created.expires_at),
        link: created.link,
        otp: created.otp,
    };
    Ok(no_store((StatusCode::CREATED, Json(view)).into_response()))
}

fn magic_link_view(record: &ChallengeRecord, service: &Service) -> MagicLinkView {
    let c = &record.challenge;
    let delivery = match &record.delivery {
        Some(d) => DeliveryView {
            status: d.status.as_str(),
            attempts: d.attempts,
            last_error: d.last_error.clone(),
            relay: d.relay.clone(),
        },
        None => DeliveryView { status: "not_sent", attempts: 0, last_error: None, relay: None },
    };
    MagicLinkView {
        id: c.id.to_string(),
        object: "magic_link",
        status: c.status_at(service.now()).as_str(),
        email: c.email.as_str().to_owned(),
        redirect_uri: c.redirect_uri.as_str().to_owned(),
        created_at: rfc3339(c.created_at),
        expires_at: rfc3339(c.expires_at),
        consumed_at: c.consumed_at.map(rfc3339),
        delivery,
        views: None,
    }
}

fn id(value: &str) -> Result<ChallengeId> {
    Ok(ChallengeId::parse(value).ok_or(Refusal::NotFound(Resource::MagicLink))?)
}

/// A magic link's state, delivery, and who requested its landing page.
#[utoipa::path(get, path = "/v1/magic-links/{id}", tag = "magic links", security(("client_basic" = []), ("client_bearer" = [])),
    params(("id" = String, Path, description = "The magic link's id (`ml_…`)")),
    responses((status = 200, description = "The magic link", body = MagicLinkView)))]
async fn read_magic_link(
    State(service): State<Arc<Service>>,
    Caller(app): Caller,
    Path(link): Path<String>,
) -> Result<Json<MagicLinkView>> {
    let record = service.magic_link(&app, &id(&link)?).await?;
    let views = service.magic_link_views(&record).await?;
    Ok(Json(MagicLinkView { views: Some(views.into()), ..magic_link_view(&record, &service) }))
}

/// Revoke a pending magic link (its link and code stop working).
#[utoipa::path(delete, path = "/v1/magic-links/{id}", tag = "magic links", security(("client_basic" = []), ("client_bearer" = [])),
    params(("id" = String, Path, description = "The magic link's id (`ml_…`)")),
    responses((status = 200, description = "The revoked magic link", body = MagicLinkView)))]
async fn revoke_magic_link(
    State(service): State<Arc<Service>>,
    Caller(app): Caller,
    Path(link): Path<String>,
) -> Result<Json<MagicLinkView>> {
    let record = service.revoke_magic_link(&app, &id(&link)?).await?;
    Ok(Json(magic_link_view(&record, &service)))
}
