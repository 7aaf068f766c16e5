//! A small SMTP server that accepts (or refuses, on demand) whatever it is sent and keeps it,
//! for tests and benchmarks that must read the mail Latchkey really sent over SMTP.

use base64::Engine as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// How the sink answers a message's end of data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkMode {
    Accept,
    /// 451: a temporary failure, the sender should retry.
    RefuseTemporarily,
    /// 550: a permanent refusal.
    RefusePermanently,
}

#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The message as transmitted, dot-unstuffed, CRLF line ends.
    pub data: String,
}

#[derive(Default)]
struct Shared {
    mails: Mutex<Vec<ReceivedMail>>,
    mode: Mutex<Option<SinkMode>>,
    arrived: Notify,
}

/// A running sink; it stops when dropped.
pub struct SmtpSink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmtpSink {
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let task_shared = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(session(stream, task_shared.clone()));
            }
        });
        Ok(Self { addr, shared, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL to give Latchkey: plain SMTP to this sink.
    pub fn url(&self) -> String {
        format!("smtp+plain://{}", self.addr)
    }

    pub fn set_mode(&self, mode: SinkMode) {
        *self.shared.mode.lock().expect("sink lock") = Some(mode);
    }

    pub fn mails(&self) -> Vec<ReceivedMail> {
        self.shared.mails.lock().expect("sink lock").clone()
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

async fn session(stream: TcpStream, shared: Arc<Shared>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 latchkey-sink ESMTP\r\n").await?;
    let mut mail_from = String::new();
    let mut rcpt_to = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let verb = command.split([' ', ':']).next().unwrap_or_default().to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-latchkey-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
            "HELO" | "NOOP" => b"250 OK\r\n",
            "RSET" => {
                mail_from.clear();
                rcpt_to.clear();
                b"250 OK\r\n"
            }
            "MAIL" => {
                mail_from = angle(&command);
                b"250 OK\r\n"
            }
            "RCPT" => {
                rcpt_to.push(angle(&command));
                b"250 OK\r\n"
            }
            "DATA" => {
                write.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
                let data = read_data(&mut lines).await?;
                let mode = shared.mode.lock().expect("sink lock").unwrap_or(SinkMode::Accept);
                match mode {
                    SinkMode::Accept => {
                        let mail =
                            ReceivedMail { mail_from: mail_from.clone(), rcpt_to: rcpt_to.clone(), data };
                        shared.mails.lock().expect("sink lock").push(mail);
                        shared.arrived.notify_waiters();
                        b"250 OK: queued\r\n"
                    }
                    SinkMode::RefuseTemporarily => b"451 4.3.0 try again later\r\n",
                    SinkMode::RefusePermanently => b"550 5.1.1 mailbox unavailable\r\n",
                }
            }
            "QUIT" => {
                write.write_all(b"221 Bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 command not implemented\r\n",
        };
        write.write_all(reply).await?;
    }
}

fn angle(command: &str) -> String {
    match (command.find('<'), command.rfind('>')) {
        (Some(a), Some(b)) if a < b => command[a + 1..b].to_owned(),
        _ => String::new(),
    }
}

async fn read_data<R: AsyncBufReadExt + Unpin>(lines: &mut R) -> std::io::Result<String> {
    let mut data = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(data);
        }
        if line == ".\r\n" || line == ".\n" {
            return Ok(data);
        }
        data.push_str(line.strip_prefix('.').unwrap_or(&line));
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
            let bytes = base64::engine::general_purpose::STANDARD.decode(compact).unwrap_or_default();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        Some("quoted-printable") => quoted_printable(body),
        _ => body.to_owned(),
    }
}

fn quoted_printable(body: &str) -> String {
    let joined = body.replace("=\r\n", "");
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
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Email, Mailer, SmtpMailer};

    #[tokio::test]
    async fn lettre_to_sink_round_trip_decodes_both_parts() {
        let sink = SmtpSink::start().await.unwrap();
        let mailer = SmtpMailer::from_url(&sink.url(), Duration::from_secs(5)).unwrap();
        let long_line = format!("Voilà: {} end", "x".repeat(120));
        let email = Email {
            from: "Latchkey <no-reply@localhost>".into(),
            to: "ada@example.com".into(),
            subject: "Hello".into(),
            text: format!("{long_line}\nhttp://127.0.0.1:8080/l/abc=def\n"),
            html: "<p>Hi &amp; bye</p>".into(),
            message_id: "msg_1@localhost".into(),
        };
        mailer.deliver(&email).await.unwrap();
        let mails = sink.wait_for(1, Duration::from_secs(5)).await;
        assert_eq!(mails.len(), 1);
        let m = &mails[0];
        assert_eq!(m.rcpt_to, vec!["ada@example.com".to_owned()]);
        assert_eq!(m.header("Message-ID").as_deref(), Some("<msg_1@localhost>"));
        assert!(m.header("Date").is_some());
        assert!(m.text().contains(&long_line), "{}", m.data);
        assert!(m.text().contains("http://127.0.0.1:8080/l/abc=def"));
        assert_eq!(m.html().trim(), "<p>Hi &amp; bye</p>");

        sink.set_mode(SinkMode::RefusePermanently);
        let err = mailer.deliver(&email).await.unwrap_err();
        assert!(err.permanent, "{err:?}");
        sink.set_mode(SinkMode::RefuseTemporarily);
        let err = mailer.deliver(&email).await.unwrap_err();
        assert!(!err.permanent, "{err:?}");
    }
}
