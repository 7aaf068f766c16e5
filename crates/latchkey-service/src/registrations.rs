//! Registrations (§2.4) and verification links (§2.5): the same challenge engine, with
//! purposes of their own. Neither signs anyone in; a registration creates its user when the
//! application's back end validates it.

use crate::metrics;
use crate::{Refusal, Resource, Service, ServiceError, Validated};
use latchkey_core::application::MismatchPolicy;
use latchkey_core::bounded::Bounded;
use latchkey_core::challenge::{
    ChallengeLifetime, ChallengeRequest, ClientHint, IssuedChallenge, Purpose, StateText,
};
use latchkey_core::secret::HashPurpose;
use latchkey_core::{Application, Challenge, ChallengeStatus, EmailAddress, RedirectUri, User};
use latchkey_mail::Locale;
use latchkey_mail::compose;
use latchkey_mail::templates::{MailContext, RegistrationMail, VerificationMail};
use latchkey_store::{NewOutboxMessage, RegistrationOutcome, StoreError, TokenOutcome};
use std::collections::BTreeMap;
use time::{Duration, OffsetDateTime};

/// Registration links live 5 minutes unless the caller says otherwise.
const REGISTRATION_LIFETIME: Duration = Duration::seconds(300);
const MAX_TEMPLATE: usize = 32 * 1024;
const MAGICLINK: &str = "{{MAGICLINK}}";

/// The name of the action the e-mail asks to confirm ("{action} at {product}").
pub type ActionName = Bounded<100>;
/// A short message shown in the registration e-mail.
pub type ShortMessage = Bounded<500>;

/// Asking a new user to prove their address (§2.4).
#[derive(Debug, Clone)]
pub struct NewRegistration {
    pub email: EmailAddress,
    /// Must be on the application's registration allow list.
    pub redirect_uri: RedirectUri,
    pub expires_in: Option<ChallengeLifetime>,
    pub action_name: Option<ActionName>,
    pub message: Option<ShortMessage>,
    /// Handed back at validation; within [`latchkey_core::user::within_bounds`].
    pub context_data: BTreeMap<String, String>,
    pub client_ip: Option<ClientHint>,
    pub user_agent: Option<ClientHint>,
    pub send_email: bool,
    pub locale: Option<Locale>,
}

/// The application's back end validating the token its registration link carried.
#[derive(Debug, Clone)]
pub struct Validation {
    pub token: String,
    /// The registration the token must belong to, when the caller names it.
    pub registration_id: Option<String>,
    /// What the client is now, compared with what was given at the start.
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

/// A single-use code in the caller's own e-mail (§2.5).
#[derive(Debug, Clone)]
pub struct NewVerificationLink {
    pub email: EmailAddress,
    pub subject: Option<MailSubject>,
    pub template: VerificationTemplate,
    pub expires_in: Option<ChallengeLifetime>,
    pub created_by: Option<StateText>,
    pub send_email: bool,
}

/// The caller's e-mail body: UTF-8 text of at most 32 KiB that places `{{MAGICLINK}}`.
#[derive(Debug, Clone)]
pub struct VerificationTemplate(String);

impl VerificationTemplate {
    pub fn parse(text: String) -> Result<Self, Refusal> {
        if text.len() > MAX_TEMPLATE {
            return Err(Refusal::invalid("template", "the template is limited to 32 KiB"));
        }
        if !text.contains(MAGICLINK) {
            return Err(Refusal::invalid("template", "the template must contain {{MAGICLINK}}"));
        }
        Ok(Self(text))
    }
}

/// A subject line of the caller's: one line, at most 200 bytes.
#[derive(Debug, Clone)]
pub struct MailSubject(String);

impl MailSubject {
    pub fn parse(text: String) -> Result<Self, Refusal> {
        if text.len() > 200 {
            return Err(Refusal::invalid("subject", "subject is limited to 200 bytes"));
        }
        if text.contains(['\r', '\n']) {
            return Err(Refusal::invalid("subject", "subject must be one line"));
        }
        Ok(Self(text))
    }
}

/// A challenge just made, and what the caller must deliver itself when it sends its own mail.
#[derive(Debug)]
pub struct Created {
    pub challenge: Challenge,
    /// The registration link (with its token) or the verification code, with `send_email: false`.
    pub deliver: Option<Deliverable>,
}

#[derive(Debug)]
pub struct Deliverable {
    pub link: Option<String>,
    pub token: String,
}

#[derive(Debug)]
pub struct Registered {
    pub user: User,
    pub challenge: Challenge,
    /// The client differed from the one given at the start, and the policy is to report it.
    pub client_mismatch: bool,
}

/// A plain-text part for an HTML template: the tags dropped, the text kept.
fn text_of(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("\n")
}

impl Service {
    fn registration_mail(
        &self,
        app: &Application,
        challenge: &Challenge,
        link: &str,
        action_name: Option<&str>,
        short_msg: Option<&str>,
        locale: Option<&Locale>,
    ) -> NewOutboxMessage {
        let minutes = ((challenge.expires_at - challenge.created_at).whole_seconds() + 59) / 60;
        let context = MailContext::Registration(RegistrationMail {
            branding: self.mail_branding(app),
            email: challenge.email.as_str(),
            link,
            minutes,
            action_name,
            short_msg,
        });
        let locale = self.locale_for(app, Purpose::Registration, locale, None);
        let (id, envelope) = self.mail_envelope(app, &challenge.email);
        let email = compose::compose(&context, &locale, &app.settings.templates, envelope);
        self.outbox_entry(app, challenge, id, &email)
    }

