//! Records that nearly every request reads and almost nothing changes (applications, the
//! organization of an e-mail domain), kept in memory for a moment.
//!
//! A change made through this instance forgets them at once. A change made through another
//! instance on the same database is seen here within [`FRESH_FOR`]: the price of not reading
//! the application on every call.

use latchkey_core::Application;
use latchkey_core::id::{AppId, OrgId};
use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use time::{Duration, OffsetDateTime};

/// What the service keeps: applications by id and by the keyed hash of a secret, and the
/// organization (or none) that owns an e-mail domain.
pub(crate) struct Caches {
    pub apps_by_id: Cache<AppId, Application>,
    pub apps_by_secret: Cache<Vec<u8>, Application>,
    pub org_by_domain: Cache<String, Option<OrgId>>,
}

impl Caches {
    pub fn new() -> Self {
        Self { apps_by_id: Cache::new(), apps_by_secret: Cache::new(), org_by_domain: Cache::new() }
    }

    pub fn forget_applications(&self) {
        self.apps_by_id.clear();
        self.apps_by_secret.clear();
    }
}

/// How long a cached record is trusted.
pub const FRESH_FOR: Duration = Duration::seconds(1);
/// Entries kept at most; a full cache starts over rather than tracking what is oldest.
const MAX_ENTRIES: usize = 4096;

pub(crate) struct Cache<K, V> {
    entries: Mutex<HashMap<K, (OffsetDateTime, V)>>,
}

impl<K: Eq + Hash, V: Clone> Cache<K, V> {
    pub fn new() -> Self {
        Self { entries: Mutex::new(HashMap::new()) }
    }

    pub fn get<Q>(&self, key: &Q, now: OffsetDateTime) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .filter(|(stored, _)| now - *stored < FRESH_FOR && now >= *stored)
            .map(|(_, v)| v.clone())
    }

    pub fn put(&self, key: K, value: V, now: OffsetDateTime) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key, (now, value));
    }

    pub fn clear(&self) {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn keeps_a_value_while_fresh_and_forgets_it_after() {
        let t0 = datetime!(2026-01-01 00:00 UTC);
        let cache = Cache::new();
        cache.put("a", 1, t0);
        assert_eq!(cache.get(&"a", t0), Some(1));
        assert_eq!(cache.get(&"a", t0 + Duration::milliseconds(999)), Some(1));
        assert_eq!(cache.get(&"a", t0 + FRESH_FOR), None);
        // A clock that went back does not extend trust either.
        assert_eq!(cache.get(&"a", t0 - Duration::seconds(1)), None);
        cache.put("a", 2, t0);
        cache.clear();
        assert_eq!(cache.get(&"a", t0), None);
    }

    #[test]
    fn a_full_cache_starts_over() {
        let t0 = datetime!(2026-01-01 00:00 UTC);
        let cache = Cache::new();
        for i in 0..MAX_ENTRIES {
            cache.put(i, i, t0);
        }
        cache.put(MAX_ENTRIES, 0, t0);
        assert_eq!(cache.get(&0, t0), None);
        assert_eq!(cache.get(&MAX_ENTRIES, t0), Some(0));
    }
}
