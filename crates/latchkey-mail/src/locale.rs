//! Language tags, as far as e-mail needs them: a language and an optional region.

use std::fmt;

/// A short BCP 47 tag, normalised: `fr`, `fr-CA`, `es-419`. A longer tag keeps only its
/// language and region (`zh-Hant-TW` is `zh-TW`); a script or variant never changes which
/// template is used.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Locale {
    tag: String,
    /// Bytes of `tag` that are the language.
    language: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a locale is a language tag such as en, fr or pt-BR")]
pub struct InvalidLocale;

/// The longest tag accepted, as for the applications' `default_locale`.
pub const MAX_LOCALE_LEN: usize = 35;

impl Locale {
    pub fn parse(input: &str) -> Result<Self, InvalidLocale> {
        let input = input.trim();
        if input.is_empty() || input.len() > MAX_LOCALE_LEN {
            return Err(InvalidLocale);
        }
        let mut subtags = input.split(['-', '_']);
        let language = subtags.next().unwrap_or_default();
        if !(2..=3).contains(&language.len()) || !language.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(InvalidLocale);
        }
        let mut region = None;
        for subtag in subtags {
            if subtag.is_empty() || subtag.len() > 8 || !subtag.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(InvalidLocale);
            }
            let is_region = (subtag.len() == 2 && subtag.bytes().all(|b| b.is_ascii_alphabetic()))
                || (subtag.len() == 3 && subtag.bytes().all(|b| b.is_ascii_digit()));
            if region.is_none() && is_region {
                region = Some(subtag.to_ascii_uppercase());
            }
        }
        let mut tag = language.to_ascii_lowercase();
        if let Some(region) = region {
            tag.push('-');
            tag.push_str(&region);
        }
        Ok(Self { tag, language: language.len() })
    }

    pub fn english() -> Self {
        Self { tag: "en".into(), language: 2 }
    }

    pub fn as_str(&self) -> &str {
        &self.tag
    }

    /// `fr` for `fr-CA`.
    pub fn language(&self) -> &str {
        &self.tag[..self.language]
    }

    /// The language alone, when this tag has a region.
    pub fn without_region(&self) -> Option<Self> {
        (self.tag.len() > self.language)
            .then(|| Self { tag: self.language().to_owned(), language: self.language })
    }
}

impl fmt::Display for Locale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_normalised_to_language_and_region() {
        for (input, tag, language) in [
            ("en", "en", "en"),
            ("FR", "fr", "fr"),
            ("fr-ca", "fr-CA", "fr"),
            ("de_CH", "de-CH", "de"),
            ("zh-Hant-TW", "zh-TW", "zh"),
            ("es-419", "es-419", "es"),
            ("sr-Latn", "sr", "sr"),
            (" pt-BR ", "pt-BR", "pt"),
            ("gsw", "gsw", "gsw"),
        ] {
            let l = Locale::parse(input).unwrap();
            assert_eq!((l.as_str(), l.language()), (tag, language), "{input}");
        }
        assert_eq!(Locale::parse("fr-CA").unwrap().without_region(), Some(Locale::parse("fr").unwrap()));
        assert_eq!(Locale::parse("fr").unwrap().without_region(), None);
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in ["", "e", "english", "en-", "fr--CA", "fr CA", "*", "fr;q=0.9", "12", &"a".repeat(40)] {
            assert_eq!(Locale::parse(bad), Err(InvalidLocale), "{bad:?}");
        }
    }
}
