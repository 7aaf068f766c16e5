use crate::{DeliveryError, Email, Mailer};
use async_trait::async_trait;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::sync::RwLock;
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
    #[error("the SMTP CA file holds no PEM certificate")]
    CaFile,
}

/// How to talk to the SMTP server, beyond its URL.
#[derive(Debug, Clone)]
pub struct SmtpOptions {
    /// Bounds connecting, and (twice over) one whole message: connection, TLS, authentication
    /// and the server's answer to the data. A server that hangs costs one attempt, never the
    /// worker.
    pub timeout: Duration,
    /// PEM certificates to trust besides the public roots: a private CA (`LATCHKEY_SMTP_CA_FILE`).
    pub ca_pem: Option<Vec<u8>>,
    /// Idle connections kept open for reuse. As many as the outbox has deliveries in flight:
    /// with fewer, each delivery past them opened a connection and closed it after one message.
    pub idle_connections: u32,
}

impl Default for SmtpOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            ca_pem: None,
            idle_connections: crate::outbox::DEFAULT_BATCH,
        }
    }
}

type Transport = AsyncSmtpTransport<Tokio1Executor>;

/// Delivers through an SMTP server: `smtp://` (STARTTLS when offered; required when the URL
/// carries credentials, which are never sent in clear), `smtps://` (implicit TLS) or
/// `smtp+plain://` (no TLS, for a local relay), with optional `user:password@`. Connections are
/// pooled and reused; each message has a deadline.
pub struct SmtpMailer {
    settings: Settings,
    transport: RwLock<Transport>,
}

struct Settings {
    host: String,
    port: u16,
    scheme: Scheme,
    credentials: Option<Credentials>,
    options: SmtpOptions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    StartTls,
    Implicit,
    Plain,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SmtpMailer").field(&self.describe()).finish()
    }
}

impl SmtpMailer {
    /// Checks the settings and sets up the connection pool; call it within the Tokio runtime,
    /// which the pool's upkeep runs on. Nothing is sent and no connection is made yet.
    pub fn from_url(url: &str, options: SmtpOptions) -> Result<Self, SmtpConfigError> {
        let url = Url::parse(url).map_err(|_| SmtpConfigError::Url)?;
        let host = url.host_str().ok_or(SmtpConfigError::Host)?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let (scheme, default_port) = match url.scheme() {
            "smtp" => (Scheme::StartTls, 587),
            "smtps" => (Scheme::Implicit, 465),
            "smtp+plain" => (Scheme::Plain, 25),
            _ => return Err(SmtpConfigError::Scheme),
        };
        let credentials = (!url.username().is_empty()).then(|| {
            let decode =
                |s: &str| url::form_urlencoded::parse(s.as_bytes()).map(|(k, _)| k.into_owned()).collect();
            let user: String = decode(url.username());
            let pass: String = decode(url.password().unwrap_or_default());
            Credentials::new(user, pass)
        });
        if let Some(pem) = &options.ca_pem
            && !String::from_utf8_lossy(pem).contains("-----BEGIN CERTIFICATE-----")
        {
            return Err(SmtpConfigError::CaFile);
        }
        let settings =
            Settings { host, port: url.port().unwrap_or(default_port), scheme, credentials, options };
        let transport = settings.transport()?;
        Ok(Self { settings, transport: RwLock::new(transport) })
    }

    /// Where and how messages go, for people: `smtp://host:587 (STARTTLS required, as alice)`.
    pub fn describe(&self) -> String {
        let s = &self.settings;
        let (scheme, tls) = match s.scheme {
            Scheme::StartTls if s.credentials.is_some() => ("smtp", "STARTTLS required"),
            Scheme::StartTls => ("smtp", "STARTTLS when offered"),
            Scheme::Implicit => ("smtps", "TLS"),
            Scheme::Plain => ("smtp+plain", "no TLS"),
        };
        let who = match &s.credentials {
            Some(_) => ", authenticated",
            None => "",
        };
        let ca = if s.options.ca_pem.is_some() { ", trusting the configured CA" } else { "" };
        format!("{scheme}://{}:{} ({tls}{who}{ca})", s.host, s.port)
    }

