//! `POST /api/v2/magic-link-challenge`: a sign-in e-mail (or, with `send_email=false`, its link
//! handed back), answered as Cryptr's `MagicLinkChallenge`.

use super::{Body, Caller, CryptrError, Result, flag};
use crate::common::body::Input;
use crate::common::no_store;
use axum::Json;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use latchkey_core::{EmailAddress, RedirectUri};
use latchkey_service::{NewMagicLink, Service};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// Its parameters, from the body (JSON or form) or the query string; the Kotlin SDK's
/// camel-case names are accepted too.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ChallengeParams {
    user_email: Option<String>,
    #[serde(rename = "userEmail")]
    user_email_camel: Option<String>,
    #[serde(alias = "redirectUri")]
    redirect_uri: Option<String>,
    #[serde(alias = "orgDomain")]
    org_domain: Option<String>,
    #[serde(alias = "sendEmail", deserialize_with = "flag")]
    send_email: Option<bool>,
}

impl ChallengeParams {
    /// These parameters, completed where they are silent by `other`.
    fn or(self, other: Self) -> Self {
        Self {
            user_email: self.user_email.or(other.user_email),
            user_email_camel: self.user_email_camel.or(other.user_email_camel),
            redirect_uri: self.redirect_uri.or(other.redirect_uri),
            org_domain: self.org_domain.or(other.org_domain),
            send_email: self.send_email.or(other.send_email),
        }
    }
}

impl TryFrom<ChallengeParams> for NewMagicLink {
    type Error = CryptrError;

    fn try_from(p: ChallengeParams) -> Result<Self> {
        let email = p
            .user_email
            .or(p.user_email_camel)
            .ok_or_else(|| CryptrError::BadRequest("user_email is required".into()))?;
        let email = EmailAddress::parse(&email)
            .map_err(|_| CryptrError::BadRequest("user_email is not a valid e-mail address".into()))?;
        let redirect_uri = p
            .redirect_uri
            .as_deref()
            .map(RedirectUri::parse)
            .transpose()
            .map_err(|e| CryptrError::BadRequest(format!("redirect_uri: {e}")))?;
        let organization = p
            .org_domain
            .map(latchkey_core::bounded::Bounded::parse)
            .transpose()
            .map_err(|e| CryptrError::BadRequest(format!("org_domain {e}")))?;
        let mut cmd = NewMagicLink::new(email);
        cmd.redirect_uri = redirect_uri;
        cmd.organization = organization;
        cmd.send_email = p.send_email.unwrap_or(true);
        // Cryptr's documented exchange sends the code alone.
        cmd.code_is_credential = true;
        Ok(cmd)
    }
}

pub async fn create(
    State(service): State<Arc<Service>>,
    Caller(app): Caller,
    RawQuery(query): RawQuery,
    body: Body<ChallengeParams>,
) -> Result<Response> {
    let Input(body) = body?;
    let query: ChallengeParams = serde_html_form::from_str(query.as_deref().unwrap_or_default())
        .map_err(|e| CryptrError::BadRequest(format!("invalid query string: {e}")))?;
    let params = body.or(query);
    let domain = params.org_domain.clone();
    let created = service.create_magic_link(&app, NewMagicLink::try_from(params)?).await?;
    let body = json!({
        "__type__": "MagicLinkChallenge",
        "__domain__": domain,
        "__environment__": "production",
        "request_id": created.id,
        "email_address": created.email.as_str(),
        "magic_link": created.link,
        "code": null,
        "find_or_create_user": true,
        "expired_at": created.expires_at.unix_timestamp(),
        "redirect_uri": created.redirect_uri.as_str(),
    });
    Ok(no_store(Json(body).into_response()))
}
