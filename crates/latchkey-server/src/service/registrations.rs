//! Registrations (§2.4) and verification links (§2.5): the same challenge engine, with
//! purposes of their own. Neither signs anyone in; a registration creates its user when the
//! application's back end validates it.

use super::fields;
use super::{Service, ServiceError};
use latchkey_core::application::MismatchPolicy;
use latchkey_core::challenge::{ChallengeRequest, IssuedChallenge, MAX_BINDING_LEN, MAX_STATE_LEN, Purpose};
use latchkey_core::secret::HashPurpose;
use latchkey_core::user::within_bounds;
use latchkey_core::{Application, Challenge, ChallengeStatus, RedirectUri, User};
use latchkey_mail::Locale;
use latchkey_mail::compose;
use latchkey_mail::templates::{MailContext, RegistrationMail, VerificationMail};
use latchkey_store::{NewOutboxMessage, TokenOutcome};
use serde::Deserialize;
use std::collections::BTreeMap;
use time::{Duration, OffsetDateTime};

/// Registration links live 5 minutes unless the caller says otherwise.
const REGISTRATION_LIFETIME: i64 = 300;
const MAX_ACTION_NAME: usize = 100;
const MAX_SHORT_MSG: usize = 500;
const MAX_SUBJECT: usize = 200;
const MAX_TEMPLATE: usize = 32 * 1024;
const MAGICLINK: &str = "{{MAGICLINK}}";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RegistrationInput {
    pub email: Option<String>,
    pub redirect_uri: Option<String>,
    pub expires_in: Option<i64>,
    pub action_name: Option<String>,
    pub short_msg: Option<String>,
    pub context_data: Option<BTreeMap<String, String>>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub send_email: Option<bool>,
    pub locale: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ValidationInput {
    pub registration_validation_token: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct VerificationInput {
    pub email: Option<String>,
    pub subject: Option<String>,
    pub template_base64: Option<String>,
    pub expires_in: Option<i64>,
    pub created_by: Option<String>,
    pub send_email: Option<bool>,
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

fn context_data(value: Option<BTreeMap<String, String>>) -> Result<BTreeMap<String, String>, ServiceError> {
    let value = value.unwrap_or_default();
    if !within_bounds(&value) {
        return Err(ServiceError::invalid(
            "context_data",
            "context_data is limited to 50 entries, keys of 1 to 40 bytes and values of 500",
        ));
    }
    Ok(value)
}

/// The caller's template: base64 of UTF-8 text that places `{{MAGICLINK}}` somewhere.
fn template(value: Option<String>) -> Result<String, ServiceError> {
    use base64::Engine as _;
    let value =
        value.ok_or_else(|| ServiceError::invalid("template_base64", "template_base64 is required"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| ServiceError::invalid("template_base64", "template_base64 is not valid base64"))?;
    if bytes.len() > MAX_TEMPLATE {
        return Err(ServiceError::invalid("template_base64", "the template is limited to 32 KiB"));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| ServiceError::invalid("template_base64", "the template is not UTF-8 text"))?;
    if !text.contains(MAGICLINK) {
        return Err(ServiceError::invalid("template_base64", "the template must contain {{MAGICLINK}}"));
    }
    Ok(text)
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
        input: RegistrationInput,
    ) -> Result<Created, ServiceError> {
        let address = fields::email(input.email.as_deref())?;
        let redirect = input
            .redirect_uri
            .ok_or_else(|| ServiceError::invalid("redirect_uri", "redirect_uri is required"))?;
        let allowed = RedirectUri::parse(&redirect)
            .ok()
            .filter(|r| app.settings.registration_redirect_uris.iter().any(|a| a == r.as_str()))
            .ok_or_else(|| {
                ServiceError::bad_request(
                    "redirect_uri_not_allowed",
                    "redirect_uri is not on the application's registration allow list",
                )
            })?;
        let expires_in =
            fields::expires_in(input.expires_in)?.unwrap_or(Duration::seconds(REGISTRATION_LIFETIME));
        let action_name = fields::bounded("action_name", input.action_name, MAX_ACTION_NAME)?;
        let locale = super::templates::request_locale("locale", input.locale.as_deref())?;
        let short_msg = fields::bounded("short_msg", input.short_msg, MAX_SHORT_MSG)?;
        let req = ChallengeRequest {
            purpose: Purpose::Registration,
            redirect_uri: allowed.clone(),
            state: None,
            nonce: None,
            expires_in: Some(expires_in),
            code_challenge: None,
            client_ip: fields::bounded("client_ip", input.client_ip, MAX_BINDING_LEN)?,
            user_agent: fields::bounded("user_agent", input.user_agent, MAX_BINDING_LEN)?,
            create_user: true,
            org_id: None,
            context_data: context_data(input.context_data)?,
            created_by: None,
            email: address,
        };
        if self.store.user_by_email(&req.email).await?.is_some() {
            return Err(fields::email_taken());
        }
        let now = self.clock.now();
        let IssuedChallenge { challenge, link_token, .. } = Challenge::issue(app, req, &self.key, now);
        let link = allowed.with_params([
            ("registration_id", challenge.id.as_str()),
            ("registration_validation_token", link_token.expose()),
        ]);
        let send = input.send_email.unwrap_or(true);
        let mail = send.then(|| {
            self.registration_mail(
                app,
                &challenge,
                &link,
                action_name.as_deref(),
                short_msg.as_deref(),
                locale.as_ref(),
            )
        });
        self.store_challenge(app, &challenge, mail, now).await?;
        let deliver =
            (!send).then(|| Deliverable { link: Some(link), token: link_token.expose().to_owned() });
        Ok(Created { challenge, deliver })
    }

    pub async fn validate_registration(
        &self,
        app: &Application,
        input: ValidationInput,
    ) -> Result<Registered, ServiceError> {
        let token = input.registration_validation_token.ok_or_else(|| {
            ServiceError::invalid(
                "registration_validation_token",
                "registration_validation_token is required",
            )
        })?;
        let hash = self.key.hash(HashPurpose::LinkToken, &token);
        let now = self.clock.now();
        let found = self
            .store
            .challenge_by_link(&hash)
            .await?
            .filter(|c| c.app_id == app.id && c.purpose == Purpose::Registration)
            .ok_or(ServiceError::NotFound("registration"))?;
        let differs = |started: &Option<String>, now: &Option<String>| match (started, now) {
            (Some(a), Some(b)) => a != b,
            _ => false,
        };
        let mismatch =
            differs(&found.client_ip, &input.client_ip) || differs(&found.user_agent, &input.user_agent);
        if mismatch && app.settings.registration_mismatch == MismatchPolicy::Refuse {
            return Err(ServiceError::Forbidden {
                code: "client_mismatch",
                message: "the client differs from the one that started the registration".into(),
            });
        }
        let challenge = self.consume_token(app, Purpose::Registration, &hash, now).await?;
        let mut user = User::new(challenge.email.clone(), now);
        user.email_verified = true;
        self.store.insert_user(&user).await.map_err(fields::taken)?;
        let event = latchkey_core::event::Event::new(latchkey_core::event::EventKind::UserCreated, now)
            .app(&app.id)
            .user(&user.id)
            .subject(challenge.id.as_str());
        self.store.insert_event(&event).await?;
        Ok(Registered { user, challenge, client_mismatch: mismatch })
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
            Purpose::Registration => "registration",
            _ => "verification link",
        };
        match self.store.consume_by_token(purpose, hash, &app.id, now).await? {
            TokenOutcome::Consumed(challenge) => Ok(*challenge),
            TokenOutcome::NotFound => Err(ServiceError::NotFound(what)),
            TokenOutcome::Gone(status) => Err(ServiceError::Gone {
                code: "no_longer_valid",
                message: format!("the {what} is {}", gone_word(status)),
            }),
        }
    }

    pub async fn create_verification_link(
        &self,
        app: &Application,
        input: VerificationInput,
    ) -> Result<Created, ServiceError> {
        let address = fields::email(input.email.as_deref())?;
        let template = template(input.template_base64)?;
        let subject = fields::bounded("subject", input.subject, MAX_SUBJECT)?;
        if subject.as_deref().is_some_and(|s| s.contains(['\r', '\n'])) {
            return Err(ServiceError::invalid("subject", "subject must be one line"));
        }
        let expires_in =
            fields::expires_in(input.expires_in)?.unwrap_or_else(|| app.settings.lifetimes.link());
        let created_by = fields::bounded("created_by", input.created_by, MAX_STATE_LEN)?;
        let redirect = app.default_redirect().cloned().or_else(|| app.redirect_uris.first().cloned());
        let redirect =
            redirect.unwrap_or_else(|| RedirectUri::parse(&self.issuer).expect("the issuer is a URL"));
        let req = ChallengeRequest {
            purpose: Purpose::Verification,
            email: address,
            redirect_uri: redirect,
            state: None,
            nonce: None,
            expires_in: Some(expires_in),
            code_challenge: None,
            client_ip: None,
            user_agent: None,
            create_user: false,
            org_id: None,
            context_data: BTreeMap::new(),
            created_by,
        };
        let now = self.clock.now();
        let IssuedChallenge { challenge, link_token, .. } = Challenge::issue(app, req, &self.key, now);
        let send = input.send_email.unwrap_or(true);
        let mail = send.then(|| {
            let html = template.replace(MAGICLINK, link_token.expose());
            self.verification_mail(app, &challenge, html, subject.as_deref())
        });
        self.store_challenge(app, &challenge, mail, now).await?;
        let deliver = (!send).then(|| Deliverable { link: None, token: link_token.expose().to_owned() });
        Ok(Created { challenge, deliver })
    }

    pub async fn redeem_verification_link(
        &self,
        app: &Application,
        code: Option<&str>,
    ) -> Result<Challenge, ServiceError> {
        let code = code.ok_or_else(|| ServiceError::invalid("code", "code is required"))?;
        if code.len() > 128 {
            return Err(ServiceError::NotFound("verification link"));
        }
        let hash = self.key.hash(HashPurpose::LinkToken, code);
        self.consume_token(app, Purpose::Verification, &hash, self.clock.now()).await
    }
}

fn gone_word(status: ChallengeStatus) -> &'static str {
    match status {
        ChallengeStatus::Consumed => "already used",
        ChallengeStatus::Expired => "expired",
        _ => "revoked",
    }
}
