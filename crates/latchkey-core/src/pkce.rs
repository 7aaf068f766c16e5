//! PKCE (RFC 7636), S256 only: `plain` offers no protection and is refused.

use aws_lc_rs::{constant_time, digest};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPkce {
    #[error("code_challenge_method must be S256")]
    Method,
    #[error("code_challenge must be 43 base64url characters")]
    Challenge,
}

/// A verified-shape S256 code challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeChallenge(String);

impl CodeChallenge {
    pub fn parse(challenge: &str, method: Option<&str>) -> Result<Self, InvalidPkce> {
        if method.unwrap_or("S256") != "S256" {
            return Err(InvalidPkce::Method);
        }
        let ok = challenge.len() == 43
            && challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| Self(challenge.to_owned())).ok_or(InvalidPkce::Challenge)
    }

    pub fn from_trusted(value: String) -> Self {
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `verifier` (43–128 unreserved characters) hashes to this challenge.
    pub fn verify(&self, verifier: &str) -> bool {
        let shape = (43..=128).contains(&verifier.len())
            && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
        if !shape {
            return false;
        }
        let computed = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()));
        constant_time::verify_slices_are_equal(computed.as_bytes(), self.0.as_bytes()).is_ok()
    }

    /// The challenge for a verifier; what a client computes.
    pub fn for_verifier(verifier: &str) -> Self {
        Self(URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_vector() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let c = CodeChallenge::parse("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", Some("S256")).unwrap();
        assert!(c.verify(verifier));
        assert!(!c.verify("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXX"));
        assert_eq!(CodeChallenge::for_verifier(verifier), c);
        assert_eq!(CodeChallenge::parse("x", Some("plain")), Err(InvalidPkce::Method));
    }
}
