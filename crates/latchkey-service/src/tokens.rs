//! Tokens: one use case per way of earning them (an authorization code, a one-time code, a
//! refresh token, the application itself), and what else is offered over tokens: userinfo,
//! revocation and introspection.

use crate::metrics;
use crate::{Refusal, Resource, Service, ServiceError};
use latchkey_core::challenge::{AuthMethod, AuthorizationCode, otp_subject};
use latchkey_core::event::{Event, EventKind};
use latchkey_core::id::{FamilyId, OrgId, UserId};
use latchkey_core::refresh::{REFRESH_PREFIX, RefreshToken};
use latchkey_core::secret::HashPurpose;
use latchkey_core::tokens::{
    ACCESS_TOKEN_TYP, AccessTokenClaims, AccessTokenFormat, MAX_TOKEN_LEN, PLAIN_JWT_TYP, SIGN_IN_SCOPE,
    SignIn,
};
use latchkey_core::{Application, EmailAddress, Otp, User};
use latchkey_store::{OtpOutcome, RotateOutcome};
use time::{Duration, OffsetDateTime};

/// Wrong codes a challenge takes before it is burned.
pub const MAX_OTP_ATTEMPTS: u32 = 5;

const MAX_CODE_LEN: usize = 128;
/// How the audit trail names a sign-in by one-time code (as it always has).
const OTP_GRANT_EVENT: &str = "urn:latchkey:params:oauth:grant-type:email-otp";

/// Exchanging an authorization code (issued when a link was consumed).
#[derive(Debug, Clone)]
pub struct CodeExchange {
    pub code: String,
    /// What the face was given of the redirect URI, and whether it may do without one.
    pub redirect_uri: ExchangeRedirect,
    pub code_verifier: Option<String>,
}

/// The redirect URI at a code's exchange, as a face states it (RFC 6749 §4.1.3: when the
/// sign-in named a `redirect_uri`, its exchange must name the same one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExchangeRedirect {
    /// The client sent this one: it must be, exactly, the one the code was issued for.
    Given(String),
    /// The client sent none: refused for a code whose sign-in named one.
    NotGiven,
    /// Not asked for: the face's documented exchange never sends one (`because` says which
    /// face and call). The code stays bound to its application, its PKCE verifier and single
    /// use. The OAuth face never waives it.
    Waived { because: &'static str },
}

impl ExchangeRedirect {
    /// As an OAuth request carries it: given or not.
    pub fn from_request(redirect_uri: Option<String>) -> Self {
        redirect_uri.map_or(Self::NotGiven, Self::Given)
    }
}

/// Exchanging the one-time code of the newest pending sign-in of an address.
#[derive(Debug, Clone)]
pub struct OtpExchange {
    pub email: EmailAddress,
    pub otp: Otp,
}

/// What a grant earns.
#[derive(Debug, Clone)]
pub struct TokenSet {
    pub access_token: String,
    pub id_token: Option<String>,
    pub refresh_token: Option<String>,
    /// The access token's lifetime.
    pub expires_in: Duration,
    pub scope: &'static str,
    /// The sign-in these tokens continue (its refresh-token family); none for an
    /// application's own token.
    pub session: Option<FamilyId>,
}

/// OpenID Connect userinfo: what the user's access token may read.
#[derive(Debug, Clone)]
pub struct UserInfo {
    pub sub: UserId,
    pub email: EmailAddress,
    pub email_verified: bool,
    pub name: Option<String>,
}

/// Whom a sign-in's access token speaks for, and the organization it was for.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user: User,
    pub org_id: Option<OrgId>,
}

