//! An application's own hosted sign-in pages (admin): list, read, set (test-rendered with what
//! the page is given; a bad template is a 422 naming it and the line), delete.

use super::{Admin, Body, NativeError, Result, parse};
use crate::common::body::Input;
use crate::pages::hosted::render::{COMMON_VARIABLES, check_page, page_variables};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use latchkey_core::application::HostedPage;
use latchkey_mail::templates;
use latchkey_service::{Refusal, Resource, Service};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn routes() -> OpenApiRouter<Arc<Service>> {
    OpenApiRouter::new().routes(routes!(list_pages)).routes(routes!(read_page, set_page, delete_page))
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default)]
pub struct PageBody {
    /// The page's MiniJinja template: for `layout`, a whole HTML document showing `{{ content }}`;
    /// for the others, what goes inside the frame.
    pub html: Option<String>,
}

/// An application's own version of one hosted page.
#[derive(Debug, Serialize, ToSchema)]
pub struct PageView {
    /// Always `page_template`.
    pub object: &'static str,
    /// `layout`, `email`, `wait`, `same_browser`, `approve` or `message`.
    pub page: String,
    pub html: String,
}

/// An application's own pages, what each page is given, and the limits.
#[derive(Debug, Serialize, ToSchema)]
pub struct PageList {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<PageView>,
    /// The pages an application can replace.
    pub pages: Vec<&'static str>,
    /// The variables each page's template is given (those of every page included).
    pub variables: BTreeMap<&'static str, Vec<&'static str>>,
    pub fuel: u64,
    pub max_bytes: usize,
}

fn view(page: &str, html: &str) -> PageView {
    PageView { object: "page_template", page: page.to_owned(), html: html.to_owned() }
}

const APP_ID: &str = "The application's id (`app_…`)";
const PAGE: &str = "`layout`, `email`, `wait`, `same_browser`, `approve` or `message`";

/// An application's own hosted pages.
#[utoipa::path(get, path = "/v1/applications/{id}/pages", tag = "templates", security(("admin_token" = [])),
    params(("id" = String, Path, description = APP_ID)),
    responses((status = 200, description = "The pages", body = PageList)))]
async fn list_pages(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
) -> Result<Json<PageList>> {
    let (app, _) = service.application(&parse::app_id(&id)?).await?;
    let variables = HostedPage::ALL
        .iter()
        .map(|p| (p.as_str(), COMMON_VARIABLES.iter().chain(page_variables(*p)).copied().collect()))
        .collect();
    Ok(Json(PageList {
        object: "list",
        data: app.settings.pages.iter().map(|(page, html)| view(page, html)).collect(),
        pages: HostedPage::ALL.iter().map(|p| p.as_str()).collect(),
        variables,
        fuel: templates::FUEL,
        max_bytes: templates::MAX_BODY_SOURCE,
    }))
}

/// One of an application's own pages.
#[utoipa::path(get, path = "/v1/applications/{id}/pages/{page}", tag = "templates", security(("admin_token" = [])),
    params(("id" = String, Path, description = APP_ID), ("page" = String, Path, description = PAGE)),
    responses((status = 200, description = "The page's template", body = PageView)))]
async fn read_page(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path((id, page)): Path<(String, String)>,
) -> Result<Json<PageView>> {
    let app = parse::app_id(&id)?;
    let page = HostedPage::parse(&page).ok_or(Refusal::NotFound(Resource::Template))?;
    let html = service.page(&app, page).await?;
    Ok(Json(view(page.as_str(), &html)))
}

/// Set a page: test-rendered in every language with what the page is given; a bad template is
/// a 422 naming it and the line.
#[utoipa::path(put, path = "/v1/applications/{id}/pages/{page}", tag = "templates", security(("admin_token" = [])),
    params(("id" = String, Path, description = APP_ID), ("page" = String, Path, description = PAGE)),
    request_body(content = PageBody, content_type = "application/json"),
    responses((status = 200, description = "The page as set", body = PageView)))]
async fn set_page(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path((id, page)): Path<(String, String)>,
    body: Body<PageBody>,
) -> Result<Json<PageView>> {
    let Input(b) = body?;
    let page = HostedPage::parse(&page)
        .ok_or_else(|| NativeError::field("page", format!("the page is one of {PAGE}")))?;
    let html = b.html.unwrap_or_default();
    check_page(page, &html).map_err(|e| NativeError::field("html", e.to_string()))?;
    let app = service.set_page(&parse::app_id(&id)?, page, html).await?;
    let html = app.settings.pages.get(page.as_str()).map(String::as_str).unwrap_or_default();
    Ok(Json(view(page.as_str(), html)))
}

/// Delete a page: the built-in one is shown again.
#[utoipa::path(delete, path = "/v1/applications/{id}/pages/{page}", tag = "templates", security(("admin_token" = [])),
    params(("id" = String, Path, description = APP_ID), ("page" = String, Path, description = PAGE)),
    responses((status = 204, description = "Deleted")))]
async fn delete_page(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path((id, page)): Path<(String, String)>,
) -> Result<StatusCode> {
    let app = parse::app_id(&id)?;
    let page = HostedPage::parse(&page).ok_or(Refusal::NotFound(Resource::Template))?;
    service.delete_page(&app, page).await?;
    Ok(StatusCode::NO_CONTENT)
}
