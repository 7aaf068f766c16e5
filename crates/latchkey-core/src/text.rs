//! Text shown back to a caller.

/// How many characters of an offending value an error message quotes.
pub const EXCERPT_CHARS: usize = 40;

/// `value` quoted for an error message (as `{:?}` would), cut to at most `max_chars`
/// characters of the value with an ellipsis after the cut: a refused 60 KB field must not come
/// back whole in the answer, or fill a log line.
pub fn excerpt(value: &str, max_chars: usize) -> String {
    match value.char_indices().nth(max_chars) {
        None => format!("{value:?}"),
        Some((end, _)) => format!("{:?}…", &value[..end]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_quoted_whole() {
        assert_eq!(excerpt("", EXCERPT_CHARS), "\"\"");
        assert_eq!(excerpt("ftp://a.example/cb", EXCERPT_CHARS), "\"ftp://a.example/cb\"");
        let exact = "a".repeat(EXCERPT_CHARS);
        assert_eq!(excerpt(&exact, EXCERPT_CHARS), format!("\"{exact}\""));
    }

    #[test]
    fn long_values_are_cut_with_an_ellipsis() {
        let long = "x".repeat(60_000);
        let shown = excerpt(&long, EXCERPT_CHARS);
        assert_eq!(shown, format!("\"{}\"…", "x".repeat(EXCERPT_CHARS)));
        assert!(shown.len() < 50);
    }

    #[test]
    fn cuts_on_character_boundaries_and_escapes() {
        let shown = excerpt(&"é".repeat(100), 3);
        assert_eq!(shown, "\"ééé\"…");
        assert_eq!(excerpt("a\"b\ncd", 4), "\"a\\\"b\\n\"…");
    }
}
