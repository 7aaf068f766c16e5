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
