//! Sign-in by magic link: creating, reading and revoking challenges of an application.

use crate::metrics;
use crate::{Refusal, Service, ServiceError};
use latchkey_core::bounded::Bounded;
use latchkey_core::challenge::{
    ChallengeLifetime, ChallengeRequest, ClientHint, IssuedChallenge, Purpose, StateText,
};
use latchkey_core::id::ChallengeId;
use latchkey_core::pkce::CodeChallenge;
use latchkey_core::redirect::RedirectUri;
use latchkey_core::{Application, Challenge, ChallengeStatus, EmailAddress, OpaqueToken, Otp};
use latchkey_mail::Locale;
use latchkey_mail::compose;
use latchkey_mail::templates::{LoginMail, MailContext, Wording};
use latchkey_store::{ChallengeRecord, MailFate, NewOutboxMessage};
use time::OffsetDateTime;

/// An organization named by the caller: its id (`org_…`) or its slug.
pub type OrganizationKey = Bounded<100>;

/// Asking for a sign-in e-mail (link and code), every value already parsed.
#[derive(Debug, Clone)]
pub struct NewMagicLink {
    pub email: EmailAddress,
    /// `None`: the application's default.
    pub redirect_uri: Option<RedirectUri>,
    pub state: Option<StateText>,
    pub nonce: Option<StateText>,
    /// `None`: the application's link lifetime.
    pub expires_in: Option<ChallengeLifetime>,
    /// `false`: nothing is queued, and the link and code come back to the caller.
    pub send_email: bool,
    pub organization: Option<OrganizationKey>,
    /// `false`: an unknown address gets nothing (and the same answer).
    pub create_user: bool,
    pub code_challenge: Option<CodeChallenge>,
    pub client_ip: Option<ClientHint>,
    pub user_agent: Option<ClientHint>,
    pub locale: Option<Locale>,
    /// How this one e-mail differs from the application's usual one.
    pub style: Option<MessageStyle>,
    /// `true`: the authorization code of this sign-in is exchanged without client
    /// authentication (for callers whose documented exchange sends none).
    pub code_is_credential: bool,
}

impl NewMagicLink {
    /// A sign-in for `email` with every option at its default.
    pub fn new(email: EmailAddress) -> Self {
        Self {
            email,
            redirect_uri: None,
            state: None,
            nonce: None,
            expires_in: None,
            send_email: true,
            organization: None,
            create_user: true,
            code_challenge: None,
            client_ip: None,
            user_agent: None,
            locale: None,
            style: None,
            code_is_credential: false,
        }
    }
}

/// A caller's look and words for one sign-in e-mail, over the application's branding.
#[derive(Debug, Clone, Default)]
pub struct MessageStyle {
    pub wording: Wording,
    /// `#rgb` or `#rrggbb`, checked by the face.
    pub color: Option<String>,
    pub sender_name: Option<String>,
}

/// Where a sign-in's e-mail goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MailMode {
    /// Queued with the challenge.
    Send,
    /// Written with the challenge, delivered once released.
    Hold,
    /// Not written: link and code go back to the caller.
    Caller,
}

#[derive(Debug)]
pub struct CreatedMagicLink {
    pub id: ChallengeId,
    pub email: EmailAddress,
    pub expires_at: OffsetDateTime,
    /// Where the sign-in goes back to (the application's default when none was asked for).
    pub redirect_uri: RedirectUri,
    /// Present when the caller sends its own e-mail, or when the e-mail is held.
    pub link: Option<String>,
    /// Present only when the caller sends its own e-mail.
    pub otp: Option<String>,
}

impl Service {
    /// The engine's request for a sign-in: where it goes back to, and what binds it.
    pub(crate) fn challenge_request(
        &self,
        app: &Application,
        cmd: &NewMagicLink,
    ) -> Result<ChallengeRequest, Refusal> {
        let redirect_uri = app.resolve_redirect(cmd.redirect_uri.as_ref()).map_err(Refusal::from)?;
        if app.public && cmd.code_challenge.is_none() {
            return Err(Refusal::PkceRequired);
        }
        let text = |t: &Option<StateText>| t.as_ref().map(|t| t.as_str().to_owned());
        let hint = |h: &Option<ClientHint>| h.as_ref().map(|h| h.as_str().to_owned());
        Ok(ChallengeRequest {
            purpose: Purpose::Login,
            email: cmd.email.clone(),
            redirect_uri,
            redirect_uri_given: cmd.redirect_uri.is_some(),
            state: text(&cmd.state),
            nonce: text(&cmd.nonce),
            expires_in: cmd.expires_in.map(ChallengeLifetime::duration),
            code_challenge: cmd.code_challenge.clone(),
            client_ip: hint(&cmd.client_ip),
            user_agent: hint(&cmd.user_agent),
            create_user: cmd.create_user,
            org_id: None,
            context_data: Default::default(),
            created_by: None,
            code_is_credential: cmd.code_is_credential,
        })
    }

