use crate::checkpoint::Checkpointer;
use crate::connection;
use crate::error::map_err;
use crate::migrate;
use crate::readers::Readers;
use crate::sql::{R, all, column, column_names, exec, one};
use crate::writer::{self, Write, Writer};
use async_trait::async_trait;
use latchkey_core::challenge::Purpose;
use latchkey_core::challenge::{AuthMethod, AuthorizationCode, NewAuthorizationCode};
use latchkey_core::event::Event;
use latchkey_core::hosted::{BrowserSession, HostedRequest, HostedStatus, SignedIn};
use latchkey_core::id::{
    AppId, ChallengeId, CodeId, FamilyId, HostedRequestId, OrgId, OutboxId, SecretId, UserId,
};
use latchkey_core::link_view::{self, LinkView, LinkViews, ViewMethod};
use latchkey_core::organization::Organization;
use latchkey_core::rate_limit::{self, RateLimit, RateLimited};
use latchkey_core::refresh::RefreshToken;
use latchkey_core::signing::SigningAlg;
use latchkey_core::{Application, Challenge, EmailAddress, User};
use latchkey_store::OutboxBacklog;
use latchkey_store::rows::{self, RowReader, millis};
use latchkey_store::{
    ChallengeRecord, ClientSecret, ConsumeOutcome, DeliveryStatus, MailFate, NewOutboxMessage, OtpOutcome,
    OutboxMessage, RecordedView, RegistrationOutcome, RotateOutcome, SentMail, Store, StoreError,
    StoreResult, StoredDkimKey, StoredSigningKey, Suppression, TokenOutcome,
};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;

/// How much a commit survives: `Normal` survives a crash of the process, `Full` also a loss of
/// power (at the price of an fsync per commit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Synchronous {
    #[default]
    Normal,
    Full,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Self::Normal => "NORMAL",
            Self::Full => "FULL",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub synchronous: Synchronous,
    /// Read-only connections kept open between reads.
    pub readers: u32,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self { synchronous: Synchronous::Normal, readers: 4 }
    }
}

#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    writer: Writer,
    readers: Readers,
    checkpointer: Mutex<Option<Checkpointer>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies migrations.
    pub async fn open(path: &Path, options: &SqliteOptions) -> StoreResult<Self> {
        let (path, options) = (path.to_owned(), options.clone());
        tokio::task::spawn_blocking(move || Self::open_now(&path, &options))
            .await
            .map_err(|e| StoreError::Other(Box::new(e)))?
    }

    fn open_now(path: &Path, options: &SqliteOptions) -> StoreResult<Self> {
        let synchronous = options.synchronous.pragma();
        // For the checkpointer's syncs. Closing any descriptor of a file drops every POSIX lock
        // the process holds on it, SQLite's included, so each holder of a connection also holds
        // this descriptor and lets it go only after its connections are closed; opened first, it
        // is also the last local to go when opening fails half-way. (SQLite takes an empty file
        // as an empty database.)
        let database = Arc::new(private_file(path).map_err(thread_error)?);
        let conn = connection::open_writer(path, synchronous)?;
        // Opening the writer made the WAL and shared-memory files if they were missing.
        restrict_companions(path).map_err(thread_error)?;
        writer::in_transaction(&conn, migrate::apply)?;
        let readers = Readers::new(path.to_owned(), options.readers as usize, database.clone())?;
        let checkpoints = connection::open_checkpointer(path, synchronous).map_err(map_err)?;
        let writer = Writer::start(conn, database.clone()).map_err(thread_error)?;
        let checkpointer = Checkpointer::start(checkpoints, database, writer.wal()).map_err(thread_error)?;
        Ok(Self { inner: Arc::new(Inner { writer, readers, checkpointer: Mutex::new(Some(checkpointer)) }) })
    }

    /// Finishes the queued writes and closes every connection; later calls fail as
    /// `Unavailable`.
    pub async fn close(&self) {
        self.inner.readers.close();
        let checkpointer =
            self.inner.checkpointer.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(checkpointer) = checkpointer {
            let _ = tokio::task::spawn_blocking(move || checkpointer.stop()).await;
        }
        self.inner.writer.close().await;
    }

    pub(crate) fn read<T>(&self, read: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        self.inner.readers.run(read)
    }

    pub(crate) async fn write<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.inner.writer.write(work).await
    }

    #[cfg(test)]
    pub(crate) fn writer(&self) -> &Writer {
        &self.inner.writer
    }
}

/// Opens (creating if needed) the database file, readable and writable by its owner only:
/// it holds user data. SQLite creates the `-wal` and `-shm` files with the mode of the
/// database file, so those are private too. A database made by an earlier version, under the
/// usual umask, was readable by everyone: its mode is tightened here, on every open.
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path)?;
    restrict(&file)?;
    Ok(file)
}

/// Tightens the mode of the `-wal` and `-shm` files of an earlier version's database.
fn restrict_companions(path: &Path) -> std::io::Result<()> {
    for suffix in ["-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        match std::fs::OpenOptions::new().read(true).open(&name) {
            Ok(file) => restrict(&file)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Takes every permission away from the group and others.
fn restrict(file: &std::fs::File) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = file.metadata()?.permissions().mode();
        if mode & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(mode & 0o700))?;
        }
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(())
}

fn thread_error(e: std::io::Error) -> StoreError {
    StoreError::Other(Box::new(e))
}

fn insert_secret(conn: &Connection, s: &ClientSecret) -> StoreResult<()> {
    exec(
        conn,
        "INSERT INTO client_secrets (id, app_id, hash, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![s.id.as_str(), s.app_id.as_str(), s.hash, millis(s.created_at)],
    )?;
    Ok(())
}

/// Counts one hit on each limit; on the first refusal returns it (the caller undoes its
/// writes, so a refused request counts nothing).
fn count_hits(
    conn: &Connection,
    limits: &[RateLimit],
    now: OffsetDateTime,
) -> StoreResult<Result<(), RateLimited>> {
    let now_ms = millis(now);
    for limit in limits {
        let (start, left_ms) = rate_limit::window(now_ms, limit.window);
        let count: i64 = conn
            .prepare_cached(
                "INSERT INTO rate_limits (key, window_start, count, expires_at) VALUES (?1, ?2, 1, ?3) \
                 ON CONFLICT (key) DO UPDATE SET \
                   count = CASE WHEN rate_limits.window_start = excluded.window_start THEN rate_limits.count + 1 ELSE 1 END, \
                   window_start = excluded.window_start, expires_at = excluded.expires_at \
                 RETURNING count",
            )
            .and_then(|mut stmt| stmt.query_row(params![limit.key, start, now_ms + left_ms], |row| row.get(0)))
            .map_err(map_err)?;
        if count > i64::from(limit.limit) {
            return Ok(Err(RateLimited {
                retry_after: time::Duration::milliseconds(left_ms),
                kind: limit.kind(),
            }));
        }
    }
    Ok(Ok(()))
}

/// A rate-limit outcome as a job's answer: a refusal undoes the job's writes.
fn keep_unless_refused<T>(outcome: Result<T, RateLimited>) -> Write<Result<T, RateLimited>> {
    match outcome {
        Ok(kept) => Write::Keep(Ok(kept)),
        Err(refused) => Write::Undo(Err(refused)),
    }
}

