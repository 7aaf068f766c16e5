//! Who is calling: the admin, or an application by one of its credentials.

use super::{Service, ServiceError};
use latchkey_core::Application;
use latchkey_core::id::AppId;
use latchkey_core::secret::HashPurpose;

/// An application's credentials as presented, before they are checked.
#[derive(Debug, Clone, Default)]
pub struct ClientCredentials {
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

/// Client secrets carry a prefix so that secret scanners recognise them.
pub const SECRET_PREFIX: &str = "lks_";

impl Service {
    pub fn authenticate_admin(&self, bearer: Option<&str>) -> Result<(), ServiceError> {
        let Some(expected) = &self.admin_token_hash else {
            return Err(ServiceError::AdminDisabled);
        };
        match bearer {
            Some(token) if self.key.verify(HashPurpose::AdminToken, token, expected) => Ok(()),
            _ => Err(ServiceError::Unauthenticated),
        }
    }

    /// The calling application: a confidential one by its secret (and its client id, when
    /// given, must match); a public one by its client id alone, since it has no secret and
    /// proves itself later with PKCE.
    pub async fn authenticate_client(&self, creds: &ClientCredentials) -> Result<Application, ServiceError> {
        if let Some(secret) = creds.client_secret.as_deref().filter(|s| !s.is_empty()) {
            let hash = self.key.hash(HashPurpose::ClientSecret, secret);
            let app = self.application_by_secret(hash).await?.ok_or(ServiceError::Unauthenticated)?;
            return match &creds.client_id {
                Some(id) if *id != app.client_id => Err(ServiceError::Unauthenticated),
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
            _ => Err(ServiceError::Unauthenticated),
        }
    }

    /// The caller of the native API: as [`Service::authenticate_client`], or by an access token
    /// from the `client_credentials` grant, which works as the application's credential there.
    pub async fn authenticate_caller(&self, creds: &ClientCredentials) -> Result<Application, ServiceError> {
        if let Some(token) = creds.client_secret.as_deref()
            && let Some(app) = self.client_credentials_app(token).await?
        {
            return Ok(app);
        }
        self.authenticate_client(creds).await
    }

    /// The application of a `client_credentials` access token; `None` when `token` is no JWT.
    async fn client_credentials_app(&self, token: &str) -> Result<Option<Application>, ServiceError> {
        if token.bytes().filter(|b| *b == b'.').count() != 2 {
            return Ok(None);
        }
        let Some(claims) = self.access_token_claims(token) else { return Err(ServiceError::Unauthenticated) };
        let (Some(sub), Some(client)) = (claims["sub"].as_str(), claims["client_id"].as_str()) else {
            return Err(ServiceError::Unauthenticated);
        };
        if sub != client || claims["scope"] != super::tokens::CLIENT_SCOPE {
            return Err(ServiceError::Unauthenticated);
        }
        let id = AppId::parse(client).ok_or(ServiceError::Unauthenticated)?;
        self.application_by_id(&id).await?.map(Some).ok_or(ServiceError::Unauthenticated)
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

    /// The same at the token endpoint, which answers in OAuth's terms.
    pub async fn authenticate_token_client(
        &self,
        creds: &ClientCredentials,
    ) -> Result<Application, ServiceError> {
        self.authenticate_client(creds).await.map_err(|e| match e {
            ServiceError::Unauthenticated => ServiceError::InvalidClient("client authentication failed"),
            other => other,
        })
    }
}
