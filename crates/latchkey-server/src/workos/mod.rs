//! The WorkOS face: `/passwordless/…`, `/sso/…` and `/user_management/…` as the official
//! SDKs (PyPI `workos`, npm `@workos-inc/node`) call them, translated to the use cases. The
//! API key is an application's client secret, the client id its `client_id`.
//!
//! - [`passwordless`]: sessions whose link is answered at once and mailed on `send`.
//! - [`sso`]: the code of a link for a profile and an access token; the profile again; keys.
//! - [`user_management`]: Magic Auth codes, authentication, users.
//! - [`objects`]: the WorkOS objects (user, profile, magic_auth) and the ids they carry.

mod error;
mod objects;
mod passwordless;
mod sso;
mod user_management;

pub use error::WorkosError;

use crate::common::body::{BodyError, Input};
use crate::common::credentials;
use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any};
use latchkey_core::Application;
use latchkey_service::Service;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Service>> {
    Router::new()
        .merge(passwordless::routes())
        .merge(sso::routes())
        .merge(user_management::routes())
        .route("/passwordless/{*rest}", any(no_route))
        .route("/sso/{*rest}", any(no_route))
        .route("/user_management/{*rest}", any(no_route))
}

type Result<T> = std::result::Result<T, WorkosError>;
/// A body, or why it could not be read (answered in the WorkOS shape).
type Body<T> = std::result::Result<Input<T>, BodyError>;

/// A route of this face: another method on it answers 405 in the WorkOS shape.
fn route(methods: MethodRouter<Arc<Service>>) -> MethodRouter<Arc<Service>> {
    methods.fallback(wrong_method)
}

async fn no_route() -> Response {
    WorkosError::NoRoute.into_response()
}

async fn wrong_method() -> Response {
    WorkosError::WrongMethod.into_response()
}

/// The application behind the API key (`Authorization: Bearer <client secret>`).
#[derive(Debug)]
pub struct ApiKey(pub Application);

impl FromRequestParts<Arc<Service>> for ApiKey {
    type Rejection = WorkosError;

    async fn from_request_parts(parts: &mut Parts, service: &Arc<Service>) -> Result<Self> {
        let creds = credentials::from_headers(&parts.headers);
        Ok(ApiKey(service.authenticate_caller(&creds).await?))
    }
}
