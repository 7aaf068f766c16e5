//! Reading records back from rows, written once for every SQL implementation: each one only
//! says how to read a column of its row type ([`RowReader`]), and these functions build the
//! records and check what they read.

use crate::{
    ChallengeRecord, ClientSecret, Delivery, DeliveryStatus, OutboxMessage, StoreError, StoredDkimKey,
    StoredSigningKey, Suppression,
};
use latchkey_core::application::AppSettings;
use latchkey_core::challenge::{AuthMethod, AuthorizationCode, Purpose};
use latchkey_core::event::{Event, EventKind};
use latchkey_core::hosted::{BrowserSession, HostedRequest, HostedStatus};
use latchkey_core::id::Id;
use latchkey_core::link_view::{LinkView, ViewMethod};
use latchkey_core::organization::Organization;
use latchkey_core::pkce::CodeChallenge;
use latchkey_core::refresh::RefreshToken;
use latchkey_core::signing::SigningAlg;
use latchkey_core::{Application, Challenge, ChallengeStatus, EmailAddress, RedirectUri, User};
use time::OffsetDateTime;

/// Column access for one row; `what` names the record for error messages.
pub trait RowReader {
    fn text(&self, col: &str) -> Result<Option<String>, StoreError>;
    fn int(&self, col: &str) -> Result<Option<i64>, StoreError>;
    fn bytes(&self, col: &str) -> Result<Option<Vec<u8>>, StoreError>;
    fn boolean(&self, col: &str) -> Result<Option<bool>, StoreError>;
}

