//! DKIM signatures (RFC 6376) on outgoing messages: RSA-SHA256, or Ed25519-SHA256 (RFC 8463),
//! relaxed/relaxed canonicalization, for the domain of each message's sender.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

/// The headers signed, when the message has them.
const SIGNED_HEADERS: &[&str] =
    &["from", "to", "subject", "date", "message-id", "mime-version", "content-type", "auto-submitted"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DkimAlgorithm {
    RsaSha256,
    Ed25519Sha256,
}

impl DkimAlgorithm {
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "rsa-sha256" | "rsa" => Some(Self::RsaSha256),
            "ed25519-sha256" | "ed25519" => Some(Self::Ed25519Sha256),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RsaSha256 => "rsa-sha256",
            Self::Ed25519Sha256 => "ed25519-sha256",
        }
    }

    fn key_type(self) -> &'static str {
        match self {
            Self::RsaSha256 => "rsa",
            Self::Ed25519Sha256 => "ed25519",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DkimKeyError {
    #[error("the DKIM key is not PEM (PKCS#8 `PRIVATE KEY`, or PKCS#1 `RSA PRIVATE KEY`)")]
    Pem,
    #[error("the DKIM key is neither an RSA key of at least 1024 bits nor an Ed25519 key")]
    Key,
    #[error("a DKIM key could not be generated")]
    Generate,
}

enum Key {
    Rsa(signature::RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A private key and the selector it is published under.
pub struct DkimSigner {
    selector: String,
    key: Key,
}

impl std::fmt::Debug for DkimSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DkimSigner")
            .field("selector", &self.selector)
            .field("algorithm", &self.algorithm())
            .finish()
    }
}

/// A key made by [`DkimSigner::generate`], as PKCS#8 DER (to be sealed and stored).
pub struct GeneratedKey(pub Vec<u8>);

impl DkimSigner {
    /// From a PEM file's text: PKCS#8 (RSA or Ed25519) or PKCS#1 (RSA).
    pub fn from_pem(selector: &str, pem: &str) -> Result<Self, DkimKeyError> {
        let (label, der) = pem_block(pem).ok_or(DkimKeyError::Pem)?;
        match label.as_str() {
            "PRIVATE KEY" => Self::from_pkcs8(selector, &der),
            "RSA PRIVATE KEY" => signature::RsaKeyPair::from_der(&der)
                .map_err(|_| DkimKeyError::Key)
                .and_then(|k| Self::rsa(selector, k)),
            _ => Err(DkimKeyError::Pem),
        }
    }

    pub fn from_pkcs8(selector: &str, der: &[u8]) -> Result<Self, DkimKeyError> {
        if let Ok(key) = signature::RsaKeyPair::from_pkcs8(der) {
            return Self::rsa(selector, key);
        }
        let key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|_| DkimKeyError::Key)?;
        Ok(Self { selector: selector.to_owned(), key: Key::Ed25519(key) })
    }

    fn rsa(selector: &str, key: signature::RsaKeyPair) -> Result<Self, DkimKeyError> {
        if key.public_modulus_len() * 8 < 1024 {
            return Err(DkimKeyError::Key);
        }
        Ok(Self { selector: selector.to_owned(), key: Key::Rsa(key) })
    }

    /// A new key: RSA of 2048 bits or Ed25519.
    pub fn generate(algorithm: DkimAlgorithm) -> Result<GeneratedKey, DkimKeyError> {
        let der = match algorithm {
            DkimAlgorithm::RsaSha256 => signature::RsaKeyPair::generate(KeySize::Rsa2048)
                .and_then(|k| k.as_der().map(|d| d.as_ref().to_vec()))
                .map_err(|_| DkimKeyError::Generate)?,
            DkimAlgorithm::Ed25519Sha256 => Ed25519KeyPair::generate()
                .and_then(|k| k.to_pkcs8())
                .map(|d| d.as_ref().to_vec())
                .map_err(|_| DkimKeyError::Generate)?,
        };
        Ok(GeneratedKey(der))
    }

    pub fn selector(&self) -> &str {
        &self.selector
    }

    pub fn algorithm(&self) -> DkimAlgorithm {
        match self.key {
            Key::Rsa(_) => DkimAlgorithm::RsaSha256,
            Key::Ed25519(_) => DkimAlgorithm::Ed25519Sha256,
        }
    }

    /// The TXT record to publish at `<selector>._domainkey.<domain>`.
    pub fn dns_record(&self) -> String {
        let public = match &self.key {
            // SubjectPublicKeyInfo, as RFC 6376 §3.6.1's examples and every verifier take it.
            Key::Rsa(k) => k.public_key().as_der().map(|d| d.as_ref().to_vec()).unwrap_or_default(),
            // The bare 32 bytes (RFC 8463 §4).
            Key::Ed25519(k) => k.public_key().as_ref().to_vec(),
        };
        format!("v=DKIM1; k={}; p={}", self.algorithm().key_type(), B64.encode(public))
    }

    /// `message` (headers, blank line, body; CRLF line ends) with a `DKIM-Signature` header
    /// first, signed for `domain` at `unix_time`.
    pub fn sign(&self, domain: &str, message: &[u8], unix_time: i64) -> Vec<u8> {
        let split = find(message, b"\r\n\r\n").map(|at| at + 2).unwrap_or(message.len());
        let (head, body) = message.split_at(split);
        let body = body.strip_prefix(b"\r\n".as_slice()).unwrap_or(body);
        let body_hash =
            B64.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &relaxed_body(body)));

        let fields = header_fields(head);
        let mut signed_names = Vec::new();
        let mut data = Vec::with_capacity(1024);
        for name in SIGNED_HEADERS {
            // The last occurrence of a field is the one a verifier takes first (RFC 6376 §5.4.2).
            if let Some(field) = fields.iter().rev().find(|f| field_name(f).eq_ignore_ascii_case(name)) {
                data.extend_from_slice(relaxed_header(field).as_bytes());
                data.extend_from_slice(b"\r\n");
                signed_names.push(*name);
            }
        }
        let unsigned = format!(
            "DKIM-Signature: v=1; a={}; c=relaxed/relaxed; d={domain}; s={}; t={unix_time};\r\n\th={};\r\n\tbh={body_hash};\r\n\tb=",
            self.algorithm().as_str(),
            self.selector,
            signed_names.join(":"),
        );
        data.extend_from_slice(relaxed_header(&unsigned).as_bytes());
        let signature = match &self.key {
            Key::Rsa(k) => {
                let mut out = vec![0u8; k.public_modulus_len()];
                let rng = aws_lc_rs::rand::SystemRandom::new();
                match k.sign(&signature::RSA_PKCS1_SHA256, &rng, &data, &mut out) {
                    Ok(()) => out,
                    Err(_) => Vec::new(),
                }
            }
            Key::Ed25519(k) => k
                .sign(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &data).as_ref())
                .as_ref()
                .to_vec(),
        };
        let mut out = Vec::with_capacity(message.len() + unsigned.len() + 400);
        out.extend_from_slice(unsigned.as_bytes());
        out.extend_from_slice(fold(&B64.encode(signature)).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(message);
        out
    }
}

