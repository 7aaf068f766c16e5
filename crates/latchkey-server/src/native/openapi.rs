//! `GET /openapi.json`: the OpenAPI 3.1 document of the native API, made from the same routes,
//! request and response types that serve it. Here only what no single endpoint says: the
//! document's info, the security schemes, and the errors every native call may answer.

use super::error::ErrorBody;
use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;
use bytes::Bytes;
use latchkey_service::Service;
use std::sync::Arc;
use utoipa::openapi::link::Link;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, Info, License, Object, OpenApi, Ref, RefOr, ResponseBuilder, Type, header::Header,
    schema::Components,
};
use utoipa::{PartialSchema, ToSchema};

/// The native API's whole document.
pub fn document() -> OpenApi {
    let (_, api) = super::api().split_for_parts();
    complete(api)
}

/// Serves `document` as it was made at start.
pub fn route(document: OpenApi) -> Router<Arc<Service>> {
    let json = Bytes::from(document.to_json().unwrap_or_default());
    Router::new().route(
        "/openapi.json",
        get(move || {
            let json = json.clone();
            async move {
                let json_type = HeaderValue::from_static("application/json");
                let cache = HeaderValue::from_static("public, max-age=300");
                ([(header::CONTENT_TYPE, json_type), (header::CACHE_CONTROL, cache)], json).into_response()
            }
        }),
    )
}

/// Errors, by status, that any native call may answer, and why.
const ERRORS: &[(&str, &str)] = &[
    ("400", "Malformed request, or a request that cannot be served as asked"),
    ("401", "Missing or wrong credentials"),
    ("403", "Not allowed"),
    ("404", "No such resource, or no such endpoint"),
    ("409", "Conflicts with the current state"),
    ("410", "No longer valid (used, expired or revoked)"),
    ("422", "A field does not parse; `field` names it"),
    ("429", "Rate limited; `Retry-After` says when to retry"),
    ("503", "The database is unavailable; `Retry-After` says when to retry"),
];

/// Errors that only a call with a body may answer.
const BODY_ERRORS: &[(&str, &str)] =
    &[("413", "The request body is too large"), ("415", "The body is neither JSON nor form-encoded")];

/// The info, security schemes and error responses around the endpoints' own entries.
pub fn complete(mut api: OpenApi) -> OpenApi {
    api.info = Info::new("Latchkey native API", env!("CARGO_PKG_VERSION"));
    api.info.license = Some(License::new("Apache-2.0"));
    api.info.description = Some(
        "Passwordless e-mail sign-in: magic links, one-time codes, registrations, verification \
         links, and their administration. Bodies are JSON (form-encoded is accepted too); errors are \
         `{\"error\", \"message\"}` with `field` on 422."
            .into(),
    );
    let components = api.components.get_or_insert_with(Components::new);
    let bearer = |description: &str| {
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.description = Some(description.into());
        SecurityScheme::Http(http)
    };
    let mut basic = Http::new(HttpAuthScheme::Basic);
    basic.description = Some("The application's client id and client secret.".into());
    components.security_schemes.insert("admin_token".into(), RefOr::T(bearer("The admin token.")));
    components.security_schemes.insert("client_basic".into(), RefOr::T(SecurityScheme::Http(basic)));
    components.security_schemes.insert(
        "client_bearer".into(),
        RefOr::T(bearer("An application's client secret, or a client_credentials access token.")),
    );
    components.schemas.insert(ErrorBody::name().into_owned(), ErrorBody::schema());

    for (status, description) in ERRORS.iter().chain(BODY_ERRORS) {
        let content = ContentBuilder::new().schema(Some(Ref::from_schema_name(ErrorBody::name()))).build();
        let mut response =
            ResponseBuilder::new().description(*description).content("application/json", content);
        if matches!(*status, "429" | "503") {
            response = response.header("Retry-After", Header::new(Object::with_type(Type::Integer)));
        }
        components.responses.insert(error_name(status), RefOr::T(response.build()));
    }

    let targets = operations_by_path(&api);
    for (path, item) in api.paths.paths.iter_mut() {
        if let Some(create) = item.post.as_mut() {
            link_created(path, create, &targets);
        }
        for op in [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete]
            .into_iter()
            .flatten()
        {
            add_errors(op);
        }
    }
    api
}

/// The operation ids under each path.
fn operations_by_path(api: &OpenApi) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, item) in &api.paths.paths {
        for op in [&item.get, &item.post, &item.put, &item.patch, &item.delete].into_iter().flatten() {
            if let Some(id) = &op.operation_id {
                out.push((path.clone(), id.clone()));
            }
        }
    }
    out
}

/// What a `POST` creates is reached under its path by its `id`: say so as links, so that a
/// client (or a fuzzer) knows which answer feeds which call.
fn link_created(path: &str, create: &mut Operation, targets: &[(String, String)]) {
    let Some(RefOr::T(created)) = create.responses.responses.get_mut("201") else { return };
    let prefix = format!("{path}/{{id}}");
    for (target_path, operation_id) in targets {
        if target_path == &prefix || target_path.starts_with(&format!("{prefix}/")) {
            let link =
                Link::builder().operation_id(operation_id).parameter("id", "$response.body#/id").build();
            created.links.insert(operation_id.clone(), RefOr::T(link));
        }
    }
}

fn error_name(status: &str) -> String {
    format!("Error{status}")
}

fn add_errors(op: &mut Operation) {
    let with_body = op.request_body.is_some();
    let errors = ERRORS.iter().chain(BODY_ERRORS.iter().filter(|_| with_body));
    for (status, _) in errors {
        let reference = RefOr::Ref(Ref::from_response_name(error_name(status)));
        op.responses.responses.entry((*status).into()).or_insert(reference);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_says_who_may_call_it_and_what_it_answers() {
        let doc = document();
        assert!(doc.paths.paths.len() >= 19, "{} paths", doc.paths.paths.len());
        let mut ids = std::collections::BTreeSet::new();
        for (path, item) in &doc.paths.paths {
            for op in [&item.get, &item.post, &item.put, &item.patch, &item.delete].into_iter().flatten() {
                assert!(op.security.as_ref().is_some_and(|s| !s.is_empty()), "{path}: no security");
                assert!(op.responses.responses.keys().any(|s| s.starts_with('2')), "{path}: no success");
                assert!(op.responses.responses.contains_key("401"), "{path}: no 401");
                let id = op.operation_id.clone().unwrap_or_default();
                assert!(ids.insert(id.clone()), "{path}: operation id {id} used twice");
            }
        }
    }
}
