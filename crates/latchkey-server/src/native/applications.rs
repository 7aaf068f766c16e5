//! Applications (admin): create, read, list, change, delete, and their secrets.

use super::{Admin, Body, List, NativeError, Result, parse};
use crate::common::body::Input;
use crate::common::{no_store, rfc3339};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use latchkey_core::Application;
use latchkey_core::application::{Binding, Branding, Lifetimes, MismatchPolicy};
use latchkey_core::id::SecretId;
use latchkey_core::rate_limit::RateLimits;
use latchkey_core::signing::SigningAlg;
use latchkey_service::{ApplicationChange, CreatedApplication, NewApplication, Refusal, Resource, Service};
use latchkey_store::ClientSecret;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn routes() -> OpenApiRouter<Arc<Service>> {
    OpenApiRouter::new()
        .routes(routes!(create_application, list_applications))
        .routes(routes!(read_application, update_application, delete_application))
        .routes(routes!(add_secret))
        .routes(routes!(delete_secret))
}

/// A new application as the admin describes it (also what `latchkey app create` sends).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default)]
pub struct ApplicationBody {
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub default_redirect_uri: Option<String>,
    pub registration_redirect_uris: Vec<String>,
    /// Where `GET /oauth/logout` may send the browser after a sign-out (exact match).
    pub post_logout_redirect_uris: Vec<String>,
    pub public: bool,
    pub signing_alg: Option<String>,
    pub branding: Option<Branding>,
    pub default_locale: Option<String>,
    pub lifetimes: Option<Lifetimes>,
    pub rate_limits: Option<RateLimits>,
    pub binding: Option<Binding>,
    pub registration_mismatch: Option<MismatchPolicy>,
}

/// A change: only the fields present are changed; `default_redirect_uri: ""` removes it.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default)]
pub struct ApplicationPatchBody {
    pub name: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
    pub default_redirect_uri: Option<String>,
    pub registration_redirect_uris: Option<Vec<String>>,
    pub post_logout_redirect_uris: Option<Vec<String>>,
    pub signing_alg: Option<String>,
    pub branding: Option<Branding>,
    pub default_locale: Option<String>,
    pub lifetimes: Option<Lifetimes>,
    pub rate_limits: Option<RateLimits>,
    pub binding: Option<Binding>,
    pub registration_mismatch: Option<MismatchPolicy>,
}

fn signing_alg(value: Option<&str>) -> Result<Option<SigningAlg>> {
    value
        .map(|v| {
            SigningAlg::parse(v).ok_or_else(|| {
                let v = latchkey_core::bounded::excerpt(v, 40);
                NativeError::field(
                    "signing_alg",
                    format!("signing_alg must be one of ES256, RS256, EdDSA, not {v:?}"),
                )
            })
        })
        .transpose()
}

fn default_redirect(value: Option<&str>) -> Result<Option<latchkey_core::RedirectUri>> {
    value
        .map(|d| {
            latchkey_core::RedirectUri::parse(d)
                .map_err(|e| NativeError::field("default_redirect_uri", e.to_string()))
        })
        .transpose()
}

impl TryFrom<ApplicationBody> for NewApplication {
    type Error = NativeError;

    fn try_from(b: ApplicationBody) -> Result<Self> {
        Ok(NewApplication {
            name: b.name,
            redirect_uris: parse::uris("redirect_uris", &b.redirect_uris)?,
            default_redirect_uri: default_redirect(b.default_redirect_uri.as_deref())?,
            registration_redirect_uris: parse::uris(
                "registration_redirect_uris",
                &b.registration_redirect_uris,
            )?,
            post_logout_redirect_uris: parse::uris(
                "post_logout_redirect_uris",
                &b.post_logout_redirect_uris,
            )?,
            public: b.public,
            signing_alg: signing_alg(b.signing_alg.as_deref())?,
            branding: b.branding,
            default_locale: b.default_locale,
            lifetimes: b.lifetimes,
            rate_limits: b.rate_limits,
            binding: b.binding,
            registration_mismatch: b.registration_mismatch,
        })
    }
}

