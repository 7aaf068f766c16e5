//! Sign-in by magic link: creating, reading and revoking challenges of an application.

use super::fields::{self, rate_limited};
use super::{Service, ServiceError};
use latchkey_core::challenge::{ChallengeRequest, IssuedChallenge, MAX_BINDING_LEN, MAX_STATE_LEN, Purpose};
use latchkey_core::id::ChallengeId;
use latchkey_core::pkce::CodeChallenge;
use latchkey_core::redirect::RedirectUri;
use latchkey_core::{Application, Challenge, EmailAddress, OpaqueToken, Otp};
use latchkey_mail::Locale;
use latchkey_mail::compose;
use latchkey_mail::templates::{LoginMail, MailContext};
use latchkey_store::{ChallengeRecord, NewOutboxMessage};
use serde::Deserialize;
use time::OffsetDateTime;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct MagicLinkInput {
    pub email: Option<String>,
    pub redirect_uri: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub expires_in: Option<i64>,
    pub send_email: Option<bool>,
    pub organization: Option<String>,
    pub create_user: Option<bool>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub locale: Option<String>,
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
    /// Parses a request into the engine's terms; every refusal happens here, before anything
    /// is stored or sent.
    fn challenge_request(
        &self,
        app: &Application,
        input: MagicLinkInput,
    ) -> Result<ChallengeRequest, ServiceError> {
        let email = fields::email(input.email.as_deref())?;
        let requested = input
            .redirect_uri
            .as_deref()
            .map(RedirectUri::parse)
            .transpose()
            .map_err(|e| ServiceError::bad_request("invalid_redirect_uri", e.to_string()))?;
        let redirect_uri = app.resolve_redirect(requested.as_ref()).map_err(|e| match e {
            latchkey_core::application::RedirectError::NotAllowed => {
                ServiceError::bad_request("redirect_uri_not_allowed", e.to_string())
            }
            latchkey_core::application::RedirectError::NoDefault => {
                ServiceError::bad_request("redirect_uri_required", e.to_string())
            }
        })?;
        let expires_in = fields::expires_in(input.expires_in)?;
        let code_challenge = match (input.code_challenge, input.code_challenge_method) {
            (Some(c), method) => Some(
                CodeChallenge::parse(&c, method.as_deref())
                    .map_err(|e| ServiceError::invalid("code_challenge", e.to_string()))?,
            ),
            (None, Some(_)) => {
                return Err(ServiceError::invalid(
                    "code_challenge",
                    "code_challenge_method needs a code_challenge",
                ));
            }
            (None, None) => None,
        };
        if app.public && code_challenge.is_none() {
            return Err(ServiceError::bad_request(
                "pkce_required",
                "a public application must send a code_challenge",
            ));
        }
        Ok(ChallengeRequest {
            purpose: Purpose::Login,
            email,
            redirect_uri,
            state: fields::bounded("state", input.state, MAX_STATE_LEN)?,
            nonce: fields::bounded("nonce", input.nonce, MAX_STATE_LEN)?,
            expires_in,
            code_challenge,
            client_ip: fields::bounded("client_ip", input.client_ip, MAX_BINDING_LEN)?,
            user_agent: fields::bounded("user_agent", input.user_agent, MAX_BINDING_LEN)?,
            create_user: input.create_user.unwrap_or(true),
            org_id: None,
            context_data: Default::default(),
            created_by: None,
        })
    }

    pub async fn create_magic_link(
        &self,
        app: &Application,
        input: MagicLinkInput,
    ) -> Result<CreatedMagicLink, ServiceError> {
        let send_email = input.send_email.unwrap_or(true);
        let locale = super::templates::request_locale("locale", input.locale.as_deref())?;
        let organization = input.organization.clone();
        let mut req = self.challenge_request(app, input)?;
        if organization.as_ref().is_some_and(|o| o.len() > 100) {
            return Err(ServiceError::invalid("organization", "organization is an id or a slug"));
        }
        req.org_id = self.sign_in_organization(organization.as_deref(), &req.email).await?;
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
    pub(super) async fn store_challenge(
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
            id: ChallengeId::generate(),
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

    pub async fn magic_link(&self, app: &Application, id: &str) -> Result<ChallengeRecord, ServiceError> {
        let id = ChallengeId::parse(id).ok_or(ServiceError::NotFound("magic link"))?;
        self.store.challenge(&app.id, &id).await?.ok_or(ServiceError::NotFound("magic link"))
    }

    pub async fn revoke_magic_link(
        &self,
        app: &Application,
        id: &str,
    ) -> Result<ChallengeRecord, ServiceError> {
        let record = self.magic_link(app, id).await?;
        let now = self.clock.now();
        if !self.store.revoke_challenge(&app.id, &record.challenge.id, now).await? {
            return Err(ServiceError::Conflict {
                code: "not_pending",
                message: format!("the magic link is already {}", record.challenge.status_at(now).as_str()),
            });
        }
        self.magic_link(app, record.challenge.id.as_str()).await
    }

    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }
}
