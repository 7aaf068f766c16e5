//! The token endpoint's grants, and what else OAuth offers over tokens: userinfo,
//! revocation (RFC 7009) and introspection (RFC 7662).

use super::auth::ClientCredentials;
use super::{Service, ServiceError};
use latchkey_core::challenge::{AuthMethod, AuthorizationCode, otp_subject};
use latchkey_core::event::{Event, EventKind};
use latchkey_core::id::{FamilyId, OrgId};
use latchkey_core::redirect::RedirectUri;
use latchkey_core::refresh::{REFRESH_PREFIX, RefreshToken};
use latchkey_core::secret::HashPurpose;
use latchkey_core::tokens::{SIGN_IN_SCOPE, SignIn};
use latchkey_core::{Application, EmailAddress, Otp, User};
use latchkey_store::{OtpOutcome, RotateOutcome};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;

pub const OTP_GRANT: &str = "urn:latchkey:params:oauth:grant-type:email-otp";
/// Wrong codes a challenge takes before it is burned.
pub const MAX_OTP_ATTEMPTS: u32 = 5;
/// The scope of a client_credentials token: the application acting for itself.
pub const CLIENT_SCOPE: &str = "latchkey";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub refresh_token: Option<String>,
    pub email: Option<String>,
    pub otp: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub scope: String,
}

const MAX_CODE_LEN: usize = 128;
const MAX_TOKEN_LEN: usize = 4096;
const USED_OR_UNKNOWN: &str = "the code is invalid, expired or already used";

