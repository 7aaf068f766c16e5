//! What the e-mails say: templates per purpose (`login`, `registration`, `verification`) and
//! locale, subject included. English, French, German and Spanish are built in; an application
//! overrides any part of any of them, or adds a language, with templates of its own that are
//! checked when set and always rendered in a sandbox ([`sandbox`]).
//!
//! Which template a part comes from, for a chosen locale such as `fr-CA`: the application's
//! `fr-CA`, its `fr`, the built-in `fr`, then the application's `en` and the built-in `en`. An
//! application template that fails when rendered is logged and skipped, so a request never
//! fails because of one.

mod builtin;
pub mod sandbox;

pub use builtin::LANGUAGES;
pub use sandbox::{FUEL, MAX_BODY_SOURCE, MAX_OUTPUT, MAX_SUBJECT_SOURCE, RECURSION_LIMIT, TemplateError};

use crate::Locale;
use crate::compose::{css_color, image_url, url_for_html};
use latchkey_core::application::TemplateOverride;
use minijinja::{Value, context};
use std::collections::BTreeMap;

/// An application's templates, by `purpose.locale` (see [`override_key`]).
pub type Overrides = BTreeMap<String, TemplateOverride>;

/// The longest subject sent, in characters.
pub const MAX_SUBJECT_CHARS: usize = 250;

/// An e-mail's purpose is its challenge's.
pub use latchkey_core::challenge::Purpose;

/// The three parts of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Subject,
    Text,
    Html,
}

impl Part {
    pub const ALL: [Self; 3] = [Self::Subject, Self::Text, Self::Html];

    /// The last part of a template's name, which also decides its escaping: only `html` is
    /// HTML-escaped.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Subject => "subject",
            Self::Text => "txt",
            Self::Html => "html",
        }
    }

    fn of(self, t: &TemplateOverride) -> Option<&str> {
        match self {
            Self::Subject => t.subject.as_deref(),
            Self::Text => t.text.as_deref(),
            Self::Html => t.html.as_deref(),
        }
    }
}

/// The key of an application's template in its settings: `login.fr`, `registration.pt-BR`.
pub fn override_key(purpose: Purpose, locale: &Locale) -> String {
    format!("{}.{locale}", purpose.as_str())
}

/// The name a template goes by in errors: `login.fr.html`.
pub fn template_name(purpose: Purpose, locale: &Locale, part: Part) -> String {
    format!("{}.{locale}.{}", purpose.as_str(), part.extension())
}

/// `login.fr-CA` back into its purpose and locale.
pub fn parse_override_key(key: &str) -> Option<(Purpose, Locale)> {
    let (purpose, tag) = key.split_once('.')?;
    let locale = Locale::parse(tag).ok().filter(|l| l.as_str() == tag)?;
    Some((Purpose::parse(purpose)?, locale))
}

/// How an application's e-mails look.
#[derive(Debug, Clone, Copy, Default)]
pub struct Branding<'a> {
    pub product: &'a str,
    /// Shown only if it is an `https://` (or `http://`) URL; the same image for every
    /// recipient, so it tells the sender nothing about who opened what.
    pub logo_url: Option<&'a str>,
    /// `#rgb` or `#rrggbb`; anything else gives the default blue.
    pub color: Option<&'a str>,
}

/// The longest text a caller may put in one place of a sign-in e-mail ([`Wording`]).
pub const MAX_WORDING_CHARS: usize = 2000;

/// A caller's own words for one sign-in e-mail: each one given replaces the built-in text of
/// its place, in the text and HTML parts (HTML-escaped there); the link and the code stay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wording {
    pub subject: Option<String>,
    /// The title (HTML) or the greeting (text).
    pub heading: Option<String>,
    /// The sentence that says what the e-mail is for.
    pub intro: Option<String>,
    /// The label of the button (HTML) or of the link (text).
    pub button: Option<String>,
    /// What the e-mail says of expiry and of ignoring it.
    pub info: Option<String>,
    /// A last line, which the built-in templates do not have.
    pub footer: Option<String>,
}

impl Wording {
    /// The first place whose text is longer than [`MAX_WORDING_CHARS`] (the subject:
    /// [`MAX_SUBJECT_CHARS`]), by its name here.
    pub fn too_long(&self) -> Option<&'static str> {
        let long = |t: &Option<String>, max: usize| t.as_ref().is_some_and(|t| t.chars().count() > max);
        [
            ("subject", &self.subject, MAX_SUBJECT_CHARS),
            ("heading", &self.heading, MAX_WORDING_CHARS),
            ("intro", &self.intro, MAX_WORDING_CHARS),
            ("button", &self.button, MAX_WORDING_CHARS),
            ("info", &self.info, MAX_WORDING_CHARS),
            ("footer", &self.footer, MAX_WORDING_CHARS),
        ]
        .into_iter()
        .find(|(_, t, max)| long(t, *max))
        .map(|(name, ..)| name)
    }

    fn values(this: Option<&Self>) -> Value {
        let text = |f: fn(&Self) -> &Option<String>| {
            this.and_then(|w| f(w).as_deref()).map(str::trim).filter(|t| !t.is_empty())
        };
        context! {
            heading => text(|w| &w.heading),
            intro => text(|w| &w.intro),
            button => text(|w| &w.button),
            info => text(|w| &w.info),
            footer => text(|w| &w.footer),
        }
    }
}

