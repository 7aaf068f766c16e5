//! Signing keys and compact JWS. Keys are parsed once and kept in memory: parsing a PKCS#8
//! document per signature would cost more than the signature itself.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SigningAlg {
    #[default]
    ES256,
    EdDSA,
}

impl SigningAlg {
    pub const ALL: [SigningAlg; 2] = [SigningAlg::ES256, SigningAlg::EdDSA];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ES256 => "ES256",
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
            Pair::EdDsa(p) => serde_json::json!({
                "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": self.kid,
                "x": b64(p.public_key().as_ref()),
            }),
        }
    }

    /// A compact JWS over the JSON of `claims`, with `typ` in the header.
    pub fn sign_jwt<C: Serialize>(&self, typ: &str, claims: &C) -> String {
        let header = serde_json::json!({ "alg": self.alg.as_str(), "typ": typ, "kid": self.kid });
        let mut out = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).expect("header serialises"));
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialise")));
        let signature = match &self.pair {
            Pair::Es256(p) => p.sign(&self.rng, out.as_bytes()).expect("ECDSA signing").as_ref().to_vec(),
            Pair::EdDsa(p) => p.sign(out.as_bytes()).as_ref().to_vec(),
        };
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(signature));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ED25519, UnparsedPublicKey};

    fn verify(key: &SigningKey, jwt: &str) -> bool {
        let (signed, sig) = jwt.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        let jwk = key.public_jwk();
        let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
        match key.alg() {
            SigningAlg::ES256 => {
                let mut point = vec![4];
                point.extend(x);
                point.extend(URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap());
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                    .verify(signed.as_bytes(), &sig)
                    .is_ok()
            }
            SigningAlg::EdDSA => UnparsedPublicKey::new(&ED25519, x).verify(signed.as_bytes(), &sig).is_ok(),
        }
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
