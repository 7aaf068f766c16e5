//! Prefixed, time-sortable identifiers: `app_…`, `ml_…`, `user_…`; a UUIDv7 in lower-case
//! Crockford base32, so that ids sort by creation time as strings.

use std::fmt;
use std::marker::PhantomData;

/// What an id names; gives the prefix.
pub trait IdKind {
    const PREFIX: &'static str;
}

macro_rules! id_kinds {
    ($($kind:ident => $prefix:literal),* $(,)?) => {
        $(
            #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
            pub enum $kind {}
            impl IdKind for $kind {
                const PREFIX: &'static str = $prefix;
            }
        )*
    };
}

id_kinds! {
    AppKind => "app",
    SecretKind => "sec",
    ChallengeKind => "ml",
    UserKind => "user",
    CodeKind => "ac",
    OutboxKind => "msg",
    KeyKind => "key",
    RequestKind => "req",
    RefreshKind => "rt",
    FamilyKind => "fam",
    EventKind => "evt",
    OrgKind => "org",
}

pub type AppId = Id<AppKind>;
pub type SecretId = Id<SecretKind>;
pub type ChallengeId = Id<ChallengeKind>;
pub type UserId = Id<UserKind>;
pub type CodeId = Id<CodeKind>;
pub type OutboxId = Id<OutboxKind>;
pub type KeyId = Id<KeyKind>;
pub type RequestId = Id<RequestKind>;
pub type RefreshTokenId = Id<RefreshKind>;
pub type FamilyId = Id<FamilyKind>;
pub type EventId = Id<EventKind>;
pub type OrgId = Id<OrgKind>;

pub struct Id<K> {
    value: String,
    kind: PhantomData<K>,
}

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const ENCODED_LEN: usize = 26;

impl<K: IdKind> Id<K> {
    pub fn generate() -> Self {
        Self::generate_with_prefix(K::PREFIX)
    }

    /// An id of this kind under another prefix: challenges are named after their purpose
    /// (`ml_`, `reg_`, `vl_`).
    pub fn generate_with_prefix(prefix: &str) -> Self {
        let bits = uuid::Uuid::now_v7().as_u128();
        let mut out = String::with_capacity(prefix.len() + 1 + ENCODED_LEN);
        out.push_str(prefix);
        out.push('_');
        for i in (0..ENCODED_LEN).rev() {
            out.push(ALPHABET[((bits >> (i * 5)) & 0x1f) as usize] as char);
        }
        Self { value: out, kind: PhantomData }
    }

    /// Parses an id received from outside; `None` when the prefix or alphabet is wrong.
    pub fn parse(s: &str) -> Option<Self> {
        Self::parse_with_prefix(s, K::PREFIX)
    }

    pub fn parse_with_prefix(s: &str, prefix: &str) -> Option<Self> {
        let rest = s.strip_prefix(prefix)?.strip_prefix('_')?;
        let well_formed = rest.len() == ENCODED_LEN && rest.bytes().all(|b| ALPHABET.contains(&b));
        well_formed.then(|| Self::from_trusted(s.to_owned()))
    }

    /// Wraps a value read back from our own database.
    pub fn from_trusted(value: String) -> Self {
        Self { value, kind: PhantomData }
    }

    pub fn as_str(&self) -> &str {
        &self.value
    }

    pub fn into_string(self) -> String {
        self.value
    }
}

impl<K> Clone for Id<K> {
    fn clone(&self) -> Self {
        Self { value: self.value.clone(), kind: PhantomData }
    }
}

impl<K> PartialEq for Id<K> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<K> Eq for Id<K> {}

impl<K> std::hash::Hash for Id<K> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.value.hash(state);
    }
}

impl<K> fmt::Debug for Id<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

impl<K> fmt::Display for Id<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

impl<K> serde::Serialize for Id<K> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_and_sort_by_time() {
        let a = AppId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = AppId::generate();
        assert!(a.as_str() < b.as_str());
        assert_eq!(AppId::parse(a.as_str()), Some(a.clone()));
        assert!(a.as_str().starts_with("app_"));
        assert_eq!(ChallengeId::parse(a.as_str()), None);
        assert_eq!(AppId::parse("app_short"), None);
        assert_eq!(AppId::parse("app_ilouilouilouilouilouilouil"), None);
    }
}
