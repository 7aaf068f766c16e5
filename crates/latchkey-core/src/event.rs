//! The audit trail: append-only events, one per step of a flow.

use crate::id::{AppId, EventId, UserId};
use time::OffsetDateTime;

macro_rules! event_kinds {
    ($($variant:ident => $name:literal),* $(,)?) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum EventKind { $($variant),* }

        impl EventKind {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $name),* }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($name => Some(Self::$variant),)* _ => None }
            }
        }
    };
}

event_kinds! {
    ChallengeCreated => "challenge.created",
    ChallengeDelivered => "challenge.delivered",
    ChallengeConsumed => "challenge.consumed",
    ChallengeRejected => "challenge.rejected",
    ChallengeRevoked => "challenge.revoked",
    TokenIssued => "token.issued",
    TokenRefreshed => "token.refreshed",
    TokenRevoked => "token.revoked",
    RefreshReuseDetected => "refresh_token.reuse_detected",
    SessionsRevoked => "sessions.revoked",
    UserCreated => "user.created",
    UserUpdated => "user.updated",
    UserDeleted => "user.deleted",
    ApplicationCreated => "application.created",
    ApplicationUpdated => "application.updated",
    ApplicationDeleted => "application.deleted",
    SigningKeyRotated => "signing_key.rotated",
    OrganizationCreated => "organization.created",
    OrganizationUpdated => "organization.updated",
    OrganizationDeleted => "organization.deleted",
    MembershipCreated => "membership.created",
}

#[derive(Debug, Clone)]
pub struct Event {
    pub id: EventId,
    pub kind: EventKind,
    pub app_id: Option<AppId>,
    pub user_id: Option<UserId>,
    /// What the event is about when it is neither the application nor the user: a challenge,
    /// a refresh-token family, a signing key.
    pub subject: Option<String>,
    /// A short machine-readable detail (JSON object as text); never a secret.
    pub detail: Option<String>,
    pub created_at: OffsetDateTime,
}

impl Event {
    pub fn new(kind: EventKind, now: OffsetDateTime) -> Self {
        Self {
            id: EventId::generate(now),
            kind,
            app_id: None,
            user_id: None,
            subject: None,
            detail: None,
            created_at: now,
        }
    }

    pub fn app(mut self, id: &AppId) -> Self {
        self.app_id = Some(id.clone());
        self
    }

    pub fn user(mut self, id: &UserId) -> Self {
        self.user_id = Some(id.clone());
        self
    }

    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail.to_string());
        self
    }

    /// Adds one field to the detail object, so that callers never write JSON themselves.
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        let mut detail = self
            .detail
            .as_deref()
            .and_then(|d| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(d).ok())
            .unwrap_or_default();
        detail.insert(key.to_owned(), value.into());
        self.detail = Some(serde_json::Value::Object(detail).to_string());
        self
    }
}
