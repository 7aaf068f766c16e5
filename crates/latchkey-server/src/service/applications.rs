//! Managing applications (admin API and command line).

use super::auth::SECRET_PREFIX;
use super::{Service, ServiceError};
use latchkey_core::application::{AppSettings, Binding, Branding, Lifetimes, MismatchPolicy};
use latchkey_core::event::{Event, EventKind};
use latchkey_core::id::{AppId, SecretId};
use latchkey_core::rate_limit::RateLimits;
use latchkey_core::secret::{HashPurpose, OpaqueToken};
use latchkey_core::signing::SigningAlg;
use latchkey_core::{Application, RedirectUri};
use latchkey_store::ClientSecret;
use serde::Deserialize;

const MAX_NAME: usize = 200;
const MAX_URIS: usize = 50;
const MAX_BRANDING: usize = 500;

/// A new application as the admin describes it; validated by [`Service::create_application`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ApplicationInput {
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub default_redirect_uri: Option<String>,
    pub registration_redirect_uris: Vec<String>,
    pub public: bool,
    pub signing_alg: Option<String>,
    pub branding: Option<Branding>,
    pub default_locale: Option<String>,
    pub lifetimes: Option<Lifetimes>,
    pub rate_limits: Option<RateLimits>,
    pub binding: Option<Binding>,
    pub registration_mismatch: Option<MismatchPolicy>,
}

/// A change: only the fields present are changed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ApplicationPatch {
    pub name: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
    pub default_redirect_uri: Option<String>,
    pub registration_redirect_uris: Option<Vec<String>>,
    pub signing_alg: Option<String>,
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

fn name(value: &str) -> Result<String, ServiceError> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > MAX_NAME {
        return Err(ServiceError::invalid("name", format!("name must have 1 to {MAX_NAME} characters")));
    }
    Ok(value.to_owned())
}

fn uris(field: &'static str, values: &[String]) -> Result<Vec<RedirectUri>, ServiceError> {
    if values.len() > MAX_URIS {
        return Err(ServiceError::invalid(field, format!("at most {MAX_URIS} URIs are allowed")));
    }
    let mut out: Vec<RedirectUri> = Vec::with_capacity(values.len());
    for v in values {
        let uri = RedirectUri::parse(v).map_err(|e| ServiceError::invalid(field, format!("{v:?}: {e}")))?;
        if !out.contains(&uri) {
            out.push(uri);
        }
    }
    Ok(out)
}

fn signing_alg(value: Option<&str>) -> Result<Option<SigningAlg>, ServiceError> {
    value
        .map(|v| {
            SigningAlg::parse(v).ok_or_else(|| {
                ServiceError::invalid(
                    "signing_alg",
                    format!("signing_alg must be one of ES256, RS256, EdDSA, not {v:?}"),
                )
            })
        })
        .transpose()
}

fn branding(value: Branding) -> Result<Branding, ServiceError> {
    let fields =
        [&value.product_name, &value.logo_url, &value.primary_color, &value.sender_name, &value.sender_email];
    if fields.iter().any(|f| f.as_ref().is_some_and(|s| s.len() > MAX_BRANDING)) {
        return Err(ServiceError::invalid(
            "branding",
            format!("branding values are limited to {MAX_BRANDING} characters"),
        ));
    }
    if let Some(email) = &value.sender_email {
        latchkey_core::EmailAddress::parse(email).map_err(|_| {
            ServiceError::invalid("branding", "branding.sender_email is not a valid e-mail address")
        })?;
    }
    if value.sender_name.as_deref().is_some_and(|n| n.contains(['\r', '\n', '<', '>', '"'])) {
        return Err(ServiceError::invalid(
            "branding",
            "branding.sender_name must not contain line breaks, quotes or angle brackets",
        ));
    }
    Ok(value)
}

fn locale(value: Option<String>) -> Result<Option<String>, ServiceError> {
    match value {
        Some(v)
            if v.is_empty() || v.len() > 35 || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
        {
            Err(ServiceError::invalid(
                "default_locale",
                "default_locale must be a language tag such as en or fr-CA",
            ))
        }
        v => Ok(v),
    }
}

fn lifetimes(value: Lifetimes) -> Result<Lifetimes, ServiceError> {
    match value.out_of_bounds() {
        Some(which) => Err(ServiceError::invalid("lifetimes", format!("lifetimes.{which} is out of bounds"))),
        None => Ok(value),
    }
}

/// The default must be one of the allowed URIs.
fn default_redirect(
    default: Option<&str>,
    allowed: &[RedirectUri],
) -> Result<Option<RedirectUri>, ServiceError> {
    let Some(default) = default else { return Ok(None) };
    let uri = RedirectUri::parse(default)
        .map_err(|e| ServiceError::invalid("default_redirect_uri", e.to_string()))?;
    if !allowed.contains(&uri) {
        return Err(ServiceError::invalid(
            "default_redirect_uri",
            "default_redirect_uri must be one of redirect_uris",
        ));
    }
    Ok(Some(uri))
}

impl Service {
    async fn settings_changed(&self, kind: EventKind, app: &AppId, change: &str) -> Result<(), ServiceError> {
        self.forget_applications();
        let event =
            Event::new(kind, self.clock.now()).app(app).detail(serde_json::json!({ "change": change }));
        Ok(self.store.insert_event(&event).await?)
    }

    fn new_secret(&self, app_id: &AppId) -> (ClientSecret, String) {
        let plain = format!("{SECRET_PREFIX}{}", OpaqueToken::generate().expose());
        let record = ClientSecret {
            id: SecretId::generate(),
            app_id: app_id.clone(),
            hash: self.key.hash(HashPurpose::ClientSecret, &plain),
            created_at: self.clock.now(),
        };
        (record, plain)
    }

