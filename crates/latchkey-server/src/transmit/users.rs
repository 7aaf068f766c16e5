//! `POST /cis/v1/users`: a user by e-mail, answered with times in epoch milliseconds.

use super::{Body, Caller, Result, TransmitError, required};
use crate::common::body::Input;
use crate::common::no_store;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use latchkey_core::EmailAddress;
use latchkey_service::{NewUser, Service};
use latchkey_store::rows::millis;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct UserBody {
    email: Option<String>,
    username: Option<String>,
    name: Option<Name>,
    external_user_id: Option<String>,
    custom_data: Option<BTreeMap<String, Value>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct Name {
    first_name: Option<String>,
    last_name: Option<String>,
}

impl TryFrom<UserBody> for NewUser {
    type Error = TransmitError;

    /// The name is first and last joined; `username`, `external_user_id` and each entry of
    /// `custom_data` (text as it is, anything else as JSON) are kept in the user's metadata.
    fn try_from(b: UserBody) -> Result<Self> {
        let email = required("email", b.email)?;
        let email = EmailAddress::parse(&email)
            .map_err(|_| TransmitError::BadRequest("email is not a valid e-mail address".into()))?;
        let name = b.name.map(|n| {
            [n.first_name, n.last_name].into_iter().flatten().map(|s| s.trim().to_owned()).collect::<Vec<_>>()
        });
        let name = name.map(|parts| parts.join(" ")).filter(|n| !n.trim().is_empty());
        let mut metadata: BTreeMap<String, String> = b
            .custom_data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
            .collect();
        if let Some(username) = b.username {
            metadata.insert("username".into(), username);
        }
        if let Some(external) = b.external_user_id {
            metadata.insert("external_user_id".into(), external);
        }
        Ok(NewUser { email, name, metadata, locale: None })
    }
}

pub async fn create(
    State(service): State<Arc<Service>>,
    Caller(_app): Caller,
    body: Body<UserBody>,
) -> Result<Response> {
    let Input(body) = body?;
    let user = service.create_user(NewUser::try_from(body)?).await?;
    let mut result = json!({
        "user_id": user.id,
        "status": "Active",
        "email": { "value": user.email.as_str(), "email_verified": user.email_verified },
        "created_at": millis(user.created_at),
        "updated_at": millis(user.updated_at),
    });
    if let Some(name) = &user.name {
        result["name"] = name.as_str().into();
    }
    if let Some(username) = user.metadata.get("username") {
        result["username"] = username.as_str().into();
    }
    Ok(no_store((StatusCode::CREATED, Json(json!({ "result": result }))).into_response()))
}
