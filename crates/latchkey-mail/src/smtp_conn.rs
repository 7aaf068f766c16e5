//! One SMTP client connection, spoken here rather than through lettre's transport so that a
//! message costs two round trips instead of five: the envelope and `DATA` go in one write when
//! the server offers PIPELINING (RFC 2920), then the body and its end in another; and a pooled
//! connection is not checked with a `NOOP` before each use (a connection the server closed
//! while idle fails before the body is written, and the message is sent on a new one).
//! lettre's network stream still does TCP and TLS (lettre marks it deprecated as "not meant to
//! be public", yet it is the one piece of lettre that connects and upgrades to TLS with the same
//! `TlsParameters` the rest of the crate builds; pinned by the lockfile, and covered by the TLS
//! cases of `smtp_tests.rs`).
#![allow(deprecated)]

use futures_util::io::{AsyncReadExt, AsyncWriteExt};
use lettre::transport::smtp::client::{AsyncNetworkStream, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use std::time::Duration;

/// Where `RCPT TO` comes among the envelope's commands.
const RCPT: usize = 1;

/// A server's reply: its code and its text lines joined.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub code: u16,
    pub text: String,
    /// The answer to `RCPT TO`: a refusal of it is about the address itself.
    pub to_recipient: bool,
}

impl Reply {
    fn positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    pub fn describe(&self) -> String {
        format!("{} {}", self.code, self.text).trim_end().to_owned()
    }
}

#[derive(Debug)]
pub(crate) enum Failure {
    /// The connection broke, or the server spoke no SMTP. `before_body`: the message's body
    /// was not written yet, so the server cannot have taken it.
    Network { message: String, before_body: bool },
    /// The server answered with a refusal (4xx or 5xx).
    Refused(Reply),
    /// Nothing was sent: this server cannot take this message as we would send it.
    Unsendable(String),
}

impl Failure {
    pub fn network(message: impl std::fmt::Display, before_body: bool) -> Self {
        Self::Network { message: message.to_string(), before_body }
    }
}

/// How to reach and greet the server.
pub(crate) struct Dial<'a> {
    pub host: &'a str,
    pub port: u16,
    pub timeout: Duration,
    /// TLS from the first byte (`smtps://`).
    pub implicit_tls: Option<TlsParameters>,
    /// STARTTLS parameters, and whether the server must offer it.
    pub starttls: Option<(TlsParameters, bool)>,
    pub credentials: Option<(&'a str, &'a str)>,
}

pub(crate) struct Connection {
    stream: AsyncNetworkStream,
    /// Bytes read and not yet consumed.
    pending: Vec<u8>,
    pipelining: bool,
    eight_bit_mime: bool,
    smtputf8: bool,
}

impl Connection {
    pub async fn open(dial: Dial<'_>) -> Result<Self, Failure> {
        let stream = AsyncNetworkStream::connect_tokio1(
            (dial.host, dial.port),
            Some(dial.timeout),
            dial.implicit_tls,
            None,
        )
        .await
        .map_err(|e| Failure::network(e, true))?;
        let mut conn =
            Self { stream, pending: Vec::new(), pipelining: false, eight_bit_mime: false, smtputf8: false };
        conn.expect_positive().await?;
        let mut offered = conn.ehlo().await?;
        if let Some((tls, required)) = dial.starttls {
            if offered.iter().any(|l| l.eq_ignore_ascii_case("STARTTLS")) {
                conn.command("STARTTLS\r\n").await?;
                conn.stream.upgrade_tls(tls).await.map_err(|e| Failure::network(e, true))?;
                offered = conn.ehlo().await?;
            } else if required {
                return Err(Failure::network(
                    "the server does not offer STARTTLS, and credentials are never sent in clear",
                    true,
                ));
            }
        }
        if let Some((user, password)) = dial.credentials {
            conn.authenticate(&offered, user, password).await?;
        }
        Ok(conn)
    }

    /// Sends one message; the reply is the server's acceptance of its body. `MAIL FROM`,
    /// `RCPT TO` and `DATA` go in that order (in one write when the server pipelines).
    pub async fn send(&mut self, from: &str, to: &str, data: &[u8]) -> Result<Reply, Failure> {
        let mut params = String::new();
        if !(from.is_ascii() && to.is_ascii()) {
            if !self.smtputf8 {
                return Err(Failure::Unsendable(
                    "the address is not ASCII and the server does not offer SMTPUTF8".into(),
                ));
            }
            params.push_str(" SMTPUTF8");
        }
        if !data.is_ascii() {
            if !self.eight_bit_mime {
                return Err(Failure::Unsendable(
                    "the message is not ASCII and the server does not offer 8BITMIME".into(),
                ));
            }
            params.push_str(" BODY=8BITMIME");
        }
        let commands =
            [format!("MAIL FROM:<{from}>{params}\r\n"), format!("RCPT TO:<{to}>\r\n"), "DATA\r\n".into()];
        if self.pipelining {
            self.write(commands.concat().as_bytes(), true).await?;
            let mut refusal = None;
            for i in 0..commands.len() {
                let reply = self.reply(true).await?;
                if !reply.positive() && refusal.is_none() {
                    refusal = Some(Reply { to_recipient: i == RCPT, ..reply });
                }
            }
            if let Some(refusal) = refusal {
                return Err(self.reset(refusal).await);
            }
        } else {
            for (i, command) in commands.iter().enumerate() {
                self.write(command.as_bytes(), true).await?;
                let reply = self.reply(true).await?;
                if !reply.positive() {
                    return Err(self.reset(Reply { to_recipient: i == RCPT, ..reply }).await);
                }
            }
        }
        self.write(&stuffed(data), false).await?;
        let reply = self.reply(false).await?;
        if reply.positive() { Ok(reply) } else { Err(Failure::Refused(reply)) }
    }

