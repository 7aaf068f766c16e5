//! E-mail magic links: `send` (by e-mail address, user id, or the older `email`), then, after
//! the click, `authenticate` with the code the redirect carried.

use super::{Body, Caller, Result, TransmitError, required};
use crate::common::body::Input;
use crate::common::fields;
use crate::common::no_store;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use latchkey_core::challenge::{ChallengeLifetime, ClientHint, StateText};
use latchkey_core::id::UserId;
use latchkey_core::{EmailAddress, RedirectUri};
use latchkey_mail::compose::is_css_color;
use latchkey_mail::templates::Wording;
use latchkey_service::{
    CodeExchange, ExchangeRedirect, MessageStyle, NewMagicLink, Refusal, Resource, Service, ServiceError,
};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// The longest sender name taken.
const MAX_SENDER_NAME: usize = 100;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SendBody {
    identifier: Option<String>,
    identifier_type: Option<String>,
    /// The older form of the call.
    email: Option<String>,
    redirect_uri: Option<String>,
    state: Option<String>,
    /// Minutes.
    email_expiration: Option<i64>,
    email_content: Option<EmailContent>,
    client_attributes: Option<ClientAttributes>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct EmailContent {
    subject: Option<String>,
    primary_color: Option<String>,
    header_text: Option<String>,
    body_text: Option<String>,
    link_text: Option<String>,
    info_text: Option<String>,
    footer_text: Option<String>,
    sender_name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct ClientAttributes {
    user_agent: Option<String>,
    ip_address: Option<String>,
}

/// Who the link is for, as the caller names them.
enum Recipient {
    Email(EmailAddress),
    User(String),
}

fn bad(message: impl Into<String>) -> TransmitError {
    TransmitError::BadRequest(message.into())
}

impl SendBody {
    fn recipient(&self) -> Result<Recipient> {
        let Some(identifier) = &self.identifier else {
            return Ok(Recipient::Email(fields::email(
                "email",
                Some(required("identifier", self.email.as_deref())?),
            )?));
        };
        match self.identifier_type.as_deref().unwrap_or("email") {
            "email" => Ok(Recipient::Email(fields::email("identifier", Some(identifier))?)),
            "user_id" => Ok(Recipient::User(identifier.clone())),
            // A user's name here is their e-mail address, as in the Auth Armor face.
            "username" => fields::email("identifier", Some(identifier))
                .map(Recipient::Email)
                .map_err(|_| bad("a username is the user's e-mail address here")),
            _ => Err(bad("identifier_type must be email, user_id or username")),
        }
    }

    /// Every value but the recipient, parsed.
    fn options(self) -> Result<SendOptions> {
        let client = self.client_attributes.unwrap_or_default();
        Ok(SendOptions {
            redirect_uri: self
                .redirect_uri
                .as_deref()
                .map(RedirectUri::parse)
                .transpose()
                .map_err(|e| bad(format!("redirect_uri: {e}")))?,
            state: fields::bounded("state", self.state)?,
            expires_in: self
                .email_expiration
                .map(|minutes| ChallengeLifetime::from_secs(minutes.saturating_mul(60)))
                .transpose()
                .map_err(|e| bad(format!("email_expiration (minutes): {e}")))?,
            client_ip: fields::bounded("client_attributes.ip_address", client.ip_address)?,
            user_agent: fields::bounded("client_attributes.user_agent", client.user_agent)?,
            style: self.email_content.map(MessageStyle::try_from).transpose()?,
        })
    }
}

/// A send's values other than its recipient.
struct SendOptions {
    redirect_uri: Option<RedirectUri>,
    state: Option<StateText>,
    expires_in: Option<ChallengeLifetime>,
    client_ip: Option<ClientHint>,
    user_agent: Option<ClientHint>,
    style: Option<MessageStyle>,
}

impl SendOptions {
    fn for_address(self, email: EmailAddress) -> NewMagicLink {
        let mut cmd = NewMagicLink::new(email);
        // Transmit sends links to its users only: no sign-up here.
        cmd.create_user = false;
        cmd.redirect_uri = self.redirect_uri;
        cmd.state = self.state;
        cmd.expires_in = self.expires_in;
        cmd.client_ip = self.client_ip;
        cmd.user_agent = self.user_agent;
        cmd.style = self.style;
        cmd
    }
}

impl TryFrom<EmailContent> for MessageStyle {
    type Error = TransmitError;

    fn try_from(c: EmailContent) -> Result<Self> {
        if let Some(color) = c.primary_color.as_deref().filter(|c| !is_css_color(c)) {
            let shown = latchkey_core::bounded::excerpt(color, 20);
            return Err(bad(format!("email_content.primaryColor {shown:?} is not a colour such as #0a7d48")));
        }
        if let Some(name) = &c.sender_name
            && (name.chars().count() > MAX_SENDER_NAME || name.chars().any(char::is_control))
        {
            return Err(bad(format!(
                "email_content.senderName must be one line of at most {MAX_SENDER_NAME} characters"
            )));
        }
        let wording = Wording {
            subject: c.subject,
            heading: c.header_text,
            intro: c.body_text,
            button: c.link_text,
            info: c.info_text,
            footer: c.footer_text,
        };
        if let Some(place) = wording.too_long() {
            return Err(bad(format!("email_content: the {place} text is too long")));
        }
        Ok(MessageStyle { wording, color: c.primary_color, sender_name: c.sender_name })
    }
}

/// The address of a user named by id; `None` for no such user (said to nobody).
async fn address_of(service: &Service, id: &str) -> Result<Option<EmailAddress>> {
    let Some(id) = UserId::parse(id) else { return Ok(None) };
    match service.user(&id).await {
        Ok(user) => Ok(Some(user.email)),
        Err(ServiceError::Refused(Refusal::NotFound(Resource::User))) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub async fn send(
    State(service): State<Arc<Service>>,
    Caller(app): Caller,
    body: Body<SendBody>,
) -> Result<Response> {
    let Input(body) = body?;
    let recipient = body.recipient()?;
    let options = body.options()?;
    let to = match recipient {
        Recipient::Email(address) => Some(address),
        Recipient::User(id) => address_of(&service, &id).await?,
    };
    match to {
        Some(address) => {
            service.create_magic_link(&app, options.for_address(address)).await?;
        }
        // A user id that names no one gets the answer a known one gets, and no e-mail (no
        // enumeration); the redirect is checked all the same.
        None => {
            app.resolve_redirect(options.redirect_uri.as_ref()).map_err(Refusal::from)?;
        }
    }
    Ok(no_store(Json(json!({ "message": "Email sent successfully" })).into_response()))
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AuthenticateBody {
    code: Option<String>,
}

pub async fn authenticate(
    State(service): State<Arc<Service>>,
    Caller(app): Caller,
    body: Body<AuthenticateBody>,
) -> Result<Response> {
    let Input(body) = body?;
    // Transmit's call carries the code alone: no redirect_uri, no verifier.
    let cmd = CodeExchange {
        code: required("code", body.code)?,
        redirect_uri: ExchangeRedirect::Waived {
            because: "Transmit's link authenticate call sends the code alone",
        },
        code_verifier: None,
    };
    let tokens = service.exchange_code(&app, cmd).await?;
    let answer = json!({
        "access_token": tokens.access_token,
        "id_token": tokens.id_token,
        "refresh_token": tokens.refresh_token,
        "token_type": "Bearer",
        "expires_in": tokens.expires_in.whole_seconds(),
        "session_id": tokens.session,
    });
    Ok(no_store(Json(answer).into_response()))
}
