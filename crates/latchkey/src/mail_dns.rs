//! The DNS records that let mailbox providers trust this server's mail: SPF (the relay may send
//! for the domain), DKIM (the public key of the signatures) and DMARC (what to do with mail that
//! fails both), for each sender domain: the default sender's and every application's own.

use latchkey_core::Application;
use latchkey_mail::{DkimSigner, sender_domain};
use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// `SPF`, `DKIM` or `DMARC`.
    pub purpose: &'static str,
    /// The owner name, without the final dot.
    pub name: String,
    /// The TXT value, whole (split into strings of at most 255 characters only when printed).
    pub value: String,
}

/// The sender domains: the configured default sender's, then each application's own, sorted.
pub fn sender_domains(mail_from: &str, apps: &[Application]) -> Vec<String> {
    let mut domains = BTreeSet::new();
    domains.extend(sender_domain(mail_from));
    for app in apps {
        if let Some(address) = &app.settings.branding.sender_email {
            domains.extend(sender_domain(address));
        }
    }
    domains.into_iter().collect()
}

/// What the SPF record must allow: the relay of `LATCHKEY_SMTP_URL` (`a:` a host name, `ip4:`
/// or `ip6:` an address); the domain's own MX hosts when no relay is configured.
fn spf(smtp_url: Option<&str>) -> String {
    // The URL's schemes are not "special" to the URL standard: its host is text, even an address.
    let host = smtp_url.and_then(|u| url::Url::parse(u).ok()).and_then(|u| u.host_str().map(str::to_owned));
    let host = host.map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned());
    let mechanism = match host.as_deref().map(|h| (h, h.parse::<std::net::IpAddr>())) {
        Some((_, Ok(std::net::IpAddr::V4(ip)))) => format!("ip4:{ip}"),
        Some((_, Ok(std::net::IpAddr::V6(ip)))) => format!("ip6:{ip}"),
        Some((name, Err(_))) => format!("a:{name}"),
        None => "mx".to_owned(),
    };
    format!("v=spf1 {mechanism} ~all")
}

pub fn records(domains: &[String], smtp_url: Option<&str>, dkim: &DkimSigner) -> Vec<Record> {
    let mut out = Vec::new();
    for domain in domains {
        out.push(Record { purpose: "SPF", name: domain.clone(), value: spf(smtp_url) });
        out.push(Record {
            purpose: "DKIM",
            name: format!("{}._domainkey.{domain}", dkim.selector()),
            value: dkim.dns_record(),
        });
        out.push(Record {
            purpose: "DMARC",
            name: format!("_dmarc.{domain}"),
            value: "v=DMARC1; p=none; adkim=r; aspf=r".to_owned(),
        });
    }
    out
}

/// A zone-file line: `name. IN TXT ( "…" "…" )`, the value in strings of at most 255 bytes.
pub fn zone_line(record: &Record) -> String {
    let strings: Vec<String> =
        record.value.as_bytes().chunks(255).map(|c| format!("\"{}\"", String::from_utf8_lossy(c))).collect();
    format!("{}. IN TXT ( {} )", record.name, strings.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spf_names_the_relay() {
        assert_eq!(spf(Some("smtp://u:p@smtp.example.net:587")), "v=spf1 a:smtp.example.net ~all");
        assert_eq!(spf(Some("smtp+plain://127.0.0.1:25")), "v=spf1 ip4:127.0.0.1 ~all");
        assert_eq!(spf(Some("smtps://[::1]:465")), "v=spf1 ip6:::1 ~all");
        assert_eq!(spf(None), "v=spf1 mx ~all");
    }

    #[test]
    fn long_values_are_split_into_strings() {
        let record =
            Record { purpose: "DKIM", name: "s._domainkey.a.example".into(), value: "x".repeat(300) };
        let line = zone_line(&record);
        assert!(line.starts_with("s._domainkey.a.example. IN TXT ( \""), "{line}");
        assert_eq!(line.matches('"').count(), 4);
    }
}

/// Why a TXT lookup gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("no DNS server is configured (no nameserver in /etc/resolv.conf)")]
    NoServer,
    #[error("the DNS server did not answer: {0}")]
    Unreachable(String),
    #[error("the DNS answer could not be read")]
    Malformed,
}