    /// The caller's template as the body, under the caller's subject or the built-in one.
    fn verification_mail(
        &self,
        app: &Application,
        challenge: &Challenge,
        html: String,
        subject: Option<&str>,
    ) -> NewOutboxMessage {
        let context = MailContext::Verification(VerificationMail {
            branding: self.mail_branding(app),
            email: challenge.email.as_str(),
        });
        let locale = self.locale_for(app, Purpose::Verification, None, None);
        let (id, envelope) = self.mail_envelope(app, &challenge.email);
        let mut email = compose::compose(&context, &locale, &app.settings.templates, envelope);
        if let Some(subject) = subject {
            email.subject = subject.to_owned();
        }
        email.text = text_of(&html);
        email.html = html;
        self.outbox_entry(app, challenge, id, &email)
    }

    pub async fn create_registration(
        &self,
        app: &Application,
        cmd: NewRegistration,
    ) -> Result<Created, ServiceError> {
        let allowed = &app.settings.registration_redirect_uris;
        if !allowed.iter().any(|a| a == cmd.redirect_uri.as_str()) {
            return Err(Refusal::RedirectNotAllowed.into());
        }
        check_context_data(&cmd.context_data)?;
        let hint = |h: Option<ClientHint>| h.map(ClientHint::into_string);
        let req = ChallengeRequest {
            purpose: Purpose::Registration,
            redirect_uri: cmd.redirect_uri.clone(),
            redirect_uri_given: true,
            state: None,
            nonce: None,
            expires_in: Some(cmd.expires_in.map_or(REGISTRATION_LIFETIME, ChallengeLifetime::duration)),
            code_challenge: None,
            client_ip: hint(cmd.client_ip),
            user_agent: hint(cmd.user_agent),
            create_user: true,
            org_id: None,
            context_data: cmd.context_data,
            created_by: None,
            code_is_credential: false,
            email: cmd.email,
        };
        if self.store.user_by_email(&req.email).await?.is_some() {
            return Err(Refusal::EmailTaken.into());
        }
        let now = self.clock.now();
        let IssuedChallenge { challenge, link_token, .. } = Challenge::issue(app, req, &self.key, now);
        let link = cmd.redirect_uri.with_params([
            ("registration_id", challenge.id.as_str()),
            ("registration_validation_token", link_token.expose()),
        ]);
        let mail = cmd.send_email.then(|| {
            self.registration_mail(
                app,
                &challenge,
                &link,
                cmd.action_name.as_ref().map(ActionName::as_str),
                cmd.message.as_ref().map(ShortMessage::as_str),
                cmd.locale.as_ref(),
            )
        });
        self.store_challenge(app, &challenge, mail, now).await?;
        let deliver = (!cmd.send_email)
            .then(|| Deliverable { link: Some(link), token: link_token.expose().to_owned() });
        Ok(Created { challenge, deliver })
    }