/// A sign-in e-mail: a link and a code.
#[derive(Debug, Clone, Copy)]
pub struct LoginMail<'a> {
    pub branding: Branding<'a>,
    pub email: &'a str,
    pub link: &'a str,
    /// Empty when the e-mail carries no code (a sign-in the application confirms itself):
    /// the built-in templates then speak of the link alone.
    pub code: &'a str,
    /// Minutes until the link expires.
    pub minutes: i64,
    /// Minutes until the code expires.
    pub code_minutes: i64,
    /// The caller's own words for this one message, if any.
    pub wording: Option<&'a Wording>,
}

/// A registration e-mail (§2.4): a button to the application's registration URL.
#[derive(Debug, Clone, Copy)]
pub struct RegistrationMail<'a> {
    pub branding: Branding<'a>,
    pub email: &'a str,
    pub link: &'a str,
    pub minutes: i64,
    /// The subject becomes "{action_name} at {product}".
    pub action_name: Option<&'a str>,
    pub short_msg: Option<&'a str>,
}

/// A verification e-mail's subject when the caller gives none (§2.5).
#[derive(Debug, Clone, Copy)]
pub struct VerificationMail<'a> {
    pub branding: Branding<'a>,
    pub email: &'a str,
}

/// What a message is about, and what its templates may show.
#[derive(Debug, Clone, Copy)]
pub enum MailContext<'a> {
    Login(LoginMail<'a>),
    Registration(RegistrationMail<'a>),
    Verification(VerificationMail<'a>),
}

const SAMPLE_LINK: &str = "https://latchkey.example/l/sample-link-token";
const SAMPLE_CODE: &str = "123456";

impl<'a> MailContext<'a> {
    pub fn purpose(&self) -> Purpose {
        match self {
            Self::Login(_) => Purpose::Login,
            Self::Registration(_) => Purpose::Registration,
            Self::Verification(_) => Purpose::Verification,
        }
    }

    fn branding(&self) -> &Branding<'a> {
        match self {
            Self::Login(m) => &m.branding,
            Self::Registration(m) => &m.branding,
            Self::Verification(m) => &m.branding,
        }
    }

    fn email(&self) -> &'a str {
        match self {
            Self::Login(m) => m.email,
            Self::Registration(m) => m.email,
            Self::Verification(m) => m.email,
        }
    }

    /// The variables a template sees. In HTML, URLs are given already escaped, so that they
    /// stay readable (the escaper would turn every `/` into `&#x2f;`).
    fn values(&self, part: Part, lang: &str, subject: &str) -> Value {
        let html = part == Part::Html;
        let url = |u: &str| if html { url_for_html(u) } else { Value::from(u) };
        let b = self.branding();
        let common = context! {
            product => b.product,
            email => self.email(),
            lang => lang,
            logo_url => b.logo_url.and_then(image_url).map(url),
            color => css_color(b.color),
            subject => subject,
        };
        let own = match self {
            Self::Login(m) => context! {
                link => url(m.link), code => m.code, minutes => m.minutes, code_minutes => m.code_minutes,
                wording => Wording::values(m.wording),
            },
            Self::Registration(m) => context! {
                link => url(m.link), minutes => m.minutes,
                action_name => m.action_name.filter(|s| !s.trim().is_empty()),
                short_msg => m.short_msg.filter(|s| !s.trim().is_empty()),
            },
            Self::Verification(_) => context! {},
        };
        context! { ..common, ..own }
    }
}

/// Made-up values for a test render; `full` sets every optional value, else none is set.
fn sample(purpose: Purpose, full: bool) -> MailContext<'static> {
    let branding = Branding {
        product: "Acme",
        logo_url: full.then_some("https://acme.example/logo.png"),
        color: full.then_some("#0a7d48"),
    };
    let email = "ada@example.com";
    match purpose {
        Purpose::Login => MailContext::Login(LoginMail {
            branding,
            email,
            link: SAMPLE_LINK,
            code: SAMPLE_CODE,
            minutes: if full { 15 } else { 1 },
            code_minutes: 10,
            wording: None,
        }),
        Purpose::Registration => MailContext::Registration(RegistrationMail {
            branding,
            email,
            link: SAMPLE_LINK,
            minutes: 5,
            action_name: full.then_some("Create your account"),
            short_msg: full.then_some("Welcome aboard."),
        }),
        Purpose::Verification => MailContext::Verification(VerificationMail { branding, email }),
    }
}

/// A rendered message, before its envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Whether there is anything to say in this locale: an application template for it (or its
/// language) or a built-in one for its language.
fn available(purpose: Purpose, locale: &Locale, overrides: &Overrides) -> bool {
    let own = |l: &Locale| overrides.contains_key(&override_key(purpose, l));
    own(locale)
        || locale.without_region().is_some_and(|l| own(&l))
        || builtin::has_language(purpose, locale.language())
}

