//! The challenge: one engine behind every e-mail flow. A challenge carries a link token and a
//! one-time code (both stored as keyed hashes); using either consumes the challenge.

use crate::application::{Application, limits};
use crate::bounded::Bounded;
use crate::email::EmailAddress;
use crate::id::{AppId, ChallengeId, CodeId, OrgId, UserId};
use crate::pkce::CodeChallenge;
use crate::redirect::RedirectUri;
use crate::secret::{HashPurpose, MasterKey, OpaqueToken, Otp};
use std::collections::BTreeMap;
use time::{Duration, OffsetDateTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Purpose {
    /// Sign-in by link or code.
    Login,
    /// Proving an address before an account exists (§2.4).
    Registration,
    /// A single-use code in the caller's own e-mail (§2.5).
    Verification,
}

impl Purpose {
    pub const ALL: [Self; 3] = [Self::Login, Self::Registration, Self::Verification];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Registration => "registration",
            Self::Verification => "verification",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "login" => Some(Self::Login),
            "registration" => Some(Self::Registration),
            "verification" => Some(Self::Verification),
            _ => None,
        }
    }

    /// Whether Latchkey writes the body of this purpose's e-mails (a verification link's body
    /// is the caller's own template).
    pub fn has_body(self) -> bool {
        self != Self::Verification
    }

    /// The prefix of the ids of this purpose's challenges.
    pub fn id_prefix(self) -> &'static str {
        match self {
            Self::Login => "ml",
            Self::Registration => "reg",
            Self::Verification => "vl",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeStatus {
    Pending,
    Consumed,
    Expired,
    Revoked,
}

impl ChallengeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Consumed => "consumed",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "consumed" => Some(Self::Consumed),
            "expired" => Some(Self::Expired),
            "revoked" => Some(Self::Revoked),
            _ => None,
        }
    }
}

/// The longest `state` and `nonce` accepted; both come back verbatim, so they are bounded.
pub const MAX_STATE_LEN: usize = 1024;
/// The longest client binding strings (IP address, user agent) kept.
pub const MAX_BINDING_LEN: usize = 512;

/// `state` or `nonce`: handed back as given.
pub type StateText = Bounded<MAX_STATE_LEN>;
/// What the caller says of the browser that asked (its IP address, its user agent).
pub type ClientHint = Bounded<MAX_BINDING_LEN>;

/// A lifetime a caller chose for its challenge, within [`limits::LINK`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChallengeLifetime(Duration);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be between {} and {} seconds", limits::LINK.0, limits::LINK.1)]
pub struct LifetimeOutOfBounds;

impl ChallengeLifetime {
    pub fn from_secs(secs: i64) -> Result<Self, LifetimeOutOfBounds> {
        let (min, max) = limits::LINK;
        if secs < i64::from(min) || secs > i64::from(max) {
            return Err(LifetimeOutOfBounds);
        }
        Ok(Self(Duration::seconds(secs)))
    }

    pub fn duration(self) -> Duration {
        self.0
    }
}

#[derive(Debug, Clone)]
pub struct Challenge {
    pub id: ChallengeId,
    pub purpose: Purpose,
    pub app_id: AppId,
    pub email: EmailAddress,
    pub redirect_uri: RedirectUri,
    /// Whether the caller named `redirect_uri` (rather than taking the application's default):
    /// the code's exchange must then name it too (RFC 6749 §4.1.3).
    pub redirect_uri_given: bool,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<CodeChallenge>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub create_user: bool,
    /// The organization the sign-in is for, if any.
    pub org_id: Option<OrgId>,
    /// The caller's data, handed back when the challenge is validated (registrations).
    pub context_data: BTreeMap<String, String>,
    /// Who asked for it, as the caller named them (verification links).
    pub created_by: Option<String>,
    /// Whether the authorization code this challenge issues is a credential on its own: it is
    /// exchanged without client authentication (for callers whose documented exchange sends
    /// none). Otherwise the application must authenticate to exchange it.
    pub code_is_credential: bool,
    pub link_hash: Vec<u8>,
    pub otp_hash: Vec<u8>,
    pub otp_attempts: u32,
    pub status: ChallengeStatus,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub otp_expires_at: OffsetDateTime,
    pub consumed_at: Option<OffsetDateTime>,
}

