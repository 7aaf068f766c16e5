//! The claims of the tokens Latchkey issues: OpenID Connect id tokens and RFC 9068 access tokens.

use crate::challenge::AuthMethod;
use crate::email::EmailAddress;
use crate::id::{OrgId, UserId};
use crate::secret::OpaqueToken;
use crate::signing::{SigningKey, verify_jwt};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

/// The scope every e-mail sign-in grants.
pub const SIGN_IN_SCOPE: &str = "openid email";
/// The scope of a client_credentials token: the application acting for itself.
pub const CLIENT_SCOPE: &str = "latchkey";
/// The JOSE `typ` of access tokens (RFC 9068).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// The JOSE `typ` of a token that says only that it is a JWT.
pub const PLAIN_JWT_TYP: &str = "JWT";

/// How an application's own access token (client_credentials) is written: per RFC 9068
/// (`typ: at+jwt`), or as a plain JWT (`typ: JWT`) whose header also names its issuer, for
/// clients that read the header and expect that. The claims are the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessTokenFormat {
    Rfc9068,
    PlainJwt,
}

/// The longest token this server reads; anything longer cannot be one of ours.
pub const MAX_TOKEN_LEN: usize = 4096;

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

impl AccessTokenClaims {
    /// The token of an application acting for itself (the client_credentials grant).
    pub fn for_client(issuer: &str, client_id: &str, lifetime: Duration, now: OffsetDateTime) -> Self {
        Self {
            iss: issuer.to_owned(),
            sub: client_id.to_owned(),
            aud: client_id.to_owned(),
            client_id: client_id.to_owned(),
            exp: (now + lifetime).unix_timestamp(),
            iat: now.unix_timestamp(),
            jti: jti(),
            scope: CLIENT_SCOPE.to_owned(),
            auth_time: None,
            org_id: None,
        }
    }

    /// Whether an application signs with this token for itself rather than for a user.
    pub fn is_client_token(&self) -> bool {
        self.sub == self.client_id && self.scope == CLIENT_SCOPE
    }

    /// The claims of an access token this server issued and that is still valid at `now`:
    /// signed by one of our keys, typed `at+jwt` (or a plain JWT of an application's own, see
    /// [`AccessTokenFormat`]), from `issuer`, unexpired.
    pub fn verify<'a>(
        token: &str,
        key_for: impl Fn(&str) -> Option<&'a SigningKey>,
        issuer: &str,
        now: OffsetDateTime,
    ) -> Option<Self> {
        if token.len() > MAX_TOKEN_LEN {
            return None;
        }
        let (header, claims) = verify_jwt(token, key_for)?;
        let claims: Self = serde_json::from_value(claims).ok()?;
        // A plain `JWT` is an access token only as an application's own (see
        // [`AccessTokenFormat::PlainJwt`]); an id token never parses as these claims anyway.
        let typed = header["typ"] == ACCESS_TOKEN_TYP
            || (header["typ"] == PLAIN_JWT_TYP && header["iss"] == issuer && claims.is_client_token());
        (typed && claims.iss == issuer && claims.exp > now.unix_timestamp()).then_some(claims)
    }
}

/// A token id: 132 random bits.
fn jti() -> String {
    OpaqueToken::generate().expose()[..22].to_owned()
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
            jti: jti(),
            scope: SIGN_IN_SCOPE.to_owned(),
            auth_time: Some(self.auth_time.unix_timestamp()),
            org_id: self.org_id.as_ref().map(|o| o.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::SigningAlg;

    const ISSUER: &str = "https://id.example";

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
    }

    #[test]
    fn a_plain_jwt_is_an_access_token_only_as_an_application_s_own_with_its_issuer_in_the_header() {
        let (key, _) = SigningKey::generate("k1".into(), SigningAlg::ES256);
        let verify =
            |jwt: &str| AccessTokenClaims::verify(jwt, |k| (k == "k1").then_some(&key), ISSUER, now());
        let client = AccessTokenClaims::for_client(ISSUER, "app_1", Duration::hours(1), now());
        assert!(verify(&key.sign_jwt(ACCESS_TOKEN_TYP, &client)).is_some(), "RFC 9068");
        assert!(verify(&key.sign_jwt_with_issuer(PLAIN_JWT_TYP, ISSUER, &client)).is_some(), "plain, own");
        assert!(verify(&key.sign_jwt(PLAIN_JWT_TYP, &client)).is_none(), "plain without iss in the header");
        let other = key.sign_jwt_with_issuer(PLAIN_JWT_TYP, "https://other.example", &client);
        assert!(verify(&other).is_none(), "plain naming another issuer");

        let sign_in = SignIn {
            user_id: UserId::generate(now()),
            email: EmailAddress::parse("ada@example.com").unwrap(),
            auth_method: AuthMethod::Link,
            auth_time: now(),
            nonce: None,
            org_id: None,
        };
        let user = sign_in.access_token(ISSUER, "app_1", Duration::hours(1), now());
        assert!(verify(&key.sign_jwt(ACCESS_TOKEN_TYP, &user)).is_some());
        assert!(verify(&key.sign_jwt_with_issuer(PLAIN_JWT_TYP, ISSUER, &user)).is_none(), "a user's, plain");
        let id = sign_in.id_token(ISSUER, "app_1", Duration::hours(1), now());
        assert!(verify(&key.sign_jwt_with_issuer(PLAIN_JWT_TYP, ISSUER, &id)).is_none(), "an id token");
    }
}
