use super::*;
use std::time::{Duration, Instant};

fn locale(tag: &str) -> Locale {
    Locale::parse(tag).unwrap()
}

fn login<'a>(branding: Branding<'a>) -> MailContext<'a> {
    MailContext::Login(LoginMail {
        branding,
        email: "ada@example.com",
        link: "https://id.example/l/AbC-123_x",
        code: "042917",
        minutes: 15,
        code_minutes: 10,
        wording: None,
    })
}

fn acme() -> Branding<'static> {
    Branding { product: "Acme", logo_url: None, color: None }
}

fn own(subject: Option<&str>, text: Option<&str>, html: Option<&str>) -> TemplateOverride {
    TemplateOverride {
        subject: subject.map(Into::into),
        text: text.map(Into::into),
        html: html.map(Into::into),
    }
}

#[test]
fn every_built_in_message_renders_in_every_language() {
    for lang in LANGUAGES {
        for full in [true, false] {
            for purpose in Purpose::ALL {
                let mail = sample(purpose, full);
                let out = render(&mail, &locale(lang), &Overrides::new());
                assert!(!out.subject.is_empty() && !out.subject.contains('\n'), "{lang} {purpose:?}");
                assert!(out.subject.contains("Acme"), "{lang} {purpose:?}: {}", out.subject);
                if !purpose.has_body() {
                    assert!(out.text.is_empty() && out.html.is_empty());
                    continue;
                }
                for part in [&out.text, &out.html] {
                    assert!(part.contains(SAMPLE_LINK), "{lang} {purpose:?}: {part}");
                    assert!(!part.contains("{{") && !part.contains("{%"), "{lang} {purpose:?}: {part}");
                }
                if purpose == Purpose::Login {
                    assert!(out.text.contains(SAMPLE_CODE) && out.html.contains(SAMPLE_CODE));
                }
                assert!(out.html.contains(&format!("<html lang=\"{lang}\">")), "{}", out.html);
                assert!(out.html.contains("<title>"), "the HTML names its subject");
                assert_eq!(out.html.contains("<img"), full, "only the logo is an image");
            }
        }
    }
}

#[test]
fn a_sign_in_without_a_code_speaks_of_the_link_alone() {
    for lang in LANGUAGES {
        let MailContext::Login(mut mail) = login(acme()) else { unreachable!() };
        let with_code = render(&MailContext::Login(mail), &locale(lang), &Overrides::new());
        mail.code = "";
        let out = render(&MailContext::Login(mail), &locale(lang), &Overrides::new());
        for (part, with) in [(&out.text, &with_code.text), (&out.html, &with_code.html)] {
            assert!(part.contains("https://id.example/l/AbC-123_x"), "{lang}: {part}");
            assert!(part.len() < with.len(), "{lang}: the code's lines are gone");
            assert!(!part.contains("042917") && !part.contains("{%"), "{lang}: {part}");
        }
        let code_word = match *lang {
            "fr" | "de" => "Code",
            "es" => "código",
            _ => "code",
        };
        for part in [&out.text, &out.html] {
            assert!(!part.to_lowercase().contains(&code_word.to_lowercase()), "{lang}: {part}");
        }
    }
}

#[test]
fn the_languages_say_different_things() {
    let subjects: Vec<String> =
        LANGUAGES.iter().map(|l| render(&login(acme()), &locale(l), &Overrides::new()).subject).collect();
    assert_eq!(subjects[0], "Your sign-in link for Acme");
    assert_eq!(subjects[1], "Votre lien de connexion à Acme");
    assert_eq!(subjects[2], "Ihr Anmeldelink für Acme");
    assert_eq!(subjects[3], "Tu enlace para iniciar sesión en Acme");
    let text = render(&login(acme()), &locale("de"), &Overrides::new()).text;
    assert!(text.contains("in 15 Minuten ab, der Code in 10 Minuten"), "{text}");
}

#[test]
fn registration_subject_follows_the_action_name() {
    let mail = |action_name| {
        MailContext::Registration(RegistrationMail {
            branding: acme(),
            email: "ada@example.com",
            link: "https://app.example/register?x=1&registration_validation_token=T",
            minutes: 5,
            action_name,
            short_msg: Some("Welcome <friend>"),
        })
    };
    let out = render(&mail(Some("Create your account")), &locale("en"), &Overrides::new());
    assert_eq!(out.subject, "Create your account at Acme");
    assert!(out.text.contains("https://app.example/register?x=1&registration_validation_token=T"));
    assert!(out.html.contains("https://app.example/register?x=1&amp;registration_validation_token=T"));
    assert!(out.html.contains("Welcome &lt;friend&gt;") && out.text.contains("Welcome <friend>"));
    let out = render(&mail(None), &locale("fr"), &Overrides::new());
    assert_eq!(out.subject, "Confirmez votre adresse e-mail pour Acme");
    let out = render(&mail(Some("  ")), &locale("es"), &Overrides::new());
    assert_eq!(out.subject, "Confirma tu dirección de correo para Acme");
}

