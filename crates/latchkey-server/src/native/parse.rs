//! Parsing the native API's fields into the use cases' types, one message per refusal.

use super::NativeError;
use crate::common::fields;
use latchkey_core::bounded::Bounded;
use latchkey_core::challenge::ChallengeLifetime;
use latchkey_core::id::AppId;
use latchkey_core::pkce::CodeChallenge;
use latchkey_core::{EmailAddress, RedirectUri};
use latchkey_mail::Locale;
use latchkey_service::{Refusal, Resource};

type Result<T> = std::result::Result<T, NativeError>;

/// An application's id from a path: no such application when it does not parse.
pub fn app_id(value: &str) -> Result<AppId> {
    Ok(AppId::parse(value).ok_or(Refusal::NotFound(Resource::Application))?)
}

/// A required e-mail address.
pub fn email(value: Option<&str>) -> Result<EmailAddress> {
    Ok(fields::email("email", value)?)
}

/// An optional string of at most `MAX` bytes.
pub fn bounded<const MAX: usize>(field: &'static str, value: Option<String>) -> Result<Option<Bounded<MAX>>> {
    Ok(fields::bounded(field, value)?)
}

/// An optional `expires_in`, within the bounds of a challenge's lifetime.
pub fn expires_in(value: Option<i64>) -> Result<Option<ChallengeLifetime>> {
    value
        .map(|s| {
            ChallengeLifetime::from_secs(s)
                .map_err(|e| NativeError::field("expires_in", format!("expires_in {e}")))
        })
        .transpose()
}

/// The locale a request asks for: absent, or a language tag (`fr`, `pt-BR`).
pub fn locale(field: &'static str, value: Option<&str>) -> Result<Option<Locale>> {
    Ok(fields::locale(field, value)?)
}

/// A redirect URI a sign-in asks for: one that does not parse cannot be on the allow list.
pub fn requested_redirect(value: Option<&str>) -> Result<Option<RedirectUri>> {
    value
        .map(RedirectUri::parse)
        .transpose()
        .map_err(|e| NativeError::BadRequest { code: "invalid_redirect_uri", message: e.to_string() })
}

/// A PKCE challenge, when there is one.
pub fn code_challenge(challenge: Option<String>, method: Option<String>) -> Result<Option<CodeChallenge>> {
    match (challenge, method) {
        (Some(c), method) => CodeChallenge::parse(&c, method.as_deref())
            .map(Some)
            .map_err(|e| NativeError::field("code_challenge", e.to_string())),
        (None, Some(_)) => {
            Err(NativeError::field("code_challenge", "code_challenge_method needs a code_challenge"))
        }
        (None, None) => Ok(None),
    }
}

/// A list of URIs for an application's settings.
pub fn uris(field: &'static str, values: &[String]) -> Result<Vec<RedirectUri>> {
    values
        .iter()
        .map(|v| {
            RedirectUri::parse(v).map_err(|e| {
                NativeError::field(field, format!("{:?}: {e}", latchkey_core::bounded::excerpt(v, 60)))
            })
        })
        .collect()
}
