//! Running an application's templates (its e-mails, and its hosted pages in the server's pages
//! face) safely: HTML auto-escaping, no loader (so no includes, imports or file access), no
//! globals, a short list of filters and tests, fuel for every instruction, a recursion limit,
//! and a cap on the output.
//!
//! Fuel bounds the time a template runs but not the memory one operation can take, and
//! MiniJinja's language can grow a value exponentially in a few instructions (doubling a
//! variable with `{% set %}`, repeating a string with `*`). So a template may use `if` and
//! `for` only (no `set`, `with`, `macro`, `call`, `filter`, `include`, `extends`, `block`,
//! `autoescape`), never `*` or `**`, and no filter that multiplies its input (`join`,
//! `replace`, `indent`, `escape`, `format`): every value it makes is then bounded by its own
//! text and the context's strings.

use minijinja::machinery::{Token, WhitespaceConfig, tokenize};
use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value, filters, tests};
use std::io;

/// Instructions one render may execute.
pub const FUEL: u64 = 50_000;
/// Nesting of loops and conditions at run time.
pub const RECURSION_LIMIT: usize = 32;
/// Bytes one part may render to.
pub const MAX_OUTPUT: usize = 256 * 1024;
/// The largest template source per part, in bytes.
pub const MAX_SUBJECT_SOURCE: usize = 1_000;
pub const MAX_BODY_SOURCE: usize = 48 * 1024;

const STATEMENTS: &[&str] = &["if", "elif", "else", "endif", "for", "endfor", "raw", "endraw"];

/// Why a template was refused or failed to render, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{template}{}: {message}", line.map(|l| format!(", line {l}")).unwrap_or_default())]
pub struct TemplateError {
    /// `login.fr.html`: the purpose, the locale and the part.
    pub template: String,
    pub line: Option<usize>,
    pub message: String,
}

impl TemplateError {
    pub(super) fn new(template: &str, line: Option<usize>, message: impl Into<String>) -> Self {
        Self { template: template.to_owned(), line, message: message.into() }
    }

    /// The engine's error, with the bit of the template it points at when it points at one.
    fn from_engine(template: &str, source: &str, e: &minijinja::Error) -> Self {
        let mut message = match e.kind() {
            ErrorKind::OutOfFuel => "the template takes too long to render (it ran out of fuel)".to_owned(),
            ErrorKind::WriteFailure => format!("the template renders more than {} KiB", MAX_OUTPUT / 1024),
            kind => match e.detail() {
                Some(detail) => format!("{kind}: {detail}"),
                None => kind.to_string(),
            },
        };
        let near = e.range().and_then(|r| source.get(r)).map(str::trim).filter(|s| !s.is_empty());
        if let Some(near) = near {
            let near: String = near.chars().take(60).collect();
            message.push_str(&format!(" (at `{near}`)"));
        }
        Self::new(template, e.line(), message)
    }
}

fn environment<'s>() -> Environment<'s> {
    let mut env = Environment::empty();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(RECURSION_LIMIT);
    env.set_auto_escape_callback(super::builtin::auto_escape);
    env.set_keep_trailing_newline(true);
    env.add_filter("upper", filters::upper);
    env.add_filter("lower", filters::lower);
    env.add_filter("title", filters::title);
    env.add_filter("capitalize", filters::capitalize);
    env.add_filter("trim", filters::trim);
    env.add_filter("default", filters::default);
    env.add_filter("d", filters::default);
    env.add_filter("length", filters::length);
    env.add_filter("count", filters::length);
    env.add_filter("first", filters::first);
    env.add_filter("last", filters::last);
    env.add_filter("int", filters::int);
    env.add_filter("round", filters::round);
    env.add_filter("abs", filters::abs);
    env.add_test("defined", tests::is_defined);
    env.add_test("undefined", tests::is_undefined);
    env.add_test("none", tests::is_none);
    env.add_test("number", tests::is_number);
    env.add_test("string", tests::is_string);
    env.add_test("odd", tests::is_odd);
    env.add_test("even", tests::is_even);
    env.add_test("eq", tests::is_eq);
    env.add_test("ne", tests::is_ne);
    env.add_test("lt", tests::is_lt);
    env.add_test("le", tests::is_le);
    env.add_test("gt", tests::is_gt);
    env.add_test("ge", tests::is_ge);
    env.add_test("in", tests::is_in);
    env.add_test("startingwith", tests::is_startingwith);
    env.add_test("endingwith", tests::is_endingwith);
    env
}

/// Checks a template's size, syntax and the constructs it uses, without rendering it.
pub fn check(name: &str, source: &str) -> Result<(), TemplateError> {
    check_size(name, source)?;
    let env = environment();
    env.template_from_named_str(name, source).map_err(|e| TemplateError::from_engine(name, source, &e))?;
    screen(name, source)
}

fn check_size(name: &str, source: &str) -> Result<(), TemplateError> {
    let max = if name.ends_with(".subject") { MAX_SUBJECT_SOURCE } else { MAX_BODY_SOURCE };
    if source.len() > max {
        return Err(TemplateError::new(name, None, format!("the template is longer than {max} bytes")));
    }
    Ok(())
}

/// Refuses the statements and operators that could make a value grow without bound, reading
/// the template with the engine's own lexer.
// `SyntaxConfig` is a unit struct only while MiniJinja's `custom_syntax` feature is off.
#[allow(clippy::default_constructed_unit_structs)]
fn screen(name: &str, source: &str) -> Result<(), TemplateError> {
    let mut statement_start = false;
    for token in tokenize(source, false, SyntaxConfig::default(), WhitespaceConfig::default()) {
        let (token, span) = token.map_err(|e| TemplateError::from_engine(name, source, &e))?;
        let line = Some(usize::from(span.start_line));
        match token {
            Token::Mul | Token::Pow => {
                return Err(TemplateError::new(name, line, "the * and ** operators are not allowed"));
            }
            Token::Ident(word) if statement_start && !STATEMENTS.contains(&word) => {
                return Err(TemplateError::new(
                    name,
                    line,
                    format!("{{% {word} %}} is not allowed: application templates use if and for only"),
                ));
            }
            _ => {}
        }
        statement_start = matches!(token, Token::BlockStart);
    }
    Ok(())
}

/// Renders an application's template within the limits. It was checked when it was set; the
/// rules are applied again here, since they may have tightened since.
pub fn render(name: &str, source: &str, context: Value) -> Result<String, TemplateError> {
    check_size(name, source)?;
    screen(name, source)?;
    let env = environment();
    let template = env
        .template_from_named_str(name, source)
        .map_err(|e| TemplateError::from_engine(name, source, &e))?;
    let mut out = Capped(Vec::new());
    template
        .render_captured_to(context, &mut out)
        .map_err(|e| TemplateError::from_engine(name, source, &e))?;
    String::from_utf8(out.0).map_err(|_| TemplateError::new(name, None, "the output is not UTF-8"))
}

/// A buffer that refuses to grow past [`MAX_OUTPUT`].
struct Capped(Vec<u8>);

impl io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.0.len() + buf.len() > MAX_OUTPUT {
            return Err(io::Error::other("output limit"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