/// What a caller asks for, already parsed.
#[derive(Debug, Clone)]
pub struct ChallengeRequest {
    pub purpose: Purpose,
    pub email: EmailAddress,
    pub redirect_uri: RedirectUri,
    /// Whether the caller named it (see [`Challenge::redirect_uri_given`]).
    pub redirect_uri_given: bool,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub expires_in: Option<Duration>,
    pub code_challenge: Option<CodeChallenge>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub create_user: bool,
    pub org_id: Option<OrgId>,
    pub context_data: BTreeMap<String, String>,
    pub created_by: Option<String>,
    /// See [`Challenge::code_is_credential`].
    pub code_is_credential: bool,
}

/// A new challenge and the two secrets that open it, which exist only in memory and in the
/// e-mail (or the caller's response when it sends its own e-mail).
#[derive(Debug)]
pub struct IssuedChallenge {
    pub challenge: Challenge,
    pub link_token: OpaqueToken,
    pub otp: Otp,
}

impl Challenge {
    pub fn issue(
        app: &Application,
        req: ChallengeRequest,
        key: &MasterKey,
        now: OffsetDateTime,
    ) -> IssuedChallenge {
        let id = ChallengeId::generate_with_prefix(req.purpose.id_prefix(), now);
        let link_token = OpaqueToken::generate();
        let otp = Otp::generate();
        let lifetimes = &app.settings.lifetimes;
        let expires_at = now + req.expires_in.unwrap_or_else(|| lifetimes.link());
        let otp_expires_at = (now + lifetimes.otp()).min(expires_at);
        let challenge = Challenge {
            purpose: req.purpose,
            app_id: app.id.clone(),
            email: req.email,
            redirect_uri: req.redirect_uri,
            redirect_uri_given: req.redirect_uri_given,
            state: req.state,
            nonce: req.nonce,
            code_challenge: req.code_challenge,
            client_ip: req.client_ip,
            user_agent: req.user_agent,
            create_user: req.create_user,
            org_id: req.org_id,
            context_data: req.context_data,
            created_by: req.created_by,
            code_is_credential: req.code_is_credential,
            link_hash: key.hash(HashPurpose::LinkToken, link_token.expose()),
            otp_hash: key.hash(HashPurpose::Otp, &otp_subject(&id, &otp)),
            otp_attempts: 0,
            status: ChallengeStatus::Pending,
            created_at: now,
            expires_at,
            otp_expires_at,
            consumed_at: None,
            id,
        };
        IssuedChallenge { challenge, link_token, otp }
    }

    /// The status as a person sees it at `now`: a pending challenge past its expiry is expired.
    pub fn status_at(&self, now: OffsetDateTime) -> ChallengeStatus {
        match self.status {
            ChallengeStatus::Pending if now >= self.expires_at => ChallengeStatus::Expired,
            s => s,
        }
    }
}

/// What the one-time code's hash covers: the code is only valid for its own challenge.
pub fn otp_subject(id: &ChallengeId, otp: &Otp) -> String {
    format!("{id}:{}", otp.expose())
}

/// How the user proved control of the address, as the `amr` claim says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Link,
    Otp,
}

impl AuthMethod {
    pub fn amr(self) -> &'static str {
        match self {
            Self::Link => "email",
            Self::Otp => "otp",
        }
    }

    pub fn parse_amr(s: &str) -> Option<Self> {
        match s {
            "email" => Some(Self::Link),
            "otp" => Some(Self::Otp),
            _ => None,
        }
    }
}

/// Issued when a challenge is consumed through its link; exchanged once at the token endpoint.
#[derive(Debug, Clone)]
pub struct AuthorizationCode {
    pub id: CodeId,
    pub code_hash: Vec<u8>,
    pub app_id: AppId,
    pub challenge_id: ChallengeId,
    pub user_id: UserId,
    pub redirect_uri: RedirectUri,
    /// Whether the sign-in's caller named `redirect_uri`: its exchange must then name it too.
    pub redirect_uri_given: bool,
    pub code_challenge: Option<CodeChallenge>,
    pub nonce: Option<String>,
    pub auth_method: AuthMethod,
    pub auth_time: OffsetDateTime,
    pub org_id: Option<OrgId>,
    /// Exchanged without client authentication (see [`Challenge::code_is_credential`]).
    pub code_is_credential: bool,
    pub expires_at: OffsetDateTime,
}