    pub async fn create_magic_link(
        &self,
        app: &Application,
        cmd: NewMagicLink,
    ) -> Result<CreatedMagicLink, ServiceError> {
        let mode = if cmd.send_email { MailMode::Send } else { MailMode::Caller };
        self.issue_magic_link(app, cmd, mode).await
    }

    /// A sign-in whose e-mail is written now (sealed, as any queued mail) but held until
    /// [`Service::release_magic_link_mail`]: the caller gets the link at once and decides
    /// when the e-mail carrying that same link goes out. `send_email` is not read.
    pub async fn prepare_magic_link(
        &self,
        app: &Application,
        cmd: NewMagicLink,
    ) -> Result<CreatedMagicLink, ServiceError> {
        self.issue_magic_link(app, cmd, MailMode::Hold).await
    }

    /// Releases the held e-mail of a prepared sign-in for delivery; `false` when it had left
    /// already (an e-mail is released once). A sign-in no longer pending sends nothing.
    pub async fn release_magic_link_mail(
        &self,
        app: &Application,
        id: &ChallengeId,
    ) -> Result<bool, ServiceError> {
        let record = self.magic_link(app, id).await?;
        let now = self.clock.now();
        let status = record.challenge.status_at(now);
        if status != ChallengeStatus::Pending {
            return Err(Refusal::NoLongerValid { what: crate::Resource::MagicLink, status }.into());
        }
        let released = self.store.release_held_mail(&app.id, id, now).await?;
        if released {
            self.outbox_wake.notify_one();
        }
        Ok(released)
    }

    async fn issue_magic_link(
        &self,
        app: &Application,
        cmd: NewMagicLink,
        mode: MailMode,
    ) -> Result<CreatedMagicLink, ServiceError> {
        let locale = cmd.locale.clone();
        let style = cmd.style.clone();
        let mut req = self.challenge_request(app, &cmd)?;
        let named = cmd.organization.as_ref().map(OrganizationKey::as_str);
        req.org_id = self.sign_in_organization(named, &req.email).await?;
        let now = self.clock.now();
        let writes_mail = mode != MailMode::Caller;
        // Only mail needs the user (for their language), and only `create_user: false` needs to
        // know whether there is one.
        let user =
            if writes_mail || !req.create_user { self.store.user_by_email(&req.email).await? } else { None };
        if !req.create_user && user.is_none() {
            // No account and no sign-up: answer exactly as for a known address (limits
            // included), and store and send nothing.
            let limits = app.settings.rate_limits.for_request(&app.id, &req.email, req.client_ip.as_deref());
            self.store.hit_rate_limits(&limits, now).await?.map_err(rate_limited)?;
            return Ok(self.decoy(app, req, mode, now));
        }
        let IssuedChallenge { challenge, link_token, otp } = Challenge::issue(app, req, &self.key, now);
        let link = self.url(&format!("/l/{}", link_token.expose()));
        let user_locale = user.and_then(|u| u.locale).and_then(|l| Locale::parse(&l).ok());
        let mail = writes_mail.then(|| {
            let language = (locale.as_ref(), user_locale.as_ref());
            let mail = self.sign_in_mail(app, &challenge, &link, Some(&otp), language, style.as_ref());
            NewOutboxMessage { held: mode == MailMode::Hold, ..mail }
        });
        self.store_challenge(app, &challenge, mail, now).await?;
        Ok(CreatedMagicLink {
            id: challenge.id,
            email: challenge.email,
            expires_at: challenge.expires_at,
            redirect_uri: challenge.redirect_uri,
            link: (mode != MailMode::Send).then_some(link),
            otp: (mode == MailMode::Caller).then(|| otp.expose().to_owned()),
        })
    }

