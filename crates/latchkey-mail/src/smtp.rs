use crate::smtp_conn::{Connection, Dial, Failure};
use crate::{DeliveryError, DkimSigner, Email, Mailer};
use async_trait::async_trait;
use lettre::Message;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::client::{Certificate, TlsParameters};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};
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
    /// Signs every message for its sender's domain (DKIM).
    pub dkim: Option<Arc<DkimSigner>>,
}

impl Default for SmtpOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            ca_pem: None,
            idle_connections: crate::outbox::DEFAULT_BATCH,
            dkim: None,
        }
    }
}

/// Delivers through an SMTP server: `smtp://` (STARTTLS when offered; required when the URL
/// carries credentials, which are never sent in clear), `smtps://` (implicit TLS) or
/// `smtp+plain://` (no TLS, for a local relay), with optional `user:password@`. Connections are
/// pooled and reused; each message has a deadline.
///
/// Several URLs, comma-separated, are relays in order of preference: a relay that cannot be
/// reached, breaks the conversation or answers 4xx is skipped for the next one, for that
/// message; a 5xx about the message ends its attempt (another relay would refuse it too).
pub struct SmtpMailer {
    relays: Vec<Relay>,
    dkim: Option<Arc<DkimSigner>>,
}

struct Relay {
    settings: Settings,
    /// Connections between two messages, the most recently used last.
    idle: Mutex<Vec<Idle>>,
}

struct Idle {
    connection: Connection,
    since: Instant,
}

/// A pooled connection unused for longer is closed rather than reused: servers close idle
/// connections after a while (RFC 5321 suggests five minutes; some relays far less).
const IDLE_LIMIT: Duration = Duration::from_secs(30);

struct Settings {
    host: String,
    port: u16,
    scheme: Scheme,
    credentials: Option<(String, String)>,
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
    /// Checks the settings of each relay (comma-separated URLs). Nothing is sent and no
    /// connection is made yet.
    pub fn from_url(urls: &str, options: SmtpOptions) -> Result<Self, SmtpConfigError> {
        let relays = urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|url| Relay::from_url(url, options.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        if relays.is_empty() {
            return Err(SmtpConfigError::Url);
        }
        Ok(Self { relays, dkim: options.dkim })
    }

    /// Where and how messages go, for people: `smtp://host:587 (STARTTLS required, as alice)`;
    /// several relays in their order.
    pub fn describe(&self) -> String {
        self.relays.iter().map(Relay::describe).collect::<Vec<_>>().join(", else ")
    }

    /// Sends one message and returns the server's reply to it (`250 …`), through the first
    /// relay that takes it.
    pub async fn send(&self, email: &Email) -> Result<String, DeliveryError> {
        self.send_via(email).await.map(|(reply, _)| reply)
    }

    /// The same, with the relay that took it (`host:port`).
    async fn send_via(&self, email: &Email) -> Result<(String, String), DeliveryError> {
        let message = build_message(email)?;
        let envelope = message.envelope();
        let from = envelope.from().map(|a| a.to_string()).unwrap_or_default();
        let to = envelope.to().first().map(|a| a.to_string()).ok_or_else(|| permanent("no recipient"))?;
        let mut data = message.formatted();
        if let Some(signer) = &self.dkim {
            let domain =
                crate::dkim::sender_domain(&from).ok_or_else(|| permanent("invalid sender address"))?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or_default();
            data = signer.sign(&domain, &data, now);
        }
        let mut last = None;
        for (n, relay) in self.relays.iter().enumerate() {
            match relay.send(&from, &to, &data).await {
                Ok(reply) => {
                    if n > 0 {
                        tracing::info!(relay = %relay.describe(), skipped = n, "smtp: a later relay took the message");
                    }
                    return Ok((reply, relay.address()));
                }
                Err(e) if e.permanent => return Err(e),
                Err(e) => {
                    if self.relays.len() > 1 {
                        tracing::warn!(relay = %relay.describe(), error = %e.message, "smtp: relay skipped");
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| permanent("no relay")))
    }
}

impl Relay {
    fn from_url(url: &str, options: SmtpOptions) -> Result<Self, SmtpConfigError> {
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
            (user, pass)
        });
        if let Some(pem) = &options.ca_pem
            && !String::from_utf8_lossy(pem).contains("-----BEGIN CERTIFICATE-----")
        {
            return Err(SmtpConfigError::CaFile);
        }
        let settings =
            Settings { host, port: url.port().unwrap_or(default_port), scheme, credentials, options };
        if settings.scheme != Scheme::Plain {
            settings.tls()?;
        }
        Ok(Self { settings, idle: Mutex::new(Vec::new()) })
    }

    /// `host:port`, as a delivery records it.
    fn address(&self) -> String {
        let host = &self.settings.host;
        if host.contains(':') {
            format!("[{host}]:{}", self.settings.port)
        } else {
            format!("{host}:{}", self.settings.port)
        }
    }

    fn describe(&self) -> String {
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

    async fn send(&self, from: &str, to: &str, data: &[u8]) -> Result<String, DeliveryError> {
        let deadline = self.settings.options.timeout * 2;
        match tokio::time::timeout(deadline, self.send_data(from, to, data)).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(failure)) => Err(delivery_error(failure)),
            // The connection in hand is dropped with the future: it is never reused mid-command.
            Err(_) => Err(DeliveryError {
                permanent: false,
                bounced: false,
                message: format!("the SMTP server did not finish within {} seconds", deadline.as_secs()),
            }),
        }
    }

