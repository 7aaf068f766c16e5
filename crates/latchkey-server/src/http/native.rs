//! The native API: applications (admin) and magic links (applications).

use super::error::{ApiError, Native};
use super::extract::{Admin, Caller, Input};
use super::rfc3339;
use crate::service::{ApplicationInput, ApplicationPatch, CreatedApplication, MagicLinkInput, Service};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use latchkey_core::Application;
use latchkey_store::{ChallengeRecord, ClientSecret};
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
        .route("/v1/magic-links", post(create_magic_link))
        .route("/v1/magic-links/{id}", get(read_magic_link).delete(revoke_magic_link))
}

type Result<T> = std::result::Result<T, Native>;

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
    body: std::result::Result<Input<ApplicationInput>, ApiError>,
) -> Result<Response> {
    let Input(input) = body?;
    let created = service.create_application(input).await?;
    Ok((StatusCode::CREATED, Json(created_application_json(&created))).into_response())
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
    let (app, secrets) = service.application(&id).await?;
    Ok(Json(application_json(&app, &secrets)))
}

async fn update_application(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
    body: std::result::Result<Input<ApplicationPatch>, ApiError>,
) -> Result<Json<Value>> {
    let Input(patch) = body?;
    let (app, secrets) = service.update_application(&id, patch).await?;
    Ok(Json(application_json(&app, &secrets)))
}

async fn delete_application(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    service.delete_application(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn add_secret(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
) -> Result<Response> {
    let (record, plain) = service.add_client_secret(&id).await?;
    let body = json!({ "id": record.id, "client_secret": plain, "created_at": rfc3339(record.created_at) });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn delete_secret(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path((id, secret_id)): Path<(String, String)>,
) -> Result<StatusCode> {
    service.delete_client_secret(&id, &secret_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn create_magic_link(
    State(service): State<Arc<Service>>,
    Caller(app): Caller,
    body: std::result::Result<Input<MagicLinkInput>, ApiError>,
) -> Result<Response> {
    let Input(input) = body?;
    let created = service.create_magic_link(&app, input).await?;
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
    Ok((StatusCode::CREATED, Json(body)).into_response())
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

async fn read_magic_link(
    State(service): State<Arc<Service>>,
    Caller(app): Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let record = service.magic_link(&app, &id).await?;
    Ok(Json(magic_link_json(&record, &service)))
}

async fn revoke_magic_link(
    State(service): State<Arc<Service>>,
    Caller(app): Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let record = service.revoke_magic_link(&app, &id).await?;
    Ok(Json(magic_link_json(&record, &service)))
}