#[test]
fn branding_is_escaped_and_checked() {
    let branding = Branding {
        product: "<Acme & Co>",
        logo_url: Some("https://acme.example/logo.png?v=1&s=2"),
        color: Some("red;background:url(x)"),
    };
    let out = render(&login(branding), &locale("en"), &Overrides::new());
    assert_eq!(out.subject, "Your sign-in link for <Acme & Co>");
    assert!(out.text.contains("sign in to <Acme & Co> as"));
    assert!(out.html.contains("&lt;Acme &amp; Co&gt;") && !out.html.contains("<Acme"));
    assert!(out.html.contains("<img src=\"https://acme.example/logo.png?v=1&amp;s=2\""), "{}", out.html);
    assert!(!out.html.contains("url(x)") && out.html.contains(crate::compose::DEFAULT_COLOR));
    let hostile = Branding { logo_url: Some("javascript:alert(1)"), color: Some("#0a7d48"), ..acme() };
    let out = render(&login(hostile), &locale("en"), &Overrides::new());
    assert!(!out.html.contains("<img") && out.html.contains("#0a7d48"));
}

#[test]
fn the_locale_is_the_first_candidate_that_can_be_written() {
    let none = Overrides::new();
    let pick = |candidates: &[&str], overrides: &Overrides| {
        let c: Vec<Locale> = candidates.iter().map(|c| locale(c)).collect();
        choose_locale(Purpose::Login, &c, overrides).to_string()
    };
    assert_eq!(pick(&["fr-CA"], &none), "fr-CA");
    assert_eq!(pick(&["ja", "de"], &none), "de", "an unknown request locale gives way to the next");
    assert_eq!(pick(&["ja"], &none), "en");
    assert_eq!(pick(&[], &none), "en");
    let mut italian = Overrides::new();
    italian.insert("login.it".into(), own(Some("Il tuo link per {{ product }}"), None, None));
    assert_eq!(pick(&["it-CH", "de"], &italian), "it-CH");
    // French Canadian gets the built-in French.
    let out = render(&login(acme()), &locale("fr-CA"), &none);
    assert_eq!(out.subject, "Votre lien de connexion à Acme");
    assert!(out.html.contains("<html lang=\"fr\">"));
}

#[test]
fn an_application_overrides_any_part_and_the_rest_stays_built_in() {
    let mut overrides = Overrides::new();
    overrides.insert("login.fr".into(), own(Some("Entrez dans {{ product }} : {{ code }}"), None, None));
    overrides.insert(
        "login.fr-CA".into(),
        own(None, Some("Allô! {{ link }} ou {{ code }}"), Some("<p>Allô <b>{{ email }}</b> {{ link }}</p>")),
    );
    overrides.insert("login.it".into(), own(Some("Accedi a {{ product }}"), None, None));
    let out = render(&login(acme()), &locale("fr-CA"), &overrides);
    assert_eq!(out.subject, "Entrez dans Acme : 042917");
    assert_eq!(out.text, "Allô! https://id.example/l/AbC-123_x ou 042917");
    assert_eq!(out.html, "<p>Allô <b>ada@example.com</b> https://id.example/l/AbC-123_x</p>");
    let out = render(&login(acme()), &locale("fr"), &overrides);
    assert!(out.text.starts_with("Bonjour"), "fr-CA's text is not fr's");
    // A language Latchkey does not ship: its subject, and English for the rest.
    let out = render(&login(acme()), &locale("it"), &overrides);
    assert_eq!(out.subject, "Accedi a Acme");
    assert!(out.text.starts_with("Hello,") && out.html.contains("lang=\"en\""));
}

#[test]
fn an_application_template_that_fails_at_render_falls_back() {
    let mut overrides = Overrides::new();
    // Passed the upload checks with the sample values, fails with these: `minutes` is 15 here.
    overrides.insert("login.en".into(), own(Some("{% if minutes > 10 %}{{ nope }}{% endif %}x"), None, None));
    let out = render(&login(acme()), &locale("en"), &overrides);
    assert_eq!(out.subject, "Your sign-in link for Acme");
}