/// The signature's base64, in lines of at most 76 characters (whitespace in `b=` is ignored).
fn fold(b64: &str) -> String {
    let mut out = String::with_capacity(b64.len() + b64.len() / 38);
    for (i, chunk) in b64.as_bytes().chunks(76).enumerate() {
        if i > 0 {
            out.push_str("\r\n\t ");
        }
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The header fields of a header block, each with its continuation lines.
fn header_fields(head: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(head);
    let mut fields: Vec<String> = Vec::new();
    for line in text.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = fields.last_mut() {
                last.push_str("\r\n");
                last.push_str(line);
            }
        } else if !line.is_empty() {
            fields.push(line.to_owned());
        }
    }
    fields
}

fn field_name(field: &str) -> &str {
    field.split(':').next().unwrap_or_default().trim_end()
}

/// RFC 6376 §3.4.2: the name in lower case, the value unfolded, runs of whitespace one space,
/// no whitespace at either end of the value or around the colon.
fn relaxed_header(field: &str) -> String {
    let (name, value) = field.split_once(':').unwrap_or((field, ""));
    let unfolded = value.replace("\r\n", "");
    let collapsed = unfolded.split([' ', '\t']).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ");
    format!("{}:{}", name.trim_end().to_ascii_lowercase(), collapsed)
}

