//! E-mail templates and locales: an application's own templates (admin API), and choosing the
//! language, the look and the envelope of the messages a request queues.

use super::{Service, ServiceError};
use latchkey_core::Challenge;
use latchkey_core::application::TemplateOverride;
use latchkey_core::event::{Event, EventKind};
use latchkey_core::id::OutboxId;
use latchkey_core::{Application, EmailAddress};
use latchkey_mail::Email;
use latchkey_mail::compose::{self, Envelope};
use latchkey_mail::templates::{self, Branding, Purpose};
use latchkey_mail::{Locale, MAX_LOCALE_LEN};
use latchkey_store::NewOutboxMessage;
use serde::Deserialize;

/// Templates one application may hold (purposes × locales).
pub const MAX_TEMPLATES: usize = 40;
/// Their total size, in bytes: the templates live in the application's settings, read with it.
pub const MAX_TEMPLATES_BYTES: usize = 512 * 1024;

/// An application's version of one purpose's e-mail in one locale; a part left out (or empty)
/// is the built-in one.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TemplateInput {
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
}

/// The locale a request asks for: absent, or a language tag (`fr`, `pt-BR`), else 422.
pub(crate) fn request_locale(
    field: &'static str,
    value: Option<&str>,
) -> Result<Option<Locale>, ServiceError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) if v.len() > MAX_LOCALE_LEN => {
            Err(ServiceError::invalid(field, format!("{field} is limited to {MAX_LOCALE_LEN} characters")))
        }
        Some(v) => Locale::parse(v).map(Some).map_err(|_| {
            ServiceError::invalid(field, format!("{field} must be a language tag such as en, fr or pt-BR"))
        }),
    }
}

fn purpose(value: &str) -> Option<Purpose> {
    Purpose::parse(value)
}

impl Service {
    /// The language of a message: the request's locale, else the user's, else the
    /// application's default, whichever comes first in which the message can be written
    /// (built in, or one of the application's templates); English when none can.
    pub(crate) fn locale_for(
        &self,
        app: &Application,
        purpose: Purpose,
        request: Option<&Locale>,
        user: Option<&Locale>,
    ) -> Locale {
        let default = app.settings.default_locale.as_deref().and_then(|l| Locale::parse(l).ok());
        let candidates = [request, user, default.as_ref()];
        templates::choose_locale(purpose, candidates.into_iter().flatten(), &app.settings.templates)
    }

