//! Sign-in by magic link: creating, reading and revoking challenges of an application.

use crate::{Refusal, Service, ServiceError};
use latchkey_core::bounded::Bounded;
use latchkey_core::challenge::{
    ChallengeLifetime, ChallengeRequest, ClientHint, IssuedChallenge, Purpose, StateText,
};
use latchkey_core::id::ChallengeId;
use latchkey_core::pkce::CodeChallenge;
use latchkey_core::redirect::RedirectUri;
use latchkey_core::{Application, Challenge, EmailAddress, OpaqueToken, Otp};
use latchkey_mail::Locale;
use latchkey_mail::compose;
use latchkey_mail::templates::{LoginMail, MailContext};
use latchkey_store::{ChallengeRecord, NewOutboxMessage};
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
        }
    }
}

#[derive(Debug)]
pub struct CreatedMagicLink {
    pub id: ChallengeId,
    pub email: EmailAddress,
    pub expires_at: OffsetDateTime,
    /// Present only when the caller sends its own e-mail.
    pub link: Option<String>,
    pub otp: Option<String>,
}

impl Service {
    /// The engine's request for a sign-in: where it goes back to, and what binds it.
    fn challenge_request(&self, app: &Application, cmd: &NewMagicLink) -> Result<ChallengeRequest, Refusal> {
        let redirect_uri = app.resolve_redirect(cmd.redirect_uri.as_ref()).map_err(|e| match e {
            latchkey_core::application::RedirectError::NotAllowed => Refusal::RedirectNotAllowed,
            latchkey_core::application::RedirectError::NoDefault => Refusal::RedirectRequired,
        })?;
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
        })
    }

    pub async fn create_magic_link(
        &self,
        app: &Application,
        cmd: NewMagicLink,
    ) -> Result<CreatedMagicLink, ServiceError> {
        let send_email = cmd.send_email;
        let locale = cmd.locale.clone();
        let mut req = self.challenge_request(app, &cmd)?;
        let named = cmd.organization.as_ref().map(OrganizationKey::as_str);
        req.org_id = self.sign_in_organization(named, &req.email).await?;
        let now = self.clock.now();
        // Only mail needs the user (for their language), and only `create_user: false` needs to
        // know whether there is one.
        let user =
            if send_email || !req.create_user { self.store.user_by_email(&req.email).await? } else { None };
        if !req.create_user && user.is_none() {
            // No account and no sign-up: answer exactly as for a known address (limits
            // included), and store and send nothing.
            let limits = app.settings.rate_limits.for_request(&app.id, &req.email, req.client_ip.as_deref());
            self.store.hit_rate_limits(&limits, now).await?.map_err(rate_limited)?;
            return Ok(self.decoy(app, req, send_email, now));
        }
        let IssuedChallenge { challenge, link_token, otp } = Challenge::issue(app, req, &self.key, now);
        let link = self.url(&format!("/l/{}", link_token.expose()));
        let user_locale = user.and_then(|u| u.locale).and_then(|l| Locale::parse(&l).ok());
        let mail = send_email
            .then(|| self.sign_in_mail(app, &challenge, &link, &otp, locale.as_ref(), user_locale.as_ref()));
        self.store_challenge(app, &challenge, mail, now).await?;
        Ok(CreatedMagicLink {
            id: challenge.id,
            email: challenge.email,
            expires_at: challenge.expires_at,
            link: (!send_email).then_some(link),
            otp: (!send_email).then(|| otp.expose().to_owned()),
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
        self.store.create_challenge(challenge, mail.as_ref(), &limits, now).await?.map_err(rate_limited)?;
        if mail.is_some() {
            self.outbox_wake.notify_one();
        }
        Ok(())
    }

    fn decoy(
        &self,
        app: &Application,
        req: ChallengeRequest,
        send_email: bool,
        now: OffsetDateTime,
    ) -> CreatedMagicLink {
        let expires_at = now + req.expires_in.unwrap_or_else(|| app.settings.lifetimes.link());
        CreatedMagicLink {
            id: ChallengeId::generate_with_prefix(Purpose::Login.id_prefix(), now),
            email: req.email,
            expires_at,
            link: (!send_email).then(|| self.url(&format!("/l/{}", OpaqueToken::generate().expose()))),
            otp: (!send_email).then(|| Otp::generate().expose().to_owned()),
        }
    }

    /// The sign-in e-mail, in the request's language (else the application's default), with the
    /// application's templates and branding.
    fn sign_in_mail(
        &self,
        app: &Application,
        challenge: &Challenge,
        link: &str,
        otp: &Otp,
        locale: Option<&Locale>,
        user_locale: Option<&Locale>,
    ) -> NewOutboxMessage {
        let minutes = |until: OffsetDateTime| ((until - challenge.created_at).whole_seconds() + 59) / 60;
        let mail = MailContext::Login(LoginMail {
            branding: self.mail_branding(app),
            email: challenge.email.as_str(),
            link,
            code: otp.expose(),
            minutes: minutes(challenge.expires_at),
            code_minutes: minutes(challenge.otp_expires_at),
        });
        let locale = self.locale_for(app, Purpose::Login, locale, user_locale);
        let (id, envelope) = self.mail_envelope(app, &challenge.email);
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
        self.magic_link(app, &record.challenge.id).await
    }
}

pub(crate) fn rate_limited(refused: latchkey_core::rate_limit::RateLimited) -> Refusal {
    Refusal::RateLimited { retry_after: refused.retry_after }
}