    pub async fn create_application(
        &self,
        input: ApplicationInput,
    ) -> Result<CreatedApplication, ServiceError> {
        let redirect_uris = uris("redirect_uris", &input.redirect_uris)?;
        let registration = uris("registration_redirect_uris", &input.registration_redirect_uris)?;
        let settings = AppSettings {
            registration_redirect_uris: registration.iter().map(|u| u.to_string()).collect(),
            signing_alg: signing_alg(input.signing_alg.as_deref())?.unwrap_or_default(),
            branding: branding(input.branding.unwrap_or_default())?,
            default_locale: locale(input.default_locale)?,
            lifetimes: lifetimes(input.lifetimes.unwrap_or_default())?,
            rate_limits: input.rate_limits.unwrap_or_default(),
            binding: input.binding.unwrap_or_default(),
            registration_mismatch: input.registration_mismatch.unwrap_or_default(),
            templates: Default::default(),
        };
        let now = self.clock.now();
        let id = AppId::generate();
        let app = Application {
            client_id: id.to_string(),
            id,
            name: name(&input.name)?,
            public: input.public,
            default_redirect_uri: default_redirect(input.default_redirect_uri.as_deref(), &redirect_uris)?,
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

    pub async fn application(&self, id: &str) -> Result<(Application, Vec<ClientSecret>), ServiceError> {
        let id = AppId::parse(id).ok_or(ServiceError::NotFound("application"))?;
        let app = self.store.application(&id).await?.ok_or(ServiceError::NotFound("application"))?;
        let secrets = self.store.client_secrets(&id).await?;
        Ok((app, secrets))
    }

    pub async fn list_applications(&self) -> Result<Vec<Application>, ServiceError> {
        Ok(self.store.list_applications().await?)
    }

    pub async fn update_application(
        &self,
        id: &str,
        patch: ApplicationPatch,
    ) -> Result<(Application, Vec<ClientSecret>), ServiceError> {
        let (mut app, secrets) = self.application(id).await?;
        if let Some(n) = patch.name {
            app.name = name(&n)?;
        }
        if let Some(list) = patch.redirect_uris {
            app.redirect_uris = uris("redirect_uris", &list)?;
            if app.default_redirect_uri.as_ref().is_some_and(|d| !app.redirect_uris.contains(d)) {
                app.default_redirect_uri = None;
            }
        }
        if let Some(default) = patch.default_redirect_uri {
            app.default_redirect_uri = match default.as_str() {
                "" => None,
                d => default_redirect(Some(d), &app.redirect_uris)?,
            };
        }
        if let Some(list) = patch.registration_redirect_uris {
            app.settings.registration_redirect_uris =
                uris("registration_redirect_uris", &list)?.iter().map(|u| u.to_string()).collect();
        }
        if let Some(alg) = signing_alg(patch.signing_alg.as_deref())? {
            app.settings.signing_alg = alg;
        }
        if let Some(b) = patch.branding {
            app.settings.branding = branding(b)?;
        }
        if patch.default_locale.is_some() {
            app.settings.default_locale = locale(patch.default_locale)?;
        }
        if let Some(l) = patch.lifetimes {
            app.settings.lifetimes = lifetimes(l)?;
        }
        if let Some(r) = patch.rate_limits {
            app.settings.rate_limits = r;
        }
        if let Some(b) = patch.binding {
            app.settings.binding = b;
        }
        if let Some(m) = patch.registration_mismatch {
            app.settings.registration_mismatch = m;
        }
        app.updated_at = self.clock.now();
        if !self.store.update_application(&app).await? {
            return Err(ServiceError::NotFound("application"));
        }
        self.settings_changed(EventKind::ApplicationUpdated, &app.id, "updated").await?;
        Ok((app, secrets))
    }

    pub async fn delete_application(&self, id: &str) -> Result<(), ServiceError> {
        let id = AppId::parse(id).ok_or(ServiceError::NotFound("application"))?;
        if !self.store.delete_application(&id).await? {
            return Err(ServiceError::NotFound("application"));
        }
        self.settings_changed(EventKind::ApplicationDeleted, &id, "deleted").await?;
        Ok(())
    }

    /// Adds a secret for rotation; the old ones keep working until deleted.
    pub async fn add_client_secret(&self, id: &str) -> Result<(ClientSecret, String), ServiceError> {
        let (app, _) = self.application(id).await?;
        if app.public {
            return Err(ServiceError::Conflict {
                code: "public_client",
                message: "a public application has no secrets".into(),
            });
        }
        let (record, plain) = self.new_secret(&app.id);
        self.store.insert_client_secret(&record).await?;
        self.settings_changed(EventKind::ApplicationUpdated, &app.id, "secret_added").await?;
        Ok((record, plain))
    }

    pub async fn delete_client_secret(&self, id: &str, secret_id: &str) -> Result<(), ServiceError> {
        let (app, secrets) = self.application(id).await?;
        let secret_id = SecretId::parse(secret_id).ok_or(ServiceError::NotFound("secret"))?;
        if !secrets.iter().any(|s| s.id == secret_id) {
            return Err(ServiceError::NotFound("secret"));
        }
        if secrets.len() == 1 {
            return Err(ServiceError::Conflict {
                code: "last_secret",
                message: "add another secret before deleting the last one".into(),
            });
        }
        self.store.delete_client_secret(&app.id, &secret_id).await?;
        self.settings_changed(EventKind::ApplicationUpdated, &app.id, "secret_deleted").await?;
        Ok(())
    }
}
