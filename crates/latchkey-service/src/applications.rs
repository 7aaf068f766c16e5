//! Managing applications (admin API and command line).

use crate::auth::SECRET_PREFIX;
use crate::{Refusal, Resource, Service, ServiceError};
use latchkey_core::application::{AppSettings, Binding, Branding, Lifetimes, MismatchPolicy};
use latchkey_core::event::{Event, EventKind};
use latchkey_core::id::{AppId, SecretId};
use latchkey_core::rate_limit::RateLimits;
use latchkey_core::secret::{HashPurpose, OpaqueToken};
use latchkey_core::signing::SigningAlg;
use latchkey_core::{Application, RedirectUri};
use latchkey_store::ClientSecret;

const MAX_NAME: usize = 200;
const MAX_URIS: usize = 50;
const MAX_BRANDING: usize = 500;

/// A new application as the admin describes it, its URIs already parsed.
#[derive(Debug, Clone, Default)]
pub struct NewApplication {
    pub name: String,
    pub redirect_uris: Vec<RedirectUri>,
    pub default_redirect_uri: Option<RedirectUri>,
    pub registration_redirect_uris: Vec<RedirectUri>,
    pub post_logout_redirect_uris: Vec<RedirectUri>,
    pub public: bool,
    pub signing_alg: Option<SigningAlg>,
    pub branding: Option<Branding>,
    pub default_locale: Option<String>,
    pub lifetimes: Option<Lifetimes>,
    pub rate_limits: Option<RateLimits>,
    pub binding: Option<Binding>,
    pub registration_mismatch: Option<MismatchPolicy>,
}

/// A change: only what is `Some` changes. `default_redirect_uri: Some(None)` removes it.
#[derive(Debug, Clone, Default)]
pub struct ApplicationChange {
    pub name: Option<String>,
    pub redirect_uris: Option<Vec<RedirectUri>>,
    pub default_redirect_uri: Option<Option<RedirectUri>>,
    pub registration_redirect_uris: Option<Vec<RedirectUri>>,
    pub post_logout_redirect_uris: Option<Vec<RedirectUri>>,
    pub signing_alg: Option<SigningAlg>,
    pub branding: Option<Branding>,
    pub default_locale: Option<String>,
    pub lifetimes: Option<Lifetimes>,
    pub rate_limits: Option<RateLimits>,
    pub binding: Option<Binding>,
    pub registration_mismatch: Option<MismatchPolicy>,
}

#[derive(Debug)]
pub struct CreatedApplication {
    pub application: Application,
    pub secrets: Vec<ClientSecret>,
    /// Shown once; only its keyed hash is stored. `None` for a public client.
    pub client_secret: Option<String>,
}

fn name(value: &str) -> Result<String, Refusal> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > MAX_NAME {
        return Err(Refusal::invalid("name", format!("name must have 1 to {MAX_NAME} characters")));
    }
    Ok(value.to_owned())
}

fn uris(field: &'static str, values: Vec<RedirectUri>) -> Result<Vec<RedirectUri>, Refusal> {
    if values.len() > MAX_URIS {
        return Err(Refusal::invalid(field, format!("at most {MAX_URIS} URIs are allowed")));
    }
    let mut out: Vec<RedirectUri> = Vec::with_capacity(values.len());
    for uri in values {
        if !out.contains(&uri) {
            out.push(uri);
        }
    }
    Ok(out)
}

fn branding(value: Branding) -> Result<Branding, Refusal> {
    let fields =
        [&value.product_name, &value.logo_url, &value.primary_color, &value.sender_name, &value.sender_email];
    if fields.iter().any(|f| f.as_ref().is_some_and(|s| s.len() > MAX_BRANDING)) {
        return Err(Refusal::invalid(
            "branding",
            format!("branding values are limited to {MAX_BRANDING} characters"),
        ));
    }
    if let Some(email) = &value.sender_email {
        latchkey_core::EmailAddress::parse(email).map_err(|_| {
            Refusal::invalid("branding", "branding.sender_email is not a valid e-mail address")
        })?;
    }
    if value.sender_name.as_deref().is_some_and(|n| n.contains(['\r', '\n', '<', '>', '"'])) {
        return Err(Refusal::invalid(
            "branding",
            "branding.sender_name must not contain line breaks, quotes or angle brackets",
        ));
    }
    Ok(value)
}

