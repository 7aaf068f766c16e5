//! The HTTP faces of Latchkey: each one a module that owns its wire format (request and
//! response types, its one error mapping, its authentication extractor) and translates to the
//! use cases of `latchkey-service`. Adding a face is adding a module and a line below.
//!
//! - [`native`]: the native API (`/v1/…`) and its OpenAPI document.
//! - [`oauth`]: OAuth 2.0 / OpenID Connect: token endpoint, discovery, keys, userinfo.
//! - [`pages`]: what a person's browser sees: the landing page of a link, `/oauth/authorize`.
//! - [`dev`]: the development pages of `--dev` and the development mailbox.
//! - [`ops`]: liveness, readiness and metrics.
//! - [`autharmor`]: the Auth Armor compatible API (`/connect/token`, `/v3/…`, `/v4/…`).
//! - [`cryptr`]: Cryptr's magic-link challenge and token endpoint.
//! - [`transmit`]: Transmit Mosaic's users, e-mail magic links and token endpoint.
//! - [`workos`]: the WorkOS-compatible face (`/passwordless/…`, `/sso/…`, `/user_management/…`).
//! - [`common`]: what every face shares: body parsing, credentials, page shell, middleware.

pub mod autharmor;
pub mod common;
pub mod cryptr;
pub mod dev;
pub mod native;
pub mod oauth;
pub mod ops;
pub mod pages;
pub mod transmit;
pub mod workos;

use axum::Router;
use latchkey_service::Service;
use std::sync::Arc;

/// The whole server: every face, then the middleware every request goes through.
pub fn router(service: Arc<Service>) -> Router {
    let faces = Router::new()
        .merge(native::routes())
        .merge(cryptr::routes())
        .merge(transmit::routes())
        .merge(oauth::routes())
        .merge(pages::routes())
        .merge(dev::routes())
        .merge(ops::routes())
        .merge(autharmor::routes())
        .merge(workos::routes())
        .fallback(native::not_found);
    common::layers(faces.with_state(service))
}
