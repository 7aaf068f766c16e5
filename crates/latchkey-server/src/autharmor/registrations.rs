//! Registration by magic-link e-mail: v4 start and validate, and the v3 validate that
//! `autharmor-sdk` calls (`verify_register_request`, which posts the registration's id as
//! `auth_request_id`, form-encoded under a JSON content type).

use super::{AuthArmorError, Body, Caller, Result, bounded, only, required, timeout, timeout_json};
use crate::common::body::Input;
use crate::common::no_store;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use latchkey_core::{EmailAddress, RedirectUri};
use latchkey_service::{NewRegistration, Refusal, Registered, Service, Validated, Validation};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/v4/users/registrations/magiclink_email/start", only(post(start)))
        .route("/v4/users/registrations/magiclink_email/{registration_id}/validate", only(post(validate_v4)))
        .route("/v3/users/register/magiclink/validate", only(post(validate_v3)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StartRequest {
    email_address: Option<String>,
    registration_redirect_url: Option<String>,
    action_name: Option<String>,
    short_msg: Option<String>,
    timeout_in_seconds: Option<i64>,
    ip_address: Option<String>,
    user_agent: Option<String>,
    context_data: Option<BTreeMap<String, String>>,
}

impl TryFrom<StartRequest> for NewRegistration {
    type Error = AuthArmorError;

    fn try_from(b: StartRequest) -> Result<Self> {
        let email = required("email_address", b.email_address)?;
        let email = EmailAddress::parse(&email)
            .map_err(|_| AuthArmorError::field("email_address is not a valid e-mail address"))?;
        let url = required("registration_redirect_url", b.registration_redirect_url)?;
        // One that does not parse cannot be on the allow list either.
        let redirect_uri = RedirectUri::parse(&url).map_err(|_| Refusal::RedirectNotAllowed)?;
        Ok(NewRegistration {
            email,
            redirect_uri,
            expires_in: timeout(b.timeout_in_seconds)?,
            action_name: bounded("action_name", b.action_name)?,
            message: bounded("short_msg", b.short_msg)?,
            context_data: b.context_data.unwrap_or_default(),
            client_ip: bounded("ip_address", b.ip_address)?,
            user_agent: bounded("user_agent", b.user_agent)?,
            send_email: true,
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
    let created = service.create_registration(&app, NewRegistration::try_from(body)?).await?;
    Ok(Json(timeout_json(&created.challenge)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ValidateRequest {
    registration_validation_token: Option<String>,
    /// v3: the registration's id.
    auth_request_id: Option<String>,
    ip_address: Option<String>,
    user_agent: Option<String>,
}

async fn validate_v4(
    State(service): State<Arc<Service>>,
    Caller(app): Caller,
    Path(registration_id): Path<String>,
    body: Body<ValidateRequest>,
) -> Result<Response> {
    let Input(body) = body?;
    validate(&service, &app, registration_id, body).await
}

async fn validate_v3(
    State(service): State<Arc<Service>>,
    Caller(app): Caller,
    body: Body<ValidateRequest>,
) -> Result<Response> {
    let Input(mut body) = body?;
    let registration_id = required("auth_request_id", body.auth_request_id.take())?;
    validate(&service, &app, registration_id, body).await
}

async fn validate(
    service: &Service,
    app: &latchkey_core::Application,
    registration_id: String,
    b: ValidateRequest,
) -> Result<Response> {
    let cmd = Validation {
        token: required("registration_validation_token", b.registration_validation_token)?,
        registration_id: Some(registration_id),
        client_ip: b.ip_address,
        user_agent: b.user_agent,
    };
    let answer = match service.validate_registration_once(app, cmd).await? {
        Validated::First(done) => registered_json(&done, false),
        Validated::Replay(done) => registered_json(&done, true),
    };
    Ok(no_store(Json(answer).into_response()))
}

/// The new user. A replay says so, and that nothing was authorized by it. Under the
/// application's `report` policy, a client that differed is said, as in the native answer.
fn registered_json(done: &Registered, replay: bool) -> Value {
    let mut body = json!({
        "magiclink_email_registration_type": "new_user",
        "user_id": done.user.id,
        "username": done.user.email.as_str(),
        "email_address": done.user.email.as_str(),
        "context_data": done.challenge.context_data,
        "is_replay": replay,
        "authorized": !replay,
    });
    if done.client_mismatch {
        body["client_mismatch"] = true.into();
    }
    body
}