/// One view of [`Store::record_link_views`], in the writer's transaction.
fn record_link_view(c: &Connection, view: &LinkView, keep: u32) -> StoreResult<RecordedView> {
    let id = view.challenge_id.as_str();
    // Cached statements: this runs for every view of every link.
    let found: Option<(String, Option<i64>)> = c
        .prepare_cached(
            "SELECT app_id, (SELECT MIN(sent_at) FROM outbox WHERE challenge_id = ?1) FROM challenges WHERE id = ?1",
        )
        .and_then(|mut stmt| stmt.query_row([id], |row| Ok((row.get(0)?, row.get(1)?))).optional())
        .map_err(map_err)?;
    let Some((app_id, delivered)) = found else {
        return Ok(RecordedView { kept: false, signs: link_view::signs_on_arrival(view, None) });
    };
    let signs = link_view::signs_on_arrival(view, delivered.and_then(rows::from_millis));
    let pressed = (view.method == ViewMethod::Post).then(|| millis(view.at));
    let total: i64 = c
        .prepare_cached(
            "INSERT INTO link_view_counts (challenge_id, total, pressed_at) VALUES (?1, 1, ?2) \
             ON CONFLICT (challenge_id) DO UPDATE SET total = total + 1, \
             pressed_at = COALESCE(pressed_at, excluded.pressed_at) RETURNING total",
        )
        .and_then(|mut stmt| stmt.query_row(params![id, pressed], |row| row.get(0)))
        .map_err(map_err)?;
    let kept = total <= i64::from(keep);
    if kept {
        exec(
            c,
            "INSERT INTO link_views (challenge_id, seq, at, method, ip, user_agent) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, total, millis(view.at), view.method.as_str(), view.ip, view.user_agent],
        )?;
        insert_event(c, &Event::link_viewed(&AppId::from_trusted(app_id), view, &signs))?;
    }
    Ok(RecordedView { kept, signs })
}

pub(crate) fn insert_event(conn: &Connection, e: &Event) -> StoreResult<()> {
    exec(
        conn,
        "INSERT INTO events (id, kind, app_id, user_id, subject, detail, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            e.id.as_str(),
            e.kind.as_str(),
            e.app_id.as_ref().map(|a| a.as_str()),
            e.user_id.as_ref().map(|u| u.as_str()),
            e.subject.as_deref(),
            e.detail.as_deref(),
            millis(e.created_at),
        ],
    )?;
    Ok(())
}

fn insert_refresh(conn: &Connection, t: &RefreshToken) -> StoreResult<()> {
    exec(
        conn,
        "INSERT INTO refresh_tokens (id, token_hash, family_id, app_id, user_id, auth_method, auth_time, scope, \
         created_at, expires_at, rotated_at, revoked_at, org_id) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            t.id.as_str(),
            t.token_hash,
            t.family_id.as_str(),
            t.app_id.as_str(),
            t.user_id.as_str(),
            t.auth_method.amr(),
            millis(t.auth_time),
            t.scope,
            millis(t.created_at),
            millis(t.expires_at),
            t.rotated_at.map(millis),
            t.revoked_at.map(millis),
            t.org_id.as_ref().map(|o| o.as_str()),
        ],
    )?;
    Ok(())
}

fn insert_user(conn: &Connection, u: &User) -> StoreResult<()> {
    exec(
        conn,
        "INSERT INTO users (id, email, email_verified, name, metadata, created_at, updated_at, last_sign_in_at, \
         locale) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            u.id.as_str(),
            u.email.as_str(),
            u.email_verified,
            u.name.as_deref(),
            rows::metadata_json(u),
            millis(u.created_at),
            millis(u.updated_at),
            u.last_sign_in_at.map(millis),
            u.locale.as_deref(),
        ],
    )?;
    Ok(())
}

fn insert_challenge(conn: &Connection, c: &Challenge) -> StoreResult<()> {
    exec(
        conn,
        "INSERT INTO challenges (id, purpose, app_id, email, redirect_uri, state, nonce, code_challenge, \
         client_ip, user_agent, create_user, link_hash, otp_hash, otp_attempts, status, created_at, \
         expires_at, otp_expires_at, consumed_at, org_id, context_data, created_by, code_is_credential, \
         redirect_uri_given) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)",
        params![
            c.id.as_str(),
            c.purpose.as_str(),
            c.app_id.as_str(),
            c.email.as_str(),
            c.redirect_uri.as_str(),
            c.state.as_deref(),
            c.nonce.as_deref(),
            c.code_challenge.as_ref().map(|p| p.as_str()),
            c.client_ip.as_deref(),
            c.user_agent.as_deref(),
            c.create_user,
            c.link_hash,
            c.otp_hash,
            i64::from(c.otp_attempts),
            c.status.as_str(),
            millis(c.created_at),
            millis(c.expires_at),
            millis(c.otp_expires_at),
            c.consumed_at.map(millis),
            c.org_id.as_ref().map(|o| o.as_str()),
            rows::context_data_json(c),
            c.created_by.as_deref(),
            c.code_is_credential,
            c.redirect_uri_given,
        ],
    )?;
    Ok(())
}

/// Writes a message with `status`: its initial one, or `suppressed`, which keeps no body.
fn insert_mail(conn: &Connection, m: &NewOutboxMessage, status: DeliveryStatus) -> StoreResult<()> {
    exec(
        conn,
        "INSERT INTO outbox (id, app_id, challenge_id, sealed, status, attempts, next_attempt_at, \
         created_at) VALUES (?1, ?2, ?3, ?4, ?6, 0, ?5, ?5)",
        params![
            m.id.as_str(),
            m.app_id.as_ref().map(|a| a.as_str()),
            m.challenge_id.as_ref().map(|c| c.as_str()),
            (status != DeliveryStatus::Suppressed).then_some(&m.sealed),
            millis(m.created_at),
            status.as_str(),
        ],
    )?;
    Ok(())
}

fn is_suppressed(conn: &Connection, email: &EmailAddress, now: OffsetDateTime) -> StoreResult<bool> {
    let found: Vec<i64> = column(
        conn,
        "SELECT 1 FROM suppressions WHERE email = ?1 AND until > ?2",
        params![email.as_str(), millis(now)],
    )?;
    Ok(!found.is_empty())
}

fn challenge_by_link(conn: &Connection, link_hash: &[u8]) -> StoreResult<Option<Challenge>> {
    one(conn, "SELECT * FROM challenges WHERE link_hash = ?1", [link_hash], rows::challenge)
}

/// After a challenge was consumed (by link or code): its user, found or created, marked
/// verified, and the events that say so.
fn finish_consumption(
    conn: &Connection,
    challenge: &Challenge,
    method: AuthMethod,
    now: OffsetDateTime,
) -> StoreResult<User> {
    let new_id = UserId::generate(now);
    let user = one(
        conn,
        "INSERT INTO users (id, email, email_verified, created_at, updated_at, last_sign_in_at) \
         VALUES (?1, ?2, 1, ?3, ?3, ?3) \
         ON CONFLICT (email) DO UPDATE SET email_verified = 1, updated_at = ?3, last_sign_in_at = ?3 \
         RETURNING *",
        params![new_id.as_str(), challenge.email.as_str(), millis(now)],
        rows::user,
    )?
    .ok_or(StoreError::Corrupt("user"))?;
    insert_event(conn, &Event::challenge_consumed(&challenge.app_id, &challenge.id, &user.id, method, now))?;
    if user.id == new_id {
        insert_event(conn, &Event::user_created(&challenge.app_id, &user.id, None, now))?;
    }
    if let Some(org) = &challenge.org_id {
        let joined = exec(
            conn,
            "INSERT INTO memberships (org_id, user_id, created_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            params![org.as_str(), user.id.as_str(), millis(now)],
        )?;
        if joined == 1 {
            insert_event(conn, &Event::membership_created(&challenge.app_id, &user.id, org, now))?;
        }
    }
    Ok(user)
}

fn insert_domains(conn: &Connection, org: &Organization) -> StoreResult<()> {
    for domain in &org.domains {
        exec(
            conn,
            "INSERT INTO organization_domains (domain, org_id) VALUES (?1, ?2)",
            params![domain, org.id.as_str()],
        )?;
    }
    Ok(())
}

