//! The signing keys in memory: parsed once, so signing costs only the signature. Reloaded from
//! the store periodically, so that every instance publishes and verifies the same keys.

use crate::ServiceError;
use latchkey_core::id::KeyId;
use latchkey_core::signing::{self, SigningAlg, SigningKey};
use latchkey_core::tokens::AccessTokenClaims;
use latchkey_core::{Clock, MasterKey};
use latchkey_store::{Store, StoredSigningKey};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use time::OffsetDateTime;

struct Keys {
    /// The newest unretired key of each algorithm: the one that signs.
    active: HashMap<SigningAlg, Arc<SigningKey>>,
    /// Every published key, retired ones included: what verifies.
    by_kid: HashMap<String, Arc<SigningKey>>,
    /// The key set document, serialised once.
    jwks: Arc<str>,
}

#[derive(Clone)]
pub struct KeyRing {
    keys: Arc<RwLock<Arc<Keys>>>,
    master: MasterKey,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyRing")
    }
}

fn sealing_context(kid: &str) -> String {
    format!("signing-key:{kid}")
}

/// The algorithms a new deployment has keys for from the start; RS256 keys (slow to make)
/// are created when an application first needs one.
const AT_START: [SigningAlg; 2] = [SigningAlg::ES256, SigningAlg::EdDSA];

fn internal(e: impl std::error::Error + Send + Sync + 'static) -> ServiceError {
    ServiceError::Internal(Box::new(e))
}

impl KeyRing {
    /// Loads the stored keys, creating the default ones where none exists yet.
    pub async fn load(
        store: &dyn Store,
        master: &MasterKey,
        clock: &dyn Clock,
    ) -> Result<Self, ServiceError> {
        let ring =
            Self { keys: Arc::new(RwLock::new(Arc::new(Self::parse(&[], master)?))), master: master.clone() };
        ring.reload(store).await?;
        for alg in AT_START {
            if !ring.current().active.contains_key(&alg) {
                ring.create(store, alg, clock).await?;
            }
        }
        Ok(ring)
    }

    /// Re-reads the keys from the store (another instance may have rotated them).
    pub async fn reload(&self, store: &dyn Store) -> Result<(), ServiceError> {
        let stored = store.signing_keys().await?;
        let keys = Self::parse(&stored, &self.master)?;
        *self.keys.write().expect("key ring lock") = Arc::new(keys);
        Ok(())
    }

    async fn create(
        &self,
        store: &dyn Store,
        alg: SigningAlg,
        clock: &dyn Clock,
    ) -> Result<(), ServiceError> {
        let kid = KeyId::generate(clock.now()).into_string();
        // RSA key generation takes a while: keep it off the async workers.
        let for_generation = kid.clone();
        let (_, pkcs8) = tokio::task::spawn_blocking(move || SigningKey::generate(for_generation, alg))
            .await
            .map_err(internal)?;
        let inserted = store
            .insert_signing_key(&StoredSigningKey {
                sealed_pkcs8: self.master.seal(&sealing_context(&kid), &pkcs8),
                kid,
                alg,
                created_at: clock.now(),
                retired_at: None,
            })
            .await;
        match inserted {
            // Another instance created the algorithm's active key first: use that one.
            Ok(()) | Err(latchkey_store::StoreError::Conflict(_)) => self.reload(store).await,
            Err(e) => Err(e.into()),
        }
    }

    /// Retires the algorithm's current key and makes a new one; the old one stays published
    /// until every token it signed has expired.
    pub async fn rotate(
        &self,
        store: &dyn Store,
        alg: SigningAlg,
        clock: &dyn Clock,
    ) -> Result<String, ServiceError> {
        store.retire_signing_keys(alg, clock.now()).await?;
        self.create(store, alg, clock).await?;
        Ok(self.current().active.get(&alg).map(|k| k.kid().to_owned()).unwrap_or_default())
    }

    fn parse(stored: &[StoredSigningKey], master: &MasterKey) -> Result<Keys, ServiceError> {
        let mut active = HashMap::new();
        let mut by_kid = HashMap::new();
        // Stored oldest first; the newest unretired key of each algorithm signs.
        for k in stored {
            let pkcs8 = master.unseal(&sealing_context(&k.kid), &k.sealed_pkcs8).map_err(internal)?;
            let key = Arc::new(SigningKey::from_pkcs8(k.kid.clone(), k.alg, &pkcs8).map_err(internal)?);
            if k.retired_at.is_none() {
                active.insert(k.alg, key.clone());
            }
            by_kid.insert(k.kid.clone(), key);
        }
        // Stored oldest first, and published in that order.
        let published =
            stored.iter().filter_map(|k| by_kid.get(&k.kid).map(|key: &Arc<SigningKey>| key.as_ref()));
        let jwks = signing::jwks_document(published).into();
        Ok(Keys { active, by_kid, jwks })
    }

    fn current(&self) -> Arc<Keys> {
        self.keys.read().expect("key ring lock").clone()
    }

    /// The key that signs for `alg`, creating it on first use.
    pub async fn signer(
        &self,
        store: &dyn Store,
        alg: SigningAlg,
        clock: &dyn Clock,
    ) -> Result<Arc<SigningKey>, ServiceError> {
        if let Some(key) = self.current().active.get(&alg) {
            return Ok(key.clone());
        }
        self.reload(store).await?;
        if !self.current().active.contains_key(&alg) {
            self.create(store, alg, clock).await?;
        }
        self.current()
            .active
            .get(&alg)
            .cloned()
            .ok_or_else(|| ServiceError::Internal("no signing key after creating one".into()))
    }

    /// The claims of a valid access token signed by one of our keys (see
    /// [`AccessTokenClaims::verify`]).
    pub fn verify_access_token(
        &self,
        token: &str,
        issuer: &str,
        now: OffsetDateTime,
    ) -> Option<AccessTokenClaims> {
        let keys = self.current();
        AccessTokenClaims::verify(token, |kid| keys.by_kid.get(kid).map(|k| k.as_ref()), issuer, now)
    }

    /// The audience (client id) of an id_token signed by one of our keys for `issuer`,
    /// expired or not: a logout's `id_token_hint` names the application this way.
    pub fn verify_id_token_audience(&self, token: &str, issuer: &str) -> Option<String> {
        let keys = self.current();
        let (_, claims) =
            latchkey_core::signing::verify_jwt(token, |kid| keys.by_kid.get(kid).map(|k| k.as_ref()))?;
        if claims["iss"].as_str() != Some(issuer) {
            return None;
        }
        claims["aud"].as_str().map(str::to_owned)
    }

    pub fn jwks(&self) -> Arc<str> {
        self.current().jwks.clone()
    }
}
