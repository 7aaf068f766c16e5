//! Values every face parses the same way (an e-mail address, bounded text, a locale); a
//! failure names its field and what is wrong, and each face says it in its own shape.

use latchkey_core::EmailAddress;
use latchkey_core::bounded::Bounded;
use latchkey_mail::{Locale, MAX_LOCALE_LEN};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    Missing,
    Invalid,
}

/// Why a field was refused, in a sentence for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub problem: Problem,
    pub message: String,
}

impl FieldError {
    fn invalid(field: &'static str, message: String) -> Self {
        Self { field, problem: Problem::Invalid, message }
    }
}

type Result<T> = std::result::Result<T, FieldError>;

/// A required e-mail address.
pub fn email(field: &'static str, value: Option<&str>) -> Result<EmailAddress> {
    let value = value.ok_or_else(|| FieldError {
        field,
        problem: Problem::Missing,
        message: format!("{field} is required"),
    })?;
    EmailAddress::parse(value)
        .map_err(|_| FieldError::invalid(field, format!("{field} is not a valid e-mail address")))
}

/// An optional string of at most `MAX` bytes.
pub fn bounded<const MAX: usize>(field: &'static str, value: Option<String>) -> Result<Option<Bounded<MAX>>> {
    value
        .map(|v| Bounded::parse(v).map_err(|e| FieldError::invalid(field, format!("{field} {e}"))))
        .transpose()
}

/// The locale a request asks for: absent, or a language tag (`fr`, `pt-BR`).
pub fn locale(field: &'static str, value: Option<&str>) -> Result<Option<Locale>> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) if v.len() > MAX_LOCALE_LEN => {
            Err(FieldError::invalid(field, format!("{field} is limited to {MAX_LOCALE_LEN} characters")))
        }
        Some(v) => Locale::parse(v).map(Some).map_err(|_| {
            FieldError::invalid(field, format!("{field} must be a language tag such as en, fr or pt-BR"))
        }),
    }
}
