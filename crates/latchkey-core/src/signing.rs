//! Signing keys and compact JWS. Keys are parsed once and kept in memory: parsing a PKCS#8
//! document per signature would cost more than the signature itself.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
    RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair, UnparsedPublicKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SigningAlg {
    #[default]
    ES256,
    RS256,
    EdDSA,
}

impl SigningAlg {
    pub const ALL: [SigningAlg; 3] = [SigningAlg::ES256, SigningAlg::RS256, SigningAlg::EdDSA];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ES256 => "ES256",
            Self::RS256 => "RS256",
            Self::EdDSA => "EdDSA",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the stored signing key could not be parsed")]
pub struct InvalidKey;

enum Pair {
    Es256(EcdsaKeyPair),
    Rs256(RsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

/// A private signing key with its key id.
pub struct SigningKey {
    kid: String,
    alg: SigningAlg,
    pair: Pair,
    rng: SystemRandom,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).field("alg", &self.alg).finish()
    }
}

impl SigningKey {
    /// A fresh key and its PKCS#8 document, which the caller seals before storing.
    pub fn generate(kid: String, alg: SigningAlg) -> (Self, Vec<u8>) {
        let rng = SystemRandom::new();
        let pkcs8 = match alg {
            SigningAlg::ES256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .expect("P-256 key generation")
                .as_ref()
                .to_vec(),
            SigningAlg::RS256 => RsaKeyPair::generate(KeySize::Rsa2048)
                .and_then(|k| k.as_der())
                .expect("RSA key generation")
                .as_ref()
                .to_vec(),
            SigningAlg::EdDSA => {
                Ed25519KeyPair::generate_pkcs8(&rng).expect("Ed25519 key generation").as_ref().to_vec()
            }
        };
        let key = Self::from_pkcs8(kid, alg, &pkcs8).expect("a key just generated parses");
        (key, pkcs8)
    }

    pub fn from_pkcs8(kid: String, alg: SigningAlg, pkcs8: &[u8]) -> Result<Self, InvalidKey> {
        let pair = match alg {
            SigningAlg::ES256 => Pair::Es256(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8).map_err(|_| InvalidKey)?,
            ),
            SigningAlg::RS256 => Pair::Rs256(RsaKeyPair::from_pkcs8(pkcs8).map_err(|_| InvalidKey)?),
            SigningAlg::EdDSA => Pair::EdDsa(Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| InvalidKey)?),
        };
        Ok(Self { kid, alg, pair, rng: SystemRandom::new() })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn alg(&self) -> SigningAlg {
        self.alg
    }

    /// The public half as a JWK (RFC 7517), for the key set.
    pub fn public_jwk(&self) -> serde_json::Value {
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        match &self.pair {
            Pair::Es256(p) => {
                // Uncompressed SEC1 point: 0x04 || X || Y.
                let point = p.public_key().as_ref();
                serde_json::json!({
                    "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
                    "x": b64(&point[1..33]), "y": b64(&point[33..65]),
                })
            }
            Pair::Rs256(p) => {
                let components = PublicKeyComponents::<Vec<u8>>::from(p.public_key());
                serde_json::json!({
                    "kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
                    "n": b64(&components.n), "e": b64(&components.e),
                })
            }
            Pair::EdDsa(p) => serde_json::json!({
                "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": self.kid,
                "x": b64(p.public_key().as_ref()),
            }),
        }
    }

