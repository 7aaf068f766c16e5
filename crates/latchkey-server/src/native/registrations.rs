//! Registrations (§2.4), verification links (§2.5) and organizations: more faces of the one
//! challenge engine.

use super::{Admin, Body, Caller, List, NativeError, Result, parse};
use crate::common::body::Input;
use crate::common::{no_store, rfc3339};
use base64::Engine as _;
use latchkey_core::RedirectUri;
use latchkey_service::{
    Created, MailSubject, NewOrganization, NewRegistration, NewVerificationLink, OrganizationChange, Refusal,
    Service, Validation, VerificationTemplate,
};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use latchkey_core::organization::Organization;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn routes() -> OpenApiRouter<Arc<Service>> {
    OpenApiRouter::new()
        .routes(routes!(create_registration))
        .routes(routes!(validate_registration))
        .routes(routes!(create_verification_link))
        .routes(routes!(redeem_verification_link))
        .routes(routes!(create_organization, list_organizations))
        .routes(routes!(read_organization, update_organization, delete_organization))
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
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

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default)]
pub struct ValidationBody {
    pub registration_validation_token: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
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

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default)]
pub struct OrganizationBody {
    pub name: Option<String>,
    pub slug: Option<String>,
    pub domains: Option<Vec<String>>,
}

/// A registration or verification link just made; what the caller delivers itself, with
/// `send_email: false`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedChallengeView {
    pub id: String,
    /// `registration` or `verification_link`.
    pub object: &'static str,
    pub email: String,
    pub created_at: String,
    pub expires_at: String,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// The registration's link (`send_email: false`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// The registration's token (`send_email: false`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registration_validation_token: Option<String>,
    /// The verification link's redeem code (`send_email: false`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

fn created_view(object: &'static str, created: Created) -> CreatedChallengeView {
    let c = &created.challenge;
    let mut view = CreatedChallengeView {
        id: c.id.to_string(),
        object,
        email: c.email.as_str().to_owned(),
        created_at: rfc3339(c.created_at),
        expires_at: rfc3339(c.expires_at),
        expires_in: (c.expires_at - c.created_at).whole_seconds(),
        created_by: c.created_by.clone(),
        link: None,
        registration_validation_token: None,
        code: None,
    };
    if let Some(deliver) = created.deliver {
        if object == REGISTRATION {
            view.link = deliver.link;
            view.registration_validation_token = Some(deliver.token);
        } else {
            view.code = Some(deliver.token);
        }
    }
    view
}

const REGISTRATION: &str = "registration";

/// A validated registration: the new user.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegisteredView {
    /// Always `new_user`.
    pub registration_type: &'static str,
    pub registration_id: String,
    pub user_id: String,
    pub email: String,
    pub context_data: BTreeMap<String, String>,
    /// Present (`true`) when the client differed from the one given at the start and the
    /// application's policy is to report it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub client_mismatch: bool,
}

/// A redeemed verification link.
#[derive(Debug, Serialize, ToSchema)]
pub struct RedeemedView {
    /// Always `redeemed`.
    pub status: &'static str,
    pub id: String,
    pub email: String,
    pub created_by: Option<String>,
    pub created_at: String,
    pub expires_at: String,
}

/// An organization.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrganizationView {
    pub id: String,
    /// Always `organization`.
    pub object: &'static str,
    pub name: String,
    pub slug: String,
    pub domains: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// Start a registration: the address's owner gets an e-mail whose button goes to
/// `redirect_uri?registration_validation_token=…`.
#[utoipa::path(post, path = "/v1/registrations", tag = "registrations", security(("client_basic" = []), ("client_bearer" = [])),
    request_body(content = RegistrationBody, content_type = "application/json"),
    responses((status = 201, description = "Created", body = CreatedChallengeView)))]
async fn create_registration(
    State(service): State<Arc<Service>>,
    Caller(app): Caller,
    body: Body<RegistrationBody>,
) -> Result<Response> {
    let Input(body) = body?;
    let created = service.create_registration(&app, NewRegistration::try_from(body)?).await?;
    Ok(no_store((StatusCode::CREATED, Json(created_view(REGISTRATION, created))).into_response()))
}

/// Validate a registration's token: the user is created.
#[utoipa::path(post, path = "/v1/registrations/validate", tag = "registrations", security(("client_basic" = []), ("client_bearer" = [])),
    request_body(content = ValidationBody, content_type = "application/json"),
    responses((status = 200, description = "The new user", body = RegisteredView)))]
async fn validate_registration(
    State(service): State<Arc<Service>>,
    Caller(app): Caller,
    body: Body<ValidationBody>,
) -> Result<Json<RegisteredView>> {
    let Input(b) = body?;
    let token = b.registration_validation_token.ok_or_else(|| {
        NativeError::field("registration_validation_token", "registration_validation_token is required")
    })?;
    let cmd = Validation { token, registration_id: None, client_ip: b.client_ip, user_agent: b.user_agent };
    let done = service.validate_registration(&app, cmd).await?;
    Ok(Json(RegisteredView {
        registration_type: "new_user",
        registration_id: done.challenge.id.to_string(),
        user_id: done.user.id.to_string(),
        email: done.user.email.as_str().to_owned(),
        context_data: done.challenge.context_data,
        client_mismatch: done.client_mismatch,
    }))
}

