//! Redirect URIs: absolute http(s) URLs without a fragment, compared exactly against an
//! application's allow list (no wildcard, no prefix match).

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
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RedirectUri(Url);

impl RedirectUri {
    pub const MAX_LEN: usize = 2000;

    pub fn parse(input: &str) -> Result<Self, InvalidRedirectUri> {
        if input.len() > Self::MAX_LEN {
            return Err(InvalidRedirectUri::TooLong);
        }
        let url = Url::parse(input).map_err(|_| InvalidRedirectUri::NotAbsolute)?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(InvalidRedirectUri::Scheme);
        }
        if url.fragment().is_some() {
            return Err(InvalidRedirectUri::Fragment);
        }
        Ok(Self(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The URI with the given query parameters appended, for the browser's redirect.
    pub fn with_params<'a>(&self, params: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
        let mut url = self.0.clone();
        url.query_pairs_mut().extend_pairs(params);
        url.into()
    }
}

impl fmt::Display for RedirectUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
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
    fn refuses_unsafe_forms() {
        assert_eq!(RedirectUri::parse("/cb"), Err(InvalidRedirectUri::NotAbsolute));
        assert_eq!(RedirectUri::parse("javascript:alert(1)"), Err(InvalidRedirectUri::Scheme));
        assert_eq!(RedirectUri::parse("https://a.example/#x"), Err(InvalidRedirectUri::Fragment));
    }
}