#[test]
fn a_bad_template_is_refused_with_its_name_and_line() {
    let check = |purpose, tag, t: TemplateOverride| validate(purpose, &locale(tag), &t).unwrap_err();
    let e = check(Purpose::Login, "fr", own(None, Some("Bonjour\n{{ link }}\n{% if code %}\n"), None));
    assert_eq!(e.template, "login.fr.txt");
    assert!(e.line.is_some(), "{e}");
    assert!(e.to_string().starts_with("login.fr.txt, line"), "{e}");

    let e = check(Purpose::Login, "en", own(None, None, Some("<p>{{ link }}</p>\n<p>{{ lnik }}</p>")));
    assert_eq!((e.template.as_str(), e.line), ("login.en.html", Some(2)), "{e}");
    assert!(e.message.contains("undefined"), "{e}");

    let e = check(Purpose::Login, "en", own(None, Some("Hello, {{ product }}. Nothing else."), None));
    assert!(e.message.contains("{{ link }} or {{ code }}"), "{e}");
    let e = check(Purpose::Registration, "de", own(None, None, Some("<p>{{ product }} {{ code }}</p>")));
    assert_eq!(e.template, "registration.de.html");
    let e = check(Purpose::Login, "en", own(Some("{% if false %}x{% endif %}  "), None, None));
    assert!(e.message.contains("empty"), "{e}");
    let e = check(Purpose::Verification, "en", own(Some("Verify"), Some("{{ email }}"), None));
    assert_eq!(e.template, "verification.en.txt");
    assert!(
        validate(Purpose::Verification, &locale("en"), &own(Some("Verify for {{ product }}"), None, None))
            .is_ok()
    );
    let e = check(Purpose::Login, "en", own(None, None, Some(&"x".repeat(MAX_BODY_SOURCE + 1))));
    assert!(e.message.contains("longer than"), "{e}");
    let e = check(Purpose::Login, "en", own(None, Some("{{ link|safe }}"), None));
    assert!(e.message.contains("filter"), "no `safe`: {e}");
}

