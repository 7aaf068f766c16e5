//! The storage seam: one [`Store`] trait that every database implements, the records it
//! deals in, its error type, and a conformance suite every implementation runs.
//!
//! Rules that depend on the database (single use, leases) are stated here and enforced inside
//! each implementation by conditional updates, never by a read followed by a write.

pub mod conformance;
mod error;
mod records;
pub mod rows;

pub use error::StoreError;
pub use records::*;

use async_trait::async_trait;
use latchkey_core::challenge::{AuthorizationCode, NewAuthorizationCode};
use latchkey_core::id::{AppId, ChallengeId, OutboxId, SecretId, UserId};
use latchkey_core::{Application, Challenge, EmailAddress, User};
use time::OffsetDateTime;

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies pending migrations; safe to call from several instances at once.
    async fn migrate(&self) -> StoreResult<()>;
    /// Whether the database answers.
    async fn ping(&self) -> StoreResult<()>;

    // Applications and their secrets.
    async fn insert_application(&self, app: &Application, secret: Option<&ClientSecret>) -> StoreResult<()>;
    async fn application(&self, id: &AppId) -> StoreResult<Option<Application>>;
    async fn list_applications(&self) -> StoreResult<Vec<Application>>;
    /// Replaces the mutable fields; `false` when no such application exists.
    async fn update_application(&self, app: &Application) -> StoreResult<bool>;
    /// Deletes the application with its secrets, challenges, codes and queued mail.
    async fn delete_application(&self, id: &AppId) -> StoreResult<bool>;
    async fn insert_client_secret(&self, secret: &ClientSecret) -> StoreResult<()>;
    async fn client_secrets(&self, app_id: &AppId) -> StoreResult<Vec<ClientSecret>>;
    async fn delete_client_secret(&self, app_id: &AppId, id: &SecretId) -> StoreResult<bool>;
    /// The application owning a secret, looked up by the secret's keyed hash.
    async fn application_by_secret_hash(&self, hash: &[u8]) -> StoreResult<Option<Application>>;

    // Challenges.
    /// Writes a challenge and, when given, its e-mail in one transaction.
    async fn insert_challenge(
        &self,
        challenge: &Challenge,
        mail: Option<&NewOutboxMessage>,
    ) -> StoreResult<()>;
    async fn challenge(&self, app_id: &AppId, id: &ChallengeId) -> StoreResult<Option<ChallengeRecord>>;
    async fn challenge_by_link(&self, link_hash: &[u8]) -> StoreResult<Option<Challenge>>;
    /// Revokes a pending challenge; `false` when it is not pending (or not this application's).
    async fn revoke_challenge(
        &self,
        app_id: &AppId,
        id: &ChallengeId,
        now: OffsetDateTime,
    ) -> StoreResult<bool>;
    /// Consumes a pending, unexpired challenge by its link, atomically: finds or creates its
    /// user (marking the address verified) and issues the authorization code, all in one
    /// transaction. Of any number of concurrent calls for one link, exactly one succeeds.
    async fn consume_link(
        &self,
        link_hash: &[u8],
        code: &NewAuthorizationCode,
        now: OffsetDateTime,
    ) -> StoreResult<ConsumeOutcome>;
    /// Marks an unused, unexpired code of this application used and returns it; `None` for
    /// an unknown, used, expired or foreign code. Exactly one of concurrent calls succeeds.
    async fn redeem_authorization_code(
        &self,
        code_hash: &[u8],
        app_id: &AppId,
        now: OffsetDateTime,
    ) -> StoreResult<Option<AuthorizationCode>>;

    // Users.
    async fn user(&self, id: &UserId) -> StoreResult<Option<User>>;
    async fn user_by_email(&self, email: &EmailAddress) -> StoreResult<Option<User>>;

    // The outbox.
    /// Leases up to `limit` messages due at `now` until `lease_until`; a message leased by
    /// one caller is not returned to another before its lease ends.
    async fn claim_outbox(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> StoreResult<Vec<OutboxMessage>>;
    /// Records acceptance by the mail server and drops the sealed body.
    async fn outbox_sent(&self, id: &OutboxId, now: OffsetDateTime) -> StoreResult<()>;
    /// Records a failed attempt: another at `next_attempt_at`, or `failed` for good when `None`.
    async fn outbox_attempt_failed(
        &self,
        id: &OutboxId,
        error: &str,
        next_attempt_at: Option<OffsetDateTime>,
    ) -> StoreResult<()>;

    // Signing keys.
    async fn signing_keys(&self) -> StoreResult<Vec<StoredSigningKey>>;
    async fn insert_signing_key(&self, key: &StoredSigningKey) -> StoreResult<()>;
}