    async fn send_data(&self, from: &str, to: &str, data: &[u8]) -> Result<String, Failure> {
        if let Some(mut connection) = self.take_idle() {
            match connection.send(from, to, data).await {
                Ok(reply) => {
                    self.put_back(connection);
                    return Ok(reply.describe());
                }
                Err(Failure::Refused(reply)) => {
                    self.put_back(connection);
                    return Err(Failure::Refused(reply));
                }
                // The server closed it while it was idle, or it broke: nothing was taken yet,
                // so the message goes on a new connection. After the body it may have been.
                Err(Failure::Network { before_body: true, .. }) => {}
                Err(other) => return Err(other),
            }
        }
        let mut connection = Connection::open(self.settings.dial()?).await?;
        let result = connection.send(from, to, data).await;
        if matches!(result, Ok(_) | Err(Failure::Refused(_))) {
            self.put_back(connection);
        }
        result.map(|reply| reply.describe())
    }

    fn take_idle(&self) -> Option<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let entry = idle.pop()?;
        if entry.since.elapsed() < IDLE_LIMIT {
            return Some(entry.connection);
        }
        // The most recently used was last: every one left is older still.
        let stale = std::mem::take(&mut *idle);
        drop(idle);
        for old in stale.into_iter().chain([entry]) {
            tokio::spawn(old.connection.quit());
        }
        None
    }

    fn put_back(&self, connection: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.settings.options.idle_connections as usize {
            idle.push(Idle { connection, since: Instant::now() });
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

    fn dial(&self) -> Result<Dial<'_>, Failure> {
        let tls = || self.tls().map_err(|e| Failure::network(e, true));
        let (implicit_tls, starttls) = match self.scheme {
            Scheme::StartTls => (None, Some((tls()?, self.credentials.is_some()))),
            Scheme::Implicit => (Some(tls()?), None),
            Scheme::Plain => (None, None),
        };
        Ok(Dial {
            host: &self.host,
            port: self.port,
            timeout: self.options.timeout,
            implicit_tls,
            starttls,
            credentials: self.credentials.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
        })
    }
}

fn delivery_error(failure: Failure) -> DeliveryError {
    match failure {
        Failure::Refused(reply) => {
            let permanent = is_permanent(reply.code);
            DeliveryError { permanent, bounced: permanent && reply.to_recipient, message: reply.describe() }
        }
        Failure::Network { message, .. } => DeliveryError { permanent: false, bounced: false, message },
        Failure::Unsendable(message) => DeliveryError { permanent: true, bounced: false, message },
    }
}

/// A 5xx reply means the message will never be accepted, except when it is about our
/// credentials (530, 534, 535, 538): that is a configuration the operator can fix, and the
/// queued messages should wait for it.
fn is_permanent(code: u16) -> bool {
    (500..600).contains(&code) && !matches!(code, 530 | 534 | 535 | 538)
}

fn permanent(message: impl Into<String>) -> DeliveryError {
    DeliveryError { permanent: true, bounced: false, message: message.into() }
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

    async fn deliver_via(&self, email: &Email) -> Result<Option<String>, DeliveryError> {
        self.send_via(email).await.map(|(_, relay)| Some(relay))
    }
}