    /// Sends one message and returns the server's reply to it (`250 …`).
    pub async fn send(&self, email: &Email) -> Result<String, DeliveryError> {
        let message = build_message(email)?;
        let transport = self.transport.read().unwrap_or_else(|e| e.into_inner()).clone();
        let deadline = self.settings.options.timeout * 2;
        match tokio::time::timeout(deadline, transport.send(message)).await {
            Ok(Ok(response)) => {
                let text = response.message().collect::<Vec<_>>().join(" ");
                Ok(format!("{} {text}", response.code()).trim_end().to_owned())
            }
            Ok(Err(e)) => Err(DeliveryError { permanent: is_permanent(&e), message: e.to_string() }),
            Err(_) => {
                // The pooled connection may be left mid-command: start over with a new pool.
                if let Ok(fresh) = self.settings.transport() {
                    *self.transport.write().unwrap_or_else(|e| e.into_inner()) = fresh;
                }
                Err(DeliveryError {
                    permanent: false,
                    message: format!("the SMTP server did not finish within {} seconds", deadline.as_secs()),
                })
            }
        }
    }
}

impl Settings {
    fn tls(&self) -> Result<TlsParameters, SmtpConfigError> {
        let mut builder = TlsParameters::builder(self.host.clone());
        if let Some(pem) = &self.options.ca_pem {
            builder = builder
                .add_root_certificate(Certificate::from_pem(pem).map_err(|_| SmtpConfigError::CaFile)?);
        }
        builder.build().map_err(|_| SmtpConfigError::Tls)
    }

    fn transport(&self) -> Result<Transport, SmtpConfigError> {
        let tls = match self.scheme {
            Scheme::StartTls if self.credentials.is_some() => Tls::Required(self.tls()?),
            Scheme::StartTls => Tls::Opportunistic(self.tls()?),
            Scheme::Implicit => Tls::Wrapper(self.tls()?),
            Scheme::Plain => Tls::None,
        };
        let mut builder = Transport::builder_dangerous(&self.host)
            .port(self.port)
            .tls(tls)
            .timeout(Some(self.options.timeout))
            .pool_config(PoolConfig::new().max_size(self.options.idle_connections));
        if let Some(credentials) = &self.credentials {
            builder = builder.credentials(credentials.clone());
        }
        Ok(builder.build())
    }
}

/// A 5xx reply means the message will never be accepted, except when it is about our
/// credentials (530, 534, 535, 538): that is a configuration the operator can fix, and the
/// queued messages should wait for it.
fn is_permanent(e: &lettre::transport::smtp::Error) -> bool {
    let auth =
        e.status().is_some_and(|code| matches!(code.to_string().as_str(), "530" | "534" | "535" | "538"));
    e.is_permanent() && !auth
}

fn permanent(message: impl Into<String>) -> DeliveryError {
    DeliveryError { permanent: true, message: message.into() }
}

/// The message as it goes on the wire: multipart text and HTML, `Date` at sending, the outbox
/// entry's `Message-ID`, and `Auto-Submitted` so that out-of-office replies stay away.
pub(crate) fn build_message(email: &Email) -> Result<Message, DeliveryError> {
    let from: Mailbox = email.from.parse().map_err(|_| permanent("invalid sender address"))?;
    let to: Mailbox = email.to.parse().map_err(|_| permanent("invalid recipient address"))?;
    Message::builder()
        .from(from)
        .to(to)
        .subject(email.subject.clone())
        .message_id(Some(format!("<{}>", email.message_id)))
        .date_now()
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-generated".into(),
        ))
        .multipart(MultiPart::alternative_plain_html(email.text.clone(), email.html.clone()))
        .map_err(|_| permanent("the message could not be built"))
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn deliver(&self, email: &Email) -> Result<(), DeliveryError> {
        self.send(email).await.map(drop)
    }
}