    /// Whether `signature` is this key's over `message`.
    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.pair {
            Pair::Es256(p) => UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, p.public_key().as_ref())
                .verify(message, signature),
            Pair::Rs256(p) => UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, p.public_key().as_ref())
                .verify(message, signature),
            Pair::EdDsa(p) => {
                UnparsedPublicKey::new(&ED25519, p.public_key().as_ref()).verify(message, signature)
            }
        }
        .is_ok()
    }

    /// A compact JWS over the JSON of `claims`, with `typ` in the header.
    pub fn sign_jwt<C: Serialize>(&self, typ: &str, claims: &C) -> String {
        let header = serde_json::json!({ "alg": self.alg.as_str(), "typ": typ, "kid": self.kid });
        self.sign_with_header(&header, claims)
    }

    /// As [`SigningKey::sign_jwt`], with the issuer repeated in the header (`iss`, as RFC 7519
    /// §5.3 allows), for clients that read it there.
    pub fn sign_jwt_with_issuer<C: Serialize>(&self, typ: &str, issuer: &str, claims: &C) -> String {
        let header =
            serde_json::json!({ "alg": self.alg.as_str(), "typ": typ, "kid": self.kid, "iss": issuer });
        self.sign_with_header(&header, claims)
    }

    fn sign_with_header<C: Serialize>(&self, header: &serde_json::Value, claims: &C) -> String {
        let mut out = URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).expect("header serialises"));
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialise")));
        let signature = match &self.pair {
            Pair::Es256(p) => p.sign(&self.rng, out.as_bytes()).expect("ECDSA signing").as_ref().to_vec(),
            Pair::Rs256(p) => {
                let mut sig = vec![0; p.public_modulus_len()];
                p.sign(&RSA_PKCS1_SHA256, &self.rng, out.as_bytes(), &mut sig).expect("RSA signing");
                sig
            }
            Pair::EdDsa(p) => p.sign(out.as_bytes()).as_ref().to_vec(),
        };
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(signature));
        out
    }
}

/// The JWK Set document (RFC 7517 §5) that publishes these keys.
pub fn jwks_document<'a>(keys: impl IntoIterator<Item = &'a SigningKey>) -> String {
    let keys: Vec<serde_json::Value> = keys.into_iter().map(SigningKey::public_jwk).collect();
    serde_json::json!({ "keys": keys }).to_string()
}

/// How long a retired key stays published: as long as the longest-lived token it can have
/// signed, and an hour on top for clocks and caches.
pub const RETIRED_KEY_RETENTION: time::Duration = time::Duration::seconds(
    max(crate::application::limits::ACCESS_TOKEN.1, crate::application::limits::ID_TOKEN.1) as i64 + 3600,
);

const fn max(a: u32, b: u32) -> u32 {
    if a > b { a } else { b }
}

/// A JWT this server signed, checked: its header's `kid` names one of our keys, its `alg` is
/// that key's, and the signature holds. Claims are returned for the caller to check.
pub fn verify_jwt<'a>(
    token: &str,
    key_for: impl Fn(&str) -> Option<&'a SigningKey>,
) -> Option<(serde_json::Value, serde_json::Value)> {
    let (signed, signature) = token.rsplit_once('.')?;
    let (header, claims) = signed.split_once('.')?;
    let decode = |part: &str| -> Option<serde_json::Value> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
    };
    let header = decode(header)?;
    let key = key_for(header["kid"].as_str()?)?;
    if header["alg"].as_str() != Some(key.alg.as_str()) {
        return None;
    }
    let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
    key.verify(signed.as_bytes(), &signature).then_some(())?;
    Some((header, decode(claims)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verify(key: &SigningKey, jwt: &str) -> bool {
        verify_jwt(jwt, |kid| (kid == key.kid()).then_some(key)).is_some()
    }

    #[test]
    fn es256_verifies_from_the_published_jwk_alone() {
        let (key, _) = SigningKey::generate("k1".into(), SigningAlg::ES256);
        let jwt = key.sign_jwt("JWT", &serde_json::json!({"sub": "x"}));
        let jwk = key.public_jwk();
        let mut point = vec![4];
        point.extend(URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap());
        point.extend(URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap());
        let (signed, sig) = jwt.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        assert!(
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).verify(signed.as_bytes(), &sig).is_ok()
        );
    }

    #[test]
    fn signatures_verify_with_the_published_jwk() {
        for alg in SigningAlg::ALL {
            let (key, pkcs8) = SigningKey::generate("k1".into(), alg);
            let jwt = key.sign_jwt("JWT", &serde_json::json!({"sub": "x"}));
            assert!(verify(&key, &jwt), "{alg:?}");
            let reloaded = SigningKey::from_pkcs8("k1".into(), alg, &pkcs8).unwrap();
            assert_eq!(reloaded.public_jwk(), key.public_jwk());
            let tampered = jwt.replacen('.', ".e", 1);
            assert!(!verify(&key, &tampered));
        }
    }
}
