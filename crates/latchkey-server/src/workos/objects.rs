//! The WorkOS objects built from Latchkey's records, and the ids they carry. A WorkOS id is
//! the Latchkey id under the WorkOS prefix (`ml_X` is `passwordless_session_X` and
//! `magic_auth_X`; `user_X` is `prof_X` as a profile), so no mapping is stored.

use crate::common::rfc3339;
use latchkey_core::id::{ChallengeId, UserId};
use latchkey_core::{Challenge, User};
use latchkey_service::SignedIn;
use serde_json::{Value, json};

pub const SESSION_PREFIX: &str = "passwordless_session";
pub const MAGIC_AUTH_PREFIX: &str = "magic_auth";
const PROFILE_PREFIX: &str = "prof";

/// `ml_X` as `{prefix}_X`.
pub fn external_id(prefix: &str, id: &ChallengeId) -> String {
    let suffix = id.as_str().split_once('_').map_or("", |(_, s)| s);
    format!("{prefix}_{suffix}")
}

/// `{prefix}_X` as `ml_X`; `None` for anything else (answered as unknown).
pub fn challenge_id(prefix: &str, external: &str) -> Option<ChallengeId> {
    let suffix = external.strip_prefix(prefix)?.strip_prefix('_')?;
    ChallengeId::parse(&format!("ml_{suffix}"))
}

/// A Latchkey user as a WorkOS user.
pub fn user(u: &User) -> Value {
    let (first_name, last_name) = split_name(u.name.as_deref());
    json!({
        "object": "user",
        "id": u.id,
        "email": u.email.as_str(),
        "email_verified": u.email_verified,
        "first_name": first_name,
        "last_name": last_name,
        "name": u.name,
        "profile_picture_url": null,
        "external_id": null,
        "last_sign_in_at": u.last_sign_in_at.map(rfc3339),
        "created_at": rfc3339(u.created_at),
        "updated_at": rfc3339(u.updated_at),
        "metadata": u.metadata,
        "locale": u.locale,
    })
}

/// The user of a sign-in as an SSO profile of a `MagicLink` connection.
pub fn profile(signed_in: &SignedIn) -> Value {
    let u = &signed_in.user;
    let (first_name, last_name) = split_name(u.name.as_deref());
    json!({
        "object": "profile",
        "id": profile_id(&u.id),
        "organization_id": signed_in.org_id,
        "connection_id": null,
        "connection_type": "MagicLink",
        "idp_id": u.id,
        "email": u.email.as_str(),
        "first_name": first_name,
        "last_name": last_name,
        "name": u.name,
        "role": null,
        "roles": null,
        "raw_attributes": { "email": u.email.as_str(), "email_verified": u.email_verified },
    })
}

/// A sign-in by code as a Magic Auth object. Its code is only in the e-mail (it is stored
/// hashed), so `code` is always null.
pub fn magic_auth(c: &Challenge, user_id: Option<&UserId>) -> Value {
    json!({
        "object": "magic_auth",
        "id": external_id(MAGIC_AUTH_PREFIX, &c.id),
        "user_id": user_id,
        "email": c.email.as_str(),
        "expires_at": rfc3339(c.otp_expires_at),
        "created_at": rfc3339(c.created_at),
        "updated_at": rfc3339(c.consumed_at.unwrap_or(c.created_at)),
        "code": null,
    })
}

fn profile_id(id: &UserId) -> String {
    let suffix = id.as_str().split_once('_').map_or("", |(_, s)| s);
    format!("{PROFILE_PREFIX}_{suffix}")
}

/// A full name as first and last: the first word, and the rest.
fn split_name(name: Option<&str>) -> (Option<&str>, Option<&str>) {
    let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) else { return (None, None) };
    match name.split_once(' ') {
        Some((first, rest)) => (Some(first), Some(rest.trim())),
        None => (Some(name), None),
    }
}
