//! The audit trail: append-only events, one per step of a flow.

use crate::challenge::{AuthMethod, Purpose};
use crate::id::{AppId, ChallengeId, EventId, FamilyId, OrgId, UserId};
use crate::link_view::{LinkView, Sign};
use serde::Serialize;
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
    LinkViewed => "link.viewed",
    MailSuppressed => "mail.suppressed",
    SuppressionCreated => "suppression.created",
    SuppressionDeleted => "suppression.deleted",
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

/// The events of each challenge transition, defined once: every store writes these (SQLite and
/// PostgreSQL alike), and the detail of each is rendered here, by serde, never by a database.
impl Event {
    fn about(
        kind: EventKind,
        app_id: Option<&AppId>,
        user_id: Option<&UserId>,
        subject: Option<&str>,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            app_id: app_id.cloned(),
            user_id: user_id.cloned(),
            subject: subject.map(str::to_owned),
            ..Self::new(kind, now)
        }
    }

    fn detailed(mut self, detail: &impl Serialize) -> Self {
        // The details below are plain structs of strings and numbers, which always serialize.
        self.detail = serde_json::to_string(detail).ok();
        self
    }

    /// A challenge was issued (with its e-mail, when it has one).
    pub fn challenge_created(app_id: &AppId, challenge_id: &ChallengeId, now: OffsetDateTime) -> Self {
        Self::about(EventKind::ChallengeCreated, Some(app_id), None, Some(challenge_id.as_str()), now)
    }

    /// The mail server accepted a challenge's e-mail; `subject` is the challenge, or the
    /// message itself when it belongs to none.
    pub fn challenge_delivered(app_id: Option<&AppId>, subject: &str, now: OffsetDateTime) -> Self {
        Self::about(EventKind::ChallengeDelivered, app_id, None, Some(subject), now)
    }

    /// A challenge's e-mail was not queued: its address is suppressed.
    pub fn mail_suppressed(app_id: &AppId, challenge_id: &ChallengeId, now: OffsetDateTime) -> Self {
        Self::about(EventKind::MailSuppressed, Some(app_id), None, Some(challenge_id.as_str()), now)
    }

    /// An address was suppressed: a delivery to it was refused for good.
    pub fn suppression_created(app_id: Option<&AppId>, email: &str, now: OffsetDateTime) -> Self {
        Self::about(EventKind::SuppressionCreated, app_id, None, Some(email), now)
    }

    /// The admin lifted an address's suppression.
    pub fn suppression_deleted(email: &str, now: OffsetDateTime) -> Self {
        Self::about(EventKind::SuppressionDeleted, None, None, Some(email), now)
    }

    /// A sign-in challenge was consumed, by its link or its code, signing `user_id` in.
    pub fn challenge_consumed(
        app_id: &AppId,
        challenge_id: &ChallengeId,
        user_id: &UserId,
        method: AuthMethod,
        now: OffsetDateTime,
    ) -> Self {
        Self::about(
            EventKind::ChallengeConsumed,
            Some(app_id),
            Some(user_id),
            Some(challenge_id.as_str()),
            now,
        )
        .detailed(&ConsumedBy { method: method.amr() })
    }

    /// A registration or verification challenge was consumed by its token; a registration
    /// names the user it created.
    pub fn challenge_consumed_by_token(
        app_id: &AppId,
        challenge_id: &ChallengeId,
        user_id: Option<&UserId>,
        purpose: Purpose,
        now: OffsetDateTime,
    ) -> Self {
        Self::about(EventKind::ChallengeConsumed, Some(app_id), user_id, Some(challenge_id.as_str()), now)
            .detailed(&ConsumedFor { purpose: purpose.as_str() })
    }

    /// A wrong code was tried; `attempts` counts it. The attempt that reaches the limit also
    /// revokes the challenge, and this event is the only one that says so.
    pub fn wrong_code(
        app_id: &AppId,
        challenge_id: &ChallengeId,
        attempts: u32,
        now: OffsetDateTime,
    ) -> Self {
        Self::about(EventKind::ChallengeRejected, Some(app_id), None, Some(challenge_id.as_str()), now)
            .detailed(&WrongCode { attempts, reason: "wrong_code" })
    }

    /// A link was opened in another browser than the one that asked for it, and refused.
    pub fn other_browser(app_id: &AppId, challenge_id: &ChallengeId, now: OffsetDateTime) -> Self {
        Self::about(EventKind::ChallengeRejected, Some(app_id), None, Some(challenge_id.as_str()), now)
            .detailed(&Rejected { reason: "other_browser" })
    }

    /// A link's landing page was requested (or its button pressed), with the scanner signs the
    /// request showed on arrival. The browser's address and agent are in the link's views.
    pub fn link_viewed(app_id: &AppId, view: &LinkView, signs: &[Sign]) -> Self {
        let detail = Viewed {
            method: view.method.as_str(),
            likely_scanner: !signs.is_empty(),
            signs: signs.iter().map(|s| s.as_str()).collect(),
        };
        Self::about(EventKind::LinkViewed, Some(app_id), None, Some(view.challenge_id.as_str()), view.at)
            .detailed(&detail)
    }

    /// The application revoked a pending challenge.
    pub fn challenge_revoked(app_id: &AppId, challenge_id: &ChallengeId, now: OffsetDateTime) -> Self {
        Self::about(EventKind::ChallengeRevoked, Some(app_id), None, Some(challenge_id.as_str()), now)
    }

    /// Consuming a challenge created its user: a first sign-in (`challenge_id` is `None`) or a
    /// registration (which names its challenge).
    pub fn user_created(
        app_id: &AppId,
        user_id: &UserId,
        challenge_id: Option<&ChallengeId>,
        now: OffsetDateTime,
    ) -> Self {
        Self::about(
            EventKind::UserCreated,
            Some(app_id),
            Some(user_id),
            challenge_id.map(ChallengeId::as_str),
            now,
        )
    }

    /// A sign-in for an organization made the user its member.
    pub fn membership_created(app_id: &AppId, user_id: &UserId, org_id: &OrgId, now: OffsetDateTime) -> Self {
        Self::about(EventKind::MembershipCreated, Some(app_id), Some(user_id), Some(org_id.as_str()), now)
    }

    /// A refresh token already rotated out was presented again; its family is revoked.
    pub fn refresh_reuse_detected(
        app_id: &AppId,
        user_id: &UserId,
        family_id: &FamilyId,
        now: OffsetDateTime,
    ) -> Self {
        Self::about(
            EventKind::RefreshReuseDetected,
            Some(app_id),
            Some(user_id),
            Some(family_id.as_str()),
            now,
        )
    }
}

