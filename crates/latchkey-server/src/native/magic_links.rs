//! Magic links: create (send the e-mail, or hand link and code to the caller), read, revoke.

use super::{Body, Caller, NativeError, Result, parse};
use crate::common::body::Input;
use crate::common::{no_store, rfc3339};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use latchkey_core::id::ChallengeId;
use latchkey_service::{NewMagicLink, Refusal, Resource, Service};
use latchkey_store::ChallengeRecord;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/v1/magic-links", post(create))
        .route("/v1/magic-links/{id}", get(read).delete(revoke))
}

#[derive(Debug, Clone, Default, Deserialize)]
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

async fn create(
    State(service): State<Arc<Service>>,
    Caller(app): Caller,
    body: Body<MagicLinkBody>,
) -> Result<Response> {
    let Input(body) = body?;
    let created = service.create_magic_link(&app, NewMagicLink::try_from(body)?).await?;
    let mut body = json!({
        "id": created.id,
        "object": "magic_link",
        "email": created.email.as_str(),
        "expires_at": rfc3339(created.expires_at),
    });
    if let (Some(link), Some(otp)) = (created.link, created.otp) {
        body["link"] = link.into();
        body["otp"] = otp.into();
    }
    Ok(no_store((StatusCode::CREATED, Json(body)).into_response()))
}

fn magic_link_json(record: &ChallengeRecord, service: &Service) -> Value {
    let c = &record.challenge;
    let delivery = match &record.delivery {
        Some(d) => json!({ "status": d.status.as_str(), "attempts": d.attempts, "last_error": d.last_error }),
        None => json!({ "status": "not_sent", "attempts": 0, "last_error": null }),
    };
    json!({
        "id": c.id,
        "object": "magic_link",
        "status": c.status_at(service.now()).as_str(),
        "email": c.email.as_str(),
        "redirect_uri": c.redirect_uri.as_str(),
        "created_at": rfc3339(c.created_at),
        "expires_at": rfc3339(c.expires_at),
        "consumed_at": c.consumed_at.map(rfc3339),
        "delivery": delivery,
    })
}

fn id(value: &str) -> Result<ChallengeId> {
    Ok(ChallengeId::parse(value).ok_or(Refusal::NotFound(Resource::MagicLink))?)
}

async fn read(
    State(service): State<Arc<Service>>,
    Caller(app): Caller,
    Path(link): Path<String>,
) -> Result<Json<Value>> {
    let record = service.magic_link(&app, &id(&link)?).await?;
    Ok(Json(magic_link_json(&record, &service)))
}

async fn revoke(
    State(service): State<Arc<Service>>,
    Caller(app): Caller,
    Path(link): Path<String>,
) -> Result<Json<Value>> {
    let record = service.revoke_magic_link(&app, &id(&link)?).await?;
    Ok(Json(magic_link_json(&record, &service)))
}
