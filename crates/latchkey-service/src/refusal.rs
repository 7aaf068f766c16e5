//! How a use case says no. [`Refusal`] names each case in the domain's terms; every face maps
//! it to its own status, code and body. Nothing here knows HTTP, a wire code or OAuth.

use latchkey_core::ChallengeStatus;
use latchkey_store::StoreError;
use time::Duration;

/// What a refusal is about, when it is about one kind of thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Application,
    Secret,
    MagicLink,
    Registration,
    SignInRequest,
    VerificationLink,
    User,
    Organization,
    Template,
    Suppression,
    DemoApplication,
}

impl Resource {
    /// The thing, in words.
    pub fn name(self) -> &'static str {
        match self {
            Self::Application => "application",
            Self::Secret => "secret",
            Self::MagicLink => "magic link",
            Self::Registration => "registration",
            Self::SignInRequest => "sign-in request",
            Self::VerificationLink => "verification link",
            Self::User => "user",
            Self::Organization => "organization",
            Self::Template => "template",
            Self::Suppression => "suppression",
            Self::DemoApplication => "demo application",
        }
    }
}

/// Every reason a use case refuses a well-formed request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    // Who is calling.
    #[error("authentication is required")]
    Unauthenticated,
    #[error("the admin API is not enabled on this server")]
    AdminDisabled,

    // Asking for a challenge.
    #[error("redirect_uri is not on the application's allow list")]
    RedirectNotAllowed,
    #[error("no redirect_uri was given and the application has no default")]
    RedirectRequired,
    #[error("a public application must send a code_challenge")]
    PkceRequired,
    #[error("no organization has this id or slug")]
    OrganizationUnknown,
    #[error("the organization does not own the e-mail address's domain")]
    EmailOutsideOrganization,
    #[error("a user with this e-mail exists")]
    EmailTaken,
    #[error("too many requests; retry in {} seconds", retry_after_secs(*.retry_after))]
    RateLimited { retry_after: Duration },

    // Using what a challenge issued.
    #[error("the code is invalid, expired or already used")]
    CodeInvalid,
    #[error("redirect_uri does not match the one the code was issued for")]
    RedirectMismatch,
    #[error("redirect_uri is required: the sign-in that issued the code named one")]
    RedirectMissing,
    #[error("code_verifier is required")]
    VerifierRequired,
    #[error("code_verifier does not match the code_challenge")]
    VerifierMismatch,
    #[error("a public client must use PKCE")]
    PublicClientWithoutPkce,
    #[error("the code is wrong, expired or already used")]
    OtpInvalid,
    #[error("the refresh token is invalid, expired or revoked")]
    RefreshTokenInvalid,
    #[error("the access token is invalid or expired")]
    AccessTokenInvalid,
    #[error("a public client cannot act for itself")]
    PublicClientCannotActForItself,
    #[error("the client differs from the one that started the registration")]
    ClientMismatch,
    #[error("the {} is {}", .what.name(), gone_word(*.status))]
    NoLongerValid { what: Resource, status: ChallengeStatus },
    #[error("the magic link is already {}", .0.as_str())]
    NotPending(ChallengeStatus),

    // Managing things.
    #[error("{} was not found", .0.name())]
    NotFound(Resource),
    /// A value the use case cannot accept, named by the command's field.
    #[error("{reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("the slug or one of the domains belongs to another organization")]
    OrganizationTaken,
    #[error("a public application has no secrets")]
    PublicClientHasNoSecrets,
    #[error("add another secret before deleting the last one")]
    LastSecret,
}

impl Refusal {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid { field, reason: reason.into() }
    }
}

impl From<latchkey_core::application::RedirectError> for Refusal {
    fn from(e: latchkey_core::application::RedirectError) -> Self {
        match e {
            latchkey_core::application::RedirectError::NotAllowed => Self::RedirectNotAllowed,
            latchkey_core::application::RedirectError::NoDefault => Self::RedirectRequired,
        }
    }
}

/// A use case's failure: refused, or not served at all.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The database did not answer; worth retrying shortly.
    #[error("the database is unavailable")]
    Unavailable(#[source] StoreError),
    /// A fault of ours; the cause is for the log only.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ServiceError {
    /// The refusal, when it is one.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            Self::Refused(r) => Some(r),
            _ => None,
        }
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

/// Whole seconds to wait, rounded up, at least one: what every `Retry-After` says.
pub fn retry_after_secs(d: Duration) -> i64 {
    ((d.whole_milliseconds() + 999) / 1000).max(1) as i64
}

/// How long a client should wait while the database is unavailable.
pub const RETRY_AFTER_UNAVAILABLE: Duration = Duration::seconds(5);

fn gone_word(status: ChallengeStatus) -> &'static str {
    match status {
        ChallengeStatus::Consumed => "already used",
        ChallengeStatus::Expired => "expired",
        _ => "revoked",
    }
}
