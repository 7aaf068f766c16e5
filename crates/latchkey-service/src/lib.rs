//! The use cases of Latchkey over the challenge engine, the store and the outbox.
//!
//! Each use case takes a typed command whose values are already parsed (an [`EmailAddress`],
//! a [`latchkey_core::RedirectUri`], a [`latchkey_core::challenge::ChallengeLifetime`], …) and
//! returns a typed outcome or a [`ServiceError`]; a refusal is a [`Refusal`], named in the
//! domain's terms. Faces (the native API, OAuth/OIDC, pages, each vendor) parse their own wire
//! formats into these commands and map the outcomes and refusals back: nothing here knows
//! HTTP, JSON or a wire code, and the crate graph keeps it so (no serde, no axum).
//!
//! [`EmailAddress`]: latchkey_core::EmailAddress

mod applications;
mod auth;
mod cache;
mod hosted;
mod keyring;
mod landing;
mod link_views;
mod magic_links;
mod mail;
pub mod metrics;
mod organizations;
mod refusal;
mod registrations;
mod sign_in_requests;
mod suppressions;
mod templates;
mod tokens;
mod users;

pub use applications::{ApplicationChange, CreatedApplication, NewApplication};
pub use auth::{Credentials, SECRET_PREFIX};
pub use hosted::{
    Authorization, CodeOutcome, DEFAULT_SESSION_LIFETIME, Decided, Decision, Finished, GoneReason,
    HostedLanding, NewSessionCookie, WaitingView,
};
pub use keyring::KeyRing;
pub use landing::{Browser, FoundLink, Landing, LandingView, OpenedLink};
pub use link_views::LinkViewReport;
pub use magic_links::{CreatedMagicLink, MessageStyle, NewMagicLink};
pub use organizations::{NewOrganization, OrganizationChange};
pub use refusal::{RETRY_AFTER_UNAVAILABLE, Refusal, Resource, ServiceError, retry_after_secs};
pub use registrations::{
    ActionName, Created, Deliverable, MailSubject, NewRegistration, NewVerificationLink, Registered,
    ShortMessage, Validation, VerificationTemplate,
};
pub use sign_in_requests::{LinkParams, NewSignInRequest, SignInCheck, SignInRequest, UserKey, Validated};
pub use templates::{MAX_TEMPLATES, MAX_TEMPLATES_BYTES, TemplateParts, page_template_name};
pub use tokens::{
    CodeExchange, ExchangeRedirect, Introspection, MAX_OTP_ATTEMPTS, OtpExchange, SignedIn, TokenSet,
    UserInfo,
};
pub use users::{DEFAULT_PAGE, MAX_PAGE, NewUser, Page, PageSize, UserChange};

use latchkey_core::id::AppId;
use latchkey_core::secret::HashPurpose;
use latchkey_core::{Clock, MasterKey};
use latchkey_mail::DevMailbox;
use latchkey_store::Store;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;
use url::Url;

/// Settings the service needs, resolved by the binary.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The external base URL: the issuer, and the base of every link.
    pub public_url: Url,
    /// Default sender, `Name <address>`.
    pub mail_from: String,
    /// The admin API is off without a token.
    pub admin_token: Option<String>,
}

pub struct Service {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) key: MasterKey,
    pub(crate) keys: KeyRing,
    pub(crate) outbox_wake: Arc<Notify>,
    cache: cache::Caches,
    issuer: String,
    public_url: Url,
    mail_from: String,
    admin_token_hash: Option<Vec<u8>>,
    dev_mailbox: Option<Arc<DevMailbox>>,
    demo_app: Option<AppId>,
    /// Whether this instance's outbox worker runs (set by whoever runs it).
    outbox_worker: Arc<AtomicBool>,
    /// How long a browser session of the hosted sign-in lasts.
    session_lifetime: time::Duration,
    /// Landing-page views on their way to the store.
    views: link_views::ViewQueue,
}

/// Whether this instance should be sent traffic, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    DatabaseUnavailable,
    /// The database lacks this many of this build's migrations.
    MigrationsPending(u32),
    /// The outbox worker is not running: mail would queue and never leave.
    OutboxWorkerStopped,
}