    pub async fn validate_registration(
        &self,
        app: &Application,
        cmd: Validation,
    ) -> Result<Registered, ServiceError> {
        if cmd.token.len() > MAX_TOKEN_LEN {
            return Err(Refusal::NotFound(Resource::Registration).into());
        }
        let hash = self.key.hash(HashPurpose::LinkToken, &cmd.token);
        let now = self.clock.now();
        let found = self
            .store
            .challenge_by_link(&hash)
            .await?
            .filter(|c| c.app_id == app.id && c.purpose == Purpose::Registration)
            .filter(|c| cmd.registration_id.as_ref().is_none_or(|id| c.id.as_str() == id))
            .ok_or(Refusal::NotFound(Resource::Registration))?;
        let mismatch = client_differs(&found, cmd.client_ip.as_deref(), cmd.user_agent.as_deref());
        if mismatch && app.settings.registration_mismatch == MismatchPolicy::Refuse {
            return Err(Refusal::ClientMismatch.into());
        }
        let mut user = User::new(found.email.clone(), now);
        user.email_verified = true;
        // The challenge is spent and the user made in one transaction: a failure leaves both
        // as they were, and the registration can be validated again.
        match self.store.consume_registration(&hash, &app.id, &user, now).await? {
            RegistrationOutcome::Consumed { challenge, user } => {
                metrics::challenge_consumed(Purpose::Registration, app, metrics::Consumed::Token);
                Ok(Registered { user, challenge: *challenge, client_mismatch: mismatch })
            }
            RegistrationOutcome::EmailTaken => Err(Refusal::EmailTaken.into()),
            RegistrationOutcome::NotFound => Err(Refusal::NotFound(Resource::Registration).into()),
            RegistrationOutcome::Gone(status) => {
                if status == ChallengeStatus::Expired {
                    metrics::challenge_expired(Purpose::Registration, app);
                }
                Err(Refusal::NoLongerValid { what: Resource::Registration, status }.into())
            }
        }
    }

    /// As [`Service::validate_registration`], except that a token already validated answers
    /// the registration it made, as a replay, instead of a refusal.
    pub async fn validate_registration_once(
        &self,
        app: &Application,
        cmd: Validation,
    ) -> Result<Validated<Registered>, ServiceError> {
        let token = cmd.token.clone();
        match self.validate_registration(app, cmd).await {
            Ok(done) => Ok(Validated::First(done)),
            Err(ServiceError::Refused(Refusal::NoLongerValid {
                status: ChallengeStatus::Consumed, ..
            })) => {
                let hash = self.key.hash(HashPurpose::LinkToken, &token);
                let challenge = self.store.challenge_by_link(&hash).await?.filter(|c| c.app_id == app.id);
                let challenge = challenge.ok_or(Refusal::NotFound(Resource::Registration))?;
                let user = self.store.user_by_email(&challenge.email).await?;
                let user = user.ok_or(Refusal::NotFound(Resource::User))?;
                Ok(Validated::Replay(Registered { user, challenge, client_mismatch: false }))
            }
            Err(e) => Err(e),
        }
    }

