//! A small SMTP server that accepts (or refuses, drops or stalls, on demand) whatever it is
//! sent and keeps it, for tests and benchmarks that must read the mail Latchkey really sent
//! over SMTP. It can require authentication (PLAIN, LOGIN), speak TLS (STARTTLS or implicit,
//! with the `test-sink-tls` feature, under a private CA made at start), count the connections
//! it accepted, and go down and come back on the same port.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Notify;
use tokio::task::{AbortHandle, JoinHandle};

/// How the sink answers a message's end of data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkMode {
    Accept,
    /// 451: a temporary failure, the sender should retry.
    RefuseTemporarily,
    /// 550: a permanent refusal.
    RefusePermanently,
    /// Close the connection after the data, without an answer: the sender cannot know whether
    /// the message arrived (it did not).
    Drop,
    /// Never answer the data: the sender must give up on its own.
    Stall,
}

/// Transport security the sink offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SinkTls {
    #[default]
    None,
    /// Plain connection; `STARTTLS` offered in the EHLO answer.
    #[cfg(any(test, feature = "test-sink-tls"))]
    StartTls,
    /// TLS from the first byte (`smtps://`).
    #[cfg(any(test, feature = "test-sink-tls"))]
    Implicit,
}

/// Credentials the sink demands before `MAIL`, and the mechanisms it offers for them.
#[derive(Debug, Clone)]
pub struct SinkAuth {
    pub user: String,
    pub password: String,
    /// Among `PLAIN` and `LOGIN`, in the order offered.
    pub mechanisms: Vec<&'static str>,
}

impl SinkAuth {
    pub fn new(user: &str, password: &str) -> Self {
        Self { user: user.into(), password: password.into(), mechanisms: vec!["PLAIN", "LOGIN"] }
    }
}

#[derive(Debug, Clone, Default)]
pub struct SinkConfig {
    pub tls: SinkTls,
    pub auth: Option<SinkAuth>,
    /// How long the sink waits before inviting a message's data (`354`), as a distant or busy
    /// server does: the message is in flight meanwhile, and not yet accepted.
    pub delay_before_data: Duration,
}

#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The message as transmitted, dot-unstuffed, CRLF line ends.
    pub data: String,
    /// Whether it came over TLS (implicit or after STARTTLS).
    pub tls: bool,
    /// The user it was authenticated as, if the sink asked for authentication.
    pub user: Option<String>,
    /// When its data ended (just before the sink answered `250`).
    pub received_at: std::time::Instant,
}

#[derive(Default)]
struct Shared {
    mails: Mutex<Vec<ReceivedMail>>,
    mode: Mutex<Option<SinkMode>>,
    arrived: Notify,
    connections: AtomicUsize,
    auth_failures: AtomicUsize,
    sessions: Mutex<Vec<AbortHandle>>,
    /// Addresses refused at `RCPT TO` with a 550, as a server does a mailbox it does not have.
    unknown: Mutex<Vec<String>>,
}

/// A running sink; it stops when dropped.
pub struct SmtpSink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    config: Arc<SinkConfig>,
    #[cfg(any(test, feature = "test-sink-tls"))]
    tls: Option<tls::SinkCertificates>,
    listener: Mutex<Option<JoinHandle<()>>>,
    /// While paused: the port, bound but not listening, so that connections are refused and
    /// no other socket takes it before [`Self::resume`].
    held: Mutex<Option<TcpSocket>>,
}

/// A socket whose port a paused sink can hold while its listener closes.
fn port_socket() -> std::io::Result<TcpSocket> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    Ok(socket)
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop_listening();
        self.close_connections();
    }
}

