//! Sign-in by magic-link e-mail for a registered user: v4 start and validate, and the v3
//! validate that `autharmor-sdk` calls (`verify_auth_request` with `magiclink`). The e-mail's
//! link goes to the application's `auth_redirect_url` with `auth_request_id` and
//! `auth_validation_token`; the application's back end validates those here.

use super::{AuthArmorError, Body, Caller, Result, bounded, only, required, timeout, timeout_json};
use crate::common::body::Input;
use crate::common::no_store;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use latchkey_core::id::UserId;
use latchkey_core::{EmailAddress, RedirectUri};
use latchkey_service::{
    ActionName, LinkParams, NewSignInRequest, Refusal, Resource, Service, ShortMessage, SignInCheck,
    SignInRequest, UserKey, Validated,
};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/v4/auth/magiclink_email/start", only(post(start)))
        .route("/v4/auth/magiclink_email/validate", only(post(validate)))
        .route("/v3/auth/magiclink/validate", only(post(validate)))
}

/// What the e-mail's link carries, by the names Auth Armor's customers read.
const LINK_PARAMS: LinkParams = LinkParams { id: "auth_request_id", token: "auth_validation_token" };
/// `result_code` of a validation that signed the user in.
const SUCCEEDED: u32 = 8;
/// `result_code` of a replay: the token was already validated, nothing is authorized.
const REPLAYED: u32 = 9;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StartRequest {
    user_id: Option<String>,
    username: Option<String>,
    auth_redirect_url: Option<String>,
    timeout_in_seconds: Option<i64>,
    ip_address: Option<String>,
    user_agent: Option<String>,
    action_name: Option<String>,
    short_msg: Option<String>,
    context_data: Option<BTreeMap<String, String>>,
}

/// The user by id (`user_…`) or by username, which is the e-mail address here. A value that
/// cannot name a user names nobody: 404, as for one that could but does not.
fn user_key(user_id: Option<String>, username: Option<String>) -> Result<UserKey> {
    let nobody = || AuthArmorError::from(Refusal::NotFound(Resource::User));
    match (user_id, username) {
        (Some(_), Some(_)) => Err(AuthArmorError::field("give user_id or username, not both")),
        (Some(id), None) => UserId::parse(&id).map(UserKey::Id).ok_or_else(nobody),
        (None, Some(name)) => EmailAddress::parse(&name).map(UserKey::Email).map_err(|_| nobody()),
        (None, None) => Err(AuthArmorError::field("user_id or username is required")),
    }
}

impl TryFrom<StartRequest> for NewSignInRequest {
    type Error = AuthArmorError;

    fn try_from(b: StartRequest) -> Result<Self> {
        let user = user_key(b.user_id, b.username)?;
        let url = required("auth_redirect_url", b.auth_redirect_url)?;
        let redirect_uri = RedirectUri::parse(&url).map_err(|_| Refusal::RedirectNotAllowed)?;
        // Accepted and checked, though the sign-in e-mail has no place for them.
        let _: Option<ActionName> = bounded("action_name", b.action_name)?;
        let _: Option<ShortMessage> = bounded("short_msg", b.short_msg)?;
        Ok(NewSignInRequest {
            user,
            redirect_uri,
            link_params: LINK_PARAMS,
            expires_in: timeout(b.timeout_in_seconds)?,
            context_data: b.context_data.unwrap_or_default(),
            client_ip: bounded("ip_address", b.ip_address)?,
            user_agent: bounded("user_agent", b.user_agent)?,
            locale: None,
        })
    }
}

async fn start(
    State(service): State<Arc<Service>>,
    Caller(app): Caller,
    body: Body<StartRequest>,
) -> Result<Json<Value>> {
    let Input(body) = body?;
    let request = service.create_sign_in_request(&app, NewSignInRequest::try_from(body)?).await?;
    let mut answer = timeout_json(&request.challenge);
    answer["auth_request_id"] = json!(request.challenge.id);
    answer["user_id"] = json!(request.user.id);
    Ok(Json(answer))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ValidateRequest {
    auth_request_id: Option<String>,
    auth_validation_token: Option<String>,
    ip_address: Option<String>,
    user_agent: Option<String>,
}

async fn validate(
    State(service): State<Arc<Service>>,
    Caller(app): Caller,
    body: Body<ValidateRequest>,
) -> Result<Response> {
    let Input(b) = body?;
    let check = SignInCheck {
        id: required("auth_request_id", b.auth_request_id)?,
        token: required("auth_validation_token", b.auth_validation_token)?,
        client_ip: b.ip_address,
        user_agent: b.user_agent,
    };
    let answer = match service.validate_sign_in_request(&app, check).await? {
        Validated::First(request) => validation_json(&request, false),
        Validated::Replay(request) => validation_json(&request, true),
    };
    Ok(no_store(Json(answer).into_response()))
}

fn validation_json(request: &SignInRequest, replay: bool) -> Value {
    let (code, message) = if replay {
        (REPLAYED, "replay: this request was already validated")
    } else {
        (SUCCEEDED, "succeeded")
    };
    json!({
        "auth_request_status_id": 2,
        "auth_request_status_name": "Success",
        "validate_auth_response_details": {
            "auth_history_id": request.challenge.id,
            "result_code": code,
            "result_message": message,
            "authorized": !replay,
            "is_replay": replay,
            "auth_details": {
                "request_details": {
                    "auth_profile_details": {
                        "user_id": request.user.id,
                        "username": request.user.email.as_str(),
                    }
                }
            }
        },
        "context_data": request.challenge.context_data,
    })
}
