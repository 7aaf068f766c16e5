//! Secrets: the master key and what is derived from it, random tokens and one-time codes.
//!
//! Tokens and codes are never stored; only their keyed hashes are (HMAC-SHA-256 under a key
//! derived from the master secret), so a copy of the database lets nobody sign in. Everything
//! else that must be stored secret (signing keys, queued e-mails that carry a live link) is
//! sealed with AES-256-GCM under another derived key.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::{constant_time, hmac, rand};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::fmt;

/// What a keyed hash is for; each purpose has its own derived key, so a hash of one kind can
/// never be replayed as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashPurpose {
    LinkToken,
    Otp,
    ClientSecret,
    AuthorizationCode,
    RefreshToken,
    AdminToken,
    /// The cookie that ties a hosted sign-in request to the browser that started it.
    BrowserCookie,
    /// The cookie of a browser session after a hosted sign-in.
    SessionCookie,
}

impl HashPurpose {
    fn label(self) -> &'static [u8] {
        match self {
            Self::LinkToken => b"latchkey/link-token",
            Self::Otp => b"latchkey/otp",
            Self::ClientSecret => b"latchkey/client-secret",
            Self::AuthorizationCode => b"latchkey/authorization-code",
            Self::RefreshToken => b"latchkey/refresh-token",
            Self::AdminToken => b"latchkey/admin-token",
            Self::BrowserCookie => b"latchkey/browser-cookie",
            Self::SessionCookie => b"latchkey/session-cookie",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the master secret must be at least 32 characters")]
    MasterTooShort,
    #[error("sealed data could not be opened (wrong master secret or corrupted data)")]
    Unseal,
}

/// The server's master secret and the keys derived from it.
#[derive(Clone)]
pub struct MasterKey {
    hash_root: hmac::Key,
    seal: [u8; 32],
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    pub const MIN_LEN: usize = 32;

    /// Derives the keys from an operator-supplied secret (any text of at least 32 characters).
    pub fn from_secret(secret: &str) -> Result<Self, SecretError> {
        let secret = secret.trim();
        if secret.len() < Self::MIN_LEN {
            return Err(SecretError::MasterTooShort);
        }
        let root = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        let derive = |label: &[u8]| -> [u8; 32] {
            let tag = hmac::sign(&root, label);
            tag.as_ref().try_into().expect("SHA-256 output is 32 bytes")
        };
        Ok(Self {
            hash_root: hmac::Key::new(hmac::HMAC_SHA256, &derive(b"latchkey/hash")),
            seal: derive(b"latchkey/seal"),
        })
    }

    /// A new random master secret, as text to persist.
    pub fn generate_secret() -> String {
        OpaqueToken::generate().expose().to_owned()
    }

    pub fn hash(&self, purpose: HashPurpose, value: &str) -> Vec<u8> {
        let mut ctx = hmac::Context::with_key(&self.hash_root);
        ctx.update(purpose.label());
        ctx.update(&[0]);
        ctx.update(value.as_bytes());
        ctx.sign().as_ref().to_vec()
    }

    /// Constant-time comparison of a presented value against a stored hash.
    pub fn verify(&self, purpose: HashPurpose, value: &str, stored: &[u8]) -> bool {
        constant_time::verify_slices_are_equal(&self.hash(purpose, value), stored).is_ok()
    }

    /// Encrypts `plain`; `context` binds the ciphertext to where it is stored.
    pub fn seal(&self, context: &str, plain: &[u8]) -> Vec<u8> {
        let key = self.seal_key();
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce).expect("OS random generator");
        let mut out = plain.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(context.as_bytes()),
            &mut out,
        )
        .expect("AES-GCM seal");
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&out);
        sealed
    }

    pub fn unseal(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, SecretError> {
        if sealed.len() < NONCE_LEN {
            return Err(SecretError::Unseal);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SecretError::Unseal)?;
        let mut buf = body.to_vec();
        let plain = self
            .seal_key()
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut buf)
            .map_err(|_| SecretError::Unseal)?;
        Ok(plain.to_vec())
    }

    fn seal_key(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.seal).expect("32-byte AES key"))
    }
}

