//! Who is calling: the admin, or an application by one of its credentials.

use super::{Service, ServiceError};
use latchkey_core::Application;
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

    /// The application whose secret this is, if any (and whose client id matches, when given).
    pub async fn authenticate_client(&self, creds: &ClientCredentials) -> Result<Application, ServiceError> {
        let Some(secret) = creds.client_secret.as_deref().filter(|s| !s.is_empty()) else {
            return Err(ServiceError::Unauthenticated);
        };
        let hash = self.key.hash(HashPurpose::ClientSecret, secret);
        let app = self.store.application_by_secret_hash(&hash).await?.ok_or(ServiceError::Unauthenticated)?;
        match &creds.client_id {
            Some(id) if *id != app.client_id => Err(ServiceError::Unauthenticated),
            _ => Ok(app),
        }
    }

    /// At the token endpoint: a confidential client must prove its secret; a public client is
    /// named by its id alone (and must then prove PKCE).
    pub async fn authenticate_token_client(
        &self,
        creds: &ClientCredentials,
    ) -> Result<Application, ServiceError> {
        if creds.client_secret.as_deref().is_some_and(|s| !s.is_empty()) {
            return self.authenticate_client(creds).await.map_err(|e| match e {
                ServiceError::Unauthenticated => ServiceError::InvalidClient("client authentication failed"),
                other => other,
            });
        }
        let Some(client_id) = creds.client_id.as_deref() else {
            return Err(ServiceError::InvalidClient("client authentication is required"));
        };
        let app = match latchkey_core::id::AppId::parse(client_id) {
            Some(id) => self.store.application(&id).await?,
            None => None,
        };
        match app {
            Some(app) if app.public => Ok(app),
            _ => Err(ServiceError::InvalidClient("client authentication failed")),
        }
    }
}