    /// How the application's messages look.
    pub(crate) fn mail_branding<'a>(&self, app: &'a Application) -> Branding<'a> {
        let b = &app.settings.branding;
        Branding {
            product: app.product_name(),
            logo_url: b.logo_url.as_deref(),
            color: b.primary_color.as_deref(),
        }
    }

    /// A new outbox entry's id and its envelope: the sender from the application's branding
    /// (the server's default for what it leaves out), and a Message-ID made of the entry's id
    /// on the server's own host.
    pub(crate) fn mail_envelope(&self, app: &Application, to: &EmailAddress) -> (OutboxId, Envelope) {
        let id = OutboxId::generate();
        let b = &app.settings.branding;
        let host = self.public_url.host_str().unwrap_or("localhost");
        let envelope = Envelope {
            from: compose::sender(b.sender_name.as_deref(), b.sender_email.as_deref(), &self.mail_from),
            to: to.as_str().to_owned(),
            message_id: format!("{id}@{host}"),
        };
        (id, envelope)
    }

    /// A composed message as an outbox entry of the challenge: sealed, because it carries a
    /// live link or code.
    pub(crate) fn outbox_entry(
        &self,
        app: &Application,
        challenge: &Challenge,
        id: OutboxId,
        email: &Email,
    ) -> NewOutboxMessage {
        NewOutboxMessage {
            sealed: self.key.seal(id.as_str(), &email.to_json()),
            id,
            app_id: Some(app.id.clone()),
            challenge_id: Some(challenge.id.clone()),
            created_at: challenge.created_at,
        }
    }

    /// Sets (replaces) an application's template for a purpose and locale, after checking it
    /// and rendering it with made-up values. A bad template is a 422 naming it and the line.
    pub async fn set_template(
        &self,
        app_id: &str,
        purpose: &str,
        locale: &str,
        input: TemplateInput,
    ) -> Result<(Application, String), ServiceError> {
        let purpose = templates::Purpose::parse(purpose).ok_or_else(|| {
            ServiceError::invalid("purpose", "the purpose is one of login, registration, verification")
        })?;
        let locale = request_locale("locale", Some(locale))?
            .ok_or_else(|| ServiceError::invalid("locale", "the locale is required"))?;
        let nonempty = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
        let template = TemplateOverride {
            subject: nonempty(input.subject),
            text: nonempty(input.text),
            html: nonempty(input.html),
        };
        if template == TemplateOverride::default() {
            return Err(ServiceError::invalid("template", "give at least one of subject, text and html"));
        }
        templates::validate(purpose, &locale, &template).map_err(|e| {
            let field = match e.template.rsplit('.').next() {
                Some("html") => "html",
                Some("txt") => "text",
                _ => "subject",
            };
            ServiceError::invalid(field, e.to_string())
        })?;
        let (mut app, _) = self.application(app_id).await?;
        let key = templates::override_key(purpose, &locale);
        app.settings.templates.insert(key.clone(), template);
        if app.settings.templates.len() > MAX_TEMPLATES {
            return Err(ServiceError::invalid(
                "template",
                format!("an application holds at most {MAX_TEMPLATES} templates"),
            ));
        }
        let size: usize = app.settings.templates.values().map(template_size).sum();
        if size > MAX_TEMPLATES_BYTES {
            return Err(ServiceError::invalid(
                "template",
                format!(
                    "an application's templates are limited to {} KiB in all",
                    MAX_TEMPLATES_BYTES / 1024
                ),
            ));
        }
        self.save_templates(&mut app, &key, "set").await?;
        Ok((app, key))
    }

    /// Removes an application's template: the built-in one is used again.
    pub async fn delete_template(
        &self,
        app_id: &str,
        purpose: &str,
        locale: &str,
    ) -> Result<(), ServiceError> {
        let (mut app, _) = self.application(app_id).await?;
        let key = template_key(purpose, locale).ok_or(ServiceError::NotFound("template"))?;
        if app.settings.templates.remove(&key).is_none() {
            return Err(ServiceError::NotFound("template"));
        }
        self.save_templates(&mut app, &key, "deleted").await
    }

    /// One of an application's templates, as set.
    pub async fn template(
        &self,
        app_id: &str,
        purpose: &str,
        locale: &str,
    ) -> Result<(String, TemplateOverride), ServiceError> {
        let (app, _) = self.application(app_id).await?;
        let key = template_key(purpose, locale).ok_or(ServiceError::NotFound("template"))?;
        let template = app.settings.templates.get(&key).cloned().ok_or(ServiceError::NotFound("template"))?;
        Ok((key, template))
    }

    async fn save_templates(
        &self,
        app: &mut Application,
        key: &str,
        action: &str,
    ) -> Result<(), ServiceError> {
        let now = self.clock.now();
        app.updated_at = now;
        if !self.store.update_application(app).await? {
            return Err(ServiceError::NotFound("application"));
        }
        self.forget_applications();
        let event = Event::new(EventKind::ApplicationUpdated, now)
            .app(&app.id)
            .detail(serde_json::json!({ "template": key, "action": action }));
        self.store.insert_event(&event).await?;
        Ok(())
    }
}

/// `login` + `fr_ca` → `login.fr-CA`, as stored.
fn template_key(purpose_name: &str, locale: &str) -> Option<String> {
    let purpose = purpose(purpose_name)?;
    let locale = Locale::parse(locale).ok()?;
    Some(templates::override_key(purpose, &locale))
}

fn template_size(t: &TemplateOverride) -> usize {
    [&t.subject, &t.text, &t.html].iter().filter_map(|p| p.as_ref()).map(String::len).sum()
}
