//! An application's own e-mail templates (set: checked and test-rendered; read; delete), and
//! its own hosted pages (the pages face test-renders them before they are set here).

use crate::{Refusal, Resource, Service, ServiceError};
use latchkey_core::Application;
use latchkey_core::application::{HostedPage, TemplateOverride};
use latchkey_core::event::{Event, EventKind};
use latchkey_core::id::AppId;
use latchkey_mail::Locale;
use latchkey_mail::templates::{self, Purpose, sandbox};

/// Templates one application may hold (purposes × locales).
pub const MAX_TEMPLATES: usize = 40;
/// Their total size, in bytes: the templates live in the application's settings, read with it.
pub const MAX_TEMPLATES_BYTES: usize = 512 * 1024;

/// An application's version of one purpose's e-mail in one locale; a part left out is the
/// built-in one.
#[derive(Debug, Clone, Default)]
pub struct TemplateParts {
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
}

impl Service {
    /// Sets (replaces) an application's template for a purpose and locale, after checking it
    /// and rendering it with made-up values. A bad template names the part and the line.
    pub async fn set_template(
        &self,
        app_id: &AppId,
        purpose: Purpose,
        locale: &Locale,
        parts: TemplateParts,
    ) -> Result<(Application, String), ServiceError> {
        let nonempty = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
        let template = TemplateOverride {
            subject: nonempty(parts.subject),
            text: nonempty(parts.text),
            html: nonempty(parts.html),
        };
        if template == TemplateOverride::default() {
            return Err(Refusal::invalid("template", "give at least one of subject, text and html").into());
        }
        templates::validate(purpose, locale, &template).map_err(|e| {
            let field = match e.template.rsplit('.').next() {
                Some("html") => "html",
                Some("txt") => "text",
                _ => "subject",
            };
            Refusal::invalid(field, e.to_string())
        })?;
        let (mut app, _) = self.application(app_id).await?;
        let key = templates::override_key(purpose, locale);
        app.settings.templates.insert(key.clone(), template);
        if app.settings.templates.len() > MAX_TEMPLATES {
            let reason = format!("an application holds at most {MAX_TEMPLATES} templates");
            return Err(Refusal::invalid("template", reason).into());
        }
        let size: usize = app.settings.templates.values().map(template_size).sum();
        if size > MAX_TEMPLATES_BYTES {
            let reason = format!(
                "an application's templates are limited to {} KiB in all",
                MAX_TEMPLATES_BYTES / 1024
            );
            return Err(Refusal::invalid("template", reason).into());
        }
        self.save_settings(&mut app, ("template", &key), "set").await?;
        Ok((app, key))
    }

    /// Removes an application's template: the built-in one is used again.
    pub async fn delete_template(
        &self,
        app_id: &AppId,
        purpose: Purpose,
        locale: &Locale,
    ) -> Result<(), ServiceError> {
        let (mut app, _) = self.application(app_id).await?;
        let key = templates::override_key(purpose, locale);
        if app.settings.templates.remove(&key).is_none() {
            return Err(Refusal::NotFound(Resource::Template).into());
        }
        self.save_settings(&mut app, ("template", &key), "deleted").await
    }

    /// One of an application's templates, as set.
    pub async fn template(
        &self,
        app_id: &AppId,
        purpose: Purpose,
        locale: &Locale,
    ) -> Result<(String, TemplateOverride), ServiceError> {
        let (app, _) = self.application(app_id).await?;
        let key = templates::override_key(purpose, locale);
        let template =
            app.settings.templates.get(&key).cloned().ok_or(Refusal::NotFound(Resource::Template))?;
        Ok((key, template))
    }

    /// Sets (replaces) an application's own version of a hosted page. `html` must have been
    /// test-rendered by the pages face, which knows what each page is given; here its size and
    /// the constructs it uses are checked again.
    pub async fn set_page(
        &self,
        app_id: &AppId,
        page: HostedPage,
        html: String,
    ) -> Result<Application, ServiceError> {
        if html.trim().is_empty() {
            return Err(Refusal::invalid("html", "give the page's template").into());
        }
        sandbox::check(&page_template_name(page), &html)
            .map_err(|e| Refusal::invalid("html", e.to_string()))?;
        let (mut app, _) = self.application(app_id).await?;
        app.settings.pages.insert(page.as_str().to_owned(), html);
        self.save_settings(&mut app, ("page", page.as_str()), "set").await?;
        Ok(app)
    }

    /// Removes an application's page: the built-in one is shown again.
    pub async fn delete_page(&self, app_id: &AppId, page: HostedPage) -> Result<(), ServiceError> {
        let (mut app, _) = self.application(app_id).await?;
        if app.settings.pages.remove(page.as_str()).is_none() {
            return Err(Refusal::NotFound(Resource::Template).into());
        }
        self.save_settings(&mut app, ("page", page.as_str()), "deleted").await
    }

    /// One of an application's own pages, as set.
    pub async fn page(&self, app_id: &AppId, page: HostedPage) -> Result<String, ServiceError> {
        let (app, _) = self.application(app_id).await?;
        app.settings.pages.get(page.as_str()).cloned().ok_or(Refusal::NotFound(Resource::Template).into())
    }

    /// Saves a change of the application's templates or pages; `what` names it in the event.
    async fn save_settings(
        &self,
        app: &mut Application,
        what: (&str, &str),
        action: &str,
    ) -> Result<(), ServiceError> {
        let now = self.clock.now();
        app.updated_at = now;
        if !self.store.update_application(app).await? {
            return Err(Refusal::NotFound(Resource::Application).into());
        }
        self.forget_applications();
        let event = Event::new(EventKind::ApplicationUpdated, now)
            .app(&app.id)
            .with(what.0, what.1)
            .with("action", action);
        self.store.insert_event(&event).await?;
        Ok(())
    }
}

/// The name a page's template goes by, in errors and for its escaping (HTML): `email.html`.
pub fn page_template_name(page: HostedPage) -> String {
    format!("{}.html", page.as_str())
}

fn template_size(t: &TemplateOverride) -> usize {
    [&t.subject, &t.text, &t.html].iter().filter_map(|p| p.as_ref()).map(String::len).sum()
}
