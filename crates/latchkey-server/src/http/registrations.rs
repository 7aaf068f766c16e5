//! Registrations (§2.4), verification links (§2.5) and organizations: more faces of the one
//! challenge engine.

use super::error::{ApiError, Native};
use super::extract::{Admin, Caller, Input};
use super::rfc3339;
use crate::service::{
    Created, OrganizationInput, RegistrationInput, Service, ValidationInput, VerificationInput,
};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use latchkey_core::organization::Organization;
use serde::Deserialize;
use serde_json::{Value, json};
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

type Result<T> = std::result::Result<T, Native>;
type Body<T> = std::result::Result<Input<T>, ApiError>;

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
    body: Body<RegistrationInput>,
) -> Result<Response> {
    let Input(input) = body?;
    let created = service.create_registration(&app, input).await?;
    Ok((StatusCode::CREATED, Json(created_json("registration", &created))).into_response())
}

async fn validate_registration(
    State(service): State<Arc<Service>>,
    Caller(app): Caller,
    body: Body<ValidationInput>,
) -> Result<Json<Value>> {
    let Input(input) = body?;
    let done = service.validate_registration(&app, input).await?;
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
    body: Body<VerificationInput>,
) -> Result<Response> {
    let Input(input) = body?;
    let created = service.create_verification_link(&app, input).await?;
    Ok((StatusCode::CREATED, Json(created_json("verification_link", &created))).into_response())
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
    let c = service.redeem_verification_link(&app, input.code.as_deref()).await?;
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
    body: Body<OrganizationInput>,
) -> Result<Response> {
    let Input(input) = body?;
    let org = service.create_organization(input).await?;
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
    body: Body<OrganizationInput>,
) -> Result<Json<Value>> {
    let Input(input) = body?;
    Ok(Json(organization_json(&service.update_organization(&id, input).await?)))
}

async fn delete_organization(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    service.delete_organization(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