#[derive(Serialize)]
struct ConsumedBy {
    method: &'static str,
}

#[derive(Serialize)]
struct ConsumedFor {
    purpose: &'static str,
}

/// Fields in this order: the detail reads as it always did.
#[derive(Serialize)]
struct WrongCode {
    attempts: u32,
    reason: &'static str,
}

#[derive(Serialize)]
struct Viewed {
    method: &'static str,
    likely_scanner: bool,
    signs: Vec<&'static str>,
}

#[derive(Serialize)]
struct Rejected {
    reason: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_are_rendered_by_serde_in_one_shape() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let (app, challenge) =
            (AppId::generate(OffsetDateTime::UNIX_EPOCH), ChallengeId::generate(OffsetDateTime::UNIX_EPOCH));
        let user = UserId::generate(OffsetDateTime::UNIX_EPOCH);
        let detail = |e: Event| e.detail.unwrap_or_default();
        assert_eq!(
            detail(Event::wrong_code(&app, &challenge, 3, now)),
            r#"{"attempts":3,"reason":"wrong_code"}"#
        );
        assert_eq!(detail(Event::other_browser(&app, &challenge, now)), r#"{"reason":"other_browser"}"#);
        assert_eq!(
            detail(Event::challenge_consumed(&app, &challenge, &user, AuthMethod::Otp, now)),
            r#"{"method":"otp"}"#
        );
        assert_eq!(
            detail(Event::challenge_consumed_by_token(&app, &challenge, None, Purpose::Registration, now)),
            r#"{"purpose":"registration"}"#
        );
        let created = Event::challenge_created(&app, &challenge, now);
        assert_eq!(
            (created.kind, created.app_id, created.user_id, created.subject, created.detail),
            (EventKind::ChallengeCreated, Some(app), None, Some(challenge.to_string()), None)
        );
    }
}