    /// After a refused command the conversation starts over for the next message. The refusal
    /// is what the caller needs: a connection that could not reset fails its next use before
    /// the body, and that message goes on a new connection.
    async fn reset(&mut self, refusal: Reply) -> Failure {
        let _ = self.command("RSET\r\n").await;
        Failure::Refused(refusal)
    }

    pub async fn quit(mut self) {
        let _ = self.write(b"QUIT\r\n", true).await;
    }

    async fn ehlo(&mut self) -> Result<Vec<String>, Failure> {
        let reply = self.command(&format!("EHLO {}\r\n", ClientId::default())).await?;
        let offered: Vec<String> = reply.text.split('\n').skip(1).map(|l| l.trim().to_owned()).collect();
        let has = |name: &str| {
            offered.iter().any(|l| l.split(' ').next().is_some_and(|w| w.eq_ignore_ascii_case(name)))
        };
        self.pipelining = has("PIPELINING");
        self.eight_bit_mime = has("8BITMIME");
        self.smtputf8 = has("SMTPUTF8");
        Ok(offered)
    }

    async fn authenticate(&mut self, offered: &[String], user: &str, password: &str) -> Result<(), Failure> {
        use base64::Engine;
        let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
        let mechanisms: Vec<String> = offered
            .iter()
            .filter_map(|l| {
                let upper = l.to_ascii_uppercase();
                upper.strip_prefix("AUTH ").or_else(|| upper.strip_prefix("AUTH=")).map(str::to_owned)
            })
            .flat_map(|m| m.split(' ').map(str::to_owned).collect::<Vec<_>>())
            .collect();
        if mechanisms.iter().any(|m| m == "PLAIN") || mechanisms.is_empty() {
            let token = b64(format!("\0{user}\0{password}").as_bytes());
            self.command(&format!("AUTH PLAIN {token}\r\n")).await?;
        } else if mechanisms.iter().any(|m| m == "LOGIN") {
            self.command("AUTH LOGIN\r\n").await?;
            self.command(&format!("{}\r\n", b64(user.as_bytes()))).await?;
            self.command(&format!("{}\r\n", b64(password.as_bytes()))).await?;
        } else {
            return Err(Failure::Unsendable(format!(
                "the server offers no authentication we speak (PLAIN, LOGIN): {}",
                mechanisms.join(" ")
            )));
        }
        Ok(())
    }

    /// A command whose refusal ends the conversation's set-up.
    async fn command(&mut self, line: &str) -> Result<Reply, Failure> {
        self.write(line.as_bytes(), true).await?;
        self.expect_positive().await
    }

    async fn expect_positive(&mut self) -> Result<Reply, Failure> {
        let reply = self.reply(true).await?;
        if reply.positive() { Ok(reply) } else { Err(Failure::Refused(reply)) }
    }

    async fn write(&mut self, bytes: &[u8], before_body: bool) -> Result<(), Failure> {
        self.stream.write_all(bytes).await.map_err(|e| Failure::network(e, before_body))?;
        self.stream.flush().await.map_err(|e| Failure::network(e, before_body))
    }

    /// Reads one reply, of one line or several (`250-…` lines, then `250 …`).
    async fn reply(&mut self, before_body: bool) -> Result<Reply, Failure> {
        let mut lines: Vec<String> = Vec::new();
        loop {
            let line = self.line(before_body).await?;
            let code = line.get(..3).and_then(|c| c.parse::<u16>().ok()).filter(|c| (200..600).contains(c));
            let Some(code) = code else {
                return Err(Failure::network(
                    format!("not an SMTP reply: {:?}", truncate(&line)),
                    before_body,
                ));
            };
            let more = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line.get(4..).unwrap_or_default().to_owned());
            if !more {
                return Ok(Reply { code, text: lines.join("\n"), to_recipient: false });
            }
            if lines.len() > 100 {
                return Err(Failure::network("the server's reply is too long", before_body));
            }
        }
    }

    async fn line(&mut self, before_body: bool) -> Result<String, Failure> {
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let raw: Vec<u8> = self.pending.drain(..=end).collect();
                let text = String::from_utf8_lossy(&raw);
                return Ok(text.trim_end_matches(['\r', '\n']).to_owned());
            }
            if self.pending.len() > 64 * 1024 {
                return Err(Failure::network("the server's reply line is too long", before_body));
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await.map_err(|e| Failure::network(e, before_body))?;
            if n == 0 {
                return Err(Failure::network("the server closed the connection", before_body));
            }
            self.pending.extend_from_slice(&chunk[..n]);
        }
    }
}

/// The message as `DATA` carries it: lines starting with a dot get another (RFC 5321
/// §4.5.2), bare line feeds become CRLF, and it ends with `CRLF.CRLF`.
fn stuffed(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 64);
    let mut at_line_start = true;
    let mut previous = 0u8;
    for &b in data {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        if b == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        at_line_start = b == b'\n';
        previous = b;
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

fn truncate(line: &str) -> &str {
    match line.char_indices().nth(80) {
        Some((at, _)) => &line[..at],
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_are_stuffed_and_the_end_is_marked_once() {
        assert_eq!(stuffed(b"a\r\n.b\r\n..\r\n"), b"a\r\n..b\r\n...\r\n.\r\n");
        assert_eq!(stuffed(b".x\nend"), b"..x\r\nend\r\n.\r\n");
        assert_eq!(stuffed(b""), b"\r\n.\r\n");
    }
}
