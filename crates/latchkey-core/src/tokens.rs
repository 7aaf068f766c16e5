//! The claims of the tokens Latchkey issues: OpenID Connect id tokens and RFC 9068 access tokens.

use crate::challenge::AuthMethod;
use crate::email::EmailAddress;
use crate::id::{OrgId, UserId};
use crate::secret::OpaqueToken;
use serde::Serialize;
use time::{Duration, OffsetDateTime};

/// The scope every e-mail sign-in grants.
pub const SIGN_IN_SCOPE: &str = "openid email";

#[derive(Debug, Clone, Serialize)]
pub struct IdTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    pub email: String,
    pub email_verified: bool,
    pub amr: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AccessTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub client_id: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
}

/// Who signed in, how and when: what both tokens of a sign-in are made from.
#[derive(Debug, Clone)]
pub struct SignIn {
    pub user_id: UserId,
    pub email: EmailAddress,
    pub auth_method: AuthMethod,
    pub auth_time: OffsetDateTime,
    pub nonce: Option<String>,
    pub org_id: Option<OrgId>,
}

impl SignIn {
    pub fn id_token(
        &self,
        issuer: &str,
        client_id: &str,
        lifetime: Duration,
        now: OffsetDateTime,
    ) -> IdTokenClaims {
        IdTokenClaims {
            iss: issuer.to_owned(),
            sub: self.user_id.to_string(),
            aud: client_id.to_owned(),
            exp: (now + lifetime).unix_timestamp(),
            iat: now.unix_timestamp(),
            auth_time: self.auth_time.unix_timestamp(),
            nonce: self.nonce.clone(),
            email: self.email.to_string(),
            email_verified: true,
            amr: vec![self.auth_method.amr()],
            org_id: self.org_id.as_ref().map(|o| o.to_string()),
        }
    }

    pub fn access_token(
        &self,
        issuer: &str,
        client_id: &str,
        lifetime: Duration,
        now: OffsetDateTime,
    ) -> AccessTokenClaims {
        AccessTokenClaims {
            iss: issuer.to_owned(),
            sub: self.user_id.to_string(),
            aud: client_id.to_owned(),
            client_id: client_id.to_owned(),
            exp: (now + lifetime).unix_timestamp(),
            iat: now.unix_timestamp(),
            jti: OpaqueToken::generate().expose()[..22].to_owned(),
            scope: SIGN_IN_SCOPE.to_owned(),
            auth_time: Some(self.auth_time.unix_timestamp()),
            org_id: self.org_id.as_ref().map(|o| o.to_string()),
        }
    }
}
