//! The storage seam: one [`Store`] trait that every database implements, the records it
//! deals in, its error type, and a conformance suite every implementation runs.
//!
//! Rules that depend on the database (single use, leases) are stated here and enforced inside
//! each implementation by conditional updates, never by a read followed by a write.

pub mod conformance;
mod error;
mod records;
pub mod rows;
pub mod transfer;

pub use error::StoreError;
pub use records::*;

use async_trait::async_trait;
use latchkey_core::challenge::Purpose;
use latchkey_core::challenge::{AuthorizationCode, NewAuthorizationCode};
use latchkey_core::event::Event;
use latchkey_core::hosted::{BrowserSession, HostedRequest, HostedStatus, SignedIn};
use latchkey_core::id::{AppId, ChallengeId, FamilyId, HostedRequestId, OrgId, OutboxId, SecretId, UserId};
use latchkey_core::link_view::{LinkView, LinkViews};
use latchkey_core::organization::Organization;
use latchkey_core::rate_limit::{RateLimit, RateLimited};
use latchkey_core::refresh::RefreshToken;
use latchkey_core::signing::SigningAlg;
use latchkey_core::{Application, Challenge, EmailAddress, User};
use time::OffsetDateTime;

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies pending migrations; safe to call from several instances at once.
    async fn migrate(&self) -> StoreResult<()>;
    /// Whether the database answers.
    async fn ping(&self) -> StoreResult<()>;
    /// How many of this build's migrations the database has not applied (0 once migrated).
    async fn pending_migrations(&self) -> StoreResult<u32>;
    /// The mail waiting to be delivered: how many messages, and when the oldest was queued.
    async fn outbox_backlog(&self) -> StoreResult<OutboxBacklog>;

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
    /// Counts the request against `limits` and, unless one is exceeded, writes the challenge,
    /// its e-mail (when given) and a `challenge.created` event, all in one transaction. A
    /// refused request counts nothing and writes nothing. An e-mail to an address suppressed
    /// at `now` is written `suppressed`, without its body, with a `mail.suppressed` event.
    async fn create_challenge(
        &self,
        challenge: &Challenge,
        mail: Option<&NewOutboxMessage>,
        limits: &[RateLimit],
        now: OffsetDateTime,
    ) -> StoreResult<Result<MailFate, RateLimited>>;
    /// Counts a request against `limits` without writing anything else.
    async fn hit_rate_limits(
        &self,
        limits: &[RateLimit],
        now: OffsetDateTime,
    ) -> StoreResult<Result<(), RateLimited>>;
    /// The newest pending, unexpired challenge of an address for an application: the only one
    /// whose code is accepted.
    async fn latest_pending_challenge(
        &self,
        app_id: &AppId,
        email: &EmailAddress,
        now: OffsetDateTime,
    ) -> StoreResult<Option<Challenge>>;
    /// Consumes a pending challenge by its code, atomically, as [`Store::consume_link`] does by
    /// its link (the two race fairly: one wins). A wrong code counts an attempt; the attempt
    /// that reaches `max_attempts` revokes the challenge.
    async fn consume_by_otp(
        &self,
        id: &ChallengeId,
        otp_hash: &[u8],
        max_attempts: u32,
        now: OffsetDateTime,
    ) -> StoreResult<OtpOutcome>;
    async fn challenge(&self, app_id: &AppId, id: &ChallengeId) -> StoreResult<Option<ChallengeRecord>>;
    async fn challenge_by_link(&self, link_hash: &[u8]) -> StoreResult<Option<Challenge>>;
    /// Counts each request for a challenge's landing page, or press of its button, and keeps it
    /// in full, with its `link.viewed` event (`Event::link_viewed`, with the signs it showed on
    /// arrival), while the challenge has fewer than `keep` views (so that a flood of requests
    /// for one link stays bounded); a press also records when the button was first pressed.
    /// Answers, for each view in order, whether it was kept and when the challenge's e-mail was
    /// delivered. A view of a challenge that no longer exists is skipped (not kept).
    async fn record_link_views(&self, views: &[LinkView], keep: u32) -> StoreResult<Vec<RecordedView>>;
    /// A challenge's kept views in the order they came, with how many there were in all and the
    /// times of delivery and of the first press. Purged with the challenge.
    async fn link_views(&self, challenge_id: &ChallengeId) -> StoreResult<LinkViews>;
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
    /// An authorization code by its hash, used or not (to check its bindings before
    /// redeeming), with the user it signs in, in one read.
    async fn authorization_code(&self, code_hash: &[u8]) -> StoreResult<Option<(AuthorizationCode, User)>>;
    /// Marks an unused, unexpired code of this application used and returns it; `None` for
    /// an unknown, used, expired or foreign code. Exactly one of concurrent calls succeeds.
    /// `then` (the sign-in's refresh token and its event) is written in the same transaction,
    /// only when the code was redeemed.
    async fn redeem_authorization_code(
        &self,
        code_hash: &[u8],
        app_id: &AppId,
        now: OffsetDateTime,
        then: Option<(&RefreshToken, &Event)>,
    ) -> StoreResult<Option<AuthorizationCode>>;

    /// Stores an authorization code issued without consuming a link (a code typed on the
    /// hosted waiting page, an approval from another device, a browser session).
    async fn insert_authorization_code(&self, code: &AuthorizationCode) -> StoreResult<()>;

    // The hosted sign-in.
    async fn insert_hosted_request(&self, request: &HostedRequest) -> StoreResult<()>;
    async fn hosted_request(&self, id: &HostedRequestId) -> StoreResult<Option<HostedRequest>>;
    /// A link's challenge with the hosted request it belongs to, if any: what a link's page
    /// needs, in one read (an ordinary link, the common case, costs one statement).
    async fn challenge_and_hosted_request_by_link(
        &self,
        link_hash: &[u8],
    ) -> StoreResult<Option<(Challenge, Option<HostedRequest>)>>;
    /// Moves an unexpired request from `from` to `to`, atomically, recording who signed in when
    /// given; returns the request as it now is, or `None` when it was not in `from` (or has
    /// expired). Of concurrent calls, exactly one moves it.
    async fn advance_hosted_request(
        &self,
        id: &HostedRequestId,
        from: HostedStatus,
        to: HostedStatus,
        signed_in: Option<&SignedIn>,
        now: OffsetDateTime,
    ) -> StoreResult<Option<HostedRequest>>;
    async fn insert_browser_session(&self, session: &BrowserSession) -> StoreResult<()>;
    /// An unrevoked, unexpired browser session by its cookie's hash.
    async fn browser_session(
        &self,
        token_hash: &[u8],
        now: OffsetDateTime,
    ) -> StoreResult<Option<BrowserSession>>;
    /// Revokes a browser session by its cookie's hash; `false` when none was active.
    async fn revoke_browser_session(&self, token_hash: &[u8], now: OffsetDateTime) -> StoreResult<bool>;
    /// The user's active browser sessions, oldest first.
    async fn user_browser_sessions(
        &self,
        user_id: &UserId,
        now: OffsetDateTime,
    ) -> StoreResult<Vec<BrowserSession>>;

    /// Consumes a pending, unexpired challenge of this purpose and application by its token,
    /// atomically, touching nothing else (registrations and verification links).
    async fn consume_by_token(
        &self,
        purpose: Purpose,
        link_hash: &[u8],
        app_id: &AppId,
        now: OffsetDateTime,
    ) -> StoreResult<TokenOutcome>;

    /// Validates a registration: consumes the pending, unexpired registration challenge of this
    /// application by its token, inserts `user` (its address marked verified) and writes the
    /// events (challenge consumed, user created), all in one transaction. When the address is
    /// taken, nothing is written and the challenge stays pending (`EmailTaken`). Of concurrent
    /// calls for one token, exactly one consumes it.
    async fn consume_registration(
        &self,
        link_hash: &[u8],
        app_id: &AppId,
        user: &User,
        now: OffsetDateTime,
    ) -> StoreResult<RegistrationOutcome>;

    // Organizations.
    /// `Conflict` when the slug or a domain is taken.
    async fn insert_organization(&self, org: &Organization) -> StoreResult<()>;
    async fn organization(&self, id: &OrgId) -> StoreResult<Option<Organization>>;
    async fn organization_by_slug(&self, slug: &str) -> StoreResult<Option<Organization>>;
    async fn organization_by_domain(&self, domain: &str) -> StoreResult<Option<Organization>>;
    async fn list_organizations(&self) -> StoreResult<Vec<Organization>>;
    /// Replaces name, slug, domains and `updated_at`; `Conflict` as for an insert.
    async fn update_organization(&self, org: &Organization) -> StoreResult<bool>;
    async fn delete_organization(&self, id: &OrgId) -> StoreResult<bool>;
    /// The organizations a user became a member of by signing in for them.
    async fn user_organizations(&self, user_id: &UserId) -> StoreResult<Vec<OrgId>>;

    // Users.
    async fn user(&self, id: &UserId) -> StoreResult<Option<User>>;
    async fn user_by_email(&self, email: &EmailAddress) -> StoreResult<Option<User>>;
    /// `Conflict` when the address is taken.
    async fn insert_user(&self, user: &User) -> StoreResult<()>;
    /// Users in id order (creation order), after the given id.
    async fn list_users(&self, after: Option<&UserId>, limit: u32) -> StoreResult<Vec<User>>;
    /// Replaces e-mail, name, metadata and `updated_at`; `Conflict` when the address is taken.
    async fn update_user(&self, user: &User) -> StoreResult<bool>;
    /// Deletes the user with its refresh tokens and codes.
    async fn delete_user(&self, id: &UserId) -> StoreResult<bool>;

    // Refresh tokens.
    /// Stores a new token and, in the same transaction, the event that says why.
    async fn insert_refresh_token(&self, token: &RefreshToken, event: Option<&Event>) -> StoreResult<()>;
    /// Rotates an active token of this application into `next` (same family), atomically,
    /// recording `event` with it. A token already rotated out revokes its whole family and
    /// records the reuse instead.
    async fn rotate_refresh_token(
        &self,
        token_hash: &[u8],
        app_id: &AppId,
        next: &RefreshToken,
        event: Option<&Event>,
        now: OffsetDateTime,
    ) -> StoreResult<RotateOutcome>;
    async fn refresh_token(&self, token_hash: &[u8]) -> StoreResult<Option<RefreshToken>>;
    /// Revokes every token of a family; returns how many were not revoked yet.
    async fn revoke_refresh_family(&self, family_id: &FamilyId, now: OffsetDateTime) -> StoreResult<u64>;
    /// The user's active sessions: the current token of each unrevoked, unexpired family.
    async fn user_sessions(&self, user_id: &UserId, now: OffsetDateTime) -> StoreResult<Vec<RefreshToken>>;
    /// Revokes the user's refresh-token families and browser sessions; returns how many.
    async fn revoke_user_sessions(&self, user_id: &UserId, now: OffsetDateTime) -> StoreResult<u64>;

    // Events.
    async fn insert_event(&self, event: &Event) -> StoreResult<()>;
    /// Events in id order after the given id, oldest first.
    async fn events(&self, after: Option<&str>, limit: u32) -> StoreResult<Vec<Event>>;

    // Background work shared by instances.
    /// Takes or renews the named lease for `holder` until `until`; `false` while another
    /// holder's lease runs.
    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> StoreResult<bool>;
    /// Deletes what has expired: challenges a day after expiry, a message's record a day after
    /// its last attempt (or its writing, when never attempted), codes, refresh tokens, rate-limit
    /// windows and suppressions once expired. Returns the rows deleted.
    async fn purge_expired(&self, now: OffsetDateTime) -> StoreResult<u64>;

    // The outbox.
    /// Leases up to `limit` messages due at `now` until `lease_until`; a message leased by
    /// one caller is not returned to another before its lease ends.
    async fn claim_outbox(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> StoreResult<Vec<OutboxMessage>>;
    /// Releases the held e-mail of a challenge of this application for delivery at `now`;
    /// `false` when it has none held (none at all, already released, or another
    /// application's). Of concurrent calls, exactly one releases it.
    async fn release_held_mail(
        &self,
        app_id: &AppId,
        challenge_id: &ChallengeId,
        now: OffsetDateTime,
    ) -> StoreResult<bool>;
    /// Extends, until `until`, the leases of these messages that are still queued and leased
    /// (not sent, failed, or released to wait for a retry): a worker
    /// renews what it is still delivering, so that leases can be short and a dead worker's
    /// lapse soon. Returns how many were renewed.
    async fn renew_outbox_leases(&self, ids: &[OutboxId], until: OffsetDateTime) -> StoreResult<u64>;
    /// Called once by a server that starts, before its outbox worker runs: hands back at once,
    /// for delivery, the leases that an earlier run of this server left when it died (`kill -9`,
    /// a crash, a power cut) while delivering. An engine that serves one server per database
    /// (SQLite) knows every lease it holds is such a leftover and releases them all. An engine
    /// shared by live instances (PostgreSQL) cannot tell a dead instance's lease from a live
    /// one's and releases none: leases there are short and renewed, so a dead instance's lapse
    /// within one lease. Returns how many were released.
    async fn release_leftover_outbox_leases(&self) -> StoreResult<u64>;
    /// Records acceptance of these messages by the mail server and drops their sealed bodies,
    /// in one write (the worker records deliveries in batches).
    async fn outbox_sent(&self, sent: &[SentMail], now: OffsetDateTime) -> StoreResult<()>;
    /// Records a failed attempt: another at `next_attempt_at`, or `failed` for good when `None`.
    async fn outbox_attempt_failed(
        &self,
        id: &OutboxId,
        error: &str,
        next_attempt_at: Option<OffsetDateTime>,
    ) -> StoreResult<()>;

    // Suppressions.
    /// Suppresses an address until `suppression.until`, replacing any earlier suppression of
    /// it, with a `suppression.created` event.
    async fn suppress(&self, suppression: &Suppression, app_id: Option<&AppId>) -> StoreResult<()>;
    /// The address's suppression, when it lasts beyond `now`.
    async fn suppression(
        &self,
        email: &EmailAddress,
        now: OffsetDateTime,
    ) -> StoreResult<Option<Suppression>>;
    /// The suppressions lasting beyond `now`, by address, after `after`: at most `limit`.
    async fn list_suppressions(
        &self,
        after: Option<&EmailAddress>,
        limit: u32,
        now: OffsetDateTime,
    ) -> StoreResult<Vec<Suppression>>;
    /// Lifts the address's suppression, with a `suppression.deleted` event; `false` when none
    /// lasted beyond `now`.
    async fn delete_suppression(&self, email: &EmailAddress, now: OffsetDateTime) -> StoreResult<bool>;

    // Signing keys.
    async fn signing_keys(&self) -> StoreResult<Vec<StoredSigningKey>>;
    async fn insert_signing_key(&self, key: &StoredSigningKey) -> StoreResult<()>;
    /// Marks the active keys of an algorithm retired (they stay published until deleted).
    async fn retire_signing_keys(&self, alg: SigningAlg, now: OffsetDateTime) -> StoreResult<()>;
    /// Deletes keys retired before `cutoff`: no unexpired token can carry their signature.
    async fn delete_signing_keys_retired_before(&self, cutoff: OffsetDateTime) -> StoreResult<u64>;

    // DKIM.
    /// The generated DKIM key of this selector, if one was stored.
    async fn dkim_key(&self, selector: &str) -> StoreResult<Option<StoredDkimKey>>;
    /// Stores `key` unless its selector has one already, and returns the selector's key: of
    /// instances generating at once, every one ends up with the first one's.
    async fn insert_dkim_key(&self, key: &StoredDkimKey) -> StoreResult<StoredDkimKey>;
}