/// RFC 6376 §3.4.4: runs of whitespace one space, none at line ends, no empty lines at the end,
/// and a non-empty body ending with CRLF.
fn relaxed_body(body: &[u8]) -> Vec<u8> {
    let text = body.strip_suffix(b"\r\n".as_slice()).unwrap_or(body);
    let mut lines: Vec<Vec<u8>> = Vec::new();
    for line in text.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r".as_slice()).unwrap_or(line);
        let mut out = Vec::with_capacity(line.len());
        let mut in_space = false;
        for &b in line {
            if b == b' ' || b == b'\t' {
                in_space = true;
            } else {
                if in_space {
                    out.push(b' ');
                }
                in_space = false;
                out.push(b);
            }
        }
        lines.push(out);
    }
    while lines.last().is_some_and(Vec::is_empty) {
        lines.pop();
    }
    let mut out = Vec::with_capacity(body.len());
    for line in lines {
        out.extend_from_slice(&line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The label and the decoded bytes of the first PEM block.
fn pem_block(pem: &str) -> Option<(String, Vec<u8>)> {
    let start = pem.find("-----BEGIN ")?;
    let rest = &pem[start + 11..];
    let label_end = rest.find("-----")?;
    let label = rest[..label_end].to_owned();
    let body_start = label_end + 5;
    let end_marker = format!("-----END {label}-----");
    let body_end = rest.find(&end_marker)?;
    let b64: String = rest[body_start..body_end].chars().filter(|c| !c.is_whitespace()).collect();
    Some((label, B64.decode(b64).ok()?))
}

/// The sender's domain: what follows the last `@` of the address in `Name <address>` or a
/// bare address.
pub fn sender_domain(from: &str) -> Option<String> {
    let address = match (from.rfind('<'), from.rfind('>')) {
        (Some(open), Some(close)) if open < close => &from[open + 1..close],
        _ => from,
    };
    let domain = address.rsplit_once('@')?.1.trim();
    (!domain.is_empty()).then(|| domain.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relaxed_canonicalization_follows_the_rfc_examples() {
        // RFC 6376 §3.4.5.
        assert_eq!(relaxed_header("A: X"), "a:X");
        assert_eq!(relaxed_header("B : Y\t\r\n\tZ  "), "b:Y Z");
        assert_eq!(relaxed_body(b" C \r\nD \t E\r\n\r\n\r\n"), b" C\r\nD E\r\n");
        assert_eq!(relaxed_body(b""), b"");
    }

    #[test]
    fn sender_domains() {
        assert_eq!(sender_domain("\"Acme, Inc.\" <no-reply@Acme.example>").as_deref(), Some("acme.example"));
        assert_eq!(sender_domain("x@y.example").as_deref(), Some("y.example"));
        assert_eq!(sender_domain("nobody"), None);
    }

    #[test]
    fn keys_from_pem_and_generated() {
        for algorithm in [DkimAlgorithm::RsaSha256, DkimAlgorithm::Ed25519Sha256] {
            let key = DkimSigner::generate(algorithm).unwrap();
            let pem =
                format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", B64.encode(&key.0));
            let signer = DkimSigner::from_pem("s1", &pem).unwrap();
            assert_eq!(signer.algorithm(), algorithm);
            let signed = signer.sign("acme.example", b"From: a@acme.example\r\nTo: b@c\r\n\r\nhi\r\n", 1);
            let text = String::from_utf8(signed).unwrap();
            assert!(text.starts_with("DKIM-Signature: v=1; a="), "{text}");
            assert!(text.contains("d=acme.example; s=s1;") && text.contains("h=from:to;"), "{text}");
            assert!(signer.dns_record().starts_with("v=DKIM1; k="));
        }
        assert!(matches!(DkimSigner::from_pem("s", "not a key"), Err(DkimKeyError::Pem)));
    }
}
