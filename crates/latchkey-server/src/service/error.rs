use latchkey_store::StoreError;

/// Every way a use case can fail. Each case has a stable code; internal causes are kept for
/// the log and never shown to the caller.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A field is present but its value is not acceptable (422).
    #[error("{message}")]
    InvalidField { field: &'static str, message: String },
    /// The request cannot be served as asked (400), with a stable code.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("authentication is required")]
    Unauthenticated,
    #[error("the admin API is not enabled on this server")]
    AdminDisabled,
    /// Well-formed, authenticated, and not allowed (403).
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    #[error("{0} was not found")]
    NotFound(&'static str),
    /// It existed and can no longer be used (410).
    #[error("{message}")]
    Gone { code: &'static str, message: String },
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    // OAuth 2.0 token endpoint errors (RFC 6749 §5.2).
    #[error("{0}")]
    InvalidClient(&'static str),
    #[error("{0}")]
    InvalidGrant(&'static str),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("grant_type {0:?} is not supported")]
    UnsupportedGrantType(String),
    #[error("{0}")]
    UnauthorizedClient(&'static str),
    #[error("too many requests; retry in {} seconds", retry_after_secs(*.retry_after))]
    RateLimited { retry_after: time::Duration },
    /// A bearer access token that is not (or no longer) valid.
    #[error("the access token is invalid or expired")]
    InvalidToken,
    #[error("the database is unavailable")]
    Unavailable(#[source] StoreError),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ServiceError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::InvalidField { field, message: message.into() }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest { code, message: message.into() }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => Self::Unavailable(e),
            other => Self::Internal(Box::new(other)),
        }
    }
}

/// Whole seconds to wait, rounded up, at least one.
pub fn retry_after_secs(d: time::Duration) -> i64 {
    ((d.whole_milliseconds() + 999) / 1000).max(1) as i64
}
