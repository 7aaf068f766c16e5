//! Registrations (§2.4), verification links (§2.5) and organizations: more faces of the one
//! challenge engine.

use super::{Admin, Body, Caller, NativeError, Result, parse};
use crate::common::body::Input;
use crate::common::{no_store, rfc3339};
use base64::Engine as _;
use latchkey_core::RedirectUri;
use latchkey_service::{
    Created, MailSubject, NewOrganization, NewRegistration, NewVerificationLink, OrganizationChange, Refusal,
    Service, Validation, VerificationTemplate,
};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use latchkey_core::organization::Organization;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/v1/registrations", post(create_registration))
        .route("/v1/registrations/validate", post(validate_registration))
        .route("/v1/verification-links", post(create_verification_link))
        .route("/v1/verification-links/redeem", post(redeem_verification_link))
        .route("/v1/organizations", post(create_organization).get(list_organizations))
        .route(
            "/v1/organizations/{id}",
            get(read_organization).patch(update_organization).delete(delete_organization),
        )
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RegistrationBody {
    pub email: Option<String>,
    pub redirect_uri: Option<String>,
    pub expires_in: Option<i64>,
    pub action_name: Option<String>,
    pub short_msg: Option<String>,
    pub context_data: Option<BTreeMap<String, String>>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub send_email: Option<bool>,
    pub locale: Option<String>,
}

impl TryFrom<RegistrationBody> for NewRegistration {
    type Error = NativeError;

