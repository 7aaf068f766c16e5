//! The hosted pages as minijinja templates (auto-escaped), in the language chosen for the
//! request, with the application's branding, and the headers every hosted page sends.

use super::i18n;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use latchkey_core::Application;
use minijinja::{Environment, Value, context};
use std::collections::BTreeMap;
use std::sync::LazyLock;

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    for (name, source) in [
        ("layout.html", include_str!("templates/layout.html")),
        ("email.html", include_str!("templates/email.html")),
        ("wait.html", include_str!("templates/wait.html")),
        ("same_browser.html", include_str!("templates/same_browser.html")),
        ("approve.html", include_str!("templates/approve.html")),
        ("message.html", include_str!("templates/message.html")),
    ] {
        env.add_template(name, source).expect("built-in page templates parse");
    }
    env
});

/// The default brand colour: white text on it has a contrast ratio above 4.5:1.
const DEFAULT_COLOR: &str = "#2f5bea";

/// What every page of one request shares: language, application, words.
pub struct Look {
    pub lang: &'static str,
    product: String,
    logo: Option<String>,
    color: String,
    words: BTreeMap<&'static str, String>,
}

impl Look {
    pub fn new(lang: &'static str, app: Option<&Application>, email: Option<&str>) -> Self {
        let product = app.map(|a| a.product_name().to_owned()).unwrap_or_else(|| "Latchkey".to_owned());
        let branding = app.map(|a| &a.settings.branding);
        let color = branding
            .and_then(|b| b.primary_color.clone())
            .filter(|c| is_colour(c))
            .unwrap_or_else(|| DEFAULT_COLOR.to_owned());
        let logo = branding.and_then(|b| b.logo_url.clone()).filter(|u| u.starts_with("https://"));
        let words = i18n::strings(lang)
            .iter()
            .map(|(k, v)| (*k, v.replace("{product}", &product).replace("{email}", email.unwrap_or(""))))
            .collect();
        Self { lang, product, logo, color, words }
    }

    pub fn word(&self, key: &str) -> String {
        self.words.get(key).cloned().unwrap_or_default()
    }

    /// Renders a page; `extra` is the page's own context.
    pub fn page(
        &self,
        status: StatusCode,
        template: &str,
        title_key: &str,
        script: bool,
        extra: Value,
    ) -> Response {
        let base = context! {
            lang => self.lang,
            title => self.word(title_key),
            product => &self.product,
            logo => &self.logo,
            color => &self.color,
            on_color => on_colour(&self.color),
            script => script,
            t => &self.words,
        };
        let ctx = context! { ..extra, ..base };
        let html = TEMPLATES.get_template(template).and_then(|t| t.render(ctx)).unwrap_or_else(|e| {
            tracing::error!(error = %e, template, "a hosted page did not render");
            "<!doctype html><title>Error</title><p>Something went wrong.</p>".to_owned()
        });
        with_headers((status, html).into_response(), script)
    }

    /// A page that only says something: an end state or an error.
    pub fn message(
        &self,
        status: StatusCode,
        title_key: &str,
        body_key: &str,
        link: Option<(&str, String)>,
    ) -> Response {
        let (link_text, link) = link.map(|(k, l)| (self.word(k), Some(l))).unwrap_or_default();
        self.page(
            status,
            "message.html",
            title_key,
            false,
            context! { heading => self.word(title_key), body => self.word(body_key), link, link_text },
        )
    }
}

/// The text colour on a button of colour `c`: white when it contrasts 4.5:1 or more (WCAG AA),
/// else near-black, so that an application's light brand colour stays readable.
fn on_colour(c: &str) -> &'static str {
    let hex = c.trim_start_matches('#');
    let full: String =
        if hex.len() == 3 { hex.chars().flat_map(|ch| [ch, ch]).collect() } else { hex.to_owned() };
    let channel = |i: usize| {
        let v = f64::from(u8::from_str_radix(full.get(i..i + 2).unwrap_or("00"), 16).unwrap_or(0)) / 255.0;
        if v <= 0.03928 { v / 12.92 } else { ((v + 0.055) / 1.055).powf(2.4) }
    };
    let luminance = 0.2126 * channel(0) + 0.7152 * channel(2) + 0.0722 * channel(4);
    if 1.05 / (luminance + 0.05) >= 4.5 { "#ffffff" } else { "#1d1d1f" }
}

fn is_colour(c: &str) -> bool {
    let hex = c.strip_prefix('#').unwrap_or("");
    matches!(hex.len(), 3 | 6) && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The headers of every hosted page. Scripts only from this server (`script-src 'self'`, no
/// inline script); no `form-action`: Chromium applies it to the redirect that follows a form
/// post, which would block the 303 to the application.
pub fn with_headers(mut response: Response, script: bool) -> Response {
    let csp = if script {
        "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; img-src https: data:; frame-ancestors 'none'; base-uri 'none'"
    } else {
        "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; frame-ancestors 'none'; base-uri 'none'"
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

#[cfg(test)]
mod tests {
    use super::on_colour;

    #[test]
    fn button_text_keeps_its_contrast() {
        assert_eq!(on_colour("#2f5bea"), "#ffffff");
        assert_eq!(on_colour("#000"), "#ffffff");
        assert_eq!(on_colour("#ffd60a"), "#1d1d1f", "white on yellow is unreadable");
        assert_eq!(on_colour("#ffffff"), "#1d1d1f");
    }
}