impl SmtpSink {
    /// Plain SMTP, no authentication.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(SinkConfig::default()).await
    }

    pub async fn start_with(config: SinkConfig) -> std::io::Result<Self> {
        let socket = port_socket()?;
        socket.bind("127.0.0.1:0".parse().expect("an address"))?;
        let listener = socket.listen(128)?;
        let addr = listener.local_addr()?;
        let sink = Self {
            addr,
            shared: Arc::new(Shared::default()),
            #[cfg(any(test, feature = "test-sink-tls"))]
            tls: (config.tls != SinkTls::None).then(tls::SinkCertificates::generate),
            config: Arc::new(config),
            listener: Mutex::new(None),
            held: Mutex::new(None),
        };
        sink.listen(listener);
        Ok(sink)
    }

    fn listen(&self, listener: TcpListener) {
        let shared = self.shared.clone();
        let config = self.config.clone();
        #[cfg(any(test, feature = "test-sink-tls"))]
        let acceptor = self.tls.as_ref().map(|t| t.acceptor.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let session = Session {
                    shared: shared.clone(),
                    config: config.clone(),
                    #[cfg(any(test, feature = "test-sink-tls"))]
                    acceptor: acceptor.clone(),
                };
                let handle = tokio::spawn(async move {
                    let _ = session.run(stream).await;
                });
                let mut sessions = shared.sessions.lock().expect("sink lock");
                sessions.retain(|s| !s.is_finished());
                sessions.push(handle.abort_handle());
            }
        });
        *self.listener.lock().expect("sink lock") = Some(task);
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL to give Latchkey: the scheme of the sink's TLS mode, and its credentials.
    pub fn url(&self) -> String {
        let scheme = match self.config.tls {
            SinkTls::None => "smtp+plain",
            #[cfg(any(test, feature = "test-sink-tls"))]
            SinkTls::StartTls => "smtp",
            #[cfg(any(test, feature = "test-sink-tls"))]
            SinkTls::Implicit => "smtps",
        };
        let credentials = match &self.config.auth {
            Some(a) => format!("{}:{}@", encode_userinfo(&a.user), encode_userinfo(&a.password)),
            None => String::new(),
        };
        format!("{scheme}://{credentials}{}", self.addr)
    }

    /// The certificate of the CA that signed the sink's TLS certificate (for `127.0.0.1` and
    /// `localhost`), to trust in the client under test.
    #[cfg(any(test, feature = "test-sink-tls"))]
    pub fn ca_pem(&self) -> Option<&str> {
        self.tls.as_ref().map(|t| t.ca_pem.as_str())
    }

    pub fn set_mode(&self, mode: SinkMode) {
        *self.shared.mode.lock().expect("sink lock") = Some(mode);
    }

    /// From now on, `RCPT TO` this address is refused for good (550 5.1.1), as for a mailbox
    /// that does not exist; `false`: accepted again.
    pub fn set_unknown(&self, address: &str, unknown: bool) {
        let mut addresses = self.shared.unknown.lock().expect("sink lock");
        addresses.retain(|a| a != address);
        if unknown {
            addresses.push(address.to_owned());
        }
    }

    pub fn mails(&self) -> Vec<ReceivedMail> {
        self.shared.mails.lock().expect("sink lock").clone()
    }

    /// Connections accepted since the start.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Refused `AUTH` attempts since the start.
    pub fn auth_failures(&self) -> usize {
        self.shared.auth_failures.load(Ordering::SeqCst)
    }

    /// Closes every open connection, as a server does with idle ones; the sink keeps listening.
    pub fn close_connections(&self) {
        for session in self.shared.sessions.lock().expect("sink lock").drain(..) {
            session.abort();
        }
    }

    /// The server goes down: connections are refused until [`Self::resume`]. The port stays
    /// bound meanwhile (both sockets may share it: the old listener closes a moment later).
    pub fn pause(&self) {
        self.stop_listening();
        self.close_connections();
        let held = port_socket().and_then(|socket| socket.bind(self.addr).map(|()| socket));
        match held {
            Ok(socket) => *self.held.lock().expect("sink lock") = Some(socket),
            Err(e) => eprintln!("sink: could not hold port {} while paused: {e}", self.addr),
        }
    }

    /// Back up, on the same port.
    pub fn resume(&self) -> std::io::Result<()> {
        let socket = match self.held.lock().expect("sink lock").take() {
            Some(socket) => socket,
            None => {
                let socket = port_socket()?;
                socket.bind(self.addr)?;
                socket
            }
        };
        self.listen(socket.listen(128)?);
        Ok(())
    }

    fn stop_listening(&self) {
        if let Some(task) = self.listener.lock().expect("sink lock").take() {
            task.abort();
        }
    }

    /// Waits until at least `count` messages arrived, or `timeout` passed; returns them all.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<ReceivedMail> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.arrived.notified();
            let mails = self.mails();
            if mails.len() >= count {
                return mails;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.mails();
            }
        }
    }
}

