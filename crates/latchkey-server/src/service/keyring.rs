//! The signing keys in memory: parsed once at start, so signing costs only the signature.

use super::ServiceError;
use latchkey_core::id::KeyId;
use latchkey_core::signing::{SigningAlg, SigningKey};
use latchkey_core::{Clock, MasterKey};
use latchkey_store::{Store, StoredSigningKey};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

struct Keys {
    active: HashMap<SigningAlg, Arc<SigningKey>>,
    /// The key set document, serialised once.
    jwks: Arc<str>,
}

#[derive(Clone)]
pub struct KeyRing(Arc<RwLock<Arc<Keys>>>);

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyRing")
    }
}

fn sealing_context(kid: &str) -> String {
    format!("signing-key:{kid}")
}

impl KeyRing {
    /// Loads the stored keys, creating one per algorithm where none exists yet.
    pub async fn load(
        store: &dyn Store,
        master: &MasterKey,
        clock: &dyn Clock,
    ) -> Result<Self, ServiceError> {
        let mut stored = store.signing_keys().await?;
        for alg in SigningAlg::ALL {
            if !stored.iter().any(|k| k.alg == alg && k.retired_at.is_none()) {
                let kid = KeyId::generate().into_string();
                let (_, pkcs8) = SigningKey::generate(kid.clone(), alg);
                store
                    .insert_signing_key(&StoredSigningKey {
                        sealed_pkcs8: master.seal(&sealing_context(&kid), &pkcs8),
                        kid,
                        alg,
                        created_at: clock.now(),
                        retired_at: None,
                    })
                    .await?;
                // Read back: when several instances start together, all pick the same key.
                stored = store.signing_keys().await?;
            }
        }
        let keys = Self::parse(&stored, master)?;
        Ok(Self(Arc::new(RwLock::new(Arc::new(keys)))))
    }

    fn parse(stored: &[StoredSigningKey], master: &MasterKey) -> Result<Keys, ServiceError> {
        let mut active = HashMap::new();
        let mut jwks = Vec::new();
        // Stored oldest first; the newest unretired key of each algorithm signs.
        for k in stored {
            let pkcs8 = master
                .unseal(&sealing_context(&k.kid), &k.sealed_pkcs8)
                .map_err(|e| ServiceError::Internal(Box::new(e)))?;
            let key = SigningKey::from_pkcs8(k.kid.clone(), k.alg, &pkcs8)
                .map_err(|e| ServiceError::Internal(Box::new(e)))?;
            jwks.push(key.public_jwk());
            if k.retired_at.is_none() {
                active.insert(k.alg, Arc::new(key));
            }
        }
        let jwks = serde_json::json!({ "keys": jwks }).to_string().into();
        Ok(Keys { active, jwks })
    }

    fn current(&self) -> Arc<Keys> {
        self.0.read().expect("key ring lock").clone()
    }

    pub fn signer(&self, alg: SigningAlg) -> Arc<SigningKey> {
        self.current().active.get(&alg).cloned().expect("a key exists for every algorithm once loaded")
    }

    pub fn jwks(&self) -> Arc<str> {
        self.current().jwks.clone()
    }
}
