//! Putting a message together: the envelope (sender, recipient, Message-ID) around what the
//! [`crate::templates`] rendered, and the small rules that keep branding values safe in HTML.

use crate::Email;
use crate::Locale;
use crate::templates::{self, MailContext, Overrides};
use lettre::message::Mailbox;
use minijinja::Value;

/// The button colour when an application sets none (or an invalid one).
pub const DEFAULT_COLOR: &str = "#2f5bea";

/// Who sends a message and to whom, and the id that makes a resend recognisable.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// `Name <address>` or a bare address; see [`sender`].
    pub from: String,
    pub to: String,
    /// Without angle brackets: `msg_…@host`, one per outbox entry.
    pub message_id: String,
}

/// Renders a message in `locale` with the application's templates and wraps it.
pub fn compose(mail: &MailContext<'_>, locale: &Locale, overrides: &Overrides, envelope: Envelope) -> Email {
    let rendered = templates::render(mail, locale, overrides);
    Email {
        from: envelope.from,
        to: envelope.to,
        subject: rendered.subject,
        text: rendered.text,
        html: rendered.html,
        message_id: envelope.message_id,
    }
}

/// The `From` of an application's messages: its sender name and address where set, the
/// server's default (`LATCHKEY_MAIL_FROM`) for what is not. The name is quoted as needed, so
/// `Acme, Inc.` stays one name.
pub fn sender(name: Option<&str>, address: Option<&str>, default: &str) -> String {
    let default_box: Option<Mailbox> = default.parse().ok();
    let address = match address.map(str::parse) {
        Some(Ok(address)) => address,
        _ => match &default_box {
            Some(d) => d.email.clone(),
            None => return default.to_owned(),
        },
    };
    let name = name
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .or_else(|| default_box.and_then(|d| d.name));
    Mailbox::new(name, address).to_string()
}

/// A URL as HTML text: MiniJinja's escaper would turn every `/` into `&#x2f;`, which is valid but
/// makes the link unreadable in the source and suspicious to spam filters. A URL without quotes
/// or angle brackets only needs its `&` escaped.
pub(crate) fn url_for_html(url: &str) -> Value {
    if url.contains(['"', '\'', '<', '>']) {
        Value::from(url)
    } else {
        Value::from_safe_string(url.replace('&', "&amp;"))
    }
}

/// `#rgb` or `#rrggbb`: the only colours let into the HTML's style attributes.
pub(crate) fn css_color(color: Option<&str>) -> &str {
    color.filter(|c| is_css_color(c)).unwrap_or(DEFAULT_COLOR)
}

pub fn is_css_color(c: &str) -> bool {
    c.strip_prefix('#')
        .is_some_and(|hex| matches!(hex.len(), 3 | 6) && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A logo's URL if it is fit for an `<img src>`: absolute `https` (or `http`), no white space,
/// quotes or angle brackets.
pub fn image_url(url: &str) -> Option<&str> {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let absolute = lower.starts_with("https://") || lower.starts_with("http://");
    let clean =
        !url.contains(|c: char| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '<' | '>'));
    (absolute && clean && url.len() > 8 && url.len() <= 2000).then_some(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_combines_branding_with_the_default() {
        let d = "Latchkey <no-reply@localhost>";
        assert_eq!(sender(None, None, d), "Latchkey <no-reply@localhost>");
        assert_eq!(sender(Some("Acme"), Some("hi@acme.example"), d), "Acme <hi@acme.example>");
        assert_eq!(sender(Some("Acme"), None, d), "Acme <no-reply@localhost>");
        assert_eq!(sender(None, Some("hi@acme.example"), d), "Latchkey <hi@acme.example>");
        let quoted = sender(Some("Acme, Inc."), Some("hi@acme.example"), d);
        let parsed: Mailbox = quoted.parse().unwrap();
        assert_eq!(parsed.name.as_deref(), Some("Acme, Inc."), "{quoted}");
        assert_eq!(sender(Some("Zoë"), None, "no-reply@localhost"), "Zoë <no-reply@localhost>");
    }

    #[test]
    fn only_safe_colours_and_logos_reach_the_html() {
        assert_eq!(css_color(Some("#0A7")), "#0A7");
        assert_eq!(css_color(Some("red;background:url(x)")), DEFAULT_COLOR);
        assert_eq!(css_color(None), DEFAULT_COLOR);
        assert_eq!(image_url("https://acme.example/logo.png"), Some("https://acme.example/logo.png"));
        for bad in [
            "javascript:alert(1)",
            "https://x\" onerror=\"y",
            "//acme.example/l.png",
            "data:image/png,x",
            "https://",
        ] {
            assert_eq!(image_url(bad), None, "{bad}");
        }
    }
}