/// Times are stored as milliseconds since the Unix epoch, in both engines.
pub fn millis(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

pub fn from_millis(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

struct Reader<'a> {
    row: &'a dyn RowReader,
    what: &'static str,
}

impl Reader<'_> {
    fn corrupt(&self) -> StoreError {
        StoreError::Corrupt(self.what)
    }
    fn text(&self, col: &str) -> Result<String, StoreError> {
        self.row.text(col)?.ok_or_else(|| self.corrupt())
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError> {
        self.row.text(col)
    }
    fn int(&self, col: &str) -> Result<i64, StoreError> {
        self.row.int(col)?.ok_or_else(|| self.corrupt())
    }
    fn bytes(&self, col: &str) -> Result<Vec<u8>, StoreError> {
        self.row.bytes(col)?.ok_or_else(|| self.corrupt())
    }
    fn boolean(&self, col: &str) -> Result<bool, StoreError> {
        self.row.boolean(col)?.ok_or_else(|| self.corrupt())
    }
    fn time(&self, col: &str) -> Result<OffsetDateTime, StoreError> {
        from_millis(self.int(col)?).ok_or_else(|| self.corrupt())
    }
    fn opt_time(&self, col: &str) -> Result<Option<OffsetDateTime>, StoreError> {
        self.row.int(col)?.map(|ms| from_millis(ms).ok_or_else(|| self.corrupt())).transpose()
    }
    fn id<K: latchkey_core::id::IdKind>(&self, col: &str) -> Result<Id<K>, StoreError> {
        Ok(Id::from_trusted(self.text(col)?))
    }
    fn redirect(&self, col: &str) -> Result<RedirectUri, StoreError> {
        RedirectUri::parse(&self.text(col)?).map_err(|_| self.corrupt())
    }
    fn count(&self, col: &str) -> Result<u32, StoreError> {
        u32::try_from(self.int(col)?).map_err(|_| self.corrupt())
    }
}

pub fn application(row: &dyn RowReader) -> Result<Application, StoreError> {
    let r = Reader { row, what: "application" };
    let uris: Vec<String> = serde_json::from_str(&r.text("redirect_uris")?).map_err(|_| r.corrupt())?;
    let settings: AppSettings = serde_json::from_str(&r.text("settings")?).map_err(|_| r.corrupt())?;
    Ok(Application {
        id: r.id("id")?,
        client_id: r.text("client_id")?,
        name: r.text("name")?,
        public: r.boolean("public")?,
        redirect_uris: uris
            .iter()
            .map(|u| RedirectUri::parse(u).map_err(|_| r.corrupt()))
            .collect::<Result<_, _>>()?,
        default_redirect_uri: r
            .opt_text("default_redirect_uri")?
            .map(|u| RedirectUri::parse(&u).map_err(|_| r.corrupt()))
            .transpose()?,
        settings,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

/// The JSON columns of an application, as written.
pub fn application_json(app: &Application) -> (String, String) {
    let uris: Vec<&str> = app.redirect_uris.iter().map(RedirectUri::as_str).collect();
    (
        serde_json::to_string(&uris).expect("strings serialise"),
        serde_json::to_string(&app.settings).expect("settings serialise"),
    )
}

pub fn client_secret(row: &dyn RowReader) -> Result<ClientSecret, StoreError> {
    let r = Reader { row, what: "client secret" };
    Ok(ClientSecret {
        id: r.id("id")?,
        app_id: r.id("app_id")?,
        hash: r.bytes("hash")?,
        created_at: r.time("created_at")?,
    })
}

/// A challenge read with a `hosted` column saying whether a hosted request belongs to it.
pub fn challenge_marked_hosted(row: &dyn RowReader) -> Result<(Challenge, bool), StoreError> {
    let hosted = row.boolean("hosted")?.ok_or(StoreError::Corrupt("challenge"))?;
    Ok((challenge(row)?, hosted))
}

pub fn challenge(row: &dyn RowReader) -> Result<Challenge, StoreError> {
    let r = Reader { row, what: "challenge" };
    Ok(Challenge {
        id: r.id("id")?,
        purpose: Purpose::parse(&r.text("purpose")?).ok_or_else(|| r.corrupt())?,
        app_id: r.id("app_id")?,
        email: EmailAddress::from_trusted(r.text("email")?),
        redirect_uri: r.redirect("redirect_uri")?,
        redirect_uri_given: r.boolean("redirect_uri_given")?,
        state: r.opt_text("state")?,
        nonce: r.opt_text("nonce")?,
        code_challenge: r.opt_text("code_challenge")?.map(CodeChallenge::from_trusted),
        client_ip: r.opt_text("client_ip")?,
        user_agent: r.opt_text("user_agent")?,
        create_user: r.boolean("create_user")?,
        org_id: r.opt_text("org_id")?.map(Id::from_trusted),
        context_data: serde_json::from_str(&r.text("context_data")?).map_err(|_| r.corrupt())?,
        created_by: r.opt_text("created_by")?,
        code_is_credential: r.boolean("code_is_credential")?,
        link_hash: r.bytes("link_hash")?,
        otp_hash: r.bytes("otp_hash")?,
        otp_attempts: r.count("otp_attempts")?,
        status: ChallengeStatus::parse(&r.text("status")?).ok_or_else(|| r.corrupt())?,
        created_at: r.time("created_at")?,
        expires_at: r.time("expires_at")?,
        otp_expires_at: r.time("otp_expires_at")?,
        consumed_at: r.opt_time("consumed_at")?,
    })
}

/// A challenge joined with its outbox row (columns `delivery_status`, `delivery_attempts`,
/// `delivery_error`, `delivery_relay`, null when no mail was queued).
pub fn challenge_record(row: &dyn RowReader) -> Result<ChallengeRecord, StoreError> {
    let r = Reader { row, what: "challenge" };
    let delivery = match r.opt_text("delivery_status")? {
        None => None,
        Some(status) => Some(Delivery {
            status: DeliveryStatus::parse(&status).ok_or_else(|| r.corrupt())?,
            attempts: r.count("delivery_attempts")?,
            last_error: r.opt_text("delivery_error")?,
            relay: r.opt_text("delivery_relay")?,
        }),
    };
    Ok(ChallengeRecord { challenge: challenge(row)?, delivery })
}

pub fn user(row: &dyn RowReader) -> Result<User, StoreError> {
    let r = Reader { row, what: "user" };
    Ok(User {
        id: r.id("id")?,
        email: EmailAddress::from_trusted(r.text("email")?),
        email_verified: r.boolean("email_verified")?,
        name: r.opt_text("name")?,
        metadata: serde_json::from_str(&r.text("metadata")?).map_err(|_| r.corrupt())?,
        locale: r.opt_text("locale")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
        last_sign_in_at: r.opt_time("last_sign_in_at")?,
    })
}

pub fn authorization_code(row: &dyn RowReader) -> Result<AuthorizationCode, StoreError> {
    authorization_code_with_id(row, "id")
}

/// The code whose hash is the one parameter, with its user, for [`code_and_user`]; the code's
/// id is renamed so as not to clash with the user's. `$1` is a positional parameter in
/// both engines.
pub const CODE_AND_USER_BY_HASH: &str = "SELECT users.*, authorization_codes.id AS code_id, code_hash, \
    app_id, challenge_id, user_id, redirect_uri, redirect_uri_given, code_challenge, nonce, auth_method, \
    auth_time, org_id, code_is_credential, expires_at FROM authorization_codes JOIN users ON users.id = user_id WHERE code_hash = $1";

/// A code and its user from a row of [`CODE_AND_USER_BY_HASH`].
pub fn code_and_user(row: &dyn RowReader) -> Result<(AuthorizationCode, User), StoreError> {
    Ok((authorization_code_with_id(row, "code_id")?, user(row)?))
}

fn authorization_code_with_id(row: &dyn RowReader, id: &str) -> Result<AuthorizationCode, StoreError> {
    let r = Reader { row, what: "authorization code" };
    Ok(AuthorizationCode {
        id: r.id(id)?,
        code_hash: r.bytes("code_hash")?,
        app_id: r.id("app_id")?,
        challenge_id: r.id("challenge_id")?,
        user_id: r.id("user_id")?,
        redirect_uri: r.redirect("redirect_uri")?,
        redirect_uri_given: r.boolean("redirect_uri_given")?,
        code_challenge: r.opt_text("code_challenge")?.map(CodeChallenge::from_trusted),
        nonce: r.opt_text("nonce")?,
        auth_method: AuthMethod::parse_amr(&r.text("auth_method")?).ok_or_else(|| r.corrupt())?,
        auth_time: r.time("auth_time")?,
        org_id: r.opt_text("org_id")?.map(Id::from_trusted),
        code_is_credential: r.boolean("code_is_credential")?,
        expires_at: r.time("expires_at")?,
    })
}

pub fn outbox_message(row: &dyn RowReader) -> Result<OutboxMessage, StoreError> {
    let r = Reader { row, what: "outbox message" };
    Ok(OutboxMessage {
        id: r.id("id")?,
        app_id: r.opt_text("app_id")?.map(Id::from_trusted),
        sealed: r.bytes("sealed")?,
        attempts: r.count("attempts")?,
        created_at: r.time("created_at")?,
    })
}

pub fn signing_key(row: &dyn RowReader) -> Result<StoredSigningKey, StoreError> {
    let r = Reader { row, what: "signing key" };
    Ok(StoredSigningKey {
        kid: r.text("kid")?,
        alg: SigningAlg::parse(&r.text("alg")?).ok_or_else(|| r.corrupt())?,
        sealed_pkcs8: r.bytes("sealed_pkcs8")?,
        created_at: r.time("created_at")?,
        retired_at: r.opt_time("retired_at")?,
    })
}

pub fn dkim_key(row: &dyn RowReader) -> Result<StoredDkimKey, StoreError> {
    let r = Reader { row, what: "DKIM key" };
    Ok(StoredDkimKey {
        selector: r.text("selector")?,
        algorithm: r.text("algorithm")?,
        sealed_pkcs8: r.bytes("sealed_pkcs8")?,
        created_at: r.time("created_at")?,
    })
}

pub fn suppression(row: &dyn RowReader) -> Result<Suppression, StoreError> {
    let r = Reader { row, what: "suppression" };
    Ok(Suppression {
        email: EmailAddress::from_trusted(r.text("email")?),
        reason: r.text("reason")?,
        created_at: r.time("created_at")?,
        until: r.time("until")?,
    })
}

pub fn metadata_json(user: &User) -> String {
    serde_json::to_string(&user.metadata).expect("a string map serialises")
}

pub fn refresh_token(row: &dyn RowReader) -> Result<RefreshToken, StoreError> {
    let r = Reader { row, what: "refresh token" };
    Ok(RefreshToken {
        id: r.id("id")?,
        token_hash: r.bytes("token_hash")?,
        family_id: r.id("family_id")?,
        app_id: r.id("app_id")?,
        user_id: r.id("user_id")?,
        auth_method: AuthMethod::parse_amr(&r.text("auth_method")?).ok_or_else(|| r.corrupt())?,
        auth_time: r.time("auth_time")?,
        scope: r.text("scope")?,
        org_id: r.opt_text("org_id")?.map(Id::from_trusted),
        created_at: r.time("created_at")?,
        expires_at: r.time("expires_at")?,
        rotated_at: r.opt_time("rotated_at")?,
        revoked_at: r.opt_time("revoked_at")?,
    })
}

pub fn event(row: &dyn RowReader) -> Result<Event, StoreError> {
    let r = Reader { row, what: "event" };
    Ok(Event {
        id: r.id("id")?,
        kind: EventKind::parse(&r.text("kind")?).ok_or_else(|| r.corrupt())?,
        app_id: r.opt_text("app_id")?.map(Id::from_trusted),
        user_id: r.opt_text("user_id")?.map(Id::from_trusted),
        subject: r.opt_text("subject")?,
        detail: r.opt_text("detail")?,
        created_at: r.time("created_at")?,
    })
}

/// A row of `link_views`.
pub fn link_view(row: &dyn RowReader) -> Result<LinkView, StoreError> {
    let r = Reader { row, what: "link view" };
    Ok(LinkView {
        challenge_id: r.id("challenge_id")?,
        at: r.time("at")?,
        method: ViewMethod::parse(&r.text("method")?).ok_or_else(|| r.corrupt())?,
        ip: r.opt_text("ip")?,
        user_agent: r.opt_text("user_agent")?,
    })
}

pub fn context_data_json(c: &Challenge) -> String {
    serde_json::to_string(&c.context_data).expect("a string map serialises")
}

/// An organization row with its domains, read separately.
pub fn organization(row: &dyn RowReader, domains: Vec<String>) -> Result<Organization, StoreError> {
    let r = Reader { row, what: "organization" };
    Ok(Organization {
        id: r.id("id")?,
        name: r.text("name")?,
        slug: r.text("slug")?,
        domains,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

/// Organization rows with their domains, given as `(domain, org_id)` pairs in display order.
pub fn organizations(
    rows: &[&dyn RowReader],
    domains: Vec<(String, String)>,
) -> Result<Vec<Organization>, StoreError> {
    let mut by_org: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
    for (domain, org) in domains {
        by_org.entry(org).or_default().push(domain);
    }
    rows.iter()
        .map(|row| {
            let id = row.text("id")?.ok_or(StoreError::Corrupt("organization"))?;
            organization(*row, by_org.remove(&id).unwrap_or_default())
        })
        .collect()
}

/// The three numbers of a hosted request as stored: `12,47,83`.
pub fn choices_text(choices: &[u8; 3]) -> String {
    format!("{},{},{}", choices[0], choices[1], choices[2])
}

pub fn hosted_request(row: &dyn RowReader) -> Result<HostedRequest, StoreError> {
    let r = Reader { row, what: "hosted request" };
    let small = |v: i64| u8::try_from(v).map_err(|_| r.corrupt());
    let parsed: Vec<u8> = r.text("choices")?.split(',').filter_map(|n| n.parse().ok()).collect();
    let choices: [u8; 3] = parsed.try_into().map_err(|_| r.corrupt())?;
    Ok(HostedRequest {
        id: r.id("id")?,
        app_id: r.id("app_id")?,
        challenge_id: r.id("challenge_id")?,
        browser_hash: r.bytes("browser_hash")?,
        match_number: small(r.int("match_number")?)?,
        choices,
        status: HostedStatus::parse(&r.text("status")?).ok_or_else(|| r.corrupt())?,
        ip: r.opt_text("ip")?,
        user_agent: r.opt_text("user_agent")?,
        locale: r.opt_text("locale")?,
        restart: r.opt_text("restart")?,
        user_id: r.opt_text("user_id")?.map(Id::from_trusted),
        auth_method: r
            .opt_text("auth_method")?
            .map(|m| AuthMethod::parse_amr(&m).ok_or_else(|| r.corrupt()))
            .transpose()?,
        auth_time: r.opt_time("auth_time")?,
        created_at: r.time("created_at")?,
        expires_at: r.time("expires_at")?,
    })
}

pub fn browser_session(row: &dyn RowReader) -> Result<BrowserSession, StoreError> {
    let r = Reader { row, what: "browser session" };
    Ok(BrowserSession {
        id: r.id("id")?,
        token_hash: r.bytes("token_hash")?,
        user_id: r.id("user_id")?,
        challenge_id: r.id("challenge_id")?,
        auth_method: AuthMethod::parse_amr(&r.text("auth_method")?).ok_or_else(|| r.corrupt())?,
        auth_time: r.time("auth_time")?,
        created_at: r.time("created_at")?,
        expires_at: r.time("expires_at")?,
        revoked_at: r.opt_time("revoked_at")?,
    })
}