impl Service {
    pub fn new(
        config: ServiceConfig,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        key: MasterKey,
        keys: KeyRing,
        outbox_wake: Arc<Notify>,
    ) -> Self {
        let issuer = config.public_url.as_str().trim_end_matches('/').to_owned();
        let admin_token_hash = config.admin_token.as_deref().map(|t| key.hash(HashPurpose::AdminToken, t));
        Self {
            views: link_views::ViewQueue::start(store.clone()),
            store,
            clock,
            key,
            keys,
            outbox_wake,
            cache: cache::Caches::new(),
            issuer,
            public_url: config.public_url,
            mail_from: config.mail_from,
            admin_token_hash,
            dev_mailbox: None,
            demo_app: None,
            outbox_worker: Arc::new(AtomicBool::new(false)),
            session_lifetime: hosted::DEFAULT_SESSION_LIFETIME,
        }
    }

    /// How long a browser session of the hosted sign-in lasts (7 days unless set).
    pub fn with_session_lifetime(mut self, lifetime: time::Duration) -> Self {
        self.session_lifetime = lifetime;
        self
    }

    pub fn session_lifetime(&self) -> time::Duration {
        self.session_lifetime
    }

    /// The development mailbox, browsable at `/dev/mailbox`.
    pub fn with_dev_mailbox(mut self, mailbox: Arc<DevMailbox>) -> Self {
        self.dev_mailbox = Some(mailbox);
        self
    }

    /// `--dev`: the demo application whose sign-ins land on `/dev/callback`.
    pub fn with_demo_app(mut self, app: AppId) -> Self {
        self.demo_app = Some(app);
        self
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// `scheme://host[:port]` of the public URL, as browsers send it in `Origin`.
    pub fn issuer_origin(&self) -> String {
        self.public_url.origin().ascii_serialization()
    }

    pub fn dev_mailbox(&self) -> Option<&Arc<DevMailbox>> {
        self.dev_mailbox.as_ref()
    }

    pub fn demo_app(&self) -> Option<&AppId> {
        self.demo_app.as_ref()
    }

    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// An absolute URL on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    pub fn now(&self) -> time::OffsetDateTime {
        self.clock.now()
    }

    /// Retires the current key of `alg` and signs with a new one from now on.
    pub async fn rotate_signing_key(
        &self,
        alg: latchkey_core::signing::SigningAlg,
    ) -> Result<String, ServiceError> {
        let kid = self.keys.rotate(&*self.store, alg, &*self.clock).await?;
        let event = latchkey_core::event::Event::new(
            latchkey_core::event::EventKind::SigningKeyRotated,
            self.clock.now(),
        )
        .subject(kid.clone())
        .with("alg", alg.as_str());
        self.store.insert_event(&event).await?;
        Ok(kid)
    }

    /// Background upkeep, run by one instance at a time: purge what expired, forget keys
    /// retired longer ago than any token lives. Every instance reloads the keys.
    pub async fn maintain(&self, instance: &str) -> Result<(), ServiceError> {
        self.keys.reload(&*self.store).await?;
        let now = self.clock.now();
        let lease_until = now + time::Duration::seconds(90);
        if !self.store.try_lease("maintenance", instance, now, lease_until).await? {
            return Ok(());
        }
        let purged = self.store.purge_expired(now).await?;
        let retention = latchkey_core::signing::RETIRED_KEY_RETENTION;
        let forgotten = self.store.delete_signing_keys_retired_before(now - retention).await?;
        if forgotten > 0 {
            self.keys.reload(&*self.store).await?;
        }
        tracing::debug!(purged, forgotten, "maintenance done");
        Ok(())
    }

    /// The mail waiting to be delivered.
    pub async fn outbox_backlog(&self) -> Result<latchkey_store::OutboxBacklog, ServiceError> {
        Ok(self.store.outbox_backlog().await?)
    }

    /// The flag the runner of this instance's outbox worker keeps: `true` while it runs.
    pub fn outbox_worker_flag(&self) -> Arc<AtomicBool> {
        self.outbox_worker.clone()
    }

    /// Readiness: the database answers and has every migration of this build, and the outbox
    /// worker runs.
    pub async fn readiness(&self) -> Readiness {
        match self.store.pending_migrations().await {
            Err(_) => Readiness::DatabaseUnavailable,
            Ok(0) if !self.outbox_worker.load(Ordering::Relaxed) => Readiness::OutboxWorkerStopped,
            Ok(0) => Readiness::Ready,
            Ok(n) => Readiness::MigrationsPending(n),
        }
    }
}
