//! The native API (`/v1/…`): applications, magic links, registrations, verification links,
//! users, organizations, events, keys and templates. Its request and response types, its
//! callers ([`Admin`], [`Caller`]) and its one error shape ([`NativeError`]) live here.

mod admin;
mod applications;
mod error;
mod magic_links;
mod openapi;
mod pages;
mod parse;
mod registrations;
mod suppressions;
mod templates;

pub use applications::{ApplicationBody, application_json, created_application_json};
pub use error::NativeError;
pub use openapi::document;

use crate::common::body::{BodyError, Input};
use crate::common::credentials;
use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use latchkey_core::Application;
use latchkey_service::Service;
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;

/// The native API's routes, and `GET /openapi.json`: the document made from the same routes.
pub fn routes() -> Router<Arc<Service>> {
    let (router, api) = api().split_for_parts();
    router.merge(openapi::route(openapi::complete(api)))
}

/// Every native endpoint, each declared with its document entry.
fn api() -> OpenApiRouter<Arc<Service>> {
    OpenApiRouter::new()
        .merge(applications::routes())
        .merge(magic_links::routes())
        .merge(registrations::routes())
        .merge(admin::routes())
        .merge(templates::routes())
        .merge(pages::routes())
        .merge(suppressions::routes())
}

/// A whole collection.
#[derive(Debug, Serialize, ToSchema)]
pub struct List<T> {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<T>,
}

impl<T> List<T> {
    pub fn all(data: Vec<T>) -> Self {
        Self { object: "list", data }
    }
}

/// One page of a collection, oldest first; `next_cursor` is the `after` of the next page, or
/// `null` on the last.
#[derive(Debug, Serialize, ToSchema)]
pub struct CursorPage<T> {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> CursorPage<T> {
    pub fn of<U>(page: latchkey_service::Page<U>, item: impl Fn(&U) -> T) -> Self {
        Self { object: "list", data: page.items.iter().map(item).collect(), next_cursor: page.next }
    }
}

/// What a path matches nothing of.
pub async fn not_found() -> Response {
    NativeError::NoRoute.into_response()
}

type Result<T> = std::result::Result<T, NativeError>;
/// A body, or why it could not be read (answered in the native shape).
type Body<T> = std::result::Result<Input<T>, BodyError>;

/// The admin, authenticated by the admin token.
#[derive(Debug)]
pub struct Admin;

impl FromRequestParts<Arc<Service>> for Admin {
    type Rejection = NativeError;

    async fn from_request_parts(parts: &mut Parts, service: &Arc<Service>) -> Result<Self> {
        service
            .authenticate_admin(credentials::bearer(&parts.headers))
            .map(|()| Admin)
            .map_err(NativeError::from)
    }
}

/// The application calling the native API: HTTP Basic, a bearer client secret, or a bearer
/// client_credentials access token.
#[derive(Debug)]
pub struct Caller(pub Application);

impl FromRequestParts<Arc<Service>> for Caller {
    type Rejection = NativeError;

    async fn from_request_parts(parts: &mut Parts, service: &Arc<Service>) -> Result<Self> {
        let creds = credentials::from_headers(&parts.headers);
        service.authenticate_caller(&creds).await.map(Caller).map_err(NativeError::from)
    }
}