impl TryFrom<ApplicationPatchBody> for ApplicationChange {
    type Error = NativeError;

    fn try_from(b: ApplicationPatchBody) -> Result<Self> {
        let uris = |field, list: Option<Vec<String>>| list.map(|l| parse::uris(field, &l)).transpose();
        let default_redirect_uri = match b.default_redirect_uri.as_deref() {
            None => None,
            Some("") => Some(None),
            Some(d) => Some(default_redirect(Some(d))?),
        };
        Ok(ApplicationChange {
            name: b.name,
            redirect_uris: uris("redirect_uris", b.redirect_uris)?,
            default_redirect_uri,
            registration_redirect_uris: uris("registration_redirect_uris", b.registration_redirect_uris)?,
            post_logout_redirect_uris: uris("post_logout_redirect_uris", b.post_logout_redirect_uris)?,
            signing_alg: signing_alg(b.signing_alg.as_deref())?,
            branding: b.branding,
            default_locale: b.default_locale,
            lifetimes: b.lifetimes,
            rate_limits: b.rate_limits,
            binding: b.binding,
            registration_mismatch: b.registration_mismatch,
        })
    }
}

/// An application as the admin API shows it; secrets are listed by id only.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApplicationView {
    pub id: String,
    /// Always `application`.
    pub object: &'static str,
    pub client_id: String,
    pub name: String,
    pub public: bool,
    pub redirect_uris: Vec<String>,
    pub default_redirect_uri: Option<String>,
    pub registration_redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub signing_alg: &'static str,
    pub branding: Branding,
    pub default_locale: Option<String>,
    /// The keys (`purpose.locale`) of the application's own e-mail templates.
    pub templates: Vec<String>,
    /// The hosted pages the application has its own version of (`layout`, `email`…).
    pub pages: Vec<String>,
    pub lifetimes: Lifetimes,
    pub secrets: Vec<SecretView>,
    pub created_at: String,
    pub updated_at: String,
}

/// A client secret, by id: its value is shown once, when it is made.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecretView {
    pub id: String,
    pub created_at: String,
}

/// A new application, with its first client secret (shown once; `null` for a public client).
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApplicationView {
    #[serde(flatten)]
    pub application: ApplicationView,
    pub client_secret: Option<String>,
}

/// A new client secret, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewSecretView {
    pub id: String,
    pub client_secret: String,
    pub created_at: String,
}

pub fn application_json(app: &Application, secrets: &[ClientSecret]) -> ApplicationView {
    let s = &app.settings;
    ApplicationView {
        id: app.id.to_string(),
        object: "application",
        client_id: app.client_id.clone(),
        name: app.name.clone(),
        public: app.public,
        redirect_uris: app.redirect_uris.iter().map(|u| u.as_str().to_owned()).collect(),
        default_redirect_uri: app.default_redirect_uri.as_ref().map(|u| u.as_str().to_owned()),
        registration_redirect_uris: s.registration_redirect_uris.clone(),
        post_logout_redirect_uris: s.post_logout_redirect_uris.clone(),
        signing_alg: s.signing_alg.as_str(),
        branding: s.branding.clone(),
        default_locale: s.default_locale.clone(),
        templates: s.templates.keys().cloned().collect(),
        pages: s.pages.keys().cloned().collect(),
        lifetimes: s.lifetimes,
        secrets: secrets
            .iter()
            .map(|k| SecretView { id: k.id.to_string(), created_at: rfc3339(k.created_at) })
            .collect(),
        created_at: rfc3339(app.created_at),
        updated_at: rfc3339(app.updated_at),
    }
}

pub fn created_application_json(created: &CreatedApplication) -> CreatedApplicationView {
    CreatedApplicationView {
        application: application_json(&created.application, &created.secrets),
        client_secret: created.client_secret.clone(),
    }
}

const APP_ID: &str = "The application's id (`app_…`)";

