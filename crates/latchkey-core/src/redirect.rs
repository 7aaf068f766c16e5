//! Redirect URIs: absolute http(s) URLs without a fragment, compared exactly against an
//! application's allow list (no wildcard, no prefix match).
//!
//! The string is kept as it was given: it is parsed only to refuse what is not an absolute
//! http(s) URL, and equality is the comparison of the strings (RFC 9700 §2.1). Normalising
//! first would make `https://A.EXAMPLE/cb`, `https://a.example:443/cb` or
//! `https://a.example/x/../cb` match a registered `https://a.example/cb`.

use std::fmt;
use url::Url;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRedirectUri {
    #[error("the redirect URI is not an absolute URL")]
    NotAbsolute,
    #[error("the redirect URI must use http or https")]
    Scheme,
    #[error("the redirect URI must not have a fragment")]
    Fragment,
    #[error("the redirect URI is longer than 2000 characters")]
    TooLong,
    #[error("the redirect URI must be printable ASCII: percent-encode spaces and other characters")]
    Characters,
}

/// The URI exactly as given; see the module's documentation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RedirectUri(String);

impl RedirectUri {
    pub const MAX_LEN: usize = 2000;

    pub fn parse(input: &str) -> Result<Self, InvalidRedirectUri> {
        if input.len() > Self::MAX_LEN {
            return Err(InvalidRedirectUri::TooLong);
        }
        // The URL parser silently drops tabs and line breaks, trims spaces and percent-encodes
        // the rest, so such a string would not be the URL it names; nor could it go into a
        // `Location` header as it is.
        if !input.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidRedirectUri::Characters);
        }
        let url = Url::parse(input).map_err(|_| InvalidRedirectUri::NotAbsolute)?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(InvalidRedirectUri::Scheme);
        }
        if url.fragment().is_some() {
            return Err(InvalidRedirectUri::Fragment);
        }
        if input.contains('#') {
            // An empty fragment (`…/cb#`) parses to `Some("")`, but be explicit.
            return Err(InvalidRedirectUri::Fragment);
        }
        Ok(Self(input.to_owned()))
    }

    /// The URI as it was given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URI with the given query parameters appended (form-encoded), for the browser's
    /// redirect: after the existing query if there is one, else after a new `?`.
    pub fn with_params<'a>(&self, params: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
        let mut out = self.0.clone();
        let encoded = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
        if encoded.is_empty() {
            return out;
        }
        match out.find('?') {
            None => out.push('?'),
            Some(q) if q + 1 == out.len() || out.ends_with('&') => {}
            Some(_) => out.push('&'),
        }
        out.push_str(&encoded);
        out
    }
}

impl fmt::Display for RedirectUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_appends_params() {
        let r = RedirectUri::parse("https://app.example.com/cb?x=1").unwrap();
        assert_eq!(
            r.with_params([("code", "a b"), ("state", "s")]),
            "https://app.example.com/cb?x=1&code=a+b&state=s"
        );
    }

    #[test]
    fn appends_to_the_string_as_given() {
        let r = RedirectUri::parse("https://app.example").unwrap();
        assert_eq!(r.as_str(), "https://app.example");
        assert_eq!(r.with_params([("code", "c")]), "https://app.example?code=c");
        let r = RedirectUri::parse("https://app.example/cb?").unwrap();
        assert_eq!(r.with_params([("code", "c&d")]), "https://app.example/cb?code=c%26d");
        let r = RedirectUri::parse("https://app.example/cb?a=1&").unwrap();
        assert_eq!(r.with_params([("code", "c")]), "https://app.example/cb?a=1&code=c");
        let r = RedirectUri::parse("https://app.example/%7Eu/cb").unwrap();
        assert_eq!(r.with_params([]), "https://app.example/%7Eu/cb");
        assert_eq!(r.to_string(), "https://app.example/%7Eu/cb");
    }

    #[test]
    fn keeps_and_compares_the_string_as_given() {
        let registered = RedirectUri::parse("https://app.example/cb").unwrap();
        assert_eq!(registered.as_str(), "https://app.example/cb");
        for variant in [
            "https://APP.EXAMPLE/cb",
            "https://app.example:443/cb",
            "https://app.example/x/../cb",
            "https://app.example/%63b",
            "https://app.example/cb?",
            "https://app.example/./cb",
        ] {
            let v = RedirectUri::parse(variant).unwrap();
            assert_eq!(v.as_str(), variant);
            assert_ne!(v, registered, "{variant} matched {registered}");
        }
        let local = RedirectUri::parse("http://127.0.0.1:3000/cb").unwrap();
        let short = RedirectUri::parse("http://127.1:3000/cb").unwrap();
        assert_eq!(short.as_str(), "http://127.1:3000/cb");
        assert_ne!(short, local);
        let percent = RedirectUri::parse("https://%61pp.example/cb").unwrap();
        assert_ne!(percent, registered);
    }

    #[test]
    fn refuses_what_is_not_printable_ascii() {
        for bad in [
            "https://app.exa\tmple/cb",
            "https://app.example/c\nb",
            " https://app.example/cb",
            "https://app.example/cb ",
            "https://app.example/c b",
            "https://app.example/cb\r",
            "https://app.example/cb\u{0}",
            "https://app.example/café",
            "https://exämple.com/cb",
        ] {
            assert_eq!(RedirectUri::parse(bad), Err(InvalidRedirectUri::Characters), "{bad:?}");
        }
        assert_eq!(RedirectUri::parse("https://a.example/cb#"), Err(InvalidRedirectUri::Fragment));
    }

    #[test]
    fn refuses_unsafe_forms() {
        assert_eq!(RedirectUri::parse("/cb"), Err(InvalidRedirectUri::NotAbsolute));
        assert_eq!(RedirectUri::parse("javascript:alert(1)"), Err(InvalidRedirectUri::Scheme));
        assert_eq!(RedirectUri::parse("https://a.example/#x"), Err(InvalidRedirectUri::Fragment));
    }
}
