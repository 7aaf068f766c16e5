//! The admin's view of suppressed addresses: those whose mail bounced get none for a while.

use super::admin::{ListQuery, query};
use super::{Admin, CursorPage, NativeError, Result};
use crate::common::rfc3339;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use latchkey_core::EmailAddress;
use latchkey_service::{PageSize, Refusal, Resource, Service};
use latchkey_store::Suppression;
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn routes() -> OpenApiRouter<Arc<Service>> {
    OpenApiRouter::new()
        .routes(routes!(list_suppressions))
        .routes(routes!(read_suppression, delete_suppression))
}

/// An address that gets no e-mail until `until`, because a delivery to it bounced.
#[derive(Debug, Serialize, ToSchema)]
pub struct SuppressionView {
    /// Always `suppression`.
    pub object: &'static str,
    pub email: String,
    /// The mail server's refusal.
    pub reason: String,
    pub created_at: String,
    pub until: String,
}

fn suppression_view(s: &Suppression) -> SuppressionView {
    SuppressionView {
        object: "suppression",
        email: s.email.as_str().to_owned(),
        reason: s.reason.clone(),
        created_at: rfc3339(s.created_at),
        until: rfc3339(s.until),
    }
}

/// An address from the path: none is suppressed when it is not one.
fn address(value: &str) -> Result<EmailAddress> {
    Ok(EmailAddress::parse(value).map_err(|_| Refusal::NotFound(Resource::Suppression))?)
}

const EMAIL: &str = "The suppressed address";

/// The suppressions in force, by address, a page at a time.
#[utoipa::path(get, path = "/v1/suppressions", tag = "suppressions", security(("admin_token" = [])), params(ListQuery),
    responses((status = 200, description = "A page of suppressions", body = CursorPage<SuppressionView>)))]
async fn list_suppressions(
    _: Admin,
    State(service): State<Arc<Service>>,
    q: std::result::Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<CursorPage<SuppressionView>>> {
    let q = query(q)?;
    let limit = PageSize::parse(q.limit)?;
    let after = q
        .after
        .as_deref()
        .map(|a| {
            EmailAddress::parse(a).map_err(|_| NativeError::field("after", "after must be an e-mail address"))
        })
        .transpose()?;
    Ok(Json(CursorPage::of(service.list_suppressions(after.as_ref(), limit).await?, suppression_view)))
}

/// One address's suppression.
#[utoipa::path(get, path = "/v1/suppressions/{email}", tag = "suppressions", security(("admin_token" = [])),
    params(("email" = String, Path, description = EMAIL)),
    responses((status = 200, description = "The suppression", body = SuppressionView)))]
async fn read_suppression(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path(email): Path<String>,
) -> Result<Json<SuppressionView>> {
    Ok(Json(suppression_view(&service.suppression(&address(&email)?).await?)))
}

/// Lift an address's suppression: its next e-mail is queued again.
#[utoipa::path(delete, path = "/v1/suppressions/{email}", tag = "suppressions", security(("admin_token" = [])),
    params(("email" = String, Path, description = EMAIL)),
    responses((status = 204, description = "Lifted")))]
async fn delete_suppression(
    _: Admin,
    State(service): State<Arc<Service>>,
    Path(email): Path<String>,
) -> Result<StatusCode> {
    service.delete_suppression(&address(&email)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
