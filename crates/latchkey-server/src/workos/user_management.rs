//! User management: Magic Auth (a code by e-mail, then authentication with it), refresh
//! tokens, and the users the SDKs read back.

use super::objects::{MAGIC_AUTH_PREFIX, challenge_id};
use super::{ApiKey, Body, Result, WorkosError, objects, route};
use crate::common::body::Input;
use crate::common::fields;
use crate::common::{credentials, no_store};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use latchkey_core::id::UserId;
use latchkey_core::{Application, Otp};
use latchkey_service::{
    Credentials, NewMagicLink, OtpExchange, PageSize, Refusal, Resource, Service, TokenSet,
};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

pub const MAGIC_AUTH_GRANT: &str = "urn:workos:oauth:grant-type:magic-auth:code";
/// WorkOS's default page of users.
const DEFAULT_LIMIT: u32 = 10;

pub fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/user_management/magic_auth", route(post(create_magic_auth)))
        .route("/user_management/magic_auth/{id}", route(get(magic_auth)))
        .route("/user_management/authenticate", route(post(authenticate)))
        .route("/user_management/users", route(get(list_users)))
        .route("/user_management/users/{id}", route(get(user)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct MagicAuthBody {
    email: Option<String>,
    ip_address: Option<String>,
    user_agent: Option<String>,
    locale: Option<String>,
    invitation_token: Option<String>,
}

impl TryFrom<MagicAuthBody> for NewMagicLink {
    type Error = WorkosError;

    fn try_from(b: MagicAuthBody) -> Result<Self> {
        if b.invitation_token.is_some() {
            return Err(WorkosError::invalid(
                "invitation_token",
                "unsupported",
                "invitations do not exist here",
            ));
        }
        let mut cmd = NewMagicLink::new(fields::email("email", b.email.as_deref())?);
        cmd.client_ip = fields::bounded("ip_address", b.ip_address)?;
        cmd.user_agent = fields::bounded("user_agent", b.user_agent)?;
        cmd.locale = fields::locale("locale", b.locale.as_deref())?;
        Ok(cmd)
    }
}

/// E-mails a code (the sign-in e-mail, which carries a link too) to the address, whose user
/// is created if there is none yet.
async fn create_magic_auth(
    State(service): State<Arc<Service>>,
    ApiKey(app): ApiKey,
    body: Body<MagicAuthBody>,
) -> Result<Response> {
    let Input(body) = body?;
    let created = service.create_magic_link(&app, NewMagicLink::try_from(body)?).await?;
    // After the sign-in, so that a refused one (a rate limit) leaves no user behind.
    let user = service.user_for_address(&created.email).await?;
    let record = service.magic_link(&app, &created.id).await?;
    let body = objects::magic_auth(&record.challenge, Some(&user.id));
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn magic_auth(
    State(service): State<Arc<Service>>,
    ApiKey(app): ApiKey,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let id = challenge_id(MAGIC_AUTH_PREFIX, &id).ok_or(Refusal::NotFound(Resource::MagicLink))?;
    let record = service.magic_link(&app, &id).await?;
    let user = service.user_by_email(&record.challenge.email).await?;
    Ok(Json(objects::magic_auth(&record.challenge, user.as_ref().map(|u| &u.id))))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AuthenticateBody {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    code: Option<String>,
    email: Option<String>,
    refresh_token: Option<String>,
}

/// `POST /user_management/authenticate`: a Magic Auth code, or a refresh token.
async fn authenticate(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: Body<AuthenticateBody>,
) -> Result<Response> {
    let Input(body) = body?;
    let creds = credentials::from_headers(&headers)
        .or(Credentials { client_id: body.client_id.clone(), secret: body.client_secret.clone() });
    let answer = async {
        let app = service.authenticate_client(&creds).await?;
        grant(&service, &app, body).await
    };
    Ok(no_store(Json(answer.await.map_err(WorkosError::grant)?).into_response()))
}

async fn grant(service: &Service, app: &Application, body: AuthenticateBody) -> Result<Value> {
    let (tokens, method) = match body.grant_type.as_deref() {
        Some(MAGIC_AUTH_GRANT) => {
            let email = fields::email("email", body.email.as_deref())?;
            let code = body.code.ok_or_else(|| WorkosError::required("code"))?;
            let otp = Otp::parse(&code).ok_or(Refusal::OtpInvalid)?;
            (service.exchange_otp(app, OtpExchange { email, otp }).await?, Some("MagicAuth"))
        }
        Some("refresh_token") => {
            let token = body.refresh_token.ok_or_else(|| WorkosError::required("refresh_token"))?;
            (service.refresh(app, &token).await?, None)
        }
        None => return Err(WorkosError::required("grant_type")),
        Some(_) => return Err(WorkosError::UnsupportedGrantType),
    };
    authenticated(service, &tokens, method).await
}

/// The authentication response: the user, their tokens, and how they signed in.
async fn authenticated(service: &Service, tokens: &TokenSet, method: Option<&str>) -> Result<Value> {
    let signed_in = service.signed_in(Some(&tokens.access_token)).await?;
    let mut body = json!({
        "user": objects::user(&signed_in.user),
        "organization_id": signed_in.org_id,
        "access_token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
    });
    if let Some(method) = method {
        body["authentication_method"] = method.into();
    }
    Ok(body)
}

async fn user(
    State(service): State<Arc<Service>>,
    ApiKey(_): ApiKey,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let id = UserId::parse(&id).ok_or(Refusal::NotFound(Resource::User))?;
    Ok(Json(objects::user(&service.user(&id).await?)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ListQuery {
    limit: Option<u32>,
    after: Option<String>,
    before: Option<String>,
    order: Option<String>,
    email: Option<String>,
    organization_id: Option<String>,
    organization: Option<String>,
}

/// Users in the order they were created, `after` a user id, with WorkOS's `list_metadata`.
async fn list_users(
    State(service): State<Arc<Service>>,
    ApiKey(_): ApiKey,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>> {
    let q: ListQuery = serde_html_form::from_str(query.as_deref().unwrap_or_default()).map_err(|e| {
        WorkosError::invalid("query", "invalid", format!("invalid query: {}", excerpt(&e.to_string())))
    })?;
    if q.before.is_some() {
        return Err(WorkosError::invalid("before", "unsupported", "paginate forwards with after"));
    }
    if q.organization_id.is_some() || q.organization.is_some() {
        return Err(WorkosError::invalid(
            "organization_id",
            "unsupported",
            "users are not listed by organization here",
        ));
    }
    if !matches!(q.order.as_deref(), None | Some("asc" | "desc" | "normal")) {
        return Err(WorkosError::invalid("order", "invalid", "order must be asc, desc or normal"));
    }
    let limit = PageSize::parse(Some(q.limit.unwrap_or(DEFAULT_LIMIT)))?;
    let (users, after) = match q.email {
        Some(email) => {
            (service.user_by_email(&fields::email("email", Some(&email))?).await?.into_iter().collect(), None)
        }
        None => {
            let after = q
                .after
                .map(|a| {
                    UserId::parse(&a)
                        .ok_or_else(|| WorkosError::invalid("after", "invalid", "after must be a user id"))
                })
                .transpose()?;
            let page = service.list_users(after.as_ref(), limit).await?;
            (page.items, page.next)
        }
    };
    let data: Vec<Value> = users.iter().map(objects::user).collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "list_metadata": { "before": null, "after": after },
    })))
}

/// Parser messages name fields, never values; bound them all the same.
fn excerpt(message: &str) -> String {
    message.chars().take(200).collect()
}
