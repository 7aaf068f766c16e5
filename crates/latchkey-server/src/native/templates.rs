//! An application's e-mail templates (admin): list, read, set (checked and test-rendered; a bad
//! template is a 422 naming the template and the line), delete.

use super::{Admin, Body, NativeError, Result, parse};
use crate::common::body::Input;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use latchkey_core::application::TemplateOverride;
use latchkey_core::id::AppId;
use latchkey_mail::Locale;
use latchkey_mail::templates::{self, LANGUAGES, Purpose};
use latchkey_service::{Refusal, Resource, Service, TemplateParts};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/v1/applications/{id}/templates", get(list))
        .route("/v1/applications/{id}/templates/{purpose}/{locale}", get(read).put(set).delete(remove))
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TemplateBody {
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
}

fn app_id(value: &str) -> Result<AppId> {
    Ok(AppId::parse(value).ok_or(Refusal::NotFound(Resource::Application))?)
}

/// The purpose and locale of a template's path, to set one.
fn key_to_set(purpose: &str, locale: &str) -> Result<(Purpose, Locale)> {
    let purpose = Purpose::parse(purpose).ok_or_else(|| {
        NativeError::field("purpose", "the purpose is one of login, registration, verification")
    })?;
    let locale = parse::locale("locale", Some(locale))?
        .ok_or_else(|| NativeError::field("locale", "the locale is required"))?;
    Ok((purpose, locale))
}

/// The purpose and locale of a template's path, to read or delete one: no such template
/// when they do not parse.
fn key_to_find(purpose: &str, locale: &str) -> Result<(Purpose, Locale)> {
    let missing = || NativeError::from(Refusal::NotFound(Resource::Template));
    let purpose = Purpose::parse(purpose).ok_or_else(missing)?;
    let locale = Locale::parse(locale).map_err(|_| missing())?;
    Ok((purpose, locale))
}

fn template_json(key: &str, t: &TemplateOverride) -> Value {
    let (purpose, locale) = key.split_once('.').unwrap_or((key, ""));
    json!({
        "object": "template",
        "purpose": purpose,
        "locale": locale,
        "subject": t.subject,
        "text": t.text,
        "html": t.html,
    })
}

async fn list(_: Admin, State(service): State<Arc<Service>>, Path(id): Path<String>) -> Result<Json<Value>> {
    let (app, _) = service.application(&app_id(&id)?).await?;
    let data: Vec<Value> = app.settings.templates.iter().map(|(k, t)| template_json(k, t)).collect();
    let purposes: Vec<&str> = Purpose::ALL.iter().map(|p| p.as_str()).collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "purposes": purposes,
        "built_in_locales": LANGUAGES,
        "limits": {
            "fuel": templates::FUEL,
            "recursion_limit": templates::RECURSION_LIMIT,
            "max_output_bytes": templates::MAX_OUTPUT,
            "max_subject_bytes": templates::MAX_SUBJECT_SOURCE,
            "max_body_bytes": templates::MAX_BODY_SOURCE,
        },
    })))
}

async fn read(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path((id, purpose, locale)): Path<(String, String, String)>,
) -> Result<Json<Value>> {
    let app = app_id(&id)?;
    let (purpose, locale) = key_to_find(&purpose, &locale)?;
    let (key, template) = service.template(&app, purpose, &locale).await?;
    Ok(Json(template_json(&key, &template)))
}

async fn set(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path((id, purpose, locale)): Path<(String, String, String)>,
    body: Body<TemplateBody>,
) -> Result<Json<Value>> {
    let Input(b) = body?;
    let (purpose, locale) = key_to_set(&purpose, &locale)?;
    let parts = TemplateParts { subject: b.subject, text: b.text, html: b.html };
    let (app, key) = service.set_template(&app_id(&id)?, purpose, &locale, parts).await?;
    let template = app.settings.templates.get(&key).cloned().unwrap_or_default();
    Ok(Json(template_json(&key, &template)))
}

async fn remove(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path((id, purpose, locale)): Path<(String, String, String)>,
) -> Result<StatusCode> {
    let app = app_id(&id)?;
    let (purpose, locale) = key_to_find(&purpose, &locale)?;
    service.delete_template(&app, purpose, &locale).await?;
    Ok(StatusCode::NO_CONTENT)
}
