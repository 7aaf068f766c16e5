//! An application's e-mail templates (admin): list, read, set (checked and test-rendered; a bad
//! template is a 422 naming the template and the line), delete.

use super::error::{ApiError, Native};
use super::extract::{Admin, Input};
use crate::service::{Service, TemplateInput};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use latchkey_core::application::TemplateOverride;
use latchkey_mail::templates::{self, LANGUAGES, Purpose};
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/v1/applications/{id}/templates", get(list))
        .route("/v1/applications/{id}/templates/{purpose}/{locale}", get(read).put(set).delete(remove))
}

type Result<T> = std::result::Result<T, Native>;

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
    let (app, _) = service.application(&id).await?;
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
    let (key, template) = service.template(&id, &purpose, &locale).await?;
    Ok(Json(template_json(&key, &template)))
}

async fn set(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path((id, purpose, locale)): Path<(String, String, String)>,
    body: std::result::Result<Input<TemplateInput>, ApiError>,
) -> Result<Json<Value>> {
    let Input(input) = body?;
    let (app, key) = service.set_template(&id, &purpose, &locale, input).await?;
    let template = app.settings.templates.get(&key).cloned().unwrap_or_default();
    Ok(Json(template_json(&key, &template)))
}

async fn remove(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path((id, purpose, locale)): Path<(String, String, String)>,
) -> Result<StatusCode> {
    service.delete_template(&id, &purpose, &locale).await?;
    Ok(StatusCode::NO_CONTENT)
}