/// 256 random bits, base64url: link tokens, client secrets, authorization codes, refresh tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct OpaqueToken(String);

impl OpaqueToken {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes).expect("OS random generator");
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Wraps a token presented by a client; it is only ever hashed and compared.
    pub fn presented(value: &str) -> Self {
        Self(value.to_owned())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for OpaqueToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OpaqueToken(<redacted>)")
    }
}

/// A uniform 6-digit one-time code.
#[derive(Clone, PartialEq, Eq)]
pub struct Otp(String);

impl Otp {
    pub fn generate() -> Self {
        // Rejection sampling keeps the distribution uniform over 000000..=999999.
        const LIMIT: u32 = u32::MAX - (u32::MAX % 1_000_000);
        loop {
            let mut b = [0u8; 4];
            rand::fill(&mut b).expect("OS random generator");
            let n = u32::from_le_bytes(b);
            if n < LIMIT {
                return Self(format!("{:06}", n % 1_000_000));
            }
        }
    }

    /// Parses a code typed by a person: six digits, spaces and dashes ignored.
    pub fn parse(input: &str) -> Option<Self> {
        let digits: String = input.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        (digits.len() == 6 && digits.bytes().all(|b| b.is_ascii_digit())).then_some(Self(digits))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Otp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Otp(<redacted>)")
    }
}

/// A uniform number in `0..n` from the OS generator (`n` > 0).
pub fn random_below(n: u32) -> u32 {
    let limit = u32::MAX - (u32::MAX % n);
    loop {
        let mut b = [0u8; 4];
        rand::fill(&mut b).expect("OS random generator");
        let v = u32::from_le_bytes(b);
        if v < limit {
            return v % n;
        }
    }
}

/// A uniform number in [0, 1] from the OS generator; for jitter, not for secrets.
pub fn random_fraction() -> f64 {
    let mut b = [0u8; 4];
    rand::fill(&mut b).expect("OS random generator");
    f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> MasterKey {
        MasterKey::from_secret("0123456789abcdef0123456789abcdef").unwrap()
    }

    #[test]
    fn hashes_are_keyed_and_purpose_bound() {
        let k = key();
        let other = MasterKey::from_secret("another secret of more than 32 chars!").unwrap();
        let h = k.hash(HashPurpose::LinkToken, "tok");
        assert!(k.verify(HashPurpose::LinkToken, "tok", &h));
        assert!(!k.verify(HashPurpose::Otp, "tok", &h));
        assert!(!other.verify(HashPurpose::LinkToken, "tok", &h));
        assert!(!k.verify(HashPurpose::LinkToken, "tok2", &h));
    }

    #[test]
    fn sealing_round_trips_and_binds_context() {
        let k = key();
        let sealed = k.seal("row-1", b"hello");
        assert_eq!(k.unseal("row-1", &sealed).unwrap(), b"hello");
        assert!(k.unseal("row-2", &sealed).is_err());
        assert!(k.unseal("row-1", &sealed[..5]).is_err());
    }

    #[test]
    fn short_master_secret_is_refused() {
        assert!(MasterKey::from_secret("short").is_err());
    }

    #[test]
    fn tokens_have_256_bits_and_codes_six_digits() {
        let t = OpaqueToken::generate();
        assert_eq!(t.expose().len(), 43);
        assert_ne!(t, OpaqueToken::generate());
        let otp = Otp::generate();
        assert_eq!(otp.expose().len(), 6);
        assert_eq!(Otp::parse("123 456").unwrap().expose(), "123456");
        assert!(Otp::parse("12345").is_none());
        assert!(Otp::parse("12345a").is_none());
    }
}