/// Make a verification link: the caller's template, with `{{MAGICLINK}}` replaced by a
/// single-use redeem code.
#[utoipa::path(post, path = "/v1/verification-links", tag = "verification links", security(("client_basic" = []), ("client_bearer" = [])),
    request_body(content = VerificationBody, content_type = "application/json"),
    responses((status = 201, description = "Created", body = CreatedChallengeView)))]
async fn create_verification_link(
    State(service): State<Arc<Service>>,
    Caller(app): Caller,
    body: Body<VerificationBody>,
) -> Result<Response> {
    let Input(body) = body?;
    let created = service.create_verification_link(&app, NewVerificationLink::try_from(body)?).await?;
    Ok(no_store((StatusCode::CREATED, Json(created_view("verification_link", created))).into_response()))
}

/// A verification link's redeem code.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default)]
struct RedeemInput {
    code: Option<String>,
}

/// Redeem a verification link's code, once.
#[utoipa::path(post, path = "/v1/verification-links/redeem", tag = "verification links", security(("client_basic" = []), ("client_bearer" = [])),
    request_body(content = RedeemInput, content_type = "application/json"),
    responses((status = 200, description = "Redeemed", body = RedeemedView)))]
async fn redeem_verification_link(
    State(service): State<Arc<Service>>,
    Caller(app): Caller,
    body: Body<RedeemInput>,
) -> Result<Json<RedeemedView>> {
    let Input(input) = body?;
    let code = input.code.ok_or_else(|| NativeError::field("code", "code is required"))?;
    let c = service.redeem_verification_link(&app, &code).await?;
    Ok(Json(RedeemedView {
        status: "redeemed",
        id: c.id.to_string(),
        email: c.email.as_str().to_owned(),
        created_by: c.created_by,
        created_at: rfc3339(c.created_at),
        expires_at: rfc3339(c.expires_at),
    }))
}

fn organization_view(o: &Organization) -> OrganizationView {
    OrganizationView {
        id: o.id.to_string(),
        object: "organization",
        name: o.name.clone(),
        slug: o.slug.clone(),
        domains: o.domains.clone(),
        created_at: rfc3339(o.created_at),
        updated_at: rfc3339(o.updated_at),
    }
}

const ORG_ID: &str = "The organization's id (`org_…`) or slug";

/// Create an organization.
#[utoipa::path(post, path = "/v1/organizations", tag = "organizations", security(("admin_token" = [])),
    request_body(content = OrganizationBody, content_type = "application/json"),
    responses((status = 201, description = "Created", body = OrganizationView)))]
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
    Ok((StatusCode::CREATED, Json(organization_view(&org))).into_response())
}

/// Every organization.
#[utoipa::path(get, path = "/v1/organizations", tag = "organizations", security(("admin_token" = [])),
    responses((status = 200, description = "The organizations", body = List<OrganizationView>)))]
async fn list_organizations(
    _: Admin,
    State(service): State<Arc<Service>>,
) -> Result<Json<List<OrganizationView>>> {
    let orgs = service.list_organizations().await?;
    Ok(Json(List::all(orgs.iter().map(organization_view).collect())))
}

/// One organization.
#[utoipa::path(get, path = "/v1/organizations/{id}", tag = "organizations", security(("admin_token" = [])),
    params(("id" = String, Path, description = ORG_ID)),
    responses((status = 200, description = "The organization", body = OrganizationView)))]
async fn read_organization(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
) -> Result<Json<OrganizationView>> {
    Ok(Json(organization_view(&service.organization(&id).await?)))
}

/// Change an organization: only the fields present change.
#[utoipa::path(patch, path = "/v1/organizations/{id}", tag = "organizations", security(("admin_token" = [])),
    params(("id" = String, Path, description = ORG_ID)),
    request_body(content = OrganizationBody, content_type = "application/json"),
    responses((status = 200, description = "The changed organization", body = OrganizationView)))]
async fn update_organization(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
    body: Body<OrganizationBody>,
) -> Result<Json<OrganizationView>> {
    let Input(b) = body?;
    let change = OrganizationChange { name: b.name, slug: b.slug, domains: b.domains };
    Ok(Json(organization_view(&service.update_organization(&id, change).await?)))
}

/// Delete an organization.
#[utoipa::path(delete, path = "/v1/organizations/{id}", tag = "organizations", security(("admin_token" = [])),
    params(("id" = String, Path, description = ORG_ID)),
    responses((status = 204, description = "Deleted")))]
async fn delete_organization(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    service.delete_organization(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
