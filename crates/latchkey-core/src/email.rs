//! E-mail addresses, parsed strictly once at the edge.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid e-mail address")]
pub struct InvalidEmail;

/// A syntactically valid address (a dot-atom local part, no quoted string or comment, no
/// display name, no domain literal, a dotted domain), normalised to lower case: one user per address, whatever the case it was typed in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub const MAX_LEN: usize = 254;

    pub fn parse(input: &str) -> Result<Self, InvalidEmail> {
        let trimmed = input.trim();
        if trimmed.is_empty() || trimmed.len() > Self::MAX_LEN {
            return Err(InvalidEmail);
        }
        let options = email_address::Options::default()
            .with_required_tld()
            .without_domain_literal()
            .without_display_text();
        email_address::EmailAddress::parse_with_options(trimmed, options).map_err(|_| InvalidEmail)?;
        // The parser above accepts RFC 5322's quoted local parts (`"a b"@example.com`) and
        // comments; mail servers do not deliver them, so only a dot-atom is an address here.
        let (local, _) = trimmed.rsplit_once('@').ok_or(InvalidEmail)?;
        if !is_dot_atom(local) {
            return Err(InvalidEmail);
        }
        Ok(Self(trimmed.to_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or_default()
    }

    /// For values read back from our own database, which only ever holds parsed addresses.
    pub fn from_trusted(value: String) -> Self {
        Self(value)
    }
}

/// RFC 5322's dot-atom: atoms of `atext` (or, per RFC 6531, non-ASCII characters) joined by
/// single dots, none at either end.
fn is_dot_atom(local: &str) -> bool {
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii();
    !local.is_empty()
        && local.split('.').all(|atom| !atom.is_empty() && atom.chars().all(|c| atext(c) && !c.is_control()))
}

impl FromStr for EmailAddress {
    type Err = InvalidEmail;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_normalises_plain_addresses() {
        let e = EmailAddress::parse("  Ada.Lovelace@Example.COM ").unwrap();
        assert_eq!(e.as_str(), "ada.lovelace@example.com");
        assert_eq!(e.domain(), "example.com");
    }

    #[test]
    fn rejects_what_a_careful_server_should() {
        for bad in [
            "",
            "plain",
            "a@b",
            "Ada <ada@example.com>",
            "ada@[127.0.0.1]",
            "ada@@example.com",
            "ada@example.com\r\nBcc: x@y.z",
            "\"a b\"@example.com",
            "\"<script>alert(1)</script>\"@example.com",
            "\"ada\"@example.com",
            "\"a@b\"@example.com",
            "ada(comment)@example.com",
            "(comment)ada@example.com",
            ".ada@example.com",
            "ada.@example.com",
            "a..da@example.com",
            "a\\b@example.com",
            "a b@example.com",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?} was accepted");
        }
        for good in [
            "a.b+tag@example.com",
            "o'brien@example.com",
            "x_y-z!#$%&*/=?^`{|}~@example.com",
            "jörg@example.de",
        ] {
            assert!(EmailAddress::parse(good).is_ok(), "{good:?} was refused");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(EmailAddress::parse(&long).is_err());
    }
}
