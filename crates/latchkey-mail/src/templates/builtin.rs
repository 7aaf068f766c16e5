//! The templates Latchkey ships: per purpose and language, a subject, a text part and an HTML
//! part (the HTML parts share one layout). Trusted, so rendered without the sandbox's limits.

use super::{Part, Purpose};
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};
use std::sync::LazyLock;

/// The languages every purpose has built in.
pub const LANGUAGES: &[&str] = &["en", "fr", "de", "es"];

macro_rules! files {
    ($($name:literal => $path:literal),* $(,)?) => {
        &[$(($name, include_str!($path))),*]
    };
}

static FILES: &[(&str, &str)] = files![
    "layout.html" => "builtin/layout.html",
    "login.html" => "builtin/login.html",
    "registration.html" => "builtin/registration.html",
    "login.en.subject" => "builtin/login/en.subject",
    "login.en.txt" => "builtin/login/en.txt",
    "login.en.html" => "builtin/login/en.html",
    "login.fr.subject" => "builtin/login/fr.subject",
    "login.fr.txt" => "builtin/login/fr.txt",
    "login.fr.html" => "builtin/login/fr.html",
    "login.de.subject" => "builtin/login/de.subject",
    "login.de.txt" => "builtin/login/de.txt",
    "login.de.html" => "builtin/login/de.html",
    "login.es.subject" => "builtin/login/es.subject",
    "login.es.txt" => "builtin/login/es.txt",
    "login.es.html" => "builtin/login/es.html",
    "registration.en.subject" => "builtin/registration/en.subject",
    "registration.en.txt" => "builtin/registration/en.txt",
    "registration.en.html" => "builtin/registration/en.html",
    "registration.fr.subject" => "builtin/registration/fr.subject",
    "registration.fr.txt" => "builtin/registration/fr.txt",
    "registration.fr.html" => "builtin/registration/fr.html",
    "registration.de.subject" => "builtin/registration/de.subject",
    "registration.de.txt" => "builtin/registration/de.txt",
    "registration.de.html" => "builtin/registration/de.html",
    "registration.es.subject" => "builtin/registration/es.subject",
    "registration.es.txt" => "builtin/registration/es.txt",
    "registration.es.html" => "builtin/registration/es.html",
    "verification.en.subject" => "builtin/verification/en.subject",
    "verification.fr.subject" => "builtin/verification/fr.subject",
    "verification.de.subject" => "builtin/verification/de.subject",
    "verification.es.subject" => "builtin/verification/es.subject",
];

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env.set_auto_escape_callback(auto_escape);
    for (name, source) in FILES {
        env.add_template(name, source).expect("a built-in template parses");
    }
    env
});

pub(super) fn auto_escape(name: &str) -> AutoEscape {
    if name.ends_with(".html") { AutoEscape::Html } else { AutoEscape::None }
}

/// The name of the built-in template for this purpose, language and part, if there is one.
pub(super) fn name(purpose: Purpose, language: &str, part: Part) -> Option<&'static str> {
    let wanted = format!("{}.{language}.{}", purpose.as_str(), part.extension());
    FILES.iter().map(|(name, _)| *name).find(|name| *name == wanted)
}

pub(super) fn has_language(purpose: Purpose, language: &str) -> bool {
    name(purpose, language, Part::Subject).is_some()
}

pub(super) fn render(name: &str, context: Value) -> String {
    ENV.get_template(name)
        .and_then(|t| t.render(context))
        .unwrap_or_else(|e| panic!("the built-in template {name} renders: {e:#}"))
}