fn encode_userinfo(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

struct Session {
    shared: Arc<Shared>,
    config: Arc<SinkConfig>,
    #[cfg(any(test, feature = "test-sink-tls"))]
    acceptor: Option<tokio_rustls::TlsAcceptor>,
}

/// What a plain conversation ends with.
enum Next<S> {
    Done,
    /// The client asked for STARTTLS and was told to go ahead: the stream, to wrap.
    StartTls(S),
}

impl Session {
    async fn run(self, stream: TcpStream) -> std::io::Result<()> {
        #[cfg(any(test, feature = "test-sink-tls"))]
        if let Some(acceptor) = self.acceptor.clone() {
            if self.config.tls == SinkTls::Implicit {
                let stream = acceptor.accept(stream).await?;
                self.conversation(stream, true, true).await?;
                return Ok(());
            }
            if let Next::StartTls(stream) = self.conversation(stream, true, false).await? {
                let stream = acceptor.accept(stream).await?;
                self.conversation(stream, false, true).await?;
            }
            return Ok(());
        }
        self.conversation(stream, true, false).await?;
        Ok(())
    }

    /// One SMTP conversation over `stream`; `secure` once TLS is on.
    async fn conversation<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: S,
        greet: bool,
        secure: bool,
    ) -> std::io::Result<Next<S>> {
        let mut io = BufReader::new(stream);
        if greet {
            io.write_all(b"220 latchkey-sink ESMTP\r\n").await?;
        }
        let starttls_offered = !secure && self.starttls();
        // Like real servers, offer AUTH only over TLS when TLS is on offer.
        let auth_offered = self.config.auth.as_ref().filter(|_| secure || !starttls_offered);
        let mut user: Option<String> = None;
        let mut mail_from = String::new();
        let mut rcpt_to = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            if io.read_line(&mut line).await? == 0 {
                return Ok(Next::Done);
            }
            let command = line.trim_end().to_owned();
            let verb = command.split([' ', ':']).next().unwrap_or_default().to_ascii_uppercase();
            let reply: String = match verb.as_str() {
                "EHLO" => {
                    let mut lines = vec![
                        "latchkey-sink".to_owned(),
                        "PIPELINING".into(),
                        "8BITMIME".into(),
                        "SMTPUTF8".into(),
                    ];
                    if starttls_offered {
                        lines.push("STARTTLS".into());
                    }
                    if let Some(auth) = auth_offered {
                        lines.push(format!("AUTH {}", auth.mechanisms.join(" ")));
                    }
                    let last = lines.len() - 1;
                    lines
                        .iter()
                        .enumerate()
                        .map(|(i, l)| format!("250{}{l}\r\n", if i == last { ' ' } else { '-' }))
                        .collect()
                }
                "HELO" | "NOOP" => "250 OK\r\n".into(),
                "STARTTLS" if starttls_offered => {
                    io.write_all(b"220 2.0.0 Ready to start TLS\r\n").await?;
                    io.flush().await?;
                    return Ok(Next::StartTls(io.into_inner()));
                }
                "AUTH" => match auth_offered {
                    None => "503 5.5.1 AUTH not available\r\n".into(),
                    Some(auth) => match self.authenticate(&mut io, &command, auth).await? {
                        true => {
                            user = Some(auth.user.clone());
                            "235 2.7.0 Authentication successful\r\n".into()
                        }
                        false => {
                            self.shared.auth_failures.fetch_add(1, Ordering::SeqCst);
                            "535 5.7.8 Authentication credentials invalid\r\n".into()
                        }
                    },
                },
                "RSET" => {
                    mail_from.clear();
                    rcpt_to.clear();
                    "250 OK\r\n".into()
                }
                "MAIL" if self.config.auth.is_some() && user.is_none() => {
                    "530 5.7.0 Authentication required\r\n".into()
                }
                "MAIL" => {
                    mail_from = angle(&command);
                    rcpt_to.clear();
                    "250 OK\r\n".into()
                }
                "RCPT" => {
                    let to = angle(&command);
                    if self.shared.unknown.lock().expect("sink lock").contains(&to) {
                        "550 5.1.1 No such mailbox here\r\n".into()
                    } else {
                        rcpt_to.push(to);
                        "250 OK\r\n".into()
                    }
                }
                "DATA" if rcpt_to.is_empty() => "554 5.5.1 No valid recipients\r\n".into(),
                "DATA" => {
                    if !self.config.delay_before_data.is_zero() {
                        tokio::time::sleep(self.config.delay_before_data).await;
                    }
                    io.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
                    let data = read_data(&mut io).await?;
                    let mode = self.shared.mode.lock().expect("sink lock").unwrap_or(SinkMode::Accept);
                    match mode {
                        SinkMode::Accept => {
                            let mail = ReceivedMail {
                                mail_from: mail_from.clone(),
                                rcpt_to: rcpt_to.clone(),
                                data,
                                tls: secure,
                                user: user.clone(),
                                received_at: std::time::Instant::now(),
                            };
                            let n = {
                                let mut mails = self.shared.mails.lock().expect("sink lock");
                                mails.push(mail);
                                mails.len()
                            };
                            self.shared.arrived.notify_waiters();
                            format!("250 2.0.0 OK: queued as {n}\r\n")
                        }
                        SinkMode::RefuseTemporarily => "451 4.3.0 try again later\r\n".into(),
                        SinkMode::RefusePermanently => "550 5.1.1 mailbox unavailable\r\n".into(),
                        SinkMode::Drop => return Ok(Next::Done),
                        SinkMode::Stall => std::future::pending::<String>().await,
                    }
                }
                "QUIT" => {
                    io.write_all(b"221 Bye\r\n").await?;
                    return Ok(Next::Done);
                }
                _ => "502 command not implemented\r\n".into(),
            };
            io.write_all(reply.as_bytes()).await?;
        }
    }

    fn starttls(&self) -> bool {
        #[cfg(any(test, feature = "test-sink-tls"))]
        return self.config.tls == SinkTls::StartTls;
        #[cfg(not(any(test, feature = "test-sink-tls")))]
        false
    }

    /// Runs an `AUTH` exchange (PLAIN or LOGIN, with or without an initial response); true
    /// when the credentials are the configured ones.
    async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: &mut BufReader<S>,
        command: &str,
        auth: &SinkAuth,
    ) -> std::io::Result<bool> {
        let mut words = command.split_whitespace().skip(1);
        let mechanism = words.next().unwrap_or_default().to_ascii_uppercase();
        let initial = words.next().map(str::to_owned);
        if !auth.mechanisms.contains(&mechanism.as_str()) {
            return Ok(false);
        }
        let decode = |s: &str| BASE64.decode(s.trim()).ok().and_then(|b| String::from_utf8(b).ok());
        match mechanism.as_str() {
            "PLAIN" => {
                let response = match initial {
                    Some(r) => r,
                    None => challenge(io, "").await?,
                };
                let Some(plain) = decode(&response) else { return Ok(false) };
                let mut fields = plain.split('\0').skip(1);
                Ok(fields.next() == Some(auth.user.as_str()) && fields.next() == Some(auth.password.as_str()))
            }
            "LOGIN" => {
                let user = match initial {
                    Some(r) => r,
                    None => challenge(io, "VXNlcm5hbWU6").await?,
                };
                let password = challenge(io, "UGFzc3dvcmQ6").await?;
                Ok(decode(&user).as_deref() == Some(auth.user.as_str())
                    && decode(&password).as_deref() == Some(auth.password.as_str()))
            }
            _ => Ok(false),
        }
    }
}