/// RFC 7662: what a token is, for the application it was issued to.
#[derive(Debug, Clone)]
pub enum Introspection {
    Inactive,
    Refresh {
        client_id: String,
        sub: UserId,
        scope: String,
        issued_at: OffsetDateTime,
        expires_at: OffsetDateTime,
    },
    Access(AccessTokenClaims),
}

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
    /// An authorization code for the tokens of its sign-in, once, for the application that
    /// authenticated.
    pub async fn exchange_code(
        &self,
        app: &Application,
        cmd: CodeExchange,
    ) -> Result<TokenSet, ServiceError> {
        let (found, user, hash) =
            self.find_code(&cmd).await?.filter(|(c, ..)| c.app_id == app.id).ok_or(Refusal::CodeInvalid)?;
        self.redeem_code(app, found, &user, &hash, &cmd).await
    }

    /// An authorization code exchanged with no client authentication: only a code whose
    /// challenge made it a credential on its own
    /// ([`latchkey_core::Challenge::code_is_credential`]); any other needs its application.
    pub async fn exchange_code_alone(&self, cmd: CodeExchange) -> Result<TokenSet, ServiceError> {
        let (found, user, hash) = self.find_code(&cmd).await?.ok_or(Refusal::CodeInvalid)?;
        if !found.code_is_credential {
            return Err(Refusal::Unauthenticated.into());
        }
        let app = self.application_by_id(&found.app_id).await?.ok_or(Refusal::CodeInvalid)?;
        // Such a code is made for an exchange of the code alone: no redirect URI to name.
        let cmd = match cmd.redirect_uri {
            ExchangeRedirect::NotGiven => CodeExchange {
                redirect_uri: ExchangeRedirect::Waived { because: "a code that is its own credential" },
                ..cmd
            },
            _ => cmd,
        };
        self.redeem_code(&app, found, &user, &hash, &cmd).await
    }

    /// The unspent code of `cmd`, its user and its hash. A code whose user was deleted is gone
    /// with it.
    async fn find_code(
        &self,
        cmd: &CodeExchange,
    ) -> Result<Option<(AuthorizationCode, User, Vec<u8>)>, ServiceError> {
        if cmd.code.len() > MAX_CODE_LEN {
            return Ok(None);
        }
        let hash = self.key.hash(HashPurpose::AuthorizationCode, &cmd.code);
        Ok(self.store.authorization_code(&hash).await?.map(|(code, user)| (code, user, hash)))
    }

    /// Bindings are checked on a read; the redeem is what holds single use.
    async fn redeem_code(
        &self,
        app: &Application,
        found: AuthorizationCode,
        user: &User,
        hash: &[u8],
        cmd: &CodeExchange,
    ) -> Result<TokenSet, ServiceError> {
        let now = self.clock.now();
        check_binding(app, &found, cmd)?;
        let grant = Grant {
            user,
            method: found.auth_method,
            auth_time: found.auth_time,
            nonce: found.nonce,
            org_id: found.org_id,
            family: None,
        };
        // The code is spent, and the sign-in's refresh token stored, in one transaction.
        let (refresh, plain, event) = self.new_refresh(app, &grant, "authorization_code", now);
        self.store
            .redeem_authorization_code(hash, &app.id, now, Some((&refresh, &event)))
            .await?
            .ok_or(Refusal::CodeInvalid)?;
        let mut tokens = self.sign_tokens(app, &grant).await?;
        tokens.refresh_token = Some(plain);
        metrics::tokens_issued(metrics::Grant::AuthorizationCode);
        tokens.session = Some(refresh.family_id);
        Ok(tokens)
    }

    /// The one-time code of the e-mail, typed by the person, for the tokens of a sign-in.
    pub async fn exchange_otp(&self, app: &Application, cmd: OtpExchange) -> Result<TokenSet, ServiceError> {
        let now = self.clock.now();
        let challenge = self
            .store
            .latest_pending_challenge(&app.id, &cmd.email, now)
            .await?
            .ok_or(Refusal::OtpInvalid)?;
        let hash = self.key.hash(HashPurpose::Otp, &otp_subject(&challenge.id, &cmd.otp));
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
                let (refresh, plain, event) = self.new_refresh(app, &grant, OTP_GRANT_EVENT, now);
                self.store.insert_refresh_token(&refresh, Some(&event)).await?;
                metrics::challenge_consumed(challenge.purpose, app, metrics::Consumed::Code);
                let mut tokens = self.sign_tokens(app, &grant).await?;
                tokens.refresh_token = Some(plain);
                metrics::tokens_issued(metrics::Grant::Otp);
                tokens.session = Some(refresh.family_id);
                Ok(tokens)
            }
            OtpOutcome::Wrong { attempts_left } => {
                metrics::otp_failed(app, attempts_left == 0);
                Err(Refusal::OtpInvalid.into())
            }
            OtpOutcome::Gone => Err(Refusal::OtpInvalid.into()),
        }
    }

    /// A refresh token for new tokens and the next refresh token of its family; presenting a
    /// token already rotated out revokes the family.
    pub async fn refresh(&self, app: &Application, token: &str) -> Result<TokenSet, ServiceError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(Refusal::RefreshTokenInvalid.into());
        }
        let now = self.clock.now();
        let hash = self.key.hash(HashPurpose::RefreshToken, token);
        let Some(current) = self.store.refresh_token(&hash).await? else {
            return Err(Refusal::RefreshTokenInvalid.into());
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
                let user = self.store.user(&old.user_id).await?.ok_or(Refusal::RefreshTokenInvalid)?;
                let grant = Grant {
                    user: &user,
                    method: old.auth_method,
                    auth_time: old.auth_time,
                    nonce: None,
                    org_id: old.org_id.clone(),
                    family: Some(old.family_id.clone()),
                };
                let mut tokens = self.sign_tokens(app, &grant).await?;
                tokens.refresh_token = Some(plain);
                metrics::tokens_issued(metrics::Grant::RefreshToken);
                tokens.session = Some(old.family_id);
                Ok(tokens)
            }
            RotateOutcome::Reused { family_id, .. } => {
                metrics::refresh_token_reused();
                tracing::warn!(app_id = %app.id, family_id = %family_id, "refresh token reused: family revoked");
                Err(Refusal::RefreshTokenInvalid.into())
            }
            RotateOutcome::Invalid => Err(Refusal::RefreshTokenInvalid.into()),
        }
    }

    /// An access token for the application itself (OAuth's client_credentials grant), per
    /// RFC 9068.
    pub async fn client_token(&self, app: &Application) -> Result<TokenSet, ServiceError> {
        self.client_token_as(app, AccessTokenFormat::Rfc9068).await
    }

    /// An access token for the application itself, in the given format.
    pub async fn client_token_as(
        &self,
        app: &Application,
        format: AccessTokenFormat,
    ) -> Result<TokenSet, ServiceError> {
        if app.public {
            return Err(Refusal::PublicClientCannotActForItself.into());
        }
        let now = self.clock.now();
        let lifetime = app.settings.lifetimes.access_token();
        let claims = AccessTokenClaims::for_client(&self.issuer, &app.client_id, lifetime, now);
        let signer = self.keys.signer(&*self.store, app.settings.signing_alg, &*self.clock).await?;
        let event = Event::new(EventKind::TokenIssued, now).app(&app.id).with("grant", "client_credentials");
        self.store.insert_event(&event).await?;
        metrics::tokens_issued(metrics::Grant::ClientCredentials);
        Ok(TokenSet {
            access_token: match format {
                AccessTokenFormat::Rfc9068 => signer.sign_jwt(ACCESS_TOKEN_TYP, &claims),
                AccessTokenFormat::PlainJwt => {
                    signer.sign_jwt_with_issuer(PLAIN_JWT_TYP, &self.issuer, &claims)
                }
            },
            id_token: None,
            refresh_token: None,
            expires_in: lifetime,
            scope: latchkey_core::tokens::CLIENT_SCOPE,
            session: None,
        })
    }

    /// The id and access tokens of a sign-in.
    async fn sign_tokens(&self, app: &Application, grant: &Grant<'_>) -> Result<TokenSet, ServiceError> {
        let now = self.clock.now();
        let sign_in = SignIn {
            user_id: grant.user.id.clone(),
            email: grant.user.email.clone(),
            auth_method: grant.method,
            auth_time: grant.auth_time,
            nonce: grant.nonce.clone(),
            org_id: grant.org_id.clone(),
        };
        let lifetimes = &app.settings.lifetimes;
        let signer = self.keys.signer(&*self.store, app.settings.signing_alg, &*self.clock).await?;
        let id = sign_in.id_token(&self.issuer, &app.client_id, lifetimes.id_token(), now);
        let access = sign_in.access_token(&self.issuer, &app.client_id, lifetimes.access_token(), now);
        Ok(TokenSet {
            access_token: signer.sign_jwt(ACCESS_TOKEN_TYP, &access),
            id_token: Some(signer.sign_jwt("JWT", &id)),
            refresh_token: None,
            expires_in: lifetimes.access_token(),
            scope: SIGN_IN_SCOPE,
            session: None,
        })
    }

    /// The first refresh token of a sign-in and the event of its issue.
    fn new_refresh(
        &self,
        app: &Application,
        grant: &Grant<'_>,
        grant_name: &str,
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
            .with("grant", grant_name);
        (refresh, plain, event)
    }

    /// The demo application of `--dev`, whose sign-ins land on the development pages.
    pub async fn demo_application(&self) -> Result<Application, ServiceError> {
        let demo = self.demo_app().ok_or(Refusal::NotFound(Resource::DemoApplication))?.clone();
        Ok(self.store.application(&demo).await?.ok_or(Refusal::NotFound(Resource::DemoApplication))?)
    }

    /// The claims of a valid access token issued by this server (signature, issuer, type and
    /// expiry checked).
    pub fn access_token_claims(&self, token: &str) -> Option<AccessTokenClaims> {
        self.keys.verify_access_token(token, &self.issuer, self.clock.now())
    }

    /// The user (as stored now) and organization of a valid access token of a sign-in.
    pub async fn signed_in(&self, bearer: Option<&str>) -> Result<SignedIn, ServiceError> {
        let claims = bearer.and_then(|t| self.access_token_claims(t)).ok_or(Refusal::AccessTokenInvalid)?;
        let user_id = UserId::parse(&claims.sub).ok_or(Refusal::AccessTokenInvalid)?;
        let user = self.store.user(&user_id).await?.ok_or(Refusal::AccessTokenInvalid)?;
        let org_id = claims.org_id.as_deref().and_then(OrgId::parse);
        Ok(SignedIn { user, org_id })
    }

    /// OpenID Connect userinfo for a user's access token.
    pub async fn userinfo(&self, bearer: Option<&str>) -> Result<UserInfo, ServiceError> {
        let SignedIn { user, .. } = self.signed_in(bearer).await?;
        Ok(UserInfo { sub: user.id, email: user.email, email_verified: user.email_verified, name: user.name })
    }

    /// RFC 7009: revoking a refresh token ends its whole sign-in; access tokens are
    /// self-contained and expire on their own. Unknown tokens are not an error.
    pub async fn revoke(&self, app: &Application, token: &str) -> Result<(), ServiceError> {
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
    pub async fn introspect(&self, app: &Application, token: &str) -> Result<Introspection, ServiceError> {
        if token.starts_with(REFRESH_PREFIX) {
            if token.len() > MAX_TOKEN_LEN {
                return Ok(Introspection::Inactive);
            }
            let hash = self.key.hash(HashPurpose::RefreshToken, token);
            let now = self.clock.now();
            return Ok(match self.store.refresh_token(&hash).await? {
                Some(t) if t.app_id == app.id && t.is_active(now) => Introspection::Refresh {
                    client_id: app.client_id.clone(),
                    sub: t.user_id,
                    scope: t.scope,
                    issued_at: t.created_at,
                    expires_at: t.expires_at,
                },
                _ => Introspection::Inactive,
            });
        }
        Ok(match self.access_token_claims(token) {
            Some(claims) if claims.client_id == app.client_id => Introspection::Access(claims),
            _ => Introspection::Inactive,
        })
    }
}