/// The first of `candidates` (the request's locale, the user's, the application's default) in
/// which this purpose's e-mail can be written; English when none can.
pub fn choose_locale<'l>(
    purpose: Purpose,
    candidates: impl IntoIterator<Item = &'l Locale>,
    overrides: &Overrides,
) -> Locale {
    candidates.into_iter().find(|l| available(purpose, l, overrides)).cloned().unwrap_or_else(Locale::english)
}

enum Source<'o> {
    Own { name: String, lang: Locale, source: &'o str },
    BuiltIn { name: &'static str, lang: &'static str },
}

/// Where one part can come from, best first (see the module's documentation).
fn sources<'o>(purpose: Purpose, part: Part, locale: &Locale, overrides: &'o Overrides) -> Vec<Source<'o>> {
    let mut out = Vec::new();
    let own = |l: &Locale, out: &mut Vec<Source<'o>>| {
        let found = overrides.get(&override_key(purpose, l)).and_then(|t| part.of(t));
        if let Some(source) = found {
            out.push(Source::Own { name: template_name(purpose, l, part), lang: l.clone(), source });
        }
    };
    own(locale, &mut out);
    if let Some(language) = locale.without_region() {
        own(&language, &mut out);
    }
    if let Some(&lang) = LANGUAGES.iter().find(|l| **l == locale.language()) {
        out.extend(builtin::name(purpose, lang, part).map(|name| Source::BuiltIn { name, lang }));
    }
    if locale.language() != "en" {
        own(&Locale::english(), &mut out);
        out.extend(builtin::name(purpose, "en", part).map(|name| Source::BuiltIn { name, lang: "en" }));
    }
    out
}

/// Renders a message in `locale` (see [`choose_locale`]) with the application's templates.
/// A verification message has a subject only: its body is the caller's.
pub fn render(mail: &MailContext<'_>, locale: &Locale, overrides: &Overrides) -> Rendered {
    let own_subject = match mail {
        MailContext::Login(m) => m.wording.and_then(|w| w.subject.as_deref()).map(one_line),
        _ => None,
    };
    let subject = own_subject
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| one_line(&render_part(mail, Part::Subject, locale, overrides, "")));
    let text = render_part(mail, Part::Text, locale, overrides, &subject);
    let html = render_part(mail, Part::Html, locale, overrides, &subject);
    Rendered { subject, text, html }
}

fn render_part(
    mail: &MailContext<'_>,
    part: Part,
    locale: &Locale,
    overrides: &Overrides,
    subject: &str,
) -> String {
    for source in sources(mail.purpose(), part, locale, overrides) {
        match source {
            Source::Own { name, lang, source } => {
                match sandbox::render(&name, source, mail.values(part, lang.as_str(), subject)) {
                    Ok(out) => return out,
                    Err(e) => tracing::warn!(
                        template = %name, error = %e, "an application's template failed; using the next one"
                    ),
                }
            }
            Source::BuiltIn { name, lang } => return builtin::render(name, mail.values(part, lang, subject)),
        }
    }
    String::new()
}

/// A subject on one line: runs of white space (line breaks included) become one space, and it
/// is cut at [`MAX_SUBJECT_CHARS`].
pub fn one_line(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match joined.char_indices().nth(MAX_SUBJECT_CHARS) {
        Some((cut, _)) => joined[..cut].trim_end().to_owned(),
        None => joined,
    }
}

/// Checks an application's template before it is stored: its size, syntax and constructs, then
/// a test render of each part with made-up values (once with every optional value set, once
/// with none), which must give a subject that is not empty and a body that shows the link (or,
/// for a sign-in, the code).
pub fn validate(purpose: Purpose, locale: &Locale, template: &TemplateOverride) -> Result<(), TemplateError> {
    for part in Part::ALL {
        let Some(source) = part.of(template) else { continue };
        let name = template_name(purpose, locale, part);
        if part != Part::Subject && !purpose.has_body() {
            return Err(TemplateError::new(
                &name,
                None,
                "a verification e-mail's body is the caller's own template; only its subject can be set here",
            ));
        }
        sandbox::check(&name, source)?;
        for full in [true, false] {
            let sample = sample(purpose, full);
            let out = sandbox::render(&name, source, sample.values(part, locale.as_str(), "Sample subject"))?;
            let shows = |s: &str| out.contains(s);
            let problem = match part {
                Part::Subject if one_line(&out).is_empty() => Some("the subject renders empty"),
                Part::Text | Part::Html
                    if purpose == Purpose::Login && !shows(SAMPLE_LINK) && !shows(SAMPLE_CODE) =>
                {
                    Some("a sign-in e-mail must show {{ link }} or {{ code }}")
                }
                Part::Text | Part::Html if purpose == Purpose::Registration && !shows(SAMPLE_LINK) => {
                    Some("a registration e-mail must show {{ link }}")
                }
                _ => None,
            };
            if let Some(problem) = problem {
                return Err(TemplateError::new(&name, None, problem));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
