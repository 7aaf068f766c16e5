//! Organizations: customers of the deployment, selected for a sign-in by name or by the
//! e-mail's domain. A domain belongs to one organization at most.

use crate::email::EmailAddress;
use crate::id::OrgId;
use time::OffsetDateTime;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    pub id: OrgId,
    pub name: String,
    pub slug: String,
    /// Lower-case domain names.
    pub domains: Vec<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

pub const MAX_DOMAINS: usize = 50;

impl Organization {
    pub fn owns(&self, email: &EmailAddress) -> bool {
        self.domains.iter().any(|d| d == email.domain())
    }
}

/// `acme-corp`: 1 to 63 lower-case letters, digits and inner hyphens.
pub fn parse_slug(s: &str) -> Option<String> {
    let ok = (1..=63).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    ok.then(|| s.to_owned())
}

/// A domain name as found after the `@` of an address: dotted labels of letters, digits and
/// hyphens; lower-cased.
pub fn parse_domain(s: &str) -> Option<String> {
    let d = s.trim().trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    (d.len() <= 253 && d.contains('.') && d.split('.').all(label_ok)).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_and_domains_are_strict() {
        assert_eq!(parse_slug("acme-corp").as_deref(), Some("acme-corp"));
        for bad in ["", "Acme", "-acme", "acme-", "ac me", "acme_corp"] {
            assert!(parse_slug(bad).is_none(), "{bad}");
        }
        assert_eq!(parse_domain("Acme.COM").as_deref(), Some("acme.com"));
        for bad in ["acme", "-acme.com", "acme..com", "ac me.com", "acme.com/x"] {
            assert!(parse_domain(bad).is_none(), "{bad}");
        }
    }
}