fn locale(value: Option<String>) -> Result<Option<String>, Refusal> {
    match value {
        Some(v)
            if v.is_empty() || v.len() > 35 || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
        {
            Err(Refusal::invalid(
                "default_locale",
                "default_locale must be a language tag such as en or fr-CA",
            ))
        }
        v => Ok(v),
    }
}

fn lifetimes(value: Lifetimes) -> Result<Lifetimes, Refusal> {
    match value.out_of_bounds() {
        Some(which) => Err(Refusal::invalid("lifetimes", format!("lifetimes.{which} is out of bounds"))),
        None => Ok(value),
    }
}

/// The default must be one of the allowed URIs.
fn default_redirect(
    default: Option<RedirectUri>,
    allowed: &[RedirectUri],
) -> Result<Option<RedirectUri>, Refusal> {
    match default {
        Some(uri) if !allowed.contains(&uri) => {
            Err(Refusal::invalid("default_redirect_uri", "default_redirect_uri must be one of redirect_uris"))
        }
        d => Ok(d),
    }
}

impl Service {
    async fn settings_changed(&self, kind: EventKind, app: &AppId, change: &str) -> Result<(), ServiceError> {
        self.forget_applications();
        let event = Event::new(kind, self.clock.now()).app(app).with("change", change);
        Ok(self.store.insert_event(&event).await?)
    }

    fn new_secret(&self, app_id: &AppId) -> (ClientSecret, String) {
        let plain = format!("{SECRET_PREFIX}{}", OpaqueToken::generate().expose());
        let record = ClientSecret {
            id: SecretId::generate(self.clock.now()),
            app_id: app_id.clone(),
            hash: self.key.hash(HashPurpose::ClientSecret, &plain),
            created_at: self.clock.now(),
        };
        (record, plain)
    }

    pub async fn create_application(&self, cmd: NewApplication) -> Result<CreatedApplication, ServiceError> {
        let redirect_uris = uris("redirect_uris", cmd.redirect_uris)?;
        let registration = uris("registration_redirect_uris", cmd.registration_redirect_uris)?;
        let logout = uris("post_logout_redirect_uris", cmd.post_logout_redirect_uris)?;
        let settings = AppSettings {
            registration_redirect_uris: registration.iter().map(|u| u.to_string()).collect(),
            post_logout_redirect_uris: logout.iter().map(|u| u.to_string()).collect(),
            signing_alg: cmd.signing_alg.unwrap_or_default(),
            branding: branding(cmd.branding.unwrap_or_default())?,
            default_locale: locale(cmd.default_locale)?,
            lifetimes: lifetimes(cmd.lifetimes.unwrap_or_default())?,
            rate_limits: cmd.rate_limits.unwrap_or_default(),
            binding: cmd.binding.unwrap_or_default(),
            registration_mismatch: cmd.registration_mismatch.unwrap_or_default(),
            templates: Default::default(),
            pages: Default::default(),
        };
        let now = self.clock.now();
        let id = AppId::generate(now);
        let app = Application {
            client_id: id.to_string(),
            id,
            name: name(&cmd.name)?,
            public: cmd.public,
            default_redirect_uri: default_redirect(cmd.default_redirect_uri, &redirect_uris)?,
            redirect_uris,
            settings,
            created_at: now,
            updated_at: now,
        };
        let secret = (!app.public).then(|| self.new_secret(&app.id));
        self.store.insert_application(&app, secret.as_ref().map(|(r, _)| r)).await?;
        self.settings_changed(EventKind::ApplicationCreated, &app.id, "created").await?;
        let (secrets, client_secret) = secret.map(|(r, p)| (vec![r], Some(p))).unwrap_or_default();
        Ok(CreatedApplication { application: app, secrets, client_secret })
    }

