//! Who is calling: the admin, or an application by one of its credentials.

use crate::{Refusal, Service, ServiceError};
use latchkey_core::Application;
use latchkey_core::id::AppId;
use latchkey_core::secret::HashPurpose;
use latchkey_core::tokens::AccessTokenClaims;

/// An application's credentials as presented, before they are checked: a client id, a
/// secret (a client secret, or an access token of the client_credentials grant), or both.
#[derive(Clone, Default)]
pub struct Credentials {
    pub client_id: Option<String>,
    pub secret: Option<String>,
}

impl Credentials {
    /// These credentials, completed where they are silent by `other` (an `Authorization`
    /// header first, then the body's `client_id` and `client_secret`: client_secret_post).
    pub fn or(self, other: Credentials) -> Credentials {
        Credentials { client_id: self.client_id.or(other.client_id), secret: self.secret.or(other.secret) }
    }
}

impl Credentials {
    /// Whether nothing at all was presented.
    pub fn is_empty(&self) -> bool {
        self.client_id.is_none() && self.secret.is_none()
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field("secret", &self.secret.as_ref().map(|_| "…"))
            .finish()
    }
}

/// Client secrets carry a prefix so that secret scanners recognise them.
pub const SECRET_PREFIX: &str = "lks_";

impl Service {
    pub fn authenticate_admin(&self, bearer: Option<&str>) -> Result<(), ServiceError> {
        let Some(expected) = &self.admin_token_hash else {
            return Err(Refusal::AdminDisabled.into());
        };
        match bearer {
            Some(token) if self.key.verify(HashPurpose::AdminToken, token, expected) => Ok(()),
            _ => Err(Refusal::Unauthenticated.into()),
        }
    }

    /// The calling application: a confidential one by its secret (and its client id, when
    /// given, must match); a public one by its client id alone, since it has no secret and
    /// proves itself later with PKCE.
    pub async fn authenticate_client(&self, creds: &Credentials) -> Result<Application, ServiceError> {
        if let Some(secret) = creds.secret.as_deref().filter(|s| !s.is_empty()) {
            let hash = self.key.hash(HashPurpose::ClientSecret, secret);
            let app = self.application_by_secret(hash).await?.ok_or(Refusal::Unauthenticated)?;
            return match &creds.client_id {
                Some(id) if *id != app.client_id => Err(Refusal::Unauthenticated.into()),
                _ => Ok(app),
            };
        }
        let id = creds.client_id.as_deref().and_then(AppId::parse);
        let app = match id {
            Some(id) => self.application_by_id(&id).await?,
            None => None,
        };
        match app {
            Some(app) if app.public => Ok(app),
            _ => Err(Refusal::Unauthenticated.into()),
        }
    }

    /// The caller of the native API: as [`Service::authenticate_client`], or by an access token
    /// from the `client_credentials` grant, which works as the application's credential there.
    pub async fn authenticate_caller(&self, creds: &Credentials) -> Result<Application, ServiceError> {
        if let Some(token) = creds.secret.as_deref()
            && let Some(app) = self.client_token_app(token).await?
        {
            return Ok(app);
        }
        self.authenticate_client(creds).await
    }

    /// The application of a `client_credentials` access token; `None` when `token` is no JWT.
    async fn client_token_app(&self, token: &str) -> Result<Option<Application>, ServiceError> {
        if token.bytes().filter(|b| *b == b'.').count() != 2 {
            return Ok(None);
        }
        let claims = self
            .access_token_claims(token)
            .filter(AccessTokenClaims::is_client_token)
            .ok_or(Refusal::Unauthenticated)?;
        let id = AppId::parse(&claims.client_id).ok_or(Refusal::Unauthenticated)?;
        Ok(Some(self.application_by_id(&id).await?.ok_or(Refusal::Unauthenticated)?))
    }

    /// An application by id, from the cache when it was read a moment ago.
    pub(crate) async fn application_by_id(&self, id: &AppId) -> Result<Option<Application>, ServiceError> {
        let now = self.clock.now();
        if let Some(app) = self.cache.apps_by_id.get(id, now) {
            return Ok(Some(app));
        }
        let found = self.store.application(id).await?;
        if let Some(app) = &found {
            self.cache.apps_by_id.put(id.clone(), app.clone(), now);
        }
        Ok(found)
    }

    async fn application_by_secret(&self, hash: Vec<u8>) -> Result<Option<Application>, ServiceError> {
        let now = self.clock.now();
        if let Some(app) = self.cache.apps_by_secret.get(&hash, now) {
            return Ok(Some(app));
        }
        let found = self.store.application_by_secret_hash(&hash).await?;
        if let Some(app) = &found {
            self.cache.apps_by_secret.put(hash, app.clone(), now);
        }
        Ok(found)
    }

    /// After any change to an application or its secrets, through this instance.
    pub(crate) fn forget_applications(&self) {
        self.cache.forget_applications();
    }
}
