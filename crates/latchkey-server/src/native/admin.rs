//! The admin API beyond applications: users and their sessions, the audit events, signing keys.

use super::{Admin, Body, CursorPage, List, NativeError, Result, parse};
use crate::common::body::{BodyError, Input};
use crate::common::rfc3339;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use latchkey_core::User;
use latchkey_core::event::Event;
use latchkey_core::id::UserId;
use latchkey_core::signing::SigningAlg;
use latchkey_service::{NewUser, PageSize, Refusal, Resource, Service, UserChange};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn routes() -> OpenApiRouter<Arc<Service>> {
    OpenApiRouter::new()
        .routes(routes!(create_user, list_users))
        .routes(routes!(read_user, update_user, delete_user))
        .routes(routes!(sessions, revoke_sessions))
        .routes(routes!(events))
        .routes(routes!(rotate_key))
}

/// A user as the admin describes one; on a change, only the fields present change.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
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

/// A page of a collection: after this cursor, at most `limit` items.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// The `next_cursor` of the previous page.
    pub after: Option<String>,
    /// 1 to 100 (default 50).
    pub limit: Option<u32>,
}

/// A user.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: String,
    /// Always `user`.
    pub object: &'static str,
    pub email: String,
    pub email_verified: bool,
    pub name: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub locale: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub last_sign_in_at: Option<String>,
}

pub fn user_view(u: &User) -> UserView {
    UserView {
        id: u.id.to_string(),
        object: "user",
        email: u.email.as_str().to_owned(),
        email_verified: u.email_verified,
        name: u.name.clone(),
        metadata: u.metadata.clone(),
        locale: u.locale.clone(),
        created_at: rfc3339(u.created_at),
        updated_at: rfc3339(u.updated_at),
        last_sign_in_at: u.last_sign_in_at.map(rfc3339),
    }
}

/// An audit event.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    pub id: String,
    /// Always `event`.
    pub object: &'static str,
    /// What happened (`challenge.created`, `token.issued`, …).
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub application_id: Option<String>,
    pub user_id: Option<String>,
    /// What the event is about when it is neither the application nor the user.
    pub subject: Option<String>,
    /// A short machine-readable detail; never a secret.
    #[schema(value_type = Option<Object>)]
    pub detail: Option<serde_json::Value>,
    pub created_at: String,
}

fn event_view(e: &Event) -> EventView {
    EventView {
        id: e.id.to_string(),
        object: "event",
        kind: e.kind.as_str(),
        application_id: e.app_id.as_ref().map(ToString::to_string),
        user_id: e.user_id.as_ref().map(ToString::to_string),
        subject: e.subject.clone(),
        detail: e.detail.as_deref().and_then(|d| serde_json::from_str(d).ok()),
        created_at: rfc3339(e.created_at),
    }
}

/// A sign-in of a user: a refresh-token family of one application, or a browser session of
/// the hosted sign-in (honoured by every application).
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    pub id: String,
    /// Always `session`.
    pub object: &'static str,
    /// `refresh_token` (an application's tokens) or `browser` (the hosted sign-in's cookie).
    pub kind: &'static str,
    /// The application of a refresh-token family; `null` for a browser session.
    pub application_id: Option<String>,
    /// `email` (a link) or `otp` (a code).
    pub auth_method: &'static str,
    pub authenticated_at: String,
    pub last_refreshed_at: String,
    pub expires_at: String,
}

/// How many sign-ins were revoked.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevokedView {
    pub revoked: u64,
}

/// The new signing key.
#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedKeyView {
    pub alg: &'static str,
    pub kid: String,
}

/// Query strings are parsed here so that a bad one answers like a bad body.
pub(super) fn query<T>(
    q: std::result::Result<Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T> {
    q.map(|Query(q)| q).map_err(|e| NativeError::Body(BodyError::Malformed(e.body_text())))
}

const USER_ID: &str = "The user's id (`user_…`)";

/// Create a user.
#[utoipa::path(post, path = "/v1/users", tag = "users", security(("admin_token" = [])),
    request_body(content = UserBody, content_type = "application/json"),
    responses((status = 201, description = "Created", body = UserView)))]
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
    Ok((StatusCode::CREATED, Json(user_view(&user))).into_response())
}

/// Users, oldest first, a page at a time.
#[utoipa::path(get, path = "/v1/users", tag = "users", security(("admin_token" = [])), params(ListQuery),
    responses((status = 200, description = "A page of users", body = CursorPage<UserView>)))]