    /// Writes a challenge and its e-mail, counted against the application's rate limits, and
    /// wakes the outbox worker when there is mail.
    pub(crate) async fn store_challenge(
        &self,
        app: &Application,
        challenge: &Challenge,
        mail: Option<NewOutboxMessage>,
        now: OffsetDateTime,
    ) -> Result<(), ServiceError> {
        let limits =
            app.settings.rate_limits.for_request(&app.id, &challenge.email, challenge.client_ip.as_deref());
        let fate = self
            .store
            .create_challenge(challenge, mail.as_ref(), &limits, now)
            .await?
            .map_err(rate_limited)?;
        metrics::challenge_created(challenge);
        match fate {
            MailFate::Written if mail.as_ref().is_some_and(|m| !m.held) => self.outbox_wake.notify_one(),
            MailFate::Suppressed => metrics::mail_suppressed(),
            _ => {}
        }
        Ok(())
    }

    fn decoy(
        &self,
        app: &Application,
        req: ChallengeRequest,
        mode: MailMode,
        now: OffsetDateTime,
    ) -> CreatedMagicLink {
        let expires_at = now + req.expires_in.unwrap_or_else(|| app.settings.lifetimes.link());
        CreatedMagicLink {
            id: ChallengeId::generate_with_prefix(Purpose::Login.id_prefix(), now),
            email: req.email,
            expires_at,
            redirect_uri: req.redirect_uri,
            link: (mode != MailMode::Send)
                .then(|| self.url(&format!("/l/{}", OpaqueToken::generate().expose()))),
            otp: (mode == MailMode::Caller).then(|| Otp::generate().expose().to_owned()),
        }
    }

    /// The sign-in e-mail, in the request's language (else the user's, else the application's
    /// default), with the application's templates and branding and the request's own style;
    /// without a code when `otp` is `None`.
    pub(crate) fn sign_in_mail(
        &self,
        app: &Application,
        challenge: &Challenge,
        link: &str,
        otp: Option<&Otp>,
        (locale, user_locale): (Option<&Locale>, Option<&Locale>),
        style: Option<&MessageStyle>,
    ) -> NewOutboxMessage {
        let minutes = |until: OffsetDateTime| ((until - challenge.created_at).whole_seconds() + 59) / 60;
        let mut branding = self.mail_branding(app);
        if let Some(color) = style.and_then(|s| s.color.as_deref()) {
            branding.color = Some(color);
        }
        let mail = MailContext::Login(LoginMail {
            branding,
            email: challenge.email.as_str(),
            link,
            code: otp.map_or("", Otp::expose),
            minutes: minutes(challenge.expires_at),
            code_minutes: minutes(challenge.otp_expires_at),
            wording: style.map(|s| &s.wording),
        });
        let locale = self.locale_for(app, Purpose::Login, locale, user_locale);
        let sender_name = style.and_then(|s| s.sender_name.as_deref());
        let (id, envelope) = self.mail_envelope_from(app, &challenge.email, sender_name);
        let email = compose::compose(&mail, &locale, &app.settings.templates, envelope);
        self.outbox_entry(app, challenge, id, &email)
    }

    pub async fn magic_link(
        &self,
        app: &Application,
        id: &ChallengeId,
    ) -> Result<ChallengeRecord, ServiceError> {
        let found =
            self.store.challenge(&app.id, id).await?.filter(|r| r.challenge.purpose == Purpose::Login);
        Ok(found.ok_or(Refusal::NotFound(crate::Resource::MagicLink))?)
    }

    pub async fn revoke_magic_link(
        &self,
        app: &Application,
        id: &ChallengeId,
    ) -> Result<ChallengeRecord, ServiceError> {
        let record = self.magic_link(app, id).await?;
        let now = self.clock.now();
        if !self.store.revoke_challenge(&app.id, &record.challenge.id, now).await? {
            return Err(Refusal::NotPending(record.challenge.status_at(now)).into());
        }
        metrics::challenge_revoked(Purpose::Login, app);
        self.magic_link(app, &record.challenge.id).await
    }
}

pub(crate) fn rate_limited(refused: latchkey_core::rate_limit::RateLimited) -> Refusal {
    metrics::rate_limited(refused.kind);
    Refusal::RateLimited { retry_after: refused.retry_after }
}
