//! An application's e-mail templates (admin): list, read, set (checked and test-rendered; a bad
//! template is a 422 naming the template and the line), delete.

use super::{Admin, Body, NativeError, Result, parse};
use crate::common::body::Input;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use latchkey_core::application::TemplateOverride;
use latchkey_mail::Locale;
use latchkey_mail::templates::{self, LANGUAGES, Purpose};
use latchkey_service::{Refusal, Resource, Service, TemplateParts};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn routes() -> OpenApiRouter<Arc<Service>> {
    OpenApiRouter::new().routes(routes!(list_templates)).routes(routes!(
        read_template,
        set_template,
        delete_template
    ))
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default)]
pub struct TemplateBody {
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
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

/// An application's own e-mail template for one purpose and language.
#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateView {
    /// Always `template`.
    pub object: &'static str,
    /// `login`, `registration` or `verification`.
    pub purpose: String,
    pub locale: String,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
}

/// An application's own templates, and what a template may be.
#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateList {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<TemplateView>,
    pub purposes: Vec<&'static str>,
    pub built_in_locales: Vec<&'static str>,
    pub limits: TemplateLimits,
}

/// What a template may cost to render, and how large it may be.
#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateLimits {
    pub fuel: u64,
    pub recursion_limit: usize,
    pub max_output_bytes: usize,
    pub max_subject_bytes: usize,
    pub max_body_bytes: usize,
}

fn template_view(key: &str, t: &TemplateOverride) -> TemplateView {
    let (purpose, locale) = key.split_once('.').unwrap_or((key, ""));
    TemplateView {
        object: "template",
        purpose: purpose.to_owned(),
        locale: locale.to_owned(),
        subject: t.subject.clone(),
        text: t.text.clone(),
        html: t.html.clone(),
    }
}

const APP_ID: &str = "The application's id (`app_…`)";

/// An application's own templates.
#[utoipa::path(get, path = "/v1/applications/{id}/templates", tag = "templates", security(("admin_token" = [])),
    params(("id" = String, Path, description = APP_ID)),
    responses((status = 200, description = "The templates", body = TemplateList)))]
async fn list_templates(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
) -> Result<Json<TemplateList>> {
    let (app, _) = service.application(&parse::app_id(&id)?).await?;
    Ok(Json(TemplateList {
        object: "list",
        data: app.settings.templates.iter().map(|(k, t)| template_view(k, t)).collect(),
        purposes: Purpose::ALL.iter().map(|p| p.as_str()).collect(),
        built_in_locales: LANGUAGES.to_vec(),
        limits: TemplateLimits {
            fuel: templates::FUEL,
            recursion_limit: templates::RECURSION_LIMIT,
            max_output_bytes: templates::MAX_OUTPUT,
            max_subject_bytes: templates::MAX_SUBJECT_SOURCE,
            max_body_bytes: templates::MAX_BODY_SOURCE,
        },
    }))
}

/// One of an application's own templates.
#[utoipa::path(get, path = "/v1/applications/{id}/templates/{purpose}/{locale}", tag = "templates", security(("admin_token" = [])),
    params(("id" = String, Path, description = APP_ID), ("purpose" = String, Path, description = "`login`, `registration` or `verification`"),
        ("locale" = String, Path, description = "A language tag (`fr`, `pt-BR`)")),
    responses((status = 200, description = "The template", body = TemplateView)))]
async fn read_template(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path((id, purpose, locale)): Path<(String, String, String)>,
) -> Result<Json<TemplateView>> {
    let app = parse::app_id(&id)?;
    let (purpose, locale) = key_to_find(&purpose, &locale)?;
    let (key, template) = service.template(&app, purpose, &locale).await?;
    Ok(Json(template_view(&key, &template)))
}

/// Set a template: checked and test-rendered; a bad one is a 422 naming the template and line.
#[utoipa::path(put, path = "/v1/applications/{id}/templates/{purpose}/{locale}", tag = "templates", security(("admin_token" = [])),
    params(("id" = String, Path, description = APP_ID), ("purpose" = String, Path, description = "`login`, `registration` or `verification`"),
        ("locale" = String, Path, description = "A language tag (`fr`, `pt-BR`)")),
    request_body(content = TemplateBody, content_type = "application/json"),
    responses((status = 200, description = "The template as set", body = TemplateView)))]
async fn set_template(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path((id, purpose, locale)): Path<(String, String, String)>,
    body: Body<TemplateBody>,
) -> Result<Json<TemplateView>> {
    let Input(b) = body?;
    let (purpose, locale) = key_to_set(&purpose, &locale)?;
    let parts = TemplateParts { subject: b.subject, text: b.text, html: b.html };
    let (app, key) = service.set_template(&parse::app_id(&id)?, purpose, &locale, parts).await?;
    let template = app.settings.templates.get(&key).cloned().unwrap_or_default();
    Ok(Json(template_view(&key, &template)))
}

/// Delete a template: the built-in one is used again.
#[utoipa::path(delete, path = "/v1/applications/{id}/templates/{purpose}/{locale}", tag = "templates", security(("admin_token" = [])),
    params(("id" = String, Path, description = APP_ID), ("purpose" = String, Path, description = "`login`, `registration` or `verification`"),
        ("locale" = String, Path, description = "A language tag (`fr`, `pt-BR`)")),
    responses((status = 204, description = "Deleted")))]
async fn delete_template(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path((id, purpose, locale)): Path<(String, String, String)>,
) -> Result<StatusCode> {
    let app = parse::app_id(&id)?;
    let (purpose, locale) = key_to_find(&purpose, &locale)?;
    service.delete_template(&app, purpose, &locale).await?;
    Ok(StatusCode::NO_CONTENT)
}