    fn try_from(b: RegistrationBody) -> Result<Self> {
        let email = parse::email(b.email.as_deref())?;
        let redirect =
            b.redirect_uri.ok_or_else(|| NativeError::field("redirect_uri", "redirect_uri is required"))?;
        // One that does not parse cannot be on the allow list either.
        let redirect_uri = RedirectUri::parse(&redirect).map_err(|_| Refusal::RedirectNotAllowed)?;
        Ok(NewRegistration {
            email,
            redirect_uri,
            expires_in: parse::expires_in(b.expires_in)?,
            action_name: parse::bounded("action_name", b.action_name)?,
            locale: parse::locale("locale", b.locale.as_deref())?,
            message: parse::bounded("short_msg", b.short_msg)?,
            context_data: b.context_data.unwrap_or_default(),
            client_ip: parse::bounded("client_ip", b.client_ip)?,
            user_agent: parse::bounded("user_agent", b.user_agent)?,
            send_email: b.send_email.unwrap_or(true),
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ValidationBody {
    pub registration_validation_token: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct VerificationBody {
    pub email: Option<String>,
    pub subject: Option<String>,
    pub template_base64: Option<String>,
    pub expires_in: Option<i64>,
    pub created_by: Option<String>,
    pub send_email: Option<bool>,
}

/// The caller's template: base64 of UTF-8 text.
fn template(value: Option<String>) -> Result<VerificationTemplate> {
    let field = |m: &str| NativeError::field("template_base64", m);
    let value = value.ok_or_else(|| field("template_base64 is required"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| field("template_base64 is not valid base64"))?;
    let text = String::from_utf8(bytes).map_err(|_| field("the template is not UTF-8 text"))?;
    VerificationTemplate::parse(text).map_err(|r| field(&r.to_string()))
}

impl TryFrom<VerificationBody> for NewVerificationLink {
    type Error = NativeError;

    fn try_from(b: VerificationBody) -> Result<Self> {
        let email = parse::email(b.email.as_deref())?;
        let template = template(b.template_base64)?;
        let subject = b.subject.map(MailSubject::parse).transpose()?;
        Ok(NewVerificationLink {
            email,
            subject,
            template,
            expires_in: parse::expires_in(b.expires_in)?,
            created_by: parse::bounded("created_by", b.created_by)?,
            send_email: b.send_email.unwrap_or(true),
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct OrganizationBody {
    pub name: Option<String>,
    pub slug: Option<String>,
    pub domains: Option<Vec<String>>,
}

fn created_json(object: &str, created: &Created) -> Value {
    let c = &created.challenge;
    let mut body = json!({
        "id": c.id,
        "object": object,
        "email": c.email.as_str(),
        "created_at": rfc3339(c.created_at),
        "expires_at": rfc3339(c.expires_at),
        "expires_in": (c.expires_at - c.created_at).whole_seconds(),
    });
    if let Some(by) = &c.created_by {
        body["created_by"] = by.as_str().into();
    }
    if let Some(deliver) = &created.deliver {
        match object {
            "registration" => {
                body["link"] = deliver.link.clone().into();
                body["registration_validation_token"] = deliver.token.as_str().into();
            }
            _ => body["code"] = deliver.token.as_str().into(),
        }
    }
    body
}

async fn create_registration(
    State(service): State<Arc<Service>>,
    Caller(app): Caller,
    body: Body<RegistrationBody>,
) -> Result<Response> {
    let Input(body) = body?;
    let created = service.create_registration(&app, NewRegistration::try_from(body)?).await?;
    Ok(no_store((StatusCode::CREATED, Json(created_json("registration", &created))).into_response()))
}

async fn validate_registration(
    State(service): State<Arc<Service>>,
    Caller(app): Caller,
    body: Body<ValidationBody>,
) -> Result<Json<Value>> {
    let Input(b) = body?;
    let token = b.registration_validation_token.ok_or_else(|| {
        NativeError::field("registration_validation_token", "registration_validation_token is required")
    })?;
    let cmd = Validation { token, registration_id: None, client_ip: b.client_ip, user_agent: b.user_agent };
    let done = service.validate_registration(&app, cmd).await?;
    let mut body = json!({
        "registration_type": "new_user",
        "registration_id": done.challenge.id,
        "user_id": done.user.id,
        "email": done.user.email.as_str(),
        "context_data": done.challenge.context_data,
    });
    if done.client_mismatch {
        body["client_mismatch"] = true.into();
    }
    Ok(Json(body))
}

async fn create_verification_link(
    State(service): State<Arc<Service>>,
    Caller(app): Caller,
    body: Body<VerificationBody>,
) -> Result<Response> {
    let Input(body) = body?;
    let created = service.create_verification_link(&app, NewVerificationLink::try_from(body)?).await?;
    Ok(no_store((StatusCode::CREATED, Json(created_json("verification_link", &created))).into_response()))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RedeemInput {
    code: Option<String>,
}

async fn redeem_verification_link(
    State(service): State<Arc<Service>>,
    Caller(app): Caller,
    body: Body<RedeemInput>,
) -> Result<Json<Value>> {
    let Input(input) = body?;
    let code = input.code.ok_or_else(|| NativeError::field("code", "code is required"))?;
    let c = service.redeem_verification_link(&app, &code).await?;
    Ok(Json(json!({
        "status": "redeemed",
        "id": c.id,
        "email": c.email.as_str(),
        "created_by": c.created_by,
        "created_at": rfc3339(c.created_at),
        "expires_at": rfc3339(c.expires_at),
    })))
}

fn organization_json(o: &Organization) -> Value {
    json!({
        "id": o.id,
        "object": "organization",
        "name": o.name,
        "slug": o.slug,
        "domains": o.domains,
        "created_at": rfc3339(o.created_at),
        "updated_at": rfc3339(o.updated_at),
    })
}

async fn create_organization(
    _: Admin,
    State(service): State<Arc<Service>>,
    body: Body<OrganizationBody>,
) -> Result<Response> {
    let Input(b) = body?;
    let cmd = NewOrganization {
        name: b.name.ok_or_else(|| NativeError::field("name", "name is required"))?,
        slug: b.slug.ok_or_else(|| NativeError::field("slug", "slug is required"))?,
        domains: b.domains.unwrap_or_default(),
    };
    let org = service.create_organization(cmd).await?;
    Ok((StatusCode::CREATED, Json(organization_json(&org))).into_response())
}

async fn list_organizations(_: Admin, State(service): State<Arc<Service>>) -> Result<Json<Value>> {
    let orgs = service.list_organizations().await?;
    Ok(Json(json!({ "object": "list", "data": orgs.iter().map(organization_json).collect::<Vec<_>>() })))
}

async fn read_organization(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    Ok(Json(organization_json(&service.organization(&id).await?)))
}

async fn update_organization(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
    body: Body<OrganizationBody>,
) -> Result<Json<Value>> {
    let Input(b) = body?;
    let change = OrganizationChange { name: b.name, slug: b.slug, domains: b.domains };
    Ok(Json(organization_json(&service.update_organization(&id, change).await?)))
}

async fn delete_organization(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    service.delete_organization(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