impl AuthorizationCode {
    /// The code issued when `challenge` is consumed through its link by `user_id` at `now`: it
    /// carries the challenge's application, redirect URI, PKCE challenge, nonce, organization and
    /// whether it is a credential on its own.
    pub fn for_link(
        id: &CodeId,
        code_hash: &[u8],
        expires_at: OffsetDateTime,
        challenge: &Challenge,
        user_id: &UserId,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            id: id.clone(),
            code_hash: code_hash.to_vec(),
            app_id: challenge.app_id.clone(),
            challenge_id: challenge.id.clone(),
            user_id: user_id.clone(),
            redirect_uri: challenge.redirect_uri.clone(),
            redirect_uri_given: challenge.redirect_uri_given,
            code_challenge: challenge.code_challenge.clone(),
            nonce: challenge.nonce.clone(),
            auth_method: AuthMethod::Link,
            auth_time: now,
            org_id: challenge.org_id.clone(),
            code_is_credential: challenge.code_is_credential,
            expires_at,
        }
    }
}

/// The secret half of an authorization code about to be issued; the rest comes from the
/// challenge it is issued for, inside the store's consuming transaction.
#[derive(Debug)]
pub struct NewAuthorizationCode {
    pub id: CodeId,
    pub code: OpaqueToken,
    pub code_hash: Vec<u8>,
    pub expires_at: OffsetDateTime,
}

impl NewAuthorizationCode {
    pub fn generate(app: &Application, key: &MasterKey, now: OffsetDateTime) -> Self {
        let code = OpaqueToken::generate();
        Self {
            id: CodeId::generate(now),
            code_hash: key.hash(HashPurpose::AuthorizationCode, code.expose()),
            expires_at: now + app.settings.lifetimes.authorization_code(),
            code,
        }
    }

    /// The code as issued for `challenge`, consumed through its link by `user_id` at `now`.
    pub fn issued_for(
        &self,
        challenge: &Challenge,
        user_id: &UserId,
        now: OffsetDateTime,
    ) -> AuthorizationCode {
        AuthorizationCode::for_link(&self.id, &self.code_hash, self.expires_at, challenge, user_id, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::application::AppSettings;

    #[test]
    fn issue_hashes_secrets_and_sets_expiry() {
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let key = MasterKey::from_secret("0123456789abcdef0123456789abcdef").unwrap();
        let uri = RedirectUri::parse("https://a.example/cb").unwrap();
        let app = Application {
            id: AppId::generate(now),
            client_id: "c".into(),
            name: "Demo".into(),
            public: false,
            redirect_uris: vec![uri.clone()],
            default_redirect_uri: None,
            settings: AppSettings::default(),
            created_at: now,
            updated_at: now,
        };
        let req = ChallengeRequest {
            purpose: Purpose::Login,
            email: EmailAddress::parse("a@b.example").unwrap(),
            redirect_uri: uri,
            redirect_uri_given: true,
            state: None,
            nonce: None,
            expires_in: None,
            code_challenge: None,
            client_ip: None,
            user_agent: None,
            create_user: true,
            org_id: None,
            context_data: BTreeMap::new(),
            created_by: None,
            code_is_credential: false,
        };
        let issued = Challenge::issue(&app, req, &key, now);
        let c = &issued.challenge;
        assert!(key.verify(HashPurpose::LinkToken, issued.link_token.expose(), &c.link_hash));
        assert!(key.verify(HashPurpose::Otp, &otp_subject(&c.id, &issued.otp), &c.otp_hash));
        assert_eq!(c.expires_at, now + Duration::minutes(15));
        assert_eq!(c.otp_expires_at, now + Duration::minutes(10));
        assert_eq!(c.status_at(now), ChallengeStatus::Pending);
        assert_eq!(c.status_at(c.expires_at), ChallengeStatus::Expired);
    }
}