    /// Consumes a registration or verification challenge of this application by its token.
    async fn consume_token(
        &self,
        app: &Application,
        purpose: Purpose,
        hash: &[u8],
        now: OffsetDateTime,
    ) -> Result<Challenge, ServiceError> {
        let what = match purpose {
            Purpose::Registration => Resource::Registration,
            _ => Resource::VerificationLink,
        };
        match self.store.consume_by_token(purpose, hash, &app.id, now).await? {
            TokenOutcome::Consumed(challenge) => {
                metrics::challenge_consumed(purpose, app, metrics::Consumed::Token);
                Ok(*challenge)
            }
            TokenOutcome::NotFound => Err(Refusal::NotFound(what).into()),
            TokenOutcome::Gone(status) => {
                if status == ChallengeStatus::Expired {
                    metrics::challenge_expired(purpose, app);
                }
                Err(Refusal::NoLongerValid { what, status }.into())
            }
        }
    }

    pub async fn create_verification_link(
        &self,
        app: &Application,
        cmd: NewVerificationLink,
    ) -> Result<Created, ServiceError> {
        let expires_in =
            cmd.expires_in.map_or_else(|| app.settings.lifetimes.link(), ChallengeLifetime::duration);
        let redirect = app.default_redirect().cloned().or_else(|| app.redirect_uris.first().cloned());
        let redirect =
            redirect.unwrap_or_else(|| RedirectUri::parse(&self.issuer).expect("the issuer is a URL"));
        let req = ChallengeRequest {
            purpose: Purpose::Verification,
            email: cmd.email,
            redirect_uri: redirect,
            redirect_uri_given: false,
            state: None,
            nonce: None,
            expires_in: Some(expires_in),
            code_challenge: None,
            client_ip: None,
            user_agent: None,
            create_user: false,
            org_id: None,
            context_data: BTreeMap::new(),
            created_by: cmd.created_by.map(StateText::into_string),
            code_is_credential: false,
        };
        let now = self.clock.now();
        let IssuedChallenge { challenge, link_token, .. } = Challenge::issue(app, req, &self.key, now);
        let mail = cmd.send_email.then(|| {
            let html = cmd.template.0.replace(MAGICLINK, link_token.expose());
            self.verification_mail(app, &challenge, html, cmd.subject.as_ref().map(|s| s.0.as_str()))
        });
        self.store_challenge(app, &challenge, mail, now).await?;
        let deliver =
            (!cmd.send_email).then(|| Deliverable { link: None, token: link_token.expose().to_owned() });
        Ok(Created { challenge, deliver })
    }

    pub async fn redeem_verification_link(
        &self,
        app: &Application,
        code: &str,
    ) -> Result<Challenge, ServiceError> {
        if code.len() > MAX_TOKEN_LEN {
            return Err(Refusal::NotFound(Resource::VerificationLink).into());
        }
        let hash = self.key.hash(HashPurpose::LinkToken, code);
        self.consume_token(app, Purpose::Verification, &hash, self.clock.now()).await
    }
}

/// The caller's data handed back at validation, within [`latchkey_core::user::within_bounds`].
pub(crate) fn check_context_data(data: &BTreeMap<String, String>) -> Result<(), Refusal> {
    if latchkey_core::user::within_bounds(data) {
        return Ok(());
    }
    Err(Refusal::invalid(
        "context_data",
        "context_data is limited to 50 entries, keys of 1 to 40 bytes and values of 500",
    ))
}

/// Whether the client now differs from the one the caller described at the start (only what
/// both sides said is compared).
pub(crate) fn client_differs(started: &Challenge, ip: Option<&str>, user_agent: Option<&str>) -> bool {
    let differs = |then: &Option<String>, now: Option<&str>| match (then.as_deref(), now) {
        (Some(a), Some(b)) => a != b,
        _ => false,
    };
    differs(&started.client_ip, ip) || differs(&started.user_agent, user_agent)
}

/// The longest link token or code looked up; anything longer cannot be ours.
const MAX_TOKEN_LEN: usize = 128;

/// A store conflict on a user's address is the address being taken.
pub(crate) fn taken(e: StoreError) -> ServiceError {
    match e {
        StoreError::Conflict(_) => Refusal::EmailTaken.into(),
        other => other.into(),
    }
}
