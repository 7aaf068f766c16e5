use crate::{DeliveryError, Email, Mailer};
use async_trait::async_trait;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum SmtpConfigError {
    #[error("the SMTP URL is not a valid URL")]
    Url,
    #[error("the SMTP URL must start with smtp://, smtps:// or smtp+plain://")]
    Scheme,
    #[error("the SMTP URL has no host")]
    Host,
    #[error("TLS could not be set up for the SMTP host")]
    Tls,
}

/// Delivers through an SMTP server: `smtp://` (STARTTLS when offered), `smtps://` (implicit
/// TLS) or `smtp+plain://` (no TLS, for a local relay), with optional `user:password@`.
#[derive(Clone)]
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SmtpMailer")
    }
}

impl SmtpMailer {
    pub fn from_url(url: &str, timeout: Duration) -> Result<Self, SmtpConfigError> {
        let url = Url::parse(url).map_err(|_| SmtpConfigError::Url)?;
        let host = url.host_str().ok_or(SmtpConfigError::Host)?.to_owned();
        let tls = || TlsParameters::new(host.clone()).map_err(|_| SmtpConfigError::Tls);
        let (tls, default_port) = match url.scheme() {
            "smtp" => (Tls::Opportunistic(tls()?), 587),
            "smtps" => (Tls::Wrapper(tls()?), 465),
            "smtp+plain" => (Tls::None, 25),
            _ => return Err(SmtpConfigError::Scheme),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host)
            .port(url.port().unwrap_or(default_port))
            .tls(tls)
            .timeout(Some(timeout));
        if !url.username().is_empty() {
            let decode =
                |s: &str| url::form_urlencoded::parse(s.as_bytes()).map(|(k, _)| k.into_owned()).collect();
            let user: String = decode(url.username());
            let pass: String = decode(url.password().unwrap_or_default());
            builder = builder.credentials(Credentials::new(user, pass));
        }
        Ok(Self { transport: builder.build() })
    }
}

fn permanent(message: impl Into<String>) -> DeliveryError {
    DeliveryError { permanent: true, message: message.into() }
}

pub(crate) fn build_message(email: &Email) -> Result<Message, DeliveryError> {
    let from: Mailbox = email.from.parse().map_err(|_| permanent("invalid sender address"))?;
    let to: Mailbox = email.to.parse().map_err(|_| permanent("invalid recipient address"))?;
    Message::builder()
        .from(from)
        .to(to)
        .subject(email.subject.clone())
        .message_id(Some(format!("<{}>", email.message_id)))
        .date_now()
        .multipart(MultiPart::alternative_plain_html(email.text.clone(), email.html.clone()))
        .map_err(|_| permanent("the message could not be built"))
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn deliver(&self, email: &Email) -> Result<(), DeliveryError> {
        let message = build_message(email)?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) => Err(DeliveryError { permanent: e.is_permanent(), message: e.to_string() }),
        }
    }
}