/// A code is bound to the redirect URI it was issued for and, with PKCE, to the verifier.
fn check_binding(app: &Application, code: &AuthorizationCode, cmd: &CodeExchange) -> Result<(), Refusal> {
    match &cmd.redirect_uri {
        ExchangeRedirect::Given(given) if given != code.redirect_uri.as_str() => {
            return Err(Refusal::RedirectMismatch);
        }
        ExchangeRedirect::NotGiven if code.redirect_uri_given => return Err(Refusal::RedirectMissing),
        ExchangeRedirect::Given(_) | ExchangeRedirect::NotGiven | ExchangeRedirect::Waived { .. } => {}
    }
    match (&code.code_challenge, cmd.code_verifier.as_deref()) {
        (Some(challenge), Some(verifier)) if challenge.verify(verifier) => Ok(()),
        (Some(_), Some(_)) => Err(Refusal::VerifierMismatch),
        (Some(_), None) => Err(Refusal::VerifierRequired),
        (None, _) if app.public => Err(Refusal::PublicClientWithoutPkce),
        (None, _) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_core::RedirectUri;
    use latchkey_core::application::AppSettings;
    use latchkey_core::challenge::AuthMethod;
    use latchkey_core::id::{AppId, ChallengeId, CodeId};

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn app() -> Application {
        let uri = RedirectUri::parse("https://app.example/cb").unwrap();
        Application {
            id: AppId::generate(now()),
            client_id: "client".into(),
            name: "App".into(),
            public: false,
            redirect_uris: vec![uri.clone()],
            default_redirect_uri: Some(uri),
            settings: AppSettings::default(),
            created_at: now(),
            updated_at: now(),
        }
    }

    fn code(app: &Application, given: bool) -> AuthorizationCode {
        AuthorizationCode {
            id: CodeId::generate(now()),
            code_hash: vec![0; 32],
            app_id: app.id.clone(),
            challenge_id: ChallengeId::generate(now()),
            user_id: UserId::generate(now()),
            redirect_uri: RedirectUri::parse("https://app.example/cb").unwrap(),
            redirect_uri_given: given,
            code_challenge: None,
            nonce: None,
            auth_method: AuthMethod::Link,
            auth_time: now(),
            org_id: None,
            code_is_credential: false,
            expires_at: now(),
        }
    }

    fn exchange(redirect_uri: ExchangeRedirect) -> CodeExchange {
        CodeExchange { code: "c".into(), redirect_uri, code_verifier: None }
    }

    /// RFC 6749 §4.1.3: a sign-in that named its redirect URI needs it named again at the
    /// exchange, exactly; one that took the default does not; a face whose documented call
    /// never sends one says so and is not asked for it.
    #[test]
    fn the_exchange_names_the_redirect_uri_when_the_sign_in_did() {
        let app = app();
        let given = |uri: &str| ExchangeRedirect::Given(uri.into());
        let waived =
            ExchangeRedirect::Waived { because: "the documented exchange sends code and grant_type only" };
        for named in [false, true] {
            let code = code(&app, named);
            assert_eq!(check_binding(&app, &code, &exchange(given("https://app.example/cb"))), Ok(()));
            assert_eq!(
                check_binding(&app, &code, &exchange(given("https://app.example/cb/"))),
                Err(Refusal::RedirectMismatch)
            );
            assert_eq!(check_binding(&app, &code, &exchange(waived.clone())), Ok(()));
        }
        assert_eq!(check_binding(&app, &code(&app, false), &exchange(ExchangeRedirect::NotGiven)), Ok(()));
        assert_eq!(
            check_binding(&app, &code(&app, true), &exchange(ExchangeRedirect::NotGiven)),
            Err(Refusal::RedirectMissing)
        );
        assert_eq!(ExchangeRedirect::from_request(None), ExchangeRedirect::NotGiven);
        assert_eq!(ExchangeRedirect::from_request(Some("u".into())), given("u"));
    }
}
