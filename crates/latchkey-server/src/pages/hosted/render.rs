//! The hosted pages as minijinja templates (auto-escaped), in the language chosen for the
//! request, with the application's branding, and the headers every hosted page sends.
//!
//! A page is rendered in two parts: its content, then the frame around it (`layout.html`,
//! given the content as `content`). An application may replace either part with its own
//! template (`AppSettings::pages`), run in the sandbox its e-mail templates run in; one that
//! fails at run time is logged and the built-in part is shown instead.

use super::i18n;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use latchkey_core::Application;
use latchkey_core::application::HostedPage;
use latchkey_mail::templates::{TemplateError, sandbox};
use latchkey_service::page_template_name;
use minijinja::{Environment, Value, context};
use std::collections::BTreeMap;
use std::sync::LazyLock;

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    for (page, source) in BUILT_IN {
        env.add_template(page.as_str(), source).expect("built-in page templates parse");
    }
    env
});

const BUILT_IN: [(HostedPage, &str); 6] = [
    (HostedPage::Layout, include_str!("templates/layout.html")),
    (HostedPage::Email, include_str!("templates/email.html")),
    (HostedPage::Wait, include_str!("templates/wait.html")),
    (HostedPage::SameBrowser, include_str!("templates/same_browser.html")),
    (HostedPage::Approve, include_str!("templates/approve.html")),
    (HostedPage::Message, include_str!("templates/message.html")),
];

/// What every part of every page is given.
pub const COMMON_VARIABLES: [&str; 8] =
    ["lang", "title", "product", "logo", "color", "on_color", "script", "t"];

/// What each part is given besides [`COMMON_VARIABLES`].
pub fn page_variables(page: HostedPage) -> &'static [&'static str] {
    match page {
        HostedPage::Layout => &["content"],
        HostedPage::Email => &["hidden", "login_hint", "error"],
        HostedPage::Wait => &["number", "status_url", "wait_url", "error"],
        HostedPage::SameBrowser => &[],
        HostedPage::Approve => &["when", "browser", "ip", "choices"],
        HostedPage::Message => &["heading", "body", "link", "link_text"],
    }
}

/// Made-up values of what `page` is given, to test-render an application's template.
fn sample(page: HostedPage) -> Value {
    match page {
        HostedPage::Layout => context! { content => Value::from_safe_string("<p>The page.</p>".into()) },
        HostedPage::Email => context! {
            hidden => vec![vec!["client_id", "app_sample"], vec!["state", "st"]],
            login_hint => "ada@example.com",
            error => Value::from(()),
        },
        HostedPage::Wait => context! {
            number => "42",
            status_url => "/oauth/authorize/wait/hr_sample/status",
            wait_url => "/oauth/authorize/wait/hr_sample",
            error => Value::from(()),
        },
        HostedPage::SameBrowser => context! {},
        HostedPage::Approve => context! {
            when => "2026-01-01 09:00 UTC",
            browser => "Firefox on Linux",
            ip => "192.0.2.1",
            choices => vec!["17", "42", "88"],
        },
        HostedPage::Message => context! {
            heading => "Signed in",
            body => "You can close this page.",
            link => "https://app.example/",
            link_text => "Back",
        },
    }
}

/// Test-renders an application's template for `page` with made-up values, in every language
/// the pages speak: what it uses must be what the page is given. A frame must show `content`.
/// (Rendering in the sandbox also checks the size, the syntax and the constructs used.)
pub fn check_page(page: HostedPage, source: &str) -> Result<(), TemplateError> {
    let name = page_template_name(page);
    for lang in i18n::LANGUAGES {
        let look = Look::new(lang, None, Some("ada@example.com"));
        let html =
            sandbox::render(&name, source, context! { ..sample(page), ..look.common("email_title", true) })?;
        if page == HostedPage::Layout && !html.contains("<p>The page.</p>") {
            let message = "the frame must show the page's content: {{ content }}";
            return Err(TemplateError { template: name, line: None, message: message.into() });
        }
    }
    Ok(())
}

/// The default brand colour: white text on it has a contrast ratio above 4.5:1.
const DEFAULT_COLOR: &str = "#2f5bea";

/// What every page of one request shares: language, application, words, and the
/// application's own pages.
pub struct Look {
    pub lang: &'static str,
    product: String,
    logo: Option<String>,
    color: String,
    words: BTreeMap<&'static str, String>,
    app_id: Option<String>,
    pages: BTreeMap<String, String>,
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
        let app_id = app.map(|a| a.id.to_string());
        let pages = app.map(|a| a.settings.pages.clone()).unwrap_or_default();
        Self { lang, product, logo, color, words, app_id, pages }
    }

    pub fn word(&self, key: &str) -> String {
        self.words.get(key).cloned().unwrap_or_default()
    }

    fn common(&self, title_key: &str, script: bool) -> Value {
        context! {
            lang => self.lang,
            title => self.word(title_key),
            product => &self.product,
            logo => &self.logo,
            color => &self.color,
            on_color => on_colour(&self.color),
            script => script,
            t => &self.words,
        }
    }

    /// Renders a page; `extra` is what the page is given besides the common values.
    pub fn page(
        &self,
        status: StatusCode,
        page: HostedPage,
        title_key: &str,
        script: bool,
        extra: Value,
    ) -> Response {
        let common = self.common(title_key, script);
        let content = self.part(page, context! { ..extra, ..common.clone() });
        let html =
            self.part(HostedPage::Layout, context! { content => Value::from_safe_string(content), ..common });
        with_headers((status, html).into_response(), script)
    }

    /// One part of a page: the application's template when it has one that renders, else the built-in one.
    fn part(&self, page: HostedPage, ctx: Value) -> String {
        if let Some(source) = self.pages.get(page.as_str()) {
            match sandbox::render(&page_template_name(page), source, ctx.clone()) {
                Ok(html) => return html,
                Err(e) => tracing::warn!(
                    app = self.app_id.as_deref().unwrap_or(""),
                    page = page.as_str(),
                    error = %e,
                    "an application's page did not render; the built-in one is shown"
                ),
            }
        }
        TEMPLATES.get_template(page.as_str()).and_then(|t| t.render(ctx)).unwrap_or_else(|e| {
            tracing::error!(error = %e, page = page.as_str(), "a hosted page did not render");
            "<p>Something went wrong.</p>".to_owned()
        })
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
            HostedPage::Message,
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
    use super::*;

    /// The made-up values cover what each page is said to be given, and the built-in parts,
    /// which use all of it, pass the sandbox's checks with them.
    #[test]
    fn built_in_parts_render_sandboxed_with_the_made_up_values() {
        for (page, source) in BUILT_IN {
            let sample = sample(page);
            let mut given: Vec<String> = sample.try_iter().unwrap().map(|k| k.to_string()).collect();
            let mut said: Vec<String> = page_variables(page).iter().map(|v| v.to_string()).collect();
            given.sort();
            said.sort();
            assert_eq!(given, said, "{}", page.as_str());
            check_page(page, source).unwrap_or_else(|e| panic!("{}: {e}", page.as_str()));
        }
    }

    #[test]
    fn button_text_keeps_its_contrast() {
        assert_eq!(on_colour("#2f5bea"), "#ffffff");
        assert_eq!(on_colour("#000"), "#ffffff");
        assert_eq!(on_colour("#ffd60a"), "#1d1d1f", "white on yellow is unreadable");
        assert_eq!(on_colour("#ffffff"), "#1d1d1f");
    }
}
