//! The admin API beyond applications: users and their sessions, the audit events, signing keys.

use super::{Admin, Body, NativeError, Result, parse};
use crate::common::body::{BodyError, Input};
use crate::common::rfc3339;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use latchkey_core::User;
use latchkey_core::event::Event;
use latchkey_core::id::UserId;
use latchkey_core::signing::SigningAlg;
use latchkey_service::{NewUser, Page, PageSize, Refusal, Resource, Service, UserChange};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/v1/users", post(create_user).get(list_users))
        .route("/v1/users/{id}", get(read_user).patch(update_user).delete(delete_user))
        .route("/v1/users/{id}/sessions", get(sessions).delete(revoke_sessions))
        .route("/v1/events", get(events))
        .route("/v1/keys/rotate", post(rotate_key))
}

/// A user as the admin describes one; on a change, only the fields present change.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct UserBody {
    pub email: Option<String>,
    pub name: Option<String>,
    pub metadata: Option<BTreeMap<String, String>>,
    /// The language of the user's e-mails (`fr`, `pt-BR`); an empty string clears it.
    pub locale: Option<String>,
}

fn user_id(value: &str) -> Result<UserId> {
    Ok(UserId::parse(value).ok_or(Refusal::NotFound(Resource::User))?)
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    after: Option<String>,
    limit: Option<u32>,
}

fn list<T>(page: Page<T>, item: impl Fn(&T) -> Value) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": page.items.iter().map(item).collect::<Vec<_>>(),
        "next_cursor": page.next,
    }))
}

pub fn user_json(u: &User) -> Value {
    json!({
        "id": u.id,
        "object": "user",
        "email": u.email.as_str(),
        "email_verified": u.email_verified,
        "name": u.name,
        "metadata": u.metadata,
        "locale": u.locale,
        "created_at": rfc3339(u.created_at),
        "updated_at": rfc3339(u.updated_at),
        "last_sign_in_at": u.last_sign_in_at.map(rfc3339),
    })
}

fn event_json(e: &Event) -> Value {
    json!({
        "id": e.id,
        "object": "event",
        "type": e.kind.as_str(),
        "application_id": e.app_id,
        "user_id": e.user_id,
        "subject": e.subject,
        "detail": e.detail.as_deref().and_then(|d| serde_json::from_str::<Value>(d).ok()),
        "created_at": rfc3339(e.created_at),
    })
}

/// Query strings are parsed here so that a bad one answers like a bad body.
fn query<T>(q: std::result::Result<Query<T>, axum::extract::rejection::QueryRejection>) -> Result<T> {
    q.map(|Query(q)| q).map_err(|e| NativeError::Body(BodyError::Malformed(e.body_text())))
}

async fn create_user(
    _: Admin,
    State(service): State<Arc<Service>>,
    body: Body<UserBody>,
) -> Result<Response> {
    let Input(b) = body?;
    let cmd = NewUser {
        email: parse::email(b.email.as_deref())?,
        name: b.name,
        metadata: b.metadata.unwrap_or_default(),
        locale: parse::locale("locale", b.locale.as_deref())?,
    };
    let user = service.create_user(cmd).await?;
    Ok((StatusCode::CREATED, Json(user_json(&user))).into_response())
}

async fn list_users(
    _: Admin,
    State(service): State<Arc<Service>>,
    q: std::result::Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>> {
    let q = query(q)?;
    let limit = PageSize::parse(q.limit)?;
    let after = q
        .after
        .as_deref()
        .map(|a| UserId::parse(a).ok_or_else(|| NativeError::field("after", "after must be a user id")))
        .transpose()?;
    Ok(list(service.list_users(after.as_ref(), limit).await?, user_json))
}

async fn read_user(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    Ok(Json(user_json(&service.user(&user_id(&id)?).await?)))
}

async fn update_user(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
    body: Body<UserBody>,
) -> Result<Json<Value>> {
    let Input(b) = body?;
    let id = user_id(&id)?;
    let change = UserChange {
        email: b.email.as_deref().map(|e| parse::email(Some(e))).transpose()?,
        name: b.name,
        metadata: b.metadata,
        locale: match b.locale.as_deref() {
            None => None,
            Some(l) => Some(parse::locale("locale", Some(l))?),
        },
    };
    Ok(Json(user_json(&service.update_user(&id, change).await?)))
}

async fn delete_user(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    service.delete_user(&user_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn sessions(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let sessions = service.user_sessions(&user_id(&id)?).await?;
    let data: Vec<Value> = sessions
        .iter()
        .map(|t| {
            json!({
                "id": t.family_id,
                "object": "session",
                "application_id": t.app_id,
                "auth_method": t.auth_method.amr(),
                "authenticated_at": rfc3339(t.auth_time),
                "last_refreshed_at": rfc3339(t.created_at),
                "expires_at": rfc3339(t.expires_at),
            })
        })
        .collect();
    Ok(Json(json!({ "object": "list", "data": data })))
}

async fn revoke_sessions(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let revoked = service.revoke_user_sessions(&user_id(&id)?).await?;
    Ok(Json(json!({ "revoked": revoked })))
}

async fn events(
    _: Admin,
    State(service): State<Arc<Service>>,
    q: std::result::Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>> {
    let q = query(q)?;
    Ok(list(service.events(q.after.as_deref(), PageSize::parse(q.limit)?).await?, event_json))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RotateInput {
    alg: Option<String>,
}

async fn rotate_key(
    _: Admin,
    State(service): State<Arc<Service>>,
    body: Body<RotateInput>,
) -> Result<Json<Value>> {
    let Input(input) = body?;
    let alg = match input.alg.as_deref() {
        None => SigningAlg::default(),
        Some(a) => SigningAlg::parse(a)
            .ok_or_else(|| NativeError::field("alg", "alg must be one of ES256, RS256, EdDSA"))?,
    };
    let kid = service.rotate_signing_key(alg).await?;
    Ok(Json(json!({ "alg": alg.as_str(), "kid": kid })))
}
