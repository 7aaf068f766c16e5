//! Prefixed, time-sortable identifiers: `app_…`, `ml_…`, `user_…`; a UUIDv7 in lower-case
//! Crockford base32, so that ids sort by creation time as strings.

use std::fmt;
use std::marker::PhantomData;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use time::OffsetDateTime;

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
    HostedKind => "authz",
    SessionKind => "ses",
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
pub type HostedRequestId = Id<HostedKind>;
pub type BrowserSessionId = Id<SessionKind>;

pub struct Id<K> {
    value: String,
    kind: PhantomData<K>,
}

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const ENCODED_LEN: usize = 26;

impl<K: IdKind> Id<K> {
    /// A new id for something made at `now` (the injected clock's time, so that ids and
    /// `created_at` move together).
    pub fn generate(now: OffsetDateTime) -> Self {
        Self::generate_with_prefix(K::PREFIX, now)
    }

    /// An id of this kind under another prefix: challenges are named after their purpose
    /// (`ml_`, `reg_`, `vl_`).
    pub fn generate_with_prefix(prefix: &str, now: OffsetDateTime) -> Self {
        let bits = uuid_v7(now).as_u128();
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

/// A UUIDv7 for `now`: its 48-bit millisecond timestamp, then a counter that the whole process
/// shares (42 bits, starting anywhere), then 32 random bits. Ids made within one millisecond
/// sort in the order they were made, also when several tests' clocks stand still at once.
fn uuid_v7(now: OffsetDateTime) -> uuid::Uuid {
    static COUNTER: OnceLock<AtomicU64> = OnceLock::new();
    let random = uuid::Uuid::now_v7().as_u128();
    let counter = COUNTER
        .get_or_init(|| AtomicU64::new((random as u64 >> 24) & ((1 << 41) - 1)))
        .fetch_add(1, Ordering::Relaxed)
        & ((1 << 42) - 1);
    let millis = u128::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0) & ((1 << 48) - 1);
    let counter = u128::from(counter);
    let bits = (millis << 80)
        | (0x7 << 76)
        | ((counter >> 30) << 64)
        | (0b10 << 62)
        | ((counter & ((1 << 30) - 1)) << 32)
        | (random & 0xffff_ffff);
    uuid::Uuid::from_u128(bits)
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
        let t0 = time::macros::datetime!(2026-01-01 00:00 UTC);
        let a = AppId::generate(t0);
        let b = AppId::generate(t0 + time::Duration::milliseconds(2));
        assert!(a.as_str() < b.as_str());
        // The id carries the time it was made for, not the machine's.
        let later = AppId::generate(t0 + time::Duration::days(1));
        assert!(b.as_str() < later.as_str());
        let earlier = AppId::generate(t0 - time::Duration::days(1));
        assert!(earlier.as_str() < a.as_str());
        // Within one millisecond (a clock that stands still), still in order.
        let ids: Vec<_> = (0..100).map(|_| AppId::generate(t0)).collect();
        assert!(ids.windows(2).all(|w| w[0].as_str() < w[1].as_str()));
        assert_eq!(AppId::parse(a.as_str()), Some(a.clone()));
        assert!(a.as_str().starts_with("app_"));
        assert_eq!(ChallengeId::parse(a.as_str()), None);
        assert_eq!(AppId::parse("app_short"), None);
        assert_eq!(AppId::parse("app_ilouilouilouilouilouilouil"), None);
    }
}