#[test]
fn only_if_and_for_are_allowed_and_values_cannot_grow() {
    let refused = [
        ("{{ link }}\n{% set x = email %}{{ x }}", "set"),
        ("{{ link }}{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "macro"),
        ("{{ link }}{% with x = 1 %}{% endwith %}", "with"),
        ("{{ link }}{% include 'x' %}", "include"),
        ("{% extends 'layout.html' %}{{ link }}", "extends"),
        ("{{ link }}{% autoescape false %}{{ email }}{% endautoescape %}", "autoescape"),
        ("{{ link }}{% filter upper %}x{% endfilter %}", "filter"),
        ("{{ link }}\n\n{{ 'x' * 99999999 }}", "*"),
        ("{{ link }}{{ 2 ** 64 }}", "*"),
    ];
    for (source, what) in refused {
        let e = validate(Purpose::Login, &locale("en"), &own(None, Some(source), None)).unwrap_err();
        assert!(e.message.contains(what), "{source}: {e}");
        assert!(e.line.is_some(), "{source}: {e}");
    }
    let e = validate(Purpose::Login, &locale("en"), &own(None, Some("{{ link }}\n\n{{ 'x' * 9 }}"), None))
        .unwrap_err();
    assert_eq!(e.line, Some(3));
    for fine in [
        "{% for c in code %}{{ c }} {% endfor %}{{ link }}",
        "{% if logo_url is none %}no logo{% else %}{{ logo_url }}{% endif %} {{ link|upper|lower }} {{ code }}",
        "{% raw %}{% set %}{% endraw %}{{ link }}",
        "{{ product|default('x') }} {{ minutes + code_minutes }} {{ link ~ ' ' ~ code }}",
    ] {
        validate(Purpose::Login, &locale("en"), &own(None, Some(fine), None))
            .unwrap_or_else(|e| panic!("{fine}: {e}"));
    }
}

#[test]
fn a_template_that_would_run_forever_is_stopped() {
    // Loops over the e-mail address, five deep: 15^5 turns. Fuel stops it, quickly.
    let looping = "{{ link }}{% for a in email %}{% for b in email %}{% for c in email %}{% for d in email %}\
                   {% for e in email %}.{% endfor %}{% endfor %}{% endfor %}{% endfor %}{% endfor %}";
    let started = Instant::now();
    let e = validate(Purpose::Login, &locale("en"), &own(None, Some(looping), None)).unwrap_err();
    assert!(e.message.contains("fuel"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // Output that grows without a loop being long: the cap stops it.
    let wide = format!(
        "{{{{ link }}}}{{% for a in email %}}{{% for b in email %}}{}{{% endfor %}}{{% endfor %}}",
        "x".repeat(2000)
    );
    let e = validate(Purpose::Login, &locale("en"), &own(None, Some(&wide), None)).unwrap_err();
    assert!(e.message.contains("KiB"), "{e}");

    // Recursion through loops and deep nesting end in an error, not a crashed stack.
    let deep = format!("{{{{ link }}}}{}x{}", "{% if true %}".repeat(200), "{% endif %}".repeat(200));
    assert!(validate(Purpose::Login, &locale("en"), &own(None, Some(&deep), None)).is_err());
    let parens = format!("{{{{ link }}}}{{{{ {}1{} }}}}", "(".repeat(5000), ")".repeat(5000));
    assert!(validate(Purpose::Login, &locale("en"), &own(None, Some(&parens), None)).is_err());

    // And at render time the same template is stopped, and the built-in one used.
    let mut overrides = Overrides::new();
    overrides.insert("login.en".into(), own(None, Some(looping), None));
    let out = render(&login(acme()), &locale("en"), &overrides);
    assert!(out.text.starts_with("Hello,"), "{}", out.text);
}

#[test]
fn application_templates_are_auto_escaped_in_html_only() {
    let mut overrides = Overrides::new();
    overrides.insert(
        "login.en".into(),
        own(
            Some("Hi {{ product }}"),
            Some("{{ product }} {{ link }}"),
            Some("<h1>{{ product }}</h1><a href=\"{{ link }}\">go</a>"),
        ),
    );
    let branding = Branding { product: "<script>alert(1)</script>", ..acme() };
    let out = render(&login(branding), &locale("en"), &overrides);
    assert_eq!(out.subject, "Hi <script>alert(1)</script>");
    assert_eq!(out.text, "<script>alert(1)</script> https://id.example/l/AbC-123_x");
    assert_eq!(
        out.html,
        "<h1>&lt;script&gt;alert(1)&lt;&#x2f;script&gt;</h1><a href=\"https://id.example/l/AbC-123_x\">go</a>"
    );
}

#[test]
fn override_keys_round_trip() {
    assert_eq!(override_key(Purpose::Registration, &locale("pt_br")), "registration.pt-BR");
    assert_eq!(parse_override_key("login.fr-CA"), Some((Purpose::Login, locale("fr-CA"))));
    assert_eq!(parse_override_key("login.fr-ca"), None, "keys are stored normalised");
    assert_eq!(parse_override_key("signup.fr"), None);
    assert_eq!(one_line("  a\r\n b\tc  "), "a b c");
    assert_eq!(one_line(&"é".repeat(300)).chars().count(), MAX_SUBJECT_CHARS);
}

#[test]
fn a_caller_s_wording_replaces_each_built_in_text_in_every_language_and_is_escaped() {
    let wording = Wording {
        subject: Some("Your\nAcme <link>".into()),
        heading: Some("Hi <b>there</b>".into()),
        intro: Some("Press to enter.".into()),
        button: Some("Enter".into()),
        info: Some("Lasts a while.".into()),
        footer: Some("Acme & Co".into()),
    };
    for lang in LANGUAGES {
        let MailContext::Login(mut mail) = login(acme()) else { unreachable!() };
        let plain = render(&MailContext::Login(mail), &locale(lang), &Overrides::new());
        mail.wording = Some(&wording);
        let out = render(&MailContext::Login(mail), &locale(lang), &Overrides::new());
        assert_eq!(out.subject, "Your Acme <link>", "one line, as given");
        for words in ["Hi <b>there</b>", "Press to enter.", "Enter:", "Lasts a while.", "Acme & Co"] {
            assert!(out.text.contains(words), "{lang}: {words:?} in {}", out.text);
        }
        assert!(out.html.contains("Hi &lt;b&gt;there&lt;&#x2f;b&gt;") && out.html.contains("Acme &amp; Co"));
        assert!(out.html.contains(">Enter</a>"), "{lang}: {}", out.html);
        for part in [&out.text, &out.html] {
            assert!(part.contains("https://id.example/l/AbC-123_x") && part.contains("042917"), "{lang}");
        }
        assert!(!plain.text.is_empty() && !plain.text.contains("Acme & Co"), "no footer unless given");
        let intro_line = plain.text.lines().nth(2).unwrap();
        assert!(!out.text.contains(intro_line), "{lang}: the built-in intro is replaced");
    }
    let long = Wording { footer: Some("x".repeat(MAX_WORDING_CHARS + 1)), ..Wording::default() };
    assert_eq!(long.too_long(), Some("footer"));
    assert_eq!(wording.too_long(), None);
}
