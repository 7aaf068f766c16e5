use latchkey_core::challenge::AuthorizationCode;
use latchkey_core::id::{AppId, ChallengeId, FamilyId, OutboxId, SecretId, UserId};
use latchkey_core::refresh::RefreshToken;
use latchkey_core::signing::SigningAlg;
use latchkey_core::{Challenge, ChallengeStatus, EmailAddress, User};
use time::OffsetDateTime;

#[derive(Debug, Clone)]
pub struct ClientSecret {
    pub id: SecretId,
    pub app_id: AppId,
    pub hash: Vec<u8>,
    pub created_at: OffsetDateTime,
}

/// What [`crate::Store::record_link_views`] did with one view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedView {
    /// Kept in full (otherwise only counted).
    pub kept: bool,
    /// The signs it showed on arrival, from the delivery time of the challenge's e-mail as the
    /// store read it (those of its `link.viewed` event when kept).
    pub signs: Vec<latchkey_core::link_view::Sign>,
}

/// A challenge with the delivery state of its e-mail.
#[derive(Debug, Clone)]
pub struct ChallengeRecord {
    pub challenge: Challenge,
    pub delivery: Option<Delivery>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Written with its challenge but kept back until released
    /// ([`crate::Store::release_held_mail`]).
    Held,
    Queued,
    Sent,
    Failed,
    /// Never to be sent: its address was suppressed when it was written.
    Suppressed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Queued => "queued",
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::Suppressed => "suppressed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "held" => Some(Self::Held),
            "queued" => Some(Self::Queued),
            "sent" => Some(Self::Sent),
            "failed" => Some(Self::Failed),
            "suppressed" => Some(Self::Suppressed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Delivery {
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// The relay that took it (`host:port`), once sent through SMTP.
    pub relay: Option<String>,
}

/// What [`crate::Store::create_challenge`] did with the challenge's e-mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailFate {
    /// It was given none.
    NoMail,
    /// Written as given: queued, or held.
    Written,
    /// Written `suppressed`, without its body: its address is suppressed.
    Suppressed,
}

/// An address no e-mail is sent to until `until`, because a delivery to it was refused for
/// good (a 5xx).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    pub email: EmailAddress,
    /// The mail server's refusal.
    pub reason: String,
    pub created_at: OffsetDateTime,
    pub until: OffsetDateTime,
}

/// A message the mail server accepted, and through which relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMail {
    pub id: OutboxId,
    pub relay: Option<String>,
}

impl SentMail {
    /// Sent with no relay to name (the development mailbox).
    pub fn direct(id: &OutboxId) -> Self {
        Self { id: id.clone(), relay: None }
    }
}

/// An e-mail to queue; `sealed` is the message encrypted with the master key, because it
/// carries a live link and code.
#[derive(Debug, Clone)]
pub struct NewOutboxMessage {
    pub id: OutboxId,
    pub app_id: Option<AppId>,
    pub challenge_id: Option<ChallengeId>,
    pub sealed: Vec<u8>,
    pub created_at: OffsetDateTime,
    /// `true`: written now, delivered only once released (the caller decides when to send).
    pub held: bool,
}

impl NewOutboxMessage {
    /// The status the message is written with.
    pub fn initial_status(&self) -> DeliveryStatus {
        if self.held { DeliveryStatus::Held } else { DeliveryStatus::Queued }
    }
}

/// The mail waiting to be delivered (queued, not yet sent or failed for good).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxBacklog {
    pub queued: u64,
    pub oldest_queued_at: Option<OffsetDateTime>,
}

/// A message leased for delivery.
#[derive(Debug, Clone)]
pub struct OutboxMessage {
    pub id: OutboxId,
    pub app_id: Option<AppId>,
    pub sealed: Vec<u8>,
    /// Attempts before this one.
    pub attempts: u32,
    pub created_at: OffsetDateTime,
}

#[derive(Debug)]
pub enum ConsumeOutcome {
    Consumed {
        challenge: Box<Challenge>,
        user: User,
        code: Box<AuthorizationCode>,
    },
    /// No challenge has this link.
    NotFound,
    /// The challenge exists but can no longer be used (consumed, expired or revoked).
    Gone(ChallengeStatus),
}

#[derive(Debug)]
pub enum OtpOutcome {
    Consumed {
        challenge: Box<Challenge>,
        user: User,
    },
    /// Wrong code; the challenge stays usable for `attempts_left` more tries.
    Wrong {
        attempts_left: u32,
    },
    /// The challenge can no longer be used (consumed, revoked, or its code expired).
    Gone,
}

#[derive(Debug)]
pub enum TokenOutcome {
    Consumed(Box<Challenge>),
    NotFound,
    Gone(ChallengeStatus),
}

/// The outcome of validating a registration ([`crate::Store::consume_registration`]).
#[derive(Debug)]
pub enum RegistrationOutcome {
    /// The challenge is consumed and its user created, with the events that say so.
    Consumed { challenge: Box<Challenge>, user: User },
    /// The address belongs to a user already: nothing was written, the challenge is still pending.
    EmailTaken,
    /// No registration of this application has this token.
    NotFound,
    /// The registration exists but can no longer be used (consumed, expired or revoked).
    Gone(ChallengeStatus),
}

#[derive(Debug)]
pub enum RotateOutcome {
    /// The presented token, now rotated out.
    Rotated(Box<RefreshToken>),
    /// A token already rotated out was presented again: its family is now revoked.
    Reused { family_id: FamilyId, user_id: UserId },
    /// Unknown, expired, revoked, or another application's.
    Invalid,
}

/// A DKIM key the server generated, for one selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDkimKey {
    pub selector: String,
    /// `rsa-sha256` or `ed25519-sha256`.
    pub algorithm: String,
    /// PKCS#8, sealed with the master key.
    pub sealed_pkcs8: Vec<u8>,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone)]
pub struct StoredSigningKey {
    pub kid: String,
    pub alg: SigningAlg,
    /// PKCS#8, sealed with the master key.
    pub sealed_pkcs8: Vec<u8>,
    pub created_at: OffsetDateTime,
    pub retired_at: Option<OffsetDateTime>,
}