/// The parts of a new authorization code the consuming job needs (the code itself stays with
/// the caller).
struct CodeToIssue {
    id: CodeId,
    code_hash: Vec<u8>,
    expires_at: OffsetDateTime,
}

fn consume_link(
    conn: &Connection,
    link_hash: &[u8],
    code: &CodeToIssue,
    now: OffsetDateTime,
) -> StoreResult<ConsumeOutcome> {
    let now_ms = millis(now);
    let consumed = one(
        conn,
        "UPDATE challenges SET status = 'consumed', consumed_at = ?2 \
         WHERE link_hash = ?1 AND purpose = 'login' AND status = 'pending' AND expires_at > ?2 RETURNING *",
        params![link_hash, now_ms],
        rows::challenge,
    )?;
    let Some(challenge) = consumed else {
        return Ok(match challenge_by_link(conn, link_hash)?.filter(|c| c.purpose == Purpose::Login) {
            None => ConsumeOutcome::NotFound,
            Some(c) => ConsumeOutcome::Gone(c.status_at(now)),
        });
    };
    let user = finish_consumption(conn, &challenge, AuthMethod::Link, now)?;
    let issued =
        AuthorizationCode::for_link(&code.id, &code.code_hash, code.expires_at, &challenge, &user.id, now);
    insert_code(conn, &issued)?;
    Ok(ConsumeOutcome::Consumed { challenge: Box::new(challenge), user, code: Box::new(issued) })
}

fn insert_code(conn: &Connection, issued: &AuthorizationCode) -> StoreResult<()> {
    exec(
        conn,
        "INSERT INTO authorization_codes (id, code_hash, app_id, challenge_id, user_id, redirect_uri, \
         code_challenge, nonce, auth_method, auth_time, expires_at, org_id, code_is_credential, \
         redirect_uri_given) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        params![
            issued.id.as_str(),
            issued.code_hash,
            issued.app_id.as_str(),
            issued.challenge_id.as_str(),
            issued.user_id.as_str(),
            issued.redirect_uri.as_str(),
            issued.code_challenge.as_ref().map(|p| p.as_str()),
            issued.nonce.as_deref(),
            issued.auth_method.amr(),
            millis(issued.auth_time),
            millis(issued.expires_at),
            issued.org_id.as_ref().map(|o| o.as_str()),
            issued.code_is_credential,
            issued.redirect_uri_given,
        ],
    )?;
    Ok(())
}

fn consume_by_otp(
    conn: &Connection,
    id: &ChallengeId,
    otp_hash: &[u8],
    max_attempts: u32,
    now: OffsetDateTime,
) -> StoreResult<OtpOutcome> {
    let now_ms = millis(now);
    let consumed = one(
        conn,
        "UPDATE challenges SET status = 'consumed', consumed_at = ?3 \
         WHERE id = ?1 AND status = 'pending' AND otp_hash = ?2 AND otp_expires_at > ?3 AND otp_attempts < ?4 \
         RETURNING *",
        params![id.as_str(), otp_hash, now_ms, i64::from(max_attempts)],
        rows::challenge,
    )?;
    if let Some(challenge) = consumed {
        let user = finish_consumption(conn, &challenge, AuthMethod::Otp, now)?;
        return Ok(OtpOutcome::Consumed { challenge: Box::new(challenge), user });
    }
    let failed: Option<(String, i64)> = conn
        .prepare_cached(
            "UPDATE challenges SET otp_attempts = otp_attempts + 1, \
             status = CASE WHEN otp_attempts + 1 >= ?3 THEN 'revoked' ELSE status END, \
             consumed_at = CASE WHEN otp_attempts + 1 >= ?3 THEN ?2 ELSE consumed_at END \
             WHERE id = ?1 AND status = 'pending' AND otp_expires_at > ?2 RETURNING app_id, otp_attempts",
        )
        .and_then(|mut stmt| {
            stmt.query_row(params![id.as_str(), now_ms, i64::from(max_attempts)], |row| {
                Ok((row.get("app_id")?, row.get("otp_attempts")?))
            })
            .optional()
        })
        .map_err(map_err)?;
    let Some((app_id, attempts)) = failed else { return Ok(OtpOutcome::Gone) };
    let counted = u32::try_from(attempts).unwrap_or(u32::MAX);
    insert_event(conn, &Event::wrong_code(&AppId::from_trusted(app_id), id, counted, now))?;
    let left = i64::from(max_attempts).saturating_sub(attempts).max(0);
    Ok(OtpOutcome::Wrong { attempts_left: u32::try_from(left).unwrap_or(0) })
}

