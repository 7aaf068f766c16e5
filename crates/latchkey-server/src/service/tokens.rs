//! The token endpoint's grants.

use super::auth::ClientCredentials;
use super::{Service, ServiceError};
use latchkey_core::Application;
use latchkey_core::challenge::AuthorizationCode;
use latchkey_core::redirect::RedirectUri;
use latchkey_core::secret::HashPurpose;
use latchkey_core::tokens::{SIGN_IN_SCOPE, SignIn};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub id_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub scope: &'static str,
}

const MAX_CODE_LEN: usize = 128;

impl Service {
    /// `creds` are those of the Authorization header; the body's `client_id`/`client_secret`
    /// (client_secret_post) fill what the header did not give.
    pub async fn token(
        &self,
        creds: ClientCredentials,
        req: TokenRequest,
    ) -> Result<TokenResponse, ServiceError> {
        let creds = ClientCredentials {
            client_id: creds.client_id.or(req.client_id.clone()),
            client_secret: creds.client_secret.or(req.client_secret.clone()),
        };
        match req.grant_type.as_deref() {
            Some("authorization_code") => {
                let app = self.authenticate_token_client(&creds).await?;
                self.exchange_code(&app, &req).await
            }
            Some(other) => Err(ServiceError::UnsupportedGrantType(other.chars().take(100).collect())),
            None => Err(ServiceError::InvalidRequest("grant_type is required".into())),
        }
    }

    async fn exchange_code(
        &self,
        app: &Application,
        req: &TokenRequest,
    ) -> Result<TokenResponse, ServiceError> {
        let code =
            req.code.as_deref().ok_or_else(|| ServiceError::InvalidRequest("code is required".into()))?;
        if code.len() > MAX_CODE_LEN {
            return Err(ServiceError::InvalidGrant("the code is invalid, expired or already used"));
        }
        let now = self.clock.now();
        let hash = self.key.hash(HashPurpose::AuthorizationCode, code);
        let issued = self
            .store
            .redeem_authorization_code(&hash, &app.id, now)
            .await?
            .ok_or(ServiceError::InvalidGrant("the code is invalid, expired or already used"))?;
        check_binding(app, &issued, req)?;
        self.sign_in_tokens(app, &issued).await
    }

    async fn sign_in_tokens(
        &self,
        app: &Application,
        code: &AuthorizationCode,
    ) -> Result<TokenResponse, ServiceError> {
        let user = self
            .store
            .user(&code.user_id)
            .await?
            .ok_or(ServiceError::InvalidGrant("the user no longer exists"))?;
        let now = self.clock.now();
        let sign_in = SignIn {
            user_id: user.id,
            email: user.email,
            auth_method: code.auth_method,
            auth_time: code.auth_time,
            nonce: code.nonce.clone(),
        };
        let lifetimes = &app.settings.lifetimes;
        let signer = self.keys.signer(app.settings.signing_alg);
        let id_token = signer
            .sign_jwt("JWT", &sign_in.id_token(&self.issuer, &app.client_id, lifetimes.id_token(), now));
        let access = sign_in.access_token(&self.issuer, &app.client_id, lifetimes.access_token(), now);
        Ok(TokenResponse {
            access_token: signer.sign_jwt("at+jwt", &access),
            id_token,
            token_type: "Bearer",
            expires_in: lifetimes.access_token().whole_seconds(),
            scope: SIGN_IN_SCOPE,
        })
    }

    /// The development callback page exchanges its demo application's codes without a secret.
    pub async fn exchange_code_for_demo(&self, code: &str) -> Result<TokenResponse, ServiceError> {
        let demo = self.demo_app().ok_or(ServiceError::NotFound("page"))?.clone();
        let app = self.store.application(&demo).await?.ok_or(ServiceError::NotFound("application"))?;
        let req = TokenRequest { code: Some(code.to_owned()), ..TokenRequest::default() };
        self.exchange_code(&app, &req).await
    }
}

/// A code is bound to the redirect URI it was issued for and, with PKCE, to the verifier.
fn check_binding(
    app: &Application,
    code: &AuthorizationCode,
    req: &TokenRequest,
) -> Result<(), ServiceError> {
    let given = req.redirect_uri.as_deref().map(|g| RedirectUri::parse(g).ok());
    if given.is_some_and(|g| g.as_ref() != Some(&code.redirect_uri)) {
        return Err(ServiceError::InvalidGrant(
            "redirect_uri does not match the one the code was issued for",
        ));
    }
    match (&code.code_challenge, req.code_verifier.as_deref()) {
        (Some(challenge), Some(verifier)) if challenge.verify(verifier) => Ok(()),
        (Some(_), Some(_)) => {
            Err(ServiceError::InvalidGrant("code_verifier does not match the code_challenge"))
        }
        (Some(_), None) => Err(ServiceError::InvalidGrant("code_verifier is required")),
        (None, _) if app.public => Err(ServiceError::InvalidGrant("a public client must use PKCE")),
        (None, _) => Ok(()),
    }
}