/// Sends a `334` challenge and reads the client's answer.
async fn challenge<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut BufReader<S>,
    prompt: &str,
) -> std::io::Result<String> {
    io.write_all(format!("334 {prompt}\r\n").as_bytes()).await?;
    let mut line = String::new();
    io.read_line(&mut line).await?;
    Ok(line.trim_end().to_owned())
}

fn angle(command: &str) -> String {
    match (command.find('<'), command.rfind('>')) {
        (Some(a), Some(b)) if a < b => command[a + 1..b].to_owned(),
        _ => String::new(),
    }
}

/// A message's data up to its final dot, unstuffed; an error if the connection ends first.
async fn read_data<R: AsyncBufReadExt + Unpin>(lines: &mut R) -> std::io::Result<String> {
    let mut data = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            // The sender went away mid-message: a server keeps nothing of it.
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == ".\r\n" || line == ".\n" {
            return Ok(data);
        }
        data.push_str(line.strip_prefix('.').unwrap_or(&line));
    }
}

#[cfg(any(test, feature = "test-sink-tls"))]
mod tls {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    use std::sync::Arc;
    use tokio_rustls::TlsAcceptor;
    use tokio_rustls::rustls::ServerConfig;
    use tokio_rustls::rustls::crypto::aws_lc_rs;
    use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    /// A private CA made for one sink, and the server certificate it signed.
    pub(super) struct SinkCertificates {
        pub(super) ca_pem: String,
        pub(super) acceptor: TlsAcceptor,
    }

