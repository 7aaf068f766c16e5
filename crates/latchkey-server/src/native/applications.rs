//! Applications (admin): create, read, list, change, delete, and their secrets.

use super::{Admin, Body, NativeError, Result, parse};
use crate::common::body::Input;
use crate::common::{no_store, rfc3339};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use latchkey_core::Application;
use latchkey_core::application::{Binding, Branding, Lifetimes, MismatchPolicy};
use latchkey_core::id::{AppId, SecretId};
use latchkey_core::rate_limit::RateLimits;
use latchkey_core::signing::SigningAlg;
use latchkey_service::{ApplicationChange, CreatedApplication, NewApplication, Refusal, Resource, Service};
use latchkey_store::ClientSecret;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/v1/applications", post(create_application).get(list_applications))
        .route(
            "/v1/applications/{id}",
            get(read_application).patch(update_application).delete(delete_application),
        )
        .route("/v1/applications/{id}/secrets", post(add_secret))
        .route("/v1/applications/{id}/secrets/{secret_id}", delete(delete_secret))
}

/// A new application as the admin describes it (also what `latchkey app create` sends).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ApplicationBody {
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub default_redirect_uri: Option<String>,
    pub registration_redirect_uris: Vec<String>,
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
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ApplicationPatchBody {
    pub name: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
    pub default_redirect_uri: Option<String>,
    pub registration_redirect_uris: Option<Vec<String>>,
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

fn app_id(value: &str) -> Result<AppId> {
    Ok(AppId::parse(value).ok_or(Refusal::NotFound(Resource::Application))?)
}

pub fn application_json(app: &Application, secrets: &[ClientSecret]) -> Value {
    let s = &app.settings;
    json!({
        "id": app.id,
        "object": "application",
        "client_id": app.client_id,
        "name": app.name,
        "public": app.public,
        "redirect_uris": app.redirect_uris.iter().map(|u| u.as_str()).collect::<Vec<_>>(),
        "default_redirect_uri": app.default_redirect_uri.as_ref().map(|u| u.as_str()),
        "registration_redirect_uris": s.registration_redirect_uris,
        "signing_alg": s.signing_alg.as_str(),
        "branding": s.branding,
        "default_locale": s.default_locale,
        "templates": s.templates.keys().collect::<Vec<_>>(),
        "lifetimes": s.lifetimes,
        "secrets": secrets.iter().map(|k| json!({"id": k.id, "created_at": rfc3339(k.created_at)})).collect::<Vec<_>>(),
        "created_at": rfc3339(app.created_at),
        "updated_at": rfc3339(app.updated_at),
    })
}

pub fn created_application_json(created: &CreatedApplication) -> Value {
    let mut body = application_json(&created.application, &created.secrets);
    body["client_secret"] = created.client_secret.clone().into();
    body
}

async fn create_application(
    _: Admin,
    State(service): State<Arc<Service>>,
    body: Body<ApplicationBody>,
) -> Result<Response> {
    let Input(body) = body?;
    let created = service.create_application(NewApplication::try_from(body)?).await?;
    Ok(no_store((StatusCode::CREATED, Json(created_application_json(&created))).into_response()))
}

async fn list_applications(_: Admin, State(service): State<Arc<Service>>) -> Result<Json<Value>> {
    let apps = service.list_applications().await?;
    // Secrets are listed on the single-application read only.
    let data: Vec<Value> = apps.iter().map(|a| application_json(a, &[])).collect();
    Ok(Json(json!({ "object": "list", "data": data })))
}

async fn read_application(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let (app, secrets) = service.application(&app_id(&id)?).await?;
    Ok(Json(application_json(&app, &secrets)))
}

async fn update_application(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
    body: Body<ApplicationPatchBody>,
) -> Result<Json<Value>> {
    let Input(patch) = body?;
    let (app, secrets) =
        service.update_application(&app_id(&id)?, ApplicationChange::try_from(patch)?).await?;
    Ok(Json(application_json(&app, &secrets)))
}

async fn delete_application(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    service.delete_application(&app_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn add_secret(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
) -> Result<Response> {
    let (record, plain) = service.add_client_secret(&app_id(&id)?).await?;
    let body = json!({ "id": record.id, "client_secret": plain, "created_at": rfc3339(record.created_at) });
    Ok(no_store((StatusCode::CREATED, Json(body)).into_response()))
}

async fn delete_secret(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path((id, secret_id)): Path<(String, String)>,
) -> Result<StatusCode> {
    let secret_id = SecretId::parse(&secret_id).ok_or(Refusal::NotFound(Resource::Secret))?;
    service.delete_client_secret(&app_id(&id)?, &secret_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