fn rotate_refresh_token(
    conn: &Connection,
    token_hash: &[u8],
    app_id: &AppId,
    next: &RefreshToken,
    event: Option<&Event>,
    now: OffsetDateTime,
) -> StoreResult<RotateOutcome> {
    let now_ms = millis(now);
    let rotated = one(
        conn,
        "UPDATE refresh_tokens SET rotated_at = ?3 WHERE token_hash = ?1 AND app_id = ?2 \
         AND rotated_at IS NULL AND revoked_at IS NULL AND expires_at > ?3 RETURNING *",
        params![token_hash, app_id.as_str(), now_ms],
        rows::refresh_token,
    )?;
    if let Some(old) = rotated {
        insert_refresh(conn, next)?;
        if let Some(event) = event {
            insert_event(conn, event)?;
        }
        return Ok(RotateOutcome::Rotated(Box::new(old)));
    }
    let known = one(
        conn,
        "SELECT * FROM refresh_tokens WHERE token_hash = ?1 AND app_id = ?2",
        params![token_hash, app_id.as_str()],
        rows::refresh_token,
    )?;
    let Some(token) = known else { return Ok(RotateOutcome::Invalid) };
    if token.rotated_at.is_none() {
        return Ok(RotateOutcome::Invalid);
    }
    exec(
        conn,
        "UPDATE refresh_tokens SET revoked_at = ?2 WHERE family_id = ?1 AND revoked_at IS NULL",
        params![token.family_id.as_str(), now_ms],
    )?;
    insert_event(conn, &Event::refresh_reuse_detected(app_id, &token.user_id, &token.family_id, now))?;
    Ok(RotateOutcome::Reused { family_id: token.family_id, user_id: token.user_id })
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> StoreResult<()> {
        self.write(migrate::apply).await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(map_err))
    }

    async fn pending_migrations(&self) -> StoreResult<u32> {
        self.read(migrate::pending)
    }

    async fn outbox_backlog(&self) -> StoreResult<OutboxBacklog> {
        self.read(|c| {
            let (queued, oldest): (i64, Option<i64>) = c
                .query_row(
                    "SELECT COUNT(*), MIN(created_at) FROM outbox WHERE status = 'queued'",
                    [],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .map_err(map_err)?;
            Ok(OutboxBacklog { queued: queued as u64, oldest_queued_at: oldest.and_then(rows::from_millis) })
        })
    }

    async fn record_link_views(&self, views: &[LinkView], keep: u32) -> StoreResult<Vec<RecordedView>> {
        let views = views.to_vec();
        self.write(move |c| views.iter().map(|view| record_link_view(c, view, keep)).collect()).await
    }

    async fn link_views(&self, challenge_id: &ChallengeId) -> StoreResult<LinkViews> {
        let id = challenge_id.as_str();
        self.read(|c| {
            let views = all(
                c,
                "SELECT * FROM link_views WHERE challenge_id = ?1 ORDER BY seq",
                [id],
                rows::link_view,
            )?;
            let (total, pressed): (i64, Option<i64>) = c
                .query_row(
                    "SELECT total, pressed_at FROM link_view_counts WHERE challenge_id = ?1",
                    [id],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
                .map_err(map_err)?
                .unwrap_or((0, None));
            let delivered: Option<i64> = c
                .query_row("SELECT MIN(sent_at) FROM outbox WHERE challenge_id = ?1", [id], |row| row.get(0))
                .map_err(map_err)?;
            Ok(LinkViews {
                views,
                total: total as u64,
                delivered_at: delivered.and_then(rows::from_millis),
                pressed_at: pressed.and_then(rows::from_millis),
            })
        })
    }

    async fn insert_application(&self, app: &Application, secret: Option<&ClientSecret>) -> StoreResult<()> {
        let (uris, settings) = rows::application_json(app);
        let (app, secret) = (app.clone(), secret.cloned());
        self.write(move |c| {
            exec(
                c,
                "INSERT INTO applications (id, client_id, name, public, redirect_uris, default_redirect_uri, \
                 settings, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    app.id.as_str(),
                    app.client_id,
                    app.name,
                    app.public,
                    uris,
                    app.default_redirect_uri.as_ref().map(|u| u.as_str()),
                    settings,
                    millis(app.created_at),
                    millis(app.updated_at),
                ],
            )?;
            if let Some(secret) = &secret {
                insert_secret(c, secret)?;
            }
            Ok(())
        })
        .await
    }

    async fn application(&self, id: &AppId) -> StoreResult<Option<Application>> {
        self.read(|c| one(c, "SELECT * FROM applications WHERE id = ?1", [id.as_str()], rows::application))
    }

    async fn list_applications(&self) -> StoreResult<Vec<Application>> {
        self.read(|c| all(c, "SELECT * FROM applications ORDER BY id", [], rows::application))
    }

    async fn update_application(&self, app: &Application) -> StoreResult<bool> {
        let (uris, settings) = rows::application_json(app);
        let app = app.clone();
        self.write(move |c| {
            let changed = exec(
                c,
                "UPDATE applications SET name = ?2, public = ?3, redirect_uris = ?4, default_redirect_uri = ?5, \
                 settings = ?6, updated_at = ?7 WHERE id = ?1",
                params![
                    app.id.as_str(),
                    app.name,
                    app.public,
                    uris,
                    app.default_redirect_uri.as_ref().map(|u| u.as_str()),
                    settings,
                    millis(app.updated_at),
                ],
            )?;
            Ok(changed == 1)
        })
        .await
    }

    async fn delete_application(&self, id: &AppId) -> StoreResult<bool> {
        let id = id.clone();
        self.write(move |c| Ok(exec(c, "DELETE FROM applications WHERE id = ?1", [id.as_str()])? == 1)).await
    }

    async fn insert_client_secret(&self, secret: &ClientSecret) -> StoreResult<()> {
        let secret = secret.clone();
        self.write(move |c| insert_secret(c, &secret)).await
    }

    async fn client_secrets(&self, app_id: &AppId) -> StoreResult<Vec<ClientSecret>> {
        self.read(|c| {
            all(
                c,
                "SELECT * FROM client_secrets WHERE app_id = ?1 ORDER BY id",
                [app_id.as_str()],
                rows::client_secret,
            )
        })
    }

    async fn delete_client_secret(&self, app_id: &AppId, id: &SecretId) -> StoreResult<bool> {
        let (app_id, id) = (app_id.clone(), id.clone());
        self.write(move |c| {
            let deleted = exec(
                c,
                "DELETE FROM client_secrets WHERE id = ?1 AND app_id = ?2",
                params![id.as_str(), app_id.as_str()],
            )?;
            Ok(deleted == 1)
        })
        .await
    }

    async fn application_by_secret_hash(&self, hash: &[u8]) -> StoreResult<Option<Application>> {
        self.read(|c| {
            one(
                c,
                "SELECT a.* FROM applications a JOIN client_secrets s ON s.app_id = a.id WHERE s.hash = ?1",
                [hash],
                rows::application,
            )
        })
    }

    async fn create_challenge(
        &self,
        challenge: &Challenge,
        mail: Option<&NewOutboxMessage>,
        limits: &[RateLimit],
        now: OffsetDateTime,
    ) -> StoreResult<Result<MailFate, RateLimited>> {
        let (challenge, mail, limits) = (challenge.clone(), mail.cloned(), limits.to_vec());
        self.inner
            .writer
            .write_or_undo(move |c| {
                if let Err(refused) = count_hits(c, &limits, now)? {
                    return Ok(keep_unless_refused(Err(refused)));
                }
                insert_challenge(c, &challenge)?;
                let fate = match &mail {
                    None => MailFate::NoMail,
                    Some(mail) if is_suppressed(c, &challenge.email, now)? => {
                        insert_mail(c, mail, DeliveryStatus::Suppressed)?;
                        insert_event(c, &Event::mail_suppressed(&challenge.app_id, &challenge.id, now))?;
                        MailFate::Suppressed
                    }
                    Some(mail) => {
                        insert_mail(c, mail, mail.initial_status())?;
                        MailFate::Written
                    }
                };
                insert_event(
                    c,
                    &Event::challenge_created(&challenge.app_id, &challenge.id, challenge.created_at),
                )?;
                Ok(Write::Keep(Ok(fate)))
            })
            .await
    }

    async fn hit_rate_limits(
        &self,
        limits: &[RateLimit],
        now: OffsetDateTime,
    ) -> StoreResult<Result<(), RateLimited>> {
        if limits.is_empty() {
            return Ok(Ok(()));
        }
        let limits = limits.to_vec();
        self.inner.writer.write_or_undo(move |c| Ok(keep_unless_refused(count_hits(c, &limits, now)?))).await
    }

    async fn latest_pending_challenge(
        &self,
        app_id: &AppId,
        email: &EmailAddress,
        now: OffsetDateTime,
    ) -> StoreResult<Option<Challenge>> {
        self.read(|c| {
            one(
                c,
                "SELECT * FROM challenges WHERE app_id = ?1 AND email = ?2 AND status = 'pending' AND expires_at > ?3 \
                 ORDER BY created_at DESC, id DESC LIMIT 1",
                params![app_id.as_str(), email.as_str(), millis(now)],
                rows::challenge,
            )
        })
    }

    async fn consume_by_otp(
        &self,
        id: &ChallengeId,
        otp_hash: &[u8],
        max_attempts: u32,
        now: OffsetDateTime,
    ) -> StoreResult<OtpOutcome> {
        let (id, otp_hash) = (id.clone(), otp_hash.to_vec());
        self.write(move |c| consume_by_otp(c, &id, &otp_hash, max_attempts, now)).await
    }

    async fn challenge(&self, app_id: &AppId, id: &ChallengeId) -> StoreResult<Option<ChallengeRecord>> {
        self.read(|c| {
            one(
                c,
                "SELECT c.*, o.status AS delivery_status, o.attempts AS delivery_attempts, \
                 o.last_error AS delivery_error, o.relay AS delivery_relay \
                 FROM challenges c LEFT JOIN outbox o ON o.challenge_id = c.id \
                 WHERE c.id = ?1 AND c.app_id = ?2",
                params![id.as_str(), app_id.as_str()],
                rows::challenge_record,
            )
        })
    }

    async fn challenge_by_link(&self, link_hash: &[u8]) -> StoreResult<Option<Challenge>> {
        self.read(|c| challenge_by_link(c, link_hash))
    }

    async fn revoke_challenge(
        &self,
        app_id: &AppId,
        id: &ChallengeId,
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        let (app_id, id) = (app_id.clone(), id.clone());
        self.write(move |c| {
            let revoked = exec(
                c,
                "UPDATE challenges SET status = 'revoked', consumed_at = ?3 \
                 WHERE id = ?1 AND app_id = ?2 AND status = 'pending'",
                params![id.as_str(), app_id.as_str(), millis(now)],
            )?;
            if revoked != 1 {
                return Ok(false);
            }
            insert_event(c, &Event::challenge_revoked(&app_id, &id, now))?;
            Ok(true)
        })
        .await
    }

    async fn consume_link(
        &self,
        link_hash: &[u8],
        code: &NewAuthorizationCode,
        now: OffsetDateTime,
    ) -> StoreResult<ConsumeOutcome> {
        let link_hash = link_hash.to_vec();
        let code = CodeToIssue {
            id: code.id.clone(),
            code_hash: code.code_hash.clone(),
            expires_at: code.expires_at,
        };
        self.write(move |c| consume_link(c, &link_hash, &code, now)).await
    }

    async fn authorization_code(&self, code_hash: &[u8]) -> StoreResult<Option<(AuthorizationCode, User)>> {
        self.read(|c| one(c, rows::CODE_AND_USER_BY_HASH, [code_hash], rows::code_and_user))
    }

    async fn redeem_authorization_code(
        &self,
        code_hash: &[u8],
        app_id: &AppId,
        now: OffsetDateTime,
        then: Option<(&RefreshToken, &Event)>,
    ) -> StoreResult<Option<AuthorizationCode>> {
        let (code_hash, app_id) = (code_hash.to_vec(), app_id.clone());
        let then = then.map(|(refresh, event)| (refresh.clone(), event.clone()));
        self.write(move |c| {
            let redeemed = one(
                c,
                "UPDATE authorization_codes SET used_at = ?3 \
                 WHERE code_hash = ?1 AND app_id = ?2 AND used_at IS NULL AND expires_at > ?3 RETURNING *",
                params![code_hash, app_id.as_str(), millis(now)],
                rows::authorization_code,
            )?;
            if redeemed.is_some()
                && let Some((refresh, event)) = &then
            {
                insert_refresh(c, refresh)?;
                insert_event(c, event)?;
            }
            Ok(redeemed)
        })
        .await
    }

    async fn insert_authorization_code(&self, code: &AuthorizationCode) -> StoreResult<()> {
        let code = code.clone();
        self.write(move |c| insert_code(c, &code)).await
    }

    async fn insert_hosted_request(&self, request: &HostedRequest) -> StoreResult<()> {
        let r = request.clone();
        self.write(move |c| {
            exec(
                c,
                "INSERT INTO hosted_requests (id, app_id, challenge_id, browser_hash, match_number, choices, \
                 status, ip, user_agent, locale, restart, created_at, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                params![
                    r.id.as_str(),
                    r.app_id.as_str(),
                    r.challenge_id.as_str(),
                    r.browser_hash,
                    i64::from(r.match_number),
                    rows::choices_text(&r.choices),
                    r.status.as_str(),
                    r.ip,
                    r.user_agent,
                    r.locale,
                    r.restart,
                    millis(r.created_at),
                    millis(r.expires_at),
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn hosted_request(&self, id: &HostedRequestId) -> StoreResult<Option<HostedRequest>> {
        self.read(|c| {
            one(c, "SELECT * FROM hosted_requests WHERE id = ?1", [id.as_str()], rows::hosted_request)
        })
    }

    async fn challenge_and_hosted_request_by_link(
        &self,
        link_hash: &[u8],
    ) -> StoreResult<Option<(Challenge, Option<HostedRequest>)>> {
        self.read(|c| {
            let found = one(
                c,
                "SELECT *, EXISTS (SELECT 1 FROM hosted_requests h WHERE h.challenge_id = challenges.id) \
                 AS hosted FROM challenges WHERE link_hash = ?1",
                [link_hash],
                rows::challenge_marked_hosted,
            )?;
            let Some((challenge, hosted)) = found else { return Ok(None) };
            let request = if hosted {
                one(
                    c,
                    "SELECT * FROM hosted_requests WHERE challenge_id = ?1",
                    [challenge.id.as_str()],
                    rows::hosted_request,
                )?
            } else {
                None
            };
            Ok(Some((challenge, request)))
        })
    }

    async fn advance_hosted_request(
        &self,
        id: &HostedRequestId,
        from: HostedStatus,
        to: HostedStatus,
        signed_in: Option<&SignedIn>,
        now: OffsetDateTime,
    ) -> StoreResult<Option<HostedRequest>> {
        let (id, signed_in) = (id.clone(), signed_in.cloned());
        self.write(move |c| {
            one(
                c,
                "UPDATE hosted_requests SET status = ?3, user_id = COALESCE(?4, user_id), \
                 auth_method = COALESCE(?5, auth_method), auth_time = COALESCE(?6, auth_time) \
                 WHERE id = ?1 AND status = ?2 AND expires_at > ?7 RETURNING *",
                params![
                    id.as_str(),
                    from.as_str(),
                    to.as_str(),
                    signed_in.as_ref().map(|s| s.user_id.as_str().to_owned()),
                    signed_in.as_ref().map(|s| s.auth_method.amr()),
                    signed_in.as_ref().map(|s| millis(s.auth_time)),
                    millis(now),
                ],
                rows::hosted_request,
            )
        })
        .await
    }

    async fn insert_browser_session(&self, session: &BrowserSession) -> StoreResult<()> {
        let s = session.clone();
        self.write(move |c| {
            exec(
                c,
                "INSERT INTO browser_sessions (id, token_hash, user_id, challenge_id, auth_method, auth_time, \
                 created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    s.id.as_str(),
                    s.token_hash,
                    s.user_id.as_str(),
                    s.challenge_id.as_str(),
                    s.auth_method.amr(),
                    millis(s.auth_time),
                    millis(s.created_at),
                    millis(s.expires_at),
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn browser_session(
        &self,
        token_hash: &[u8],
        now: OffsetDateTime,
    ) -> StoreResult<Option<BrowserSession>> {
        self.read(|c| {
            one(
                c,
                "SELECT * FROM browser_sessions WHERE token_hash = ?1 AND revoked_at IS NULL AND expires_at > ?2",
                params![token_hash, millis(now)],
                rows::browser_session,
            )
        })
    }

    async fn revoke_browser_session(&self, token_hash: &[u8], now: OffsetDateTime) -> StoreResult<bool> {
        let token_hash = token_hash.to_vec();
        self.write(move |c| {
            let n = exec(
                c,
                "UPDATE browser_sessions SET revoked_at = ?2 \
                 WHERE token_hash = ?1 AND revoked_at IS NULL AND expires_at > ?2",
                params![token_hash, millis(now)],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn user_browser_sessions(
        &self,
        user_id: &UserId,
        now: OffsetDateTime,
    ) -> StoreResult<Vec<BrowserSession>> {
        self.read(|c| {
            all(
                c,
                "SELECT * FROM browser_sessions WHERE user_id = ?1 AND revoked_at IS NULL AND expires_at > ?2 \
                 ORDER BY created_at, id",
                params![user_id.as_str(), millis(now)],
                rows::browser_session,
            )
        })
    }

    async fn consume_by_token(
        &self,
        purpose: Purpose,
        link_hash: &[u8],
        app_id: &AppId,
        now: OffsetDateTime,
    ) -> StoreResult<TokenOutcome> {
        let (link_hash, app_id) = (link_hash.to_vec(), app_id.clone());
        self.write(move |c| {
            let consumed = one(
                c,
                "UPDATE challenges SET status = 'consumed', consumed_at = ?4 \
                 WHERE link_hash = ?1 AND purpose = ?2 AND app_id = ?3 AND status = 'pending' AND expires_at > ?4 \
                 RETURNING *",
                params![link_hash, purpose.as_str(), app_id.as_str(), millis(now)],
                rows::challenge,
            )?;
            let Some(challenge) = consumed else {
                let found =
                    challenge_by_link(c, &link_hash)?.filter(|ch| ch.purpose == purpose && ch.app_id == app_id);
                return Ok(found.map_or(TokenOutcome::NotFound, |ch| TokenOutcome::Gone(ch.status_at(now))));
            };
            insert_event(c, &Event::challenge_consumed_by_token(&app_id, &challenge.id, None, purpose, now))?;
            Ok(TokenOutcome::Consumed(Box::new(challenge)))
        })
        .await
    }

    async fn consume_registration(
        &self,
        link_hash: &[u8],
        app_id: &AppId,
        user: &User,
        now: OffsetDateTime,
    ) -> StoreResult<RegistrationOutcome> {
        let (link_hash, app_id) = (link_hash.to_vec(), app_id.clone());
        let user = User { email_verified: true, ..user.clone() };
        self.inner
            .writer
            .write_or_undo(move |c| {
                let consumed = one(
                    c,
                    "UPDATE challenges SET status = 'consumed', consumed_at = ?3 \
                     WHERE link_hash = ?1 AND purpose = 'registration' AND app_id = ?2 AND status = 'pending' \
                     AND expires_at > ?3 RETURNING *",
                    params![link_hash, app_id.as_str(), millis(now)],
                    rows::challenge,
                )?;
                let Some(challenge) = consumed else {
                    let found = challenge_by_link(c, &link_hash)?
                        .filter(|ch| ch.purpose == Purpose::Registration && ch.app_id == app_id);
                    return Ok(Write::Keep(
                        found.map_or(RegistrationOutcome::NotFound, |ch| RegistrationOutcome::Gone(ch.status_at(now))),
                    ));
                };
                match insert_user(c, &user) {
                    Ok(()) => {}
                    // The address is taken: undo the consumption too, the registration stays pending.
                    Err(StoreError::Conflict(_)) => return Ok(Write::Undo(RegistrationOutcome::EmailTaken)),
                    Err(e) => return Err(e),
                }
                let purpose = Purpose::Registration;
                let consumed = Event::challenge_consumed_by_token(&app_id, &challenge.id, Some(&user.id), purpose, now);
                insert_event(c, &consumed)?;
                insert_event(c, &Event::user_created(&app_id, &user.id, Some(&challenge.id), now))?;
                Ok(Write::Keep(RegistrationOutcome::Consumed { challenge: Box::new(challenge), user }))
            })
            .await
    }

    async fn insert_organization(&self, org: &Organization) -> StoreResult<()> {
        let org = org.clone();
        self.write(move |c| {
            exec(
                c,
                "INSERT INTO organizations (id, name, slug, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![org.id.as_str(), org.name, org.slug, millis(org.created_at), millis(org.updated_at)],
            )?;
            insert_domains(c, &org)
        })
        .await
    }

    async fn organization(&self, id: &OrgId) -> StoreResult<Option<Organization>> {
        self.read(|c| organization_where(c, OrgKey::Id, id.as_str()))
    }

    async fn organization_by_slug(&self, slug: &str) -> StoreResult<Option<Organization>> {
        self.read(|c| organization_where(c, OrgKey::Slug, slug))
    }

    async fn organization_by_domain(&self, domain: &str) -> StoreResult<Option<Organization>> {
        self.read(|c| organization_where(c, OrgKey::Domain, domain))
    }

    async fn list_organizations(&self) -> StoreResult<Vec<Organization>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached("SELECT * FROM organizations ORDER BY id").map_err(map_err)?;
            let names = column_names(&stmt);
            let mut rows = stmt.query([]).map_err(map_err)?;
            let mut domains = None;
            let mut orgs = Vec::new();
            while let Some(row) = rows.next().map_err(map_err)? {
                // Read while the first row holds the read transaction: one snapshot for both.
                let domains = match &mut domains {
                    Some(domains) => domains,
                    None => domains.insert(domains_by_org(c)?),
                };
                let row = R::new(row, &names);
                let id = row.text("id")?.ok_or(StoreError::Corrupt("organization"))?;
                orgs.push(rows::organization(&row, domains.remove(&id).unwrap_or_default())?);
            }
            Ok(orgs)
        })
    }

    async fn update_organization(&self, org: &Organization) -> StoreResult<bool> {
        let org = org.clone();
        self.write(move |c| {
            let updated = exec(
                c,
                "UPDATE organizations SET name = ?2, slug = ?3, updated_at = ?4 WHERE id = ?1",
                params![org.id.as_str(), org.name, org.slug, millis(org.updated_at)],
            )?;
            if updated != 1 {
                return Ok(false);
            }
            exec(c, "DELETE FROM organization_domains WHERE org_id = ?1", [org.id.as_str()])?;
            insert_domains(c, &org)?;
            Ok(true)
        })
        .await
    }

    async fn delete_organization(&self, id: &OrgId) -> StoreResult<bool> {
        let id = id.clone();
        self.write(move |c| Ok(exec(c, "DELETE FROM organizations WHERE id = ?1", [id.as_str()])? == 1)).await
    }

    async fn user_organizations(&self, user_id: &UserId) -> StoreResult<Vec<OrgId>> {
        let ids: Vec<String> = self.read(|c| {
            column(c, "SELECT org_id FROM memberships WHERE user_id = ?1 ORDER BY org_id", [user_id.as_str()])
        })?;
        Ok(ids.into_iter().map(OrgId::from_trusted).collect())
    }

    async fn user(&self, id: &UserId) -> StoreResult<Option<User>> {
        self.read(|c| one(c, "SELECT * FROM users WHERE id = ?1", [id.as_str()], rows::user))
    }

    async fn user_by_email(&self, email: &EmailAddress) -> StoreResult<Option<User>> {
        self.read(|c| one(c, "SELECT * FROM users WHERE email = ?1", [email.as_str()], rows::user))
    }

    async fn insert_user(&self, user: &User) -> StoreResult<()> {
        let u = user.clone();
        self.write(move |c| insert_user(c, &u)).await
    }

    async fn list_users(&self, after: Option<&UserId>, limit: u32) -> StoreResult<Vec<User>> {
        self.read(|c| {
            all(
                c,
                "SELECT * FROM users WHERE (?1 IS NULL OR id > ?1) ORDER BY id LIMIT ?2",
                params![after.map(|a| a.as_str()), i64::from(limit)],
                rows::user,
            )
        })
    }

    async fn update_user(&self, user: &User) -> StoreResult<bool> {
        let u = user.clone();
        self.write(move |c| {
            let updated = exec(
                c,
                "UPDATE users SET email = ?2, name = ?3, metadata = ?4, updated_at = ?5, locale = ?6 WHERE id = ?1",
                params![
                    u.id.as_str(),
                    u.email.as_str(),
                    u.name.as_deref(),
                    rows::metadata_json(&u),
                    millis(u.updated_at),
                    u.locale.as_deref(),
                ],
            )?;
            Ok(updated == 1)
        })
        .await
    }

    async fn delete_user(&self, id: &UserId) -> StoreResult<bool> {
        let id = id.clone();
        self.write(move |c| Ok(exec(c, "DELETE FROM users WHERE id = ?1", [id.as_str()])? == 1)).await
    }

    async fn insert_refresh_token(&self, token: &RefreshToken, event: Option<&Event>) -> StoreResult<()> {
        let (token, event) = (token.clone(), event.cloned());
        self.write(move |c| {
            insert_refresh(c, &token)?;
            if let Some(event) = &event {
                insert_event(c, event)?;
            }
            Ok(())
        })
        .await
    }

    async fn rotate_refresh_token(
        &self,
        token_hash: &[u8],
        app_id: &AppId,
        next: &RefreshToken,
        event: Option<&Event>,
        now: OffsetDateTime,
    ) -> StoreResult<RotateOutcome> {
        let (token_hash, app_id, next, event) =
            (token_hash.to_vec(), app_id.clone(), next.clone(), event.cloned());
        self.write(move |c| rotate_refresh_token(c, &token_hash, &app_id, &next, event.as_ref(), now)).await
    }

    async fn refresh_token(&self, token_hash: &[u8]) -> StoreResult<Option<RefreshToken>> {
        self.read(|c| {
            one(c, "SELECT * FROM refresh_tokens WHERE token_hash = ?1", [token_hash], rows::refresh_token)
        })
    }

    async fn revoke_refresh_family(&self, family_id: &FamilyId, now: OffsetDateTime) -> StoreResult<u64> {
        let family_id = family_id.clone();
        self.write(move |c| {
            let revoked = exec(
                c,
                "UPDATE refresh_tokens SET revoked_at = ?2 WHERE family_id = ?1 AND revoked_at IS NULL",
                params![family_id.as_str(), millis(now)],
            )?;
            Ok(revoked as u64)
        })
        .await
    }

    async fn user_sessions(&self, user_id: &UserId, now: OffsetDateTime) -> StoreResult<Vec<RefreshToken>> {
        self.read(|c| {
            all(
                c,
                "SELECT * FROM refresh_tokens WHERE user_id = ?1 AND rotated_at IS NULL AND revoked_at IS NULL \
                 AND expires_at > ?2 ORDER BY created_at, id",
                params![user_id.as_str(), millis(now)],
                rows::refresh_token,
            )
        })
    }

    async fn revoke_user_sessions(&self, user_id: &UserId, now: OffsetDateTime) -> StoreResult<u64> {
        let user_id = user_id.clone();
        self.write(move |c| {
            let revoked = exec(
                c,
                "UPDATE refresh_tokens SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL \
                 AND rotated_at IS NULL AND expires_at > ?2",
                params![user_id.as_str(), millis(now)],
            )?;
            let browsers = exec(
                c,
                "UPDATE browser_sessions SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL \
                 AND expires_at > ?2",
                params![user_id.as_str(), millis(now)],
            )?;
            Ok((revoked + browsers) as u64)
        })
        .await
    }

    async fn insert_event(&self, event: &Event) -> StoreResult<()> {
        let event = event.clone();
        self.write(move |c| insert_event(c, &event)).await
    }

    async fn events(&self, after: Option<&str>, limit: u32) -> StoreResult<Vec<Event>> {
        self.read(|c| {
            all(
                c,
                "SELECT * FROM events WHERE (?1 IS NULL OR id > ?1) ORDER BY id LIMIT ?2",
                params![after, i64::from(limit)],
                rows::event,
            )
        })
    }

    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> StoreResult<bool> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.write(move |c| {
            let taken: Vec<String> = column(
                c,
                "INSERT INTO leases (name, holder, until) VALUES (?1, ?2, ?4) \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until \
                 WHERE leases.until <= ?3 OR leases.holder = excluded.holder RETURNING holder",
                params![name, holder, millis(now), millis(until)],
            )?;
            Ok(!taken.is_empty())
        })
        .await
    }

    async fn purge_expired(&self, now: OffsetDateTime) -> StoreResult<u64> {
        let now_ms = millis(now);
        let day_ago = millis(now - time::Duration::days(1));
        // One batch per job, so that requests' writes go in between.
        let statements: [(&'static str, i64); 9] = [
            (
                "DELETE FROM hosted_requests WHERE id IN (SELECT id FROM hosted_requests WHERE expires_at < ?1 LIMIT 2000)",
                day_ago,
            ),
            (
                "DELETE FROM browser_sessions WHERE id IN (SELECT id FROM browser_sessions WHERE expires_at < ?1 LIMIT 2000)",
                now_ms,
            ),
            (
                "DELETE FROM challenges WHERE id IN (SELECT id FROM challenges WHERE expires_at < ?1 LIMIT 2000)",
                day_ago,
            ),
            (
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE status <> 'queued' AND COALESCE(sent_at, next_attempt_at) < ?1 LIMIT 2000)",
                day_ago,
            ),
            (
                "DELETE FROM authorization_codes WHERE id IN (SELECT id FROM authorization_codes WHERE expires_at < ?1 LIMIT 2000)",
                now_ms,
            ),
            (
                "DELETE FROM refresh_tokens WHERE id IN (SELECT id FROM refresh_tokens WHERE expires_at < ?1 LIMIT 2000)",
                now_ms,
            ),
            (
                "DELETE FROM rate_limits WHERE key IN (SELECT key FROM rate_limits WHERE expires_at < ?1 LIMIT 2000)",
                now_ms,
            ),
            (
                "DELETE FROM leases WHERE name IN (SELECT name FROM leases WHERE until < ?1 LIMIT 2000)",
                day_ago,
            ),
            (
                "DELETE FROM suppressions WHERE email IN (SELECT email FROM suppressions WHERE until <= ?1 LIMIT 2000)",
                now_ms,
            ),
        ];
        let mut total = 0;
        for (sql, cutoff) in statements {
            loop {
                let deleted = self.write(move |c| exec(c, sql, [cutoff])).await? as u64;
                total += deleted;
                if deleted < 2000 {
                    break;
                }
            }
        }
        Ok(total)
    }

    async fn claim_outbox(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> StoreResult<Vec<OutboxMessage>> {
        let mut messages = self
            .write(move |c| {
                all(
                    c,
                    "UPDATE outbox SET lease_until = ?2 WHERE id IN ( \
                       SELECT id FROM outbox WHERE status = 'queued' AND next_attempt_at <= ?1 \
                       AND (lease_until IS NULL OR lease_until <= ?1) ORDER BY next_attempt_at LIMIT ?3) \
                     RETURNING id, app_id, sealed, attempts, created_at",
                    params![millis(now), millis(lease_until), i64::from(limit)],
                    rows::outbox_message,
                )
            })
            .await?;
        messages
            .sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.as_str().cmp(b.id.as_str())));
        Ok(messages)
    }

    async fn release_held_mail(
        &self,
        app_id: &AppId,
        challenge_id: &ChallengeId,
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        let (app_id, challenge_id) = (app_id.clone(), challenge_id.clone());
        self.write(move |c| {
            let released = exec(
                c,
                "UPDATE outbox SET status = 'queued', next_attempt_at = ?3 \
                 WHERE challenge_id = ?1 AND app_id = ?2 AND status = 'held'",
                params![challenge_id.as_str(), app_id.as_str(), millis(now)],
            )?;
            Ok(released > 0)
        })
        .await
    }

    async fn renew_outbox_leases(&self, ids: &[OutboxId], until: OffsetDateTime) -> StoreResult<u64> {
        let ids = ids.to_vec();
        self.write(move |c| {
            let mut renewed = 0;
            for id in &ids {
                renewed += exec(
                    c,
                    "UPDATE outbox SET lease_until = ?2 WHERE id = ?1 AND status = 'queued' AND lease_until IS NOT NULL",
                    params![id.as_str(), millis(until)],
                )? as u64;
            }
            Ok(renewed)
        })
        .await
    }

    async fn release_leftover_outbox_leases(&self) -> StoreResult<u64> {
        // One server per database file: whatever lease is here, a past run of it left behind.
        self.write(|c| {
            let released = exec(
                c,
                "UPDATE outbox SET lease_until = NULL WHERE status = 'queued' AND lease_until IS NOT NULL",
                [],
            )?;
            Ok(released as u64)
        })
        .await
    }

    async fn outbox_sent(&self, sent: &[SentMail], now: OffsetDateTime) -> StoreResult<()> {
        let sent = sent.to_vec();
        self.write(move |c| {
            for SentMail { id, relay } in &sent {
                let sent: Option<(Option<String>, Option<String>)> = c
                    .prepare_cached(
                        "UPDATE outbox SET status = 'sent', sent_at = ?2, attempts = attempts + 1, sealed = NULL, \
                         lease_until = NULL, last_error = NULL, relay = ?3 WHERE id = ?1 RETURNING app_id, challenge_id",
                    )
                    .and_then(|mut stmt| {
                        stmt.query_row(params![id.as_str(), millis(now), relay], |row| Ok((row.get(0)?, row.get(1)?)))
                            .optional()
                    })
                    .map_err(map_err)?;
                if let Some((app_id, challenge_id)) = sent {
                    let app_id = app_id.map(AppId::from_trusted);
                    let subject = challenge_id.unwrap_or_else(|| id.to_string());
                    insert_event(c, &Event::challenge_delivered(app_id.as_ref(), &subject, now))?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn outbox_attempt_failed(
        &self,
        id: &OutboxId,
        error: &str,
        next_attempt_at: Option<OffsetDateTime>,
    ) -> StoreResult<()> {
        let (id, error) = (id.clone(), error.to_owned());
        self.write(move |c| {
            match next_attempt_at {
                Some(at) => exec(
                    c,
                    "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3, \
                     lease_until = NULL WHERE id = ?1",
                    params![id.as_str(), error, millis(at)],
                ),
                None => exec(
                    c,
                    "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, status = 'failed', sealed = NULL, \
                     lease_until = NULL WHERE id = ?1",
                    params![id.as_str(), error],
                ),
            }?;
            Ok(())
        })
        .await
    }

    async fn signing_keys(&self) -> StoreResult<Vec<StoredSigningKey>> {
        self.read(|c| all(c, "SELECT * FROM signing_keys ORDER BY created_at, kid", [], rows::signing_key))
    }

    async fn suppress(&self, suppression: &Suppression, app_id: Option<&AppId>) -> StoreResult<()> {
        let (s, app_id) = (suppression.clone(), app_id.cloned());
        self.write(move |c| {
            exec(
                c,
                "INSERT INTO suppressions (email, reason, created_at, until) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (email) DO UPDATE SET reason = excluded.reason, created_at = excluded.created_at, \
                 until = excluded.until",
                params![s.email.as_str(), s.reason, millis(s.created_at), millis(s.until)],
            )?;
            insert_event(c, &Event::suppression_created(app_id.as_ref(), s.email.as_str(), s.created_at))
        })
        .await
    }

    async fn suppression(
        &self,
        email: &EmailAddress,
        now: OffsetDateTime,
    ) -> StoreResult<Option<Suppression>> {
        self.read(|c| {
            one(
                c,
                "SELECT * FROM suppressions WHERE email = ?1 AND until > ?2",
                params![email.as_str(), millis(now)],
                rows::suppression,
            )
        })
    }

    async fn list_suppressions(
        &self,
        after: Option<&EmailAddress>,
        limit: u32,
        now: OffsetDateTime,
    ) -> StoreResult<Vec<Suppression>> {
        self.read(|c| {
            all(
                c,
                "SELECT * FROM suppressions WHERE (?1 IS NULL OR email > ?1) AND until > ?2 ORDER BY email LIMIT ?3",
                params![after.map(|a| a.as_str()), millis(now), i64::from(limit)],
                rows::suppression,
            )
        })
    }

    async fn delete_suppression(&self, email: &EmailAddress, now: OffsetDateTime) -> StoreResult<bool> {
        let email = email.clone();
        self.write(move |c| {
            let deleted = exec(
                c,
                "DELETE FROM suppressions WHERE email = ?1 AND until > ?2",
                params![email.as_str(), millis(now)],
            )?;
            if deleted > 0 {
                insert_event(c, &Event::suppression_deleted(email.as_str(), now))?;
            }
            Ok(deleted > 0)
        })
        .await
    }

    async fn dkim_key(&self, selector: &str) -> StoreResult<Option<StoredDkimKey>> {
        self.read(|c| one(c, "SELECT * FROM dkim_keys WHERE selector = ?1", [selector], rows::dkim_key))
    }

    async fn insert_dkim_key(&self, key: &StoredDkimKey) -> StoreResult<StoredDkimKey> {
        let key = key.clone();
        self.write(move |c| {
            exec(
                c,
                "INSERT INTO dkim_keys (selector, algorithm, sealed_pkcs8, created_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (selector) DO NOTHING",
                params![key.selector, key.algorithm, key.sealed_pkcs8, millis(key.created_at)],
            )?;
            one(c, "SELECT * FROM dkim_keys WHERE selector = ?1", [key.selector.as_str()], rows::dkim_key)?
                .ok_or_else(|| StoreError::Corrupt("DKIM key"))
        })
        .await
    }

    async fn insert_signing_key(&self, key: &StoredSigningKey) -> StoreResult<()> {
        let key = key.clone();
        self.write(move |c| {
            exec(
                c,
                "INSERT INTO signing_keys (kid, alg, sealed_pkcs8, created_at, retired_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    key.kid,
                    key.alg.as_str(),
                    key.sealed_pkcs8,
                    millis(key.created_at),
                    key.retired_at.map(millis),
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn retire_signing_keys(&self, alg: SigningAlg, now: OffsetDateTime) -> StoreResult<()> {
        self.write(move |c| {
            exec(
                c,
                "UPDATE signing_keys SET retired_at = ?2 WHERE alg = ?1 AND retired_at IS NULL",
                params![alg.as_str(), millis(now)],
            )?;
            Ok(())
        })
        .await
    }

    async fn delete_signing_keys_retired_before(&self, cutoff: OffsetDateTime) -> StoreResult<u64> {
        self.write(move |c| {
            let deleted = exec(
                c,
                "DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at < ?1",
                [millis(cutoff)],
            )?;
            Ok(deleted as u64)
        })
        .await
    }
}

/// How an organization is looked up.
enum OrgKey {
    Id,
    Slug,
    Domain,
}

fn organization_where(c: &Connection, key: OrgKey, value: &str) -> StoreResult<Option<Organization>> {
    let sql = match key {
        OrgKey::Id => "SELECT * FROM organizations WHERE id = ?1",
        OrgKey::Slug => "SELECT * FROM organizations WHERE slug = ?1",
        OrgKey::Domain => {
            "SELECT * FROM organizations WHERE id = (SELECT org_id FROM organization_domains WHERE domain = ?1)"
        }
    };
    let mut stmt = c.prepare_cached(sql).map_err(map_err)?;
    let names = column_names(&stmt);
    let mut rows = stmt.query([value]).map_err(map_err)?;
    let Some(row) = rows.next().map_err(map_err)? else { return Ok(None) };
    let row = R::new(row, &names);
    let id = row.text("id")?.ok_or(StoreError::Corrupt("organization"))?;
    // Read while the row holds the read transaction: one snapshot for both.
    let domains = column(
        c,
        "SELECT domain FROM organization_domains WHERE org_id = ?1 ORDER BY domain",
        [id.as_str()],
    )?;
    rows::organization(&row, domains).map(Some)
}

/// Every organization's domains, in display order.
fn domains_by_org(c: &Connection) -> StoreResult<HashMap<String, Vec<String>>> {
    let mut stmt = c
        .prepare_cached("SELECT domain, org_id FROM organization_domains ORDER BY domain")
        .map_err(map_err)?;
    let pairs = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?))).map_err(map_err)?;
    let mut by_org: HashMap<String, Vec<String>> = HashMap::new();
    for pair in pairs {
        let (domain, org): (String, String) = pair.map_err(map_err)?;
        by_org.entry(org).or_default().push(domain);
    }
    Ok(by_org)
}