    pub async fn application(&self, id: &AppId) -> Result<(Application, Vec<ClientSecret>), ServiceError> {
        let app = self.store.application(id).await?.ok_or(Refusal::NotFound(Resource::Application))?;
        let secrets = self.store.client_secrets(id).await?;
        Ok((app, secrets))
    }

    pub async fn list_applications(&self) -> Result<Vec<Application>, ServiceError> {
        Ok(self.store.list_applications().await?)
    }

    pub async fn update_application(
        &self,
        id: &AppId,
        change: ApplicationChange,
    ) -> Result<(Application, Vec<ClientSecret>), ServiceError> {
        let (mut app, secrets) = self.application(id).await?;
        if let Some(n) = change.name {
            app.name = name(&n)?;
        }
        if let Some(list) = change.redirect_uris {
            app.redirect_uris = uris("redirect_uris", list)?;
            if app.default_redirect_uri.as_ref().is_some_and(|d| !app.redirect_uris.contains(d)) {
                app.default_redirect_uri = None;
            }
        }
        if let Some(default) = change.default_redirect_uri {
            app.default_redirect_uri = default_redirect(default, &app.redirect_uris)?;
        }
        if let Some(list) = change.registration_redirect_uris {
            app.settings.registration_redirect_uris =
                uris("registration_redirect_uris", list)?.iter().map(|u| u.to_string()).collect();
        }
        if let Some(list) = change.post_logout_redirect_uris {
            app.settings.post_logout_redirect_uris =
                uris("post_logout_redirect_uris", list)?.iter().map(|u| u.to_string()).collect();
        }
        if let Some(alg) = change.signing_alg {
            app.settings.signing_alg = alg;
        }
        if let Some(b) = change.branding {
            app.settings.branding = branding(b)?;
        }
        if change.default_locale.is_some() {
            app.settings.default_locale = locale(change.default_locale)?;
        }
        if let Some(l) = change.lifetimes {
            app.settings.lifetimes = lifetimes(l)?;
        }
        if let Some(r) = change.rate_limits {
            app.settings.rate_limits = r;
        }
        if let Some(b) = change.binding {
            app.settings.binding = b;
        }
        if let Some(m) = change.registration_mismatch {
            app.settings.registration_mismatch = m;
        }
        app.updated_at = self.clock.now();
        if !self.store.update_application(&app).await? {
            return Err(Refusal::NotFound(Resource::Application).into());
        }
        self.settings_changed(EventKind::ApplicationUpdated, &app.id, "updated").await?;
        Ok((app, secrets))
    }

    pub async fn delete_application(&self, id: &AppId) -> Result<(), ServiceError> {
        if !self.store.delete_application(id).await? {
            return Err(Refusal::NotFound(Resource::Application).into());
        }
        self.settings_changed(EventKind::ApplicationDeleted, id, "deleted").await?;
        Ok(())
    }

    /// Adds a secret for rotation; the old ones keep working until deleted.
    pub async fn add_client_secret(&self, id: &AppId) -> Result<(ClientSecret, String), ServiceError> {
        let (app, _) = self.application(id).await?;
        if app.public {
            return Err(Refusal::PublicClientHasNoSecrets.into());
        }
        let (record, plain) = self.new_secret(&app.id);
        self.store.insert_client_secret(&record).await?;
        self.settings_changed(EventKind::ApplicationUpdated, &app.id, "secret_added").await?;
        Ok((record, plain))
    }

    pub async fn delete_client_secret(&self, id: &AppId, secret_id: &SecretId) -> Result<(), ServiceError> {
        let (app, secrets) = self.application(id).await?;
        if !secrets.iter().any(|s| s.id == *secret_id) {
            return Err(Refusal::NotFound(Resource::Secret).into());
        }
        if secrets.len() == 1 {
            return Err(Refusal::LastSecret.into());
        }
        self.store.delete_client_secret(&app.id, secret_id).await?;
        self.settings_changed(EventKind::ApplicationUpdated, &app.id, "secret_deleted").await?;
        Ok(())
    }
}