/// Who signed in and how, for the tokens of a grant.
struct Grant<'a> {
    user: &'a User,
    method: AuthMethod,
    auth_time: OffsetDateTime,
    nonce: Option<String>,
    org_id: Option<OrgId>,
    /// The refresh-token family to continue, or `None` to start one.
    family: Option<FamilyId>,
}

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
        let Some(grant_type) = req.grant_type.as_deref() else {
            return Err(ServiceError::InvalidRequest("grant_type is required".into()));
        };
        if !matches!(grant_type, "authorization_code" | "refresh_token" | "client_credentials" | OTP_GRANT) {
            return Err(ServiceError::UnsupportedGrantType(grant_type.chars().take(100).collect()));
        }
        let app = self.authenticate_token_client(&creds).await?;
        match grant_type {
            "authorization_code" => self.exchange_code(&app, &req).await,
            "refresh_token" => self.refresh(&app, &req).await,
            "client_credentials" => self.client_credentials(&app).await,
            _ => self.exchange_otp(&app, &req).await,
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
            return Err(ServiceError::InvalidGrant(USED_OR_UNKNOWN));
        }
        let now = self.clock.now();
        let hash = self.key.hash(HashPurpose::AuthorizationCode, code);
        // Bindings are checked on a read; the redeem below is what holds single use. A code
        // whose user was deleted is gone with it.
        let (found, user) = self
            .store
            .authorization_code(&hash)
            .await?
            .filter(|(c, _)| c.app_id == app.id)
            .ok_or(ServiceError::InvalidGrant(USED_OR_UNKNOWN))?;
        check_binding(app, &found, req)?;
        let grant = Grant {
            user: &user,
            method: found.auth_method,
            auth_time: found.auth_time,
            nonce: found.nonce,
            org_id: found.org_id,
            family: None,
        };
        // The code is spent, and the sign-in's refresh token stored, in one transaction.
        let (refresh, plain, event) = self.new_refresh(app, &grant, "authorization_code", now);
        self.store
            .redeem_authorization_code(&hash, &app.id, now, Some((&refresh, &event)))
            .await?
            .ok_or(ServiceError::InvalidGrant(USED_OR_UNKNOWN))?;
        let mut response = self
            .sign_tokens(app, grant.user, grant.method, grant.auth_time, grant.nonce, grant.org_id)
            .await?;
        response.refresh_token = Some(plain);
        Ok(response)
    }

    async fn exchange_otp(
        &self,
        app: &Application,
        req: &TokenRequest,
    ) -> Result<TokenResponse, ServiceError> {
        let email =
            req.email.as_deref().ok_or_else(|| ServiceError::InvalidRequest("email is required".into()))?;
        let otp = req.otp.as_deref().ok_or_else(|| ServiceError::InvalidRequest("otp is required".into()))?;
        const WRONG: &str = "the code is wrong, expired or already used";
        let email = EmailAddress::parse(email).map_err(|_| ServiceError::InvalidGrant(WRONG))?;
        let otp = Otp::parse(otp).ok_or(ServiceError::InvalidGrant(WRONG))?;
        let now = self.clock.now();
        let challenge = self
            .store
            .latest_pending_challenge(&app.id, &email, now)
            .await?
            .ok_or(ServiceError::InvalidGrant(WRONG))?;
        let hash = self.key.hash(HashPurpose::Otp, &otp_subject(&challenge.id, &otp));
        match self.store.consume_by_otp(&challenge.id, &hash, MAX_OTP_ATTEMPTS, now).await? {
            OtpOutcome::Consumed { challenge, user } => {
                let grant = Grant {
                    user: &user,
                    method: AuthMethod::Otp,
                    auth_time: now,
                    nonce: challenge.nonce.clone(),
                    org_id: challenge.org_id.clone(),
                    family: None,
                };
                self.issue(app, grant, OTP_GRANT).await
            }
            OtpOutcome::Wrong { .. } | OtpOutcome::Gone => Err(ServiceError::InvalidGrant(WRONG)),
        }
    }

    async fn refresh(&self, app: &Application, req: &TokenRequest) -> Result<TokenResponse, ServiceError> {
        const INVALID: &str = "the refresh token is invalid, expired or revoked";
        let token = req
            .refresh_token
            .as_deref()
            .ok_or_else(|| ServiceError::InvalidRequest("refresh_token is required".into()))?;
        if token.len() > MAX_TOKEN_LEN {
            return Err(ServiceError::InvalidGrant(INVALID));
        }
        let now = self.clock.now();
        let hash = self.key.hash(HashPurpose::RefreshToken, token);
        let Some(current) = self.store.refresh_token(&hash).await? else {
            return Err(ServiceError::InvalidGrant(INVALID));
        };
        let (mut next, plain) = RefreshToken::issue(
            &self.key,
            Some(current.family_id.clone()),
            app.id.clone(),
            current.user_id.clone(),
            current.auth_method,
            current.auth_time,
            &current.scope,
            app.settings.lifetimes.refresh_token(),
            now,
        );
        next.org_id = current.org_id.clone();
        let event = Event::new(EventKind::TokenRefreshed, now)
            .app(&app.id)
            .user(&current.user_id)
            .subject(current.family_id.as_str());
        match self.store.rotate_refresh_token(&hash, &app.id, &next, Some(&event), now).await? {
            RotateOutcome::Rotated(old) => {
                let user = self.store.user(&old.user_id).await?.ok_or(ServiceError::InvalidGrant(INVALID))?;
                let mut response = self
                    .sign_tokens(app, &user, old.auth_method, old.auth_time, None, old.org_id.clone())
                    .await?;
                response.refresh_token = Some(plain);
                Ok(response)
            }
            RotateOutcome::Reused { family_id, .. } => {
                tracing::warn!(app_id = %app.id, family_id = %family_id, "refresh token reused: family revoked");
                Err(ServiceError::InvalidGrant(INVALID))
            }
            RotateOutcome::Invalid => Err(ServiceError::InvalidGrant(INVALID)),
        }
    }

    async fn client_credentials(&self, app: &Application) -> Result<TokenResponse, ServiceError> {
        if app.public {
            return Err(ServiceError::UnauthorizedClient("a public client cannot use client_credentials"));
        }
        let now = self.clock.now();
        let lifetime = app.settings.lifetimes.access_token();
        let claims = json!({
            "iss": self.issuer, "sub": app.client_id, "aud": app.client_id, "client_id": app.client_id,
            "exp": (now + lifetime).unix_timestamp(), "iat": now.unix_timestamp(),
            "jti": latchkey_core::OpaqueToken::generate().expose()[..22].to_owned(), "scope": CLIENT_SCOPE,
        });
        let signer = self.keys.signer(&*self.store, app.settings.signing_alg, &*self.clock).await?;
        let event = Event::new(EventKind::TokenIssued, now)
            .app(&app.id)
            .detail(json!({ "grant": "client_credentials" }));
        self.store.insert_event(&event).await?;
        Ok(TokenResponse {
            access_token: signer.sign_jwt("at+jwt", &claims),
            id_token: None,
            refresh_token: None,
            token_type: "Bearer",
            expires_in: lifetime.whole_seconds(),
            scope: CLIENT_SCOPE.into(),
        })
    }

    /// The id and access tokens of a sign-in.
    async fn sign_tokens(
        &self,
        app: &Application,
        user: &User,
        method: AuthMethod,
        auth_time: OffsetDateTime,
        nonce: Option<String>,
        org_id: Option<OrgId>,
    ) -> Result<TokenResponse, ServiceError> {
        let now = self.clock.now();
        let sign_in = SignIn {
            user_id: user.id.clone(),
            email: user.email.clone(),
            auth_method: method,
            auth_time,
            nonce,
            org_id,
        };
        let lifetimes = &app.settings.lifetimes;
        let signer = self.keys.signer(&*self.store, app.settings.signing_alg, &*self.clock).await?;
        let id = sign_in.id_token(&self.issuer, &app.client_id, lifetimes.id_token(), now);
        let access = sign_in.access_token(&self.issuer, &app.client_id, lifetimes.access_token(), now);
        Ok(TokenResponse {
            access_token: signer.sign_jwt("at+jwt", &access),
            id_token: Some(signer.sign_jwt("JWT", &id)),
            refresh_token: None,
            token_type: "Bearer",
            expires_in: lifetimes.access_token().whole_seconds(),
            scope: SIGN_IN_SCOPE.into(),
        })
    }

    /// Tokens for a fresh sign-in, starting a refresh-token family.
    /// The first refresh token of a sign-in (or the next of a family) and the event of its issue.
    fn new_refresh(
        &self,
        app: &Application,
        grant: &Grant<'_>,
        grant_type: &str,
        now: OffsetDateTime,
    ) -> (RefreshToken, String, Event) {
        let (mut refresh, plain) = RefreshToken::issue(
            &self.key,
            grant.family.clone(),
            app.id.clone(),
            grant.user.id.clone(),
            grant.method,
            grant.auth_time,
            SIGN_IN_SCOPE,
            app.settings.lifetimes.refresh_token(),
            now,
        );
        refresh.org_id = grant.org_id.clone();
        let event = Event::new(EventKind::TokenIssued, now)
            .app(&app.id)
            .user(&grant.user.id)
            .subject(refresh.family_id.as_str())
            .detail(json!({ "grant": grant_type }));
        (refresh, plain, event)
    }

    /// Tokens for a sign-in whose challenge is already consumed, starting a refresh family.
    async fn issue(
        &self,
        app: &Application,
        grant: Grant<'_>,
        grant_type: &str,
    ) -> Result<TokenResponse, ServiceError> {
        let now = self.clock.now();
        let (refresh, plain, event) = self.new_refresh(app, &grant, grant_type, now);
        self.store.insert_refresh_token(&refresh, Some(&event)).await?;
        let mut response = self
            .sign_tokens(app, grant.user, grant.method, grant.auth_time, grant.nonce, grant.org_id)
            .await?;
        response.refresh_token = Some(plain);
        Ok(response)
    }

    /// The development callback page exchanges its demo application's codes without a secret.
    pub async fn exchange_code_for_demo(&self, code: &str) -> Result<TokenResponse, ServiceError> {
        let demo = self.demo_app().ok_or(ServiceError::NotFound("page"))?.clone();
        let app = self.store.application(&demo).await?.ok_or(ServiceError::NotFound("application"))?;
        let req = TokenRequest { code: Some(code.to_owned()), ..TokenRequest::default() };
        self.exchange_code(&app, &req).await
    }

    /// The claims of a valid access token issued by this server (signature, issuer, type and
    /// expiry checked).
    pub fn access_token_claims(&self, token: &str) -> Option<Value> {
        if token.len() > MAX_TOKEN_LEN {
            return None;
        }
        let (header, claims) = self.keys.verify(token)?;
        let now = self.clock.now().unix_timestamp();
        let valid = header["typ"] == "at+jwt"
            && claims["iss"].as_str() == Some(self.issuer.as_str())
            && claims["exp"].as_i64().is_some_and(|exp| exp > now);
        valid.then_some(claims)
    }

    /// OpenID Connect userinfo for a user's access token.
    pub async fn userinfo(&self, bearer: Option<&str>) -> Result<Value, ServiceError> {
        let claims = bearer.and_then(|t| self.access_token_claims(t)).ok_or(ServiceError::InvalidToken)?;
        let sub = claims["sub"].as_str().ok_or(ServiceError::InvalidToken)?;
        let user_id = latchkey_core::id::UserId::parse(sub).ok_or(ServiceError::InvalidToken)?;
        let user = self.store.user(&user_id).await?.ok_or(ServiceError::InvalidToken)?;
        let mut body =
            json!({ "sub": user.id, "email": user.email.as_str(), "email_verified": user.email_verified });
        if let Some(name) = &user.name {
            body["name"] = name.as_str().into();
        }
        Ok(body)
    }

    /// RFC 7009: revoking a refresh token ends its whole sign-in; access tokens are
    /// self-contained and expire on their own. Unknown tokens are not an error.
    pub async fn revoke(&self, creds: &ClientCredentials, token: Option<&str>) -> Result<(), ServiceError> {
        let app = self.authenticate_token_client(creds).await?;
        let token = token.ok_or_else(|| ServiceError::InvalidRequest("token is required".into()))?;
        if !token.starts_with(REFRESH_PREFIX) || token.len() > MAX_TOKEN_LEN {
            return Ok(());
        }
        let hash = self.key.hash(HashPurpose::RefreshToken, token);
        if let Some(found) = self.store.refresh_token(&hash).await?.filter(|t| t.app_id == app.id) {
            let now = self.clock.now();
            if self.store.revoke_refresh_family(&found.family_id, now).await? > 0 {
                let event = Event::new(EventKind::TokenRevoked, now)
                    .app(&app.id)
                    .user(&found.user_id)
                    .subject(found.family_id.as_str());
                self.store.insert_event(&event).await?;
            }
        }
        Ok(())
    }

    /// RFC 7662: whether a token is active, for the application it was issued to only.
    pub async fn introspect(
        &self,
        creds: &ClientCredentials,
        token: Option<&str>,
    ) -> Result<Value, ServiceError> {
        let app = self.authenticate_token_client(creds).await?;
        let token = token.ok_or_else(|| ServiceError::InvalidRequest("token is required".into()))?;
        let inactive = json!({ "active": false });
        if token.starts_with(REFRESH_PREFIX) {
            if token.len() > MAX_TOKEN_LEN {
                return Ok(inactive);
            }
            let hash = self.key.hash(HashPurpose::RefreshToken, token);
            let now = self.clock.now();
            return Ok(match self.store.refresh_token(&hash).await? {
                Some(t) if t.app_id == app.id && t.is_active(now) => json!({
                    "active": true, "token_type": "refresh_token", "client_id": app.client_id, "sub": t.user_id,
                    "scope": t.scope, "iat": t.created_at.unix_timestamp(), "exp": t.expires_at.unix_timestamp(),
                    "iss": self.issuer,
                }),
                _ => inactive,
            });
        }
        Ok(match self.access_token_claims(token) {
            Some(claims) if claims["client_id"].as_str() == Some(app.client_id.as_str()) => {
                let mut body = json!({ "active": true, "token_type": "access_token" });
                for key in ["iss", "sub", "aud", "client_id", "scope", "exp", "iat", "jti"] {
                    body[key] = claims[key].clone();
                }
                body
            }
            _ => inactive,
        })
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
