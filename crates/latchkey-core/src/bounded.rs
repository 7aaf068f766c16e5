//! Free text that a caller gives and gets back verbatim (`state`, `nonce`, what it says of
//! the browser), parsed once into a type that cannot be too long.

use std::fmt;

/// A string of at most `MAX` bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Bounded<const MAX: usize>(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("is limited to {max} bytes")]
pub struct TooLong {
    pub max: usize,
}

impl<const MAX: usize> Bounded<MAX> {
    pub const MAX: usize = MAX;

    pub fn parse(value: impl Into<String>) -> Result<Self, TooLong> {
        let value = value.into();
        if value.len() > MAX {
            return Err(TooLong { max: MAX });
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl<const MAX: usize> fmt::Debug for Bounded<MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_fits_and_refuses_what_does_not() {
        assert_eq!(Bounded::<3>::parse("abc").unwrap().as_str(), "abc");
        assert_eq!(Bounded::<3>::parse("abcd"), Err(TooLong { max: 3 }));
        // Bytes, not characters: what is stored and sent back is bounded.
        assert!(Bounded::<3>::parse("éé").is_err());
    }
}

/// At most `max` characters of `value`, with an ellipsis when cut: for echoing a caller's
/// value in an error message without sending a huge one back.
pub fn excerpt(value: &str, max: usize) -> String {
    match value.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_owned(),
    }
}

#[cfg(test)]
mod excerpt_tests {
    #[test]
    fn cuts_long_values_only() {
        assert_eq!(super::excerpt("short", 10), "short");
        assert_eq!(super::excerpt(&"x".repeat(60_000), 3), "xxx…");
        assert_eq!(super::excerpt("ééééé", 2), "éé…");
    }
}