/// Create an application; its client secret is in this answer only.
#[utoipa::path(post, path = "/v1/applications", tag = "applications", security(("admin_token" = [])),
    request_body(content = ApplicationBody, content_type = "application/json"),
    responses((status = 201, description = "Created", body = CreatedApplicationView)))]
async fn create_application(
    _: Admin,
    State(service): State<Arc<Service>>,
    body: Body<ApplicationBody>,
) -> Result<Response> {
    let Input(body) = body?;
    let created = service.create_application(NewApplication::try_from(body)?).await?;
    Ok(no_store((StatusCode::CREATED, Json(created_application_json(&created))).into_response()))
}

/// Every application (without their secrets' ids).
#[utoipa::path(get, path = "/v1/applications", tag = "applications", security(("admin_token" = [])),
    responses((status = 200, description = "The applications", body = List<ApplicationView>)))]
async fn list_applications(
    _: Admin,
    State(service): State<Arc<Service>>,
) -> Result<Json<List<ApplicationView>>> {
    let apps = service.list_applications().await?;
    // Secrets are listed on the single-application read only.
    Ok(Json(List::all(apps.iter().map(|a| application_json(a, &[])).collect())))
}

/// One application, with the ids of its secrets.
#[utoipa::path(get, path = "/v1/applications/{id}", tag = "applications", security(("admin_token" = [])),
    params(("id" = String, Path, description = APP_ID)),
    responses((status = 200, description = "The application", body = ApplicationView)))]
async fn read_application(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
) -> Result<Json<ApplicationView>> {
    let (app, secrets) = service.application(&parse::app_id(&id)?).await?;
    Ok(Json(application_json(&app, &secrets)))
}

/// Change an application: only the fields present change.
#[utoipa::path(patch, path = "/v1/applications/{id}", tag = "applications", security(("admin_token" = [])),
    params(("id" = String, Path, description = APP_ID)),
    request_body(content = ApplicationPatchBody, content_type = "application/json"),
    responses((status = 200, description = "The changed application", body = ApplicationView)))]
async fn update_application(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
    body: Body<ApplicationPatchBody>,
) -> Result<Json<ApplicationView>> {
    let Input(patch) = body?;
    let (app, secrets) =
        service.update_application(&parse::app_id(&id)?, ApplicationChange::try_from(patch)?).await?;
    Ok(Json(application_json(&app, &secrets)))
}

/// Delete an application.
#[utoipa::path(delete, path = "/v1/applications/{id}", tag = "applications", security(("admin_token" = [])),
    params(("id" = String, Path, description = APP_ID)),
    responses((status = 204, description = "Deleted")))]
async fn delete_application(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    service.delete_application(&parse::app_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Add a client secret (rotation); its value is in this answer only.
#[utoipa::path(post, path = "/v1/applications/{id}/secrets", tag = "applications", security(("admin_token" = [])),
    params(("id" = String, Path, description = APP_ID)),
    responses((status = 201, description = "Created", body = NewSecretView)))]
async fn add_secret(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
) -> Result<Response> {
    let (record, plain) = service.add_client_secret(&parse::app_id(&id)?).await?;
    let view = NewSecretView {
        id: record.id.to_string(),
        client_secret: plain,
        created_at: rfc3339(record.created_at),
    };
    Ok(no_store((StatusCode::CREATED, Json(view)).into_response()))
}

/// Delete a client secret; the last one cannot be deleted.
#[utoipa::path(delete, path = "/v1/applications/{id}/secrets/{secret_id}", tag = "applications", security(("admin_token" = [])),
    params(("id" = String, Path, description = APP_ID), ("secret_id" = String, Path, description = "The secret's id")),
    responses((status = 204, description = "Deleted")))]
async fn delete_secret(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path((id, secret_id)): Path<(String, String)>,
) -> Result<StatusCode> {
    let secret_id = SecretId::parse(&secret_id).ok_or(Refusal::NotFound(Resource::Secret))?;
    service.delete_client_secret(&parse::app_id(&id)?, &secret_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
