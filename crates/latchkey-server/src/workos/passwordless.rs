//! Passwordless sessions: `create` answers the link and sends nothing; `send` e-mails that same
//! link, once. The e-mail is written with the session, held, and released by `send`.

use super::objects::{SESSION_PREFIX, challenge_id, external_id};
use super::{ApiKey, Body, Result, WorkosError, route};
use crate::common::body::Input;
use crate::common::fields;
use crate::common::{no_store, rfc3339};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use latchkey_core::RedirectUri;
use latchkey_core::challenge::ChallengeLifetime;
use latchkey_service::{NewMagicLink, Refusal, Resource, Service};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Value, json};
use std::sync::Arc;

/// WorkOS's bounds of a passwordless session's lifetime, in seconds.
pub const EXPIRES_IN: (i64, i64) = (900, 86_400);

pub fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/passwordless/sessions", route(post(create)))
        .route("/passwordless/sessions/{id}/send", route(post(send)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SessionBody {
    email: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    redirect_uri: Option<String>,
    state: Option<String>,
    expires_in: Option<i64>,
}

impl TryFrom<SessionBody> for NewMagicLink {
    type Error = WorkosError;

    fn try_from(b: SessionBody) -> Result<Self> {
        match b.kind.as_deref() {
            Some("MagicLink") => {}
            None => return Err(WorkosError::required("type")),
            Some(_) => return Err(WorkosError::invalid("type", "invalid", "type must be MagicLink")),
        }
        let mut cmd = NewMagicLink::new(fields::email("email", b.email.as_deref())?);
        cmd.redirect_uri = b
            .redirect_uri
            .as_deref()
            .map(RedirectUri::parse)
            .transpose()
            .map_err(|e| WorkosError::invalid("redirect_uri", "invalid", format!("redirect_uri {e}")))?;
        cmd.state = fields::bounded("state", b.state)?;
        cmd.expires_in = b.expires_in.map(lifetime).transpose()?;
        Ok(cmd)
    }
}

fn lifetime(secs: i64) -> Result<ChallengeLifetime> {
    let (min, max) = EXPIRES_IN;
    let out_of_bounds = || {
        WorkosError::invalid(
            "expires_in",
            "expires_in_out_of_range",
            format!("expires_in must be between {min} and {max} seconds"),
        )
    };
    if !(min..=max).contains(&secs) {
        return Err(out_of_bounds());
    }
    ChallengeLifetime::from_secs(secs).map_err(|_| out_of_bounds())
}

async fn create(
    State(service): State<Arc<Service>>,
    ApiKey(app): ApiKey,
    body: Body<SessionBody>,
) -> Result<Response> {
    let Input(body) = body?;
    let created = service.prepare_magic_link(&app, NewMagicLink::try_from(body)?).await?;
    let body = json!({
        "object": "passwordless_session",
        "id": external_id(SESSION_PREFIX, &created.id),
        "email": created.email.as_str(),
        "expires_at": rfc3339(created.expires_at),
        "link": created.link,
    });
    Ok(no_store((StatusCode::CREATED, Json(body)).into_response()))
}

/// Sends the session's e-mail; a second call answers the same and sends nothing more. The
/// body (`{}` or none) says nothing, but is read, so that a malformed or huge one is answered
/// as on every route.
async fn send(
    State(service): State<Arc<Service>>,
    ApiKey(app): ApiKey,
    Path(id): Path<String>,
    body: Body<IgnoredAny>,
) -> Result<(StatusCode, Json<Value>)> {
    body?;
    let id = challenge_id(SESSION_PREFIX, &id).ok_or(Refusal::NotFound(Resource::MagicLink))?;
    service.release_magic_link_mail(&app, &id).await?;
    Ok((StatusCode::CREATED, Json(json!({ "success": true }))))
}