async fn list_users(
    _: Admin,
    State(service): State<Arc<Service>>,
    q: std::result::Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<CursorPage<UserView>>> {
    let q = query(q)?;
    let limit = PageSize::parse(q.limit)?;
    let after = q
        .after
        .as_deref()
        .map(|a| UserId::parse(a).ok_or_else(|| NativeError::field("after", "after must be a user id")))
        .transpose()?;
    Ok(Json(CursorPage::of(service.list_users(after.as_ref(), limit).await?, user_view)))
}

/// One user.
#[utoipa::path(get, path = "/v1/users/{id}", tag = "users", security(("admin_token" = [])),
    params(("id" = String, Path, description = USER_ID)),
    responses((status = 200, description = "The user", body = UserView)))]
async fn read_user(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
) -> Result<Json<UserView>> {
    Ok(Json(user_view(&service.user(&user_id(&id)?).await?)))
}

/// Change a user: only the fields present change.
#[utoipa::path(patch, path = "/v1/users/{id}", tag = "users", security(("admin_token" = [])),
    params(("id" = String, Path, description = USER_ID)),
    request_body(content = UserBody, content_type = "application/json"),
    responses((status = 200, description = "The changed user", body = UserView)))]
async fn update_user(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
    body: Body<UserBody>,
) -> Result<Json<UserView>> {
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
    Ok(Json(user_view(&service.update_user(&id, change).await?)))
}

/// Delete a user.
#[utoipa::path(delete, path = "/v1/users/{id}", tag = "users", security(("admin_token" = [])),
    params(("id" = String, Path, description = USER_ID)),
    responses((status = 204, description = "Deleted")))]
async fn delete_user(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    service.delete_user(&user_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A user's sign-ins that are still alive.
#[utoipa::path(get, path = "/v1/users/{id}/sessions", tag = "users", security(("admin_token" = [])),
    params(("id" = String, Path, description = USER_ID)),
    responses((status = 200, description = "The user's sessions", body = List<SessionView>)))]
async fn sessions(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
) -> Result<Json<List<SessionView>>> {
    let sessions = service.user_sessions(&user_id(&id)?).await?;
    let data = sessions
        .iter()
        .map(|t| SessionView {
            id: t.family_id.to_string(),
            object: "session",
            kind: "refresh_token",
            application_id: Some(t.app_id.to_string()),
            auth_method: t.auth_method.amr(),
            authenticated_at: rfc3339(t.auth_time),
            last_refreshed_at: rfc3339(t.created_at),
            expires_at: rfc3339(t.expires_at),
        })
        .chain(service.user_browser_sessions(&user_id(&id)?).await?.iter().map(|b| SessionView {
            id: b.id.to_string(),
            object: "session",
            kind: "browser",
            application_id: None,
            auth_method: b.auth_method.amr(),
            authenticated_at: rfc3339(b.auth_time),
            last_refreshed_at: rfc3339(b.created_at),
            expires_at: rfc3339(b.expires_at),
        }))
        .collect();
    Ok(Json(List::all(data)))
}

/// Revoke every sign-in of a user.
#[utoipa::path(delete, path = "/v1/users/{id}/sessions", tag = "users", security(("admin_token" = [])),
    params(("id" = String, Path, description = USER_ID)),
    responses((status = 200, description = "How many were revoked", body = RevokedView)))]
async fn revoke_sessions(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
) -> Result<Json<RevokedView>> {
    let revoked = service.revoke_user_sessions(&user_id(&id)?).await?;
    Ok(Json(RevokedView { revoked }))
}

/// The audit trail, oldest first, a page at a time.
#[utoipa::path(get, path = "/v1/events", tag = "events", security(("admin_token" = [])), params(ListQuery),
    responses((status = 200, description = "A page of events", body = CursorPage<EventView>)))]
async fn events(
    _: Admin,
    State(service): State<Arc<Service>>,
    q: std::result::Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<CursorPage<EventView>>> {
    let q = query(q)?;
    Ok(Json(CursorPage::of(service.events(q.after.as_deref(), PageSize::parse(q.limit)?).await?, event_view)))
}

/// The algorithm of a new signing key.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default)]
struct RotateInput {
    /// `ES256` (default), `RS256` or `EdDSA`.
    alg: Option<String>,
}

/// Make a new signing key; the retired one stays published until its tokens have expired.
#[utoipa::path(post, path = "/v1/keys/rotate", tag = "keys", security(("admin_token" = [])),
    request_body(content = RotateInput, content_type = "application/json"),
    responses((status = 200, description = "The new key", body = RotatedKeyView)))]
async fn rotate_key(
    _: Admin,
    State(service): State<Arc<Service>>,
    body: Body<RotateInput>,
) -> Result<Json<RotatedKeyView>> {
    let Input(input) = body?;
    let alg = match input.alg.as_deref() {
        None => SigningAlg::default(),
        Some(a) => SigningAlg::parse(a)
            .ok_or_else(|| NativeError::field("alg", "alg must be one of ES256, RS256, EdDSA"))?,
    };
    let kid = service.rotate_signing_key(alg).await?;
    Ok(Json(RotatedKeyView { alg: alg.as_str(), kid }))
}