/// The first nameserver of `/etc/resolv.conf`, port 53.
pub fn system_dns_server() -> Option<std::net::SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .find_map(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| std::net::SocketAddr::new(ip, 53))
}

/// The TXT records of `name` (each one's strings joined), asked of `server` over UDP: one
/// question, recursion desired, one try within `timeout`. `Ok(vec![])` when the name has none.
pub fn lookup_txt(
    server: std::net::SocketAddr,
    name: &str,
    timeout: std::time::Duration,
) -> Result<Vec<String>, LookupError> {
    let id: u16 = rand_id();
    let mut query = Vec::with_capacity(64);
    query.extend_from_slice(&id.to_be_bytes());
    query.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        query.push(label.len().min(63) as u8);
        query.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    query.extend_from_slice(&[0, 0, 16, 0, 1]);
    let bind = if server.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let unreachable = |e: std::io::Error| LookupError::Unreachable(e.to_string());
    let socket = std::net::UdpSocket::bind(bind).map_err(unreachable)?;
    socket.set_read_timeout(Some(timeout)).map_err(unreachable)?;
    socket.connect(server).map_err(unreachable)?;
    socket.send(&query).map_err(unreachable)?;
    let mut answer = [0u8; 4096];
    let n = socket.recv(&mut answer).map_err(unreachable)?;
    parse_txt_answer(&answer[..n], id).ok_or(LookupError::Malformed)
}

fn rand_id() -> u16 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (nanos.subsec_nanos() ^ std::process::id()) as u16
}

fn parse_txt_answer(msg: &[u8], id: u16) -> Option<Vec<String>> {
    let u16_at = |at: usize| -> Option<u16> { Some(u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?])) };
    if u16_at(0)? != id {
        return None;
    }
    let rcode = msg.get(3)? & 0x0f;
    if rcode == 3 {
        return Some(Vec::new()); // NXDOMAIN: no such name, so no record.
    }
    if rcode != 0 {
        return None;
    }
    let (questions, answers) = (u16_at(4)?, u16_at(6)?);
    let skip_name = |mut at: usize| -> Option<usize> {
        loop {
            let len = *msg.get(at)?;
            if len & 0xc0 == 0xc0 {
                return Some(at + 2);
            }
            if len == 0 {
                return Some(at + 1);
            }
            at += 1 + len as usize;
        }
    };
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(at)? + 4;
    }
    let mut records = Vec::new();
    for _ in 0..answers {
        at = skip_name(at)?;
        let kind = u16_at(at)?;
        let length = u16_at(at + 8)? as usize;
        let data = msg.get(at + 10..at + 10 + length)?;
        at += 10 + length;
        if kind != 16 {
            continue;
        }
        let mut text = Vec::new();
        let mut i = 0;
        while i < data.len() {
            let n = data[i] as usize;
            text.extend_from_slice(data.get(i + 1..i + 1 + n)?);
            i += 1 + n;
        }
        records.push(String::from_utf8_lossy(&text).into_owned());
    }
    Some(records)
}

/// Whether `record` is published, judged from the TXT values found at its name: SPF and DMARC
/// by their version tag (a domain has one of each, perhaps with other terms than ours), DKIM
/// by its exact key.
pub fn is_published(record: &Record, found: &[String]) -> bool {
    let squash = |s: &str| s.split_whitespace().collect::<String>();
    match record.purpose {
        "SPF" => found.iter().any(|f| f.trim_start().to_ascii_lowercase().starts_with("v=spf1")),
        "DMARC" => found.iter().any(|f| f.trim_start().starts_with("v=DMARC1")),
        _ => found.iter().any(|f| squash(f) == squash(&record.value)),
    }
}