    impl SinkCertificates {
        pub(super) fn generate() -> Self {
            let ca_key = KeyPair::generate().expect("CA key");
            let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
            ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            ca.distinguished_name.push(DnType::CommonName, "Latchkey test sink CA");
            ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
            let issuer = Issuer::new(ca, ca_key);

            let key = KeyPair::generate().expect("server key");
            let mut server =
                CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("names");
            server.distinguished_name.push(DnType::CommonName, "localhost");
            let cert = server.signed_by(&key, &issuer).expect("server certificate");

            let provider = Arc::new(aws_lc_rs::default_provider());
            let config = ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_no_client_auth()
                .with_single_cert(
                    vec![cert.der().clone()],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
                )
                .expect("TLS configuration");
            Self { ca_pem: ca_cert.pem(), acceptor: TlsAcceptor::from(Arc::new(config)) }
        }
    }
}

impl ReceivedMail {
    /// A top-level header's value (unfolded), by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<String> {
        header_in(head(&self.data), name)
    }

    /// The decoded body of the first part with this media type (`text/plain`, `text/html`).
    pub fn part(&self, media_type: &str) -> Option<String> {
        let content_type = self.header("Content-Type").unwrap_or_default();
        let Some(boundary) = boundary(&content_type) else {
            return content_type.starts_with(media_type).then(|| decode_part(&self.data));
        };
        let delimiter = format!("--{boundary}");
        self.data
            .split(delimiter.as_str())
            .skip(1)
            .map(|p| p.trim_start_matches("\r\n"))
            .find(|p| {
                header_in(head(p), "Content-Type")
                    .is_some_and(|ct| ct.to_ascii_lowercase().starts_with(media_type))
            })
            .map(decode_part)
    }

    /// A header's value with its RFC 2047 encoded words decoded.
    pub fn decoded_header(&self, name: &str) -> Option<String> {
        self.header(name).map(|s| decode_words(&s))
    }

    /// The `Subject`, decoded.
    pub fn subject(&self) -> Option<String> {
        self.decoded_header("Subject")
    }

    pub fn text(&self) -> String {
        self.part("text/plain").unwrap_or_default()
    }

    pub fn html(&self) -> String {
        self.part("text/html").unwrap_or_default()
    }
}

fn head(entity: &str) -> &str {
    entity.split("\r\n\r\n").next().unwrap_or_default()
}

fn header_in(head: &str, name: &str) -> Option<String> {
    let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

fn boundary(content_type: &str) -> Option<String> {
    let start = content_type.find("boundary=")? + "boundary=".len();
    let rest = &content_type[start..];
    let value = rest.split(';').next()?.trim().trim_matches('"');
    Some(value.to_owned())
}

fn decode_part(entity: &str) -> String {
    let (head, body) = entity.split_once("\r\n\r\n").unwrap_or(("", entity));
    let body = body.trim_end_matches("\r\n").trim_end_matches("\r\n--");
    match header_in(head, "Content-Transfer-Encoding").map(|e| e.to_ascii_lowercase()).as_deref() {
        Some("base64") => {
            let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            let bytes = BASE64.decode(compact).unwrap_or_default();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        Some("quoted-printable") => quoted_printable(body),
        _ => body.to_owned(),
    }
}

fn quoted_printable(body: &str) -> String {
    String::from_utf8_lossy(&quoted_printable_bytes(&body.replace("=\r\n", ""))).into_owned()
}

fn quoted_printable_bytes(joined: &str) -> Vec<u8> {
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'=').then(|| joined.get(i + 1..i + 3)).flatten();
        if let Some(v) = escaped.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Decodes RFC 2047 encoded words (`=?utf-8?b?…?=`, `=?utf-8?q?…?=`); the white space between
/// two of them is not part of the text.
fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut first = true;
    for word in value.split(' ').filter(|w| !w.is_empty()) {
        if let Some(bytes) = decode_word(word) {
            if pending.is_empty() && !first {
                out.push(' ');
            }
            pending.extend(bytes);
        } else {
            out.push_str(&String::from_utf8_lossy(&std::mem::take(&mut pending)));
            if !first {
                out.push(' ');
            }
            out.push_str(word);
        }
        first = false;
    }
    out.push_str(&String::from_utf8_lossy(&pending));
    out
}

fn decode_word(word: &str) -> Option<Vec<u8>> {
    let inner = word.strip_prefix("=?")?.strip_suffix("?=")?;
    let mut parts = inner.splitn(3, '?');
    let (_charset, encoding, text) = (parts.next()?, parts.next()?, parts.next()?);
    match encoding {
        "B" | "b" => BASE64.decode(text).ok(),
        "Q" | "q" => Some(quoted_printable_bytes(&text.replace('_', " "))),
        _ => None,
    }
}
