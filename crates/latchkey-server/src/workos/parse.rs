//! The face's fields into the use cases' types, each failure a 422 naming its field.

use super::{Result, WorkosError};
use latchkey_core::EmailAddress;
use latchkey_core::bounded::Bounded;
use latchkey_mail::{Locale, MAX_LOCALE_LEN};

pub fn email(value: Option<&str>) -> Result<EmailAddress> {
    let value = value.ok_or_else(|| WorkosError::required("email"))?;
    EmailAddress::parse(value)
        .map_err(|_| WorkosError::invalid("email", "invalid", "email is not a valid e-mail address"))
}

/// An optional string of at most `MAX` bytes.
pub fn bounded<const MAX: usize>(field: &'static str, value: Option<String>) -> Result<Option<Bounded<MAX>>> {
    value
        .map(|v| {
            Bounded::parse(v).map_err(|e| WorkosError::invalid(field, "invalid", format!("{field} {e}")))
        })
        .transpose()
}

/// An optional locale (`en`, `fr-FR`).
pub fn locale(value: Option<&str>) -> Result<Option<Locale>> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) if v.len() <= MAX_LOCALE_LEN => Locale::parse(v).map(Some).map_err(|_| {
            WorkosError::invalid("locale", "invalid", "locale must be a language tag such as en or fr-FR")
        }),
        Some(_) => Err(WorkosError::invalid(
            "locale",
            "invalid",
            format!("locale is limited to {MAX_LOCALE_LEN} characters"),
        )),
    }
}
