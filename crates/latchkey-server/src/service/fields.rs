//! Parsing the fields that several use cases share, with one message per refusal.

use super::ServiceError;
use latchkey_core::EmailAddress;
use latchkey_core::rate_limit::RateLimited;
use latchkey_store::StoreError;
use time::Duration;

/// The bounds of a caller-chosen challenge lifetime, in seconds.
pub const EXPIRES_IN: (i64, i64) = (60, 86_400);

/// A required e-mail address.
pub fn email(value: Option<&str>) -> Result<EmailAddress, ServiceError> {
    let value = value.ok_or_else(|| ServiceError::invalid("email", "email is required"))?;
    EmailAddress::parse(value)
        .map_err(|_| ServiceError::invalid("email", "email is not a valid e-mail address"))
}

/// An optional string of at most `max` bytes.
pub fn bounded(
    field: &'static str,
    value: Option<String>,
    max: usize,
) -> Result<Option<String>, ServiceError> {
    match value {
        Some(v) if v.len() > max => {
            Err(ServiceError::invalid(field, format!("{field} is limited to {max} bytes")))
        }
        v => Ok(v),
    }
}

/// An optional `expires_in`, within [`EXPIRES_IN`].
pub fn expires_in(value: Option<i64>) -> Result<Option<Duration>, ServiceError> {
    match value {
        Some(s) if !(EXPIRES_IN.0..=EXPIRES_IN.1).contains(&s) => Err(ServiceError::invalid(
            "expires_in",
            format!("expires_in must be between {} and {} seconds", EXPIRES_IN.0, EXPIRES_IN.1),
        )),
        s => Ok(s.map(Duration::seconds)),
    }
}

pub fn rate_limited(refused: RateLimited) -> ServiceError {
    ServiceError::RateLimited { retry_after: refused.retry_after }
}

pub fn email_taken() -> ServiceError {
    ServiceError::Conflict { code: "email_taken", message: "a user with this e-mail exists".into() }
}

/// A store conflict on a user's address is the address being taken.
pub fn taken(e: StoreError) -> ServiceError {
    match e {
        StoreError::Conflict(_) => email_taken(),
        other => other.into(),
    }
}
