use crate::email::EmailAddress;
use crate::id::UserId;
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// The longest user name, and the most metadata entries and the longest key and value.
pub const MAX_NAME: usize = 200;
pub const MAX_METADATA_ENTRIES: usize = 50;
pub const MAX_METADATA_KEY: usize = 40;
pub const MAX_METADATA_VALUE: usize = 500;

#[derive(Debug, Clone)]
pub struct User {
    pub id: UserId,
    pub email: EmailAddress,
    pub email_verified: bool,
    pub name: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// The language tag their e-mails are written in when the request names none.
    pub locale: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub last_sign_in_at: Option<OffsetDateTime>,
}

impl User {
    pub fn new(email: EmailAddress, now: OffsetDateTime) -> Self {
        Self {
            id: UserId::generate(now),
            email,
            email_verified: false,
            name: None,
            metadata: BTreeMap::new(),
            locale: None,
            created_at: now,
            updated_at: now,
            last_sign_in_at: None,
        }
    }
}

/// Why a name or metadata map is refused.
pub fn check_profile(name: Option<&str>, metadata: &BTreeMap<String, String>) -> Result<(), &'static str> {
    if name.is_some_and(|n| n.chars().count() > MAX_NAME) {
        return Err("name is limited to 200 characters");
    }
    if metadata.len() > MAX_METADATA_ENTRIES {
        return Err("metadata is limited to 50 entries");
    }
    if !within_bounds(metadata) {
        return Err("metadata keys must have 1 to 40 bytes and values at most 500");
    }
    Ok(())
}

/// Whether a caller's string map (user metadata, registration context data) fits the bounds:
/// 50 entries, keys of 1 to 40 bytes, values of at most 500.
pub fn within_bounds(map: &BTreeMap<String, String>) -> bool {
    map.len() <= MAX_METADATA_ENTRIES
        && map
            .iter()
            .all(|(k, v)| !k.is_empty() && k.len() <= MAX_METADATA_KEY && v.len() <= MAX_METADATA_VALUE)
}
