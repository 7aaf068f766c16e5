use async_trait::async_trait;
use latchkey_core::challenge::Purpose;
use latchkey_core::challenge::{AuthMethod, AuthorizationCode, NewAuthorizationCode};
use latchkey_core::event::{Event, EventKind};
use latchkey_core::id::{AppId, ChallengeId, FamilyId, OrgId, OutboxId, SecretId, UserId};
use latchkey_core::organization::Organization;
use latchkey_core::rate_limit::{self, RateLimit, RateLimited};
use latchkey_core::refresh::RefreshToken;
use latchkey_core::signing::SigningAlg;
use latchkey_core::{Application, Challenge, EmailAddress, User};
use latchkey_store::rows::{self, RowReader, millis};
use latchkey_store::{
    ChallengeRecord, ClientSecret, ConsumeOutcome, NewOutboxMessage, OtpOutcome, OutboxMessage,
    RotateOutcome, Store, StoreError, StoreResult, StoredSigningKey, TokenOutcome,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqliteConnection};
use std::path::Path;
use std::time::Duration;
use time::OffsetDateTime;

/// How much a commit survives: `Normal` survives a crash of the process, `Full` also a loss of
/// power (at the price of an fsync per commit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Synchronous {
    #[default]
    Normal,
    Full,
}

#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub synchronous: Synchronous,
    pub readers: u32,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self { synchronous: Synchronous::Normal, readers: 4 }
    }
}

#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies migrations.
    pub async fn open(path: &Path, options: &SqliteOptions) -> StoreResult<Self> {
        let sync = match options.synchronous {
            Synchronous::Normal => SqliteSynchronous::Normal,
            Synchronous::Full => SqliteSynchronous::Full,
        };
        let base = SqliteConnectOptions::new()
            .filename(path)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(sync)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            .pragma("temp_store", "memory");
        // The connections are private to this process and the file is local: pinging one before
        // each use only adds a round trip to its worker thread.
        let writer = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(base.clone().create_if_missing(true))
            .await
            .map_err(map_err)?;
        let store_for_migrate = Self { writer: writer.clone(), reader: writer.clone() };
        store_for_migrate.migrate().await?;
        let reader = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(options.readers.max(1))
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(base.read_only(true))
            .await
            .map_err(map_err)?;
        Ok(Self { writer, reader })
    }

    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

struct R<'a>(&'a SqliteRow);

impl RowReader for R<'_> {
    fn text(&self, col: &str) -> Result<Option<String>, StoreError> {
        self.0.try_get(col).map_err(map_err)
    }
    fn int(&self, col: &str) -> Result<Option<i64>, StoreError> {
        self.0.try_get(col).map_err(map_err)
    }
    fn bytes(&self, col: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.try_get(col).map_err(map_err)
    }
    fn boolean(&self, col: &str) -> Result<Option<bool>, StoreError> {
        self.0.try_get(col).map_err(map_err)
    }
}

fn map_err(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict("unique"),
        sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("5" | "6" | "261" | "517")) => {
            // SQLITE_BUSY / SQLITE_LOCKED and their extended codes: the file is held too long.
            StoreError::Unavailable(Box::new(sqlx::Error::Database(db)))
        }
        e @ (sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)) => {
            StoreError::Unavailable(Box::new(e))
        }
        e @ (sqlx::Error::ColumnDecode { .. } | sqlx::Error::ColumnNotFound(_)) => {
            tracing::error!(error = %e, "stored row does not decode");
            StoreError::Corrupt("row")
        }
        e => StoreError::Other(Box::new(e)),
    }
}

fn all<T>(rows: &[SqliteRow], f: fn(&dyn RowReader) -> StoreResult<T>) -> StoreResult<Vec<T>> {
    rows.iter().map(|r| f(&R(r))).collect()
}

fn one<T>(row: Option<SqliteRow>, f: fn(&dyn RowReader) -> StoreResult<T>) -> StoreResult<Option<T>> {
    row.map(|r| f(&R(&r))).transpose()
}

async fn insert_secret(conn: &mut SqliteConnection, s: &ClientSecret) -> StoreResult<()> {
    sqlx::query("INSERT INTO client_secrets (id, app_id, hash, created_at) VALUES ($1, $2, $3, $4)")
        .bind(s.id.as_str())
        .bind(s.app_id.as_str())
        .bind(&s.hash)
        .bind(millis(s.created_at))
        .execute(conn)
        .await
        .map_err(map_err)?;
    Ok(())
}

/// Counts one hit on each limit; on the first refusal returns it (the caller rolls back, so a
/// refused request counts nothing).
async fn count_hits(
    conn: &mut SqliteConnection,
    limits: &[RateLimit],
    now: OffsetDateTime,
) -> StoreResult<Result<(), RateLimited>> {
    let now_ms = millis(now);
    for limit in limits {
        let (start, left_ms) = rate_limit::window(now_ms, limit.window);
        let count: i64 = sqlx::query_scalar(
            "INSERT INTO rate_limits (key, window_start, count, expires_at) VALUES ($1, $2, 1, $3) \
             ON CONFLICT (key) DO UPDATE SET \
               count = CASE WHEN rate_limits.window_start = excluded.window_start THEN rate_limits.count + 1 ELSE 1 END, \
               window_start = excluded.window_start, expires_at = excluded.expires_at \
             RETURNING count",
        )
        .bind(&limit.key)
        .bind(start)
        .bind(now_ms + left_ms)
        .fetch_one(&mut *conn)
        .await
        .map_err(map_err)?;
        if count > i64::from(limit.limit) {
            return Ok(Err(RateLimited { retry_after: time::Duration::milliseconds(left_ms) }));
        }
    }
    Ok(Ok(()))
}

async fn insert_event(conn: &mut SqliteConnection, e: &Event) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO events (id, kind, app_id, user_id, subject, detail, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(e.id.as_str())
    .bind(e.kind.as_str())
    .bind(e.app_id.as_ref().map(|a| a.as_str()))
    .bind(e.user_id.as_ref().map(|u| u.as_str()))
    .bind(e.subject.as_deref())
    .bind(e.detail.as_deref())
    .bind(millis(e.created_at))
    .execute(conn)
    .await
    .map_err(map_err)?;
    Ok(())
}

async fn insert_refresh(conn: &mut SqliteConnection, t: &RefreshToken) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO refresh_tokens (id, token_hash, family_id, app_id, user_id, auth_method, auth_time, scope, \
         created_at, expires_at, rotated_at, revoked_at, org_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(t.id.as_str())
    .bind(&t.token_hash)
    .bind(t.family_id.as_str())
    .bind(t.app_id.as_str())
    .bind(t.user_id.as_str())
    .bind(t.auth_method.amr())
    .bind(millis(t.auth_time))
    .bind(&t.scope)
    .bind(millis(t.created_at))
    .bind(millis(t.expires_at))
    .bind(t.rotated_at.map(millis))
    .bind(t.revoked_at.map(millis))
    .bind(t.org_id.as_ref().map(|o| o.as_str()))
    .execute(conn)
    .await
    .map_err(map_err)?;
    Ok(())
}

/// After a challenge was consumed (by link or code): its user, found or created, marked
/// verified, and the events that say so.
async fn finish_consumption(
    conn: &mut SqliteConnection,
    row: &SqliteRow,
    method: AuthMethod,
    now: OffsetDateTime,
) -> StoreResult<(Challenge, User)> {
    let challenge = rows::challenge(&R(row))?;
    let new_id = UserId::generate();
    let user_row = sqlx::query(
        "INSERT INTO users (id, email, email_verified, created_at, updated_at, last_sign_in_at) \
         VALUES ($1, $2, 1, $3, $3, $3) \
         ON CONFLICT (email) DO UPDATE SET email_verified = 1, updated_at = $3, last_sign_in_at = $3 \
         RETURNING *",
    )
    .bind(new_id.as_str())
    .bind(challenge.email.as_str())
    .bind(millis(now))
    .fetch_one(&mut *conn)
    .await
    .map_err(map_err)?;
    let user = rows::user(&R(&user_row))?;
    let consumed = Event::new(EventKind::ChallengeConsumed, now)
        .app(&challenge.app_id)
        .user(&user.id)
        .subject(challenge.id.as_str())
        .detail(serde_json::json!({ "method": method.amr() }));
    insert_event(conn, &consumed).await?;
    if user.id == new_id {
        insert_event(conn, &Event::new(EventKind::UserCreated, now).app(&challenge.app_id).user(&user.id))
            .await?;
    }
    if let Some(org) = &challenge.org_id {
        let joined = sqlx::query(
            "INSERT INTO memberships (org_id, user_id, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(org.as_str())
        .bind(user.id.as_str())
        .bind(millis(now))
        .execute(&mut *conn)
        .await
        .map_err(map_err)?;
        if joined.rows_affected() == 1 {
            let event = Event::new(EventKind::MembershipCreated, now)
                .app(&challenge.app_id)
                .user(&user.id)
                .subject(org.as_str());
            insert_event(conn, &event).await?;
        }
    }
    Ok((challenge, user))
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR.run(&self.writer).await.map_err(|e| StoreError::Other(Box::new(e)))
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await.map_err(map_err)?;
        Ok(())
    }

    async fn insert_application(&self, app: &Application, secret: Option<&ClientSecret>) -> StoreResult<()> {
        let (uris, settings) = rows::application_json(app);
        let mut tx = self.writer.begin().await.map_err(map_err)?;
        sqlx::query(
            "INSERT INTO applications (id, client_id, name, public, redirect_uris, default_redirect_uri, \
             settings, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(app.id.as_str())
        .bind(&app.client_id)
        .bind(&app.name)
        .bind(app.public)
        .bind(uris)
        .bind(app.default_redirect_uri.as_ref().map(|u| u.as_str()))
        .bind(settings)
        .bind(millis(app.created_at))
        .bind(millis(app.updated_at))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if let Some(secret) = secret {
            insert_secret(&mut tx, secret).await?;
        }
        tx.commit().await.map_err(map_err)
    }

    async fn application(&self, id: &AppId) -> StoreResult<Option<Application>> {
        let row = sqlx::query("SELECT * FROM applications WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.reader)
            .await
            .map_err(map_err)?;
        one(row, rows::application)
    }

    async fn list_applications(&self) -> StoreResult<Vec<Application>> {
        let rows = sqlx::query("SELECT * FROM applications ORDER BY id")
            .fetch_all(&self.reader)
            .await
            .map_err(map_err)?;
        all(&rows, rows::application)
    }

    async fn update_application(&self, app: &Application) -> StoreResult<bool> {
        let (uris, settings) = rows::application_json(app);
        let done = sqlx::query(
            "UPDATE applications SET name = $2, public = $3, redirect_uris = $4, default_redirect_uri = $5, \
             settings = $6, updated_at = $7 WHERE id = $1",
        )
        .bind(app.id.as_str())
        .bind(&app.name)
        .bind(app.public)
        .bind(uris)
        .bind(app.default_redirect_uri.as_ref().map(|u| u.as_str()))
        .bind(settings)
        .bind(millis(app.updated_at))
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_application(&self, id: &AppId) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM applications WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_client_secret(&self, secret: &ClientSecret) -> StoreResult<()> {
        let mut conn = self.writer.acquire().await.map_err(map_err)?;
        insert_secret(&mut conn, secret).await
    }

    async fn client_secrets(&self, app_id: &AppId) -> StoreResult<Vec<ClientSecret>> {
        let rows = sqlx::query("SELECT * FROM client_secrets WHERE app_id = $1 ORDER BY id")
            .bind(app_id.as_str())
            .fetch_all(&self.reader)
            .await
            .map_err(map_err)?;
        all(&rows, rows::client_secret)
    }

    async fn delete_client_secret(&self, app_id: &AppId, id: &SecretId) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM client_secrets WHERE id = $1 AND app_id = $2")
            .bind(id.as_str())
            .bind(app_id.as_str())
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn application_by_secret_hash(&self, hash: &[u8]) -> StoreResult<Option<Application>> {
        let row = sqlx::query(
            "SELECT a.* FROM applications a JOIN client_secrets s ON s.app_id = a.id WHERE s.hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.reader)
        .await
        .map_err(map_err)?;
        one(row, rows::application)
    }

    async fn create_challenge(
        &self,
        c: &Challenge,
        mail: Option<&NewOutboxMessage>,
        limits: &[RateLimit],
        now: OffsetDateTime,
    ) -> StoreResult<Result<(), RateLimited>> {
        let mut tx = self.writer.begin().await.map_err(map_err)?;
        if let Err(refused) = count_hits(&mut tx, limits, now).await? {
            return Ok(Err(refused));
        }
        sqlx::query(
            "INSERT INTO challenges (id, purpose, app_id, email, redirect_uri, state, nonce, code_challenge, \
             client_ip, user_agent, create_user, link_hash, otp_hash, otp_attempts, status, created_at, \
             expires_at, otp_expires_at, consumed_at, org_id, context_data, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)",
        )
        .bind(c.id.as_str())
        .bind(c.purpose.as_str())
        .bind(c.app_id.as_str())
        .bind(c.email.as_str())
        .bind(c.redirect_uri.as_str())
        .bind(c.state.as_deref())
        .bind(c.nonce.as_deref())
        .bind(c.code_challenge.as_ref().map(|p| p.as_str()))
        .bind(c.client_ip.as_deref())
        .bind(c.user_agent.as_deref())
        .bind(c.create_user)
        .bind(&c.link_hash)
        .bind(&c.otp_hash)
        .bind(i64::from(c.otp_attempts))
        .bind(c.status.as_str())
        .bind(millis(c.created_at))
        .bind(millis(c.expires_at))
        .bind(millis(c.otp_expires_at))
        .bind(c.consumed_at.map(millis))
        .bind(c.org_id.as_ref().map(|o| o.as_str()))
        .bind(rows::context_data_json(c))
        .bind(c.created_by.as_deref())
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if let Some(m) = mail {
            sqlx::query(
                "INSERT INTO outbox (id, app_id, challenge_id, sealed, status, attempts, next_attempt_at, \
                 created_at) VALUES ($1, $2, $3, $4, 'queued', 0, $5, $5)",
            )
            .bind(m.id.as_str())
            .bind(m.app_id.as_ref().map(|a| a.as_str()))
            .bind(m.challenge_id.as_ref().map(|c| c.as_str()))
            .bind(&m.sealed)
            .bind(millis(m.created_at))
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        }
        let event =
            Event::new(EventKind::ChallengeCreated, c.created_at).app(&c.app_id).subject(c.id.as_str());
        insert_event(&mut tx, &event).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(Ok(()))
    }

    async fn hit_rate_limits(
        &self,
        limits: &[RateLimit],
        now: OffsetDateTime,
    ) -> StoreResult<Result<(), RateLimited>> {
        if limits.is_empty() {
            return Ok(Ok(()));
        }
        let mut tx = self.writer.begin().await.map_err(map_err)?;
        let outcome = count_hits(&mut tx, limits, now).await?;
        if outcome.is_ok() {
            tx.commit().await.map_err(map_err)?;
        }
        Ok(outcome)
    }

    async fn latest_pending_challenge(
        &self,
        app_id: &AppId,
        email: &EmailAddress,
        now: OffsetDateTime,
    ) -> StoreResult<Option<Challenge>> {
        let row = sqlx::query(
            "SELECT * FROM challenges WHERE app_id = $1 AND email = $2 AND status = 'pending' AND expires_at > $3 \
             ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .bind(app_id.as_str())
        .bind(email.as_str())
        .bind(millis(now))
        .fetch_optional(&self.reader)
        .await
        .map_err(map_err)?;
        one(row, rows::challenge)
    }

    async fn consume_by_otp(
        &self,
        id: &ChallengeId,
        otp_hash: &[u8],
        max_attempts: u32,
        now: OffsetDateTime,
    ) -> StoreResult<OtpOutcome> {
        let now_ms = millis(now);
        let mut tx = self.writer.begin().await.map_err(map_err)?;
        let consumed = sqlx::query(
            "UPDATE challenges SET status = 'consumed', consumed_at = $3 \
             WHERE id = $1 AND status = 'pending' AND otp_hash = $2 AND otp_expires_at > $3 AND otp_attempts < $4 \
             RETURNING *",
        )
        .bind(id.as_str())
        .bind(otp_hash)
        .bind(now_ms)
        .bind(i64::from(max_attempts))
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
        if let Some(row) = consumed {
            let (challenge, user) = finish_consumption(&mut tx, &row, AuthMethod::Otp, now).await?;
            tx.commit().await.map_err(map_err)?;
            return Ok(OtpOutcome::Consumed { challenge: Box::new(challenge), user });
        }
        let failed = sqlx::query(
            "UPDATE challenges SET otp_attempts = otp_attempts + 1, \
             status = CASE WHEN otp_attempts + 1 >= $3 THEN 'revoked' ELSE status END, \
             consumed_at = CASE WHEN otp_attempts + 1 >= $3 THEN $2 ELSE consumed_at END \
             WHERE id = $1 AND status = 'pending' AND otp_expires_at > $2 RETURNING app_id, otp_attempts",
        )
        .bind(id.as_str())
        .bind(now_ms)
        .bind(i64::from(max_attempts))
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
        let Some(row) = failed else { return Ok(OtpOutcome::Gone) };
        let attempts: i64 = row.try_get("otp_attempts").map_err(map_err)?;
        let app_id: String = row.try_get("app_id").map_err(map_err)?;
        let event = Event::new(EventKind::ChallengeRejected, now)
            .app(&AppId::from_trusted(app_id))
            .subject(id.as_str())
            .detail(serde_json::json!({ "reason": "wrong_code", "attempts": attempts }));
        insert_event(&mut tx, &event).await?;
        tx.commit().await.map_err(map_err)?;
        let left = i64::from(max_attempts).saturating_sub(attempts).max(0);
        Ok(OtpOutcome::Wrong { attempts_left: u32::try_from(left).unwrap_or(0) })
    }

    async fn challenge(&self, app_id: &AppId, id: &ChallengeId) -> StoreResult<Option<ChallengeRecord>> {
        let row = sqlx::query(
            "SELECT c.*, o.status AS delivery_status, o.attempts AS delivery_attempts, \
             o.last_error AS delivery_error \
             FROM challenges c LEFT JOIN outbox o ON o.challenge_id = c.id \
             WHERE c.id = $1 AND c.app_id = $2",
        )
        .bind(id.as_str())
        .bind(app_id.as_str())
        .fetch_optional(&self.reader)
        .await
        .map_err(map_err)?;
        one(row, rows::challenge_record)
    }

    async fn challenge_by_link(&self, link_hash: &[u8]) -> StoreResult<Option<Challenge>> {
        let row = sqlx::query("SELECT * FROM challenges WHERE link_hash = $1")
            .bind(link_hash)
            .fetch_optional(&self.reader)
            .await
            .map_err(map_err)?;
        one(row, rows::challenge)
    }

    async fn revoke_challenge(
        &self,
        app_id: &AppId,
        id: &ChallengeId,
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        let mut tx = self.writer.begin().await.map_err(map_err)?;
        let done = sqlx::query(
            "UPDATE challenges SET status = 'revoked', consumed_at = $3 \
             WHERE id = $1 AND app_id = $2 AND status = 'pending'",
        )
        .bind(id.as_str())
        .bind(app_id.as_str())
        .bind(millis(now))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        insert_event(&mut tx, &Event::new(EventKind::ChallengeRevoked, now).app(app_id).subject(id.as_str()))
            .await?;
        tx.commit().await.map_err(map_err)?;
        Ok(true)
    }

    async fn consume_link(
        &self,
        link_hash: &[u8],
        code: &NewAuthorizationCode,
        now: OffsetDateTime,
    ) -> StoreResult<ConsumeOutcome> {
        let now_ms = millis(now);
        let mut tx = self.writer.begin().await.map_err(map_err)?;
        let consumed = sqlx::query(
            "UPDATE challenges SET status = 'consumed', consumed_at = $2 \
             WHERE link_hash = $1 AND purpose = 'login' AND status = 'pending' AND expires_at > $2 RETURNING *",
        )
        .bind(link_hash)
        .bind(now_ms)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
        let Some(row) = consumed else {
            drop(tx);
            return Ok(
                match self.challenge_by_link(link_hash).await?.filter(|c| c.purpose == Purpose::Login) {
                    None => ConsumeOutcome::NotFound,
                    Some(c) => ConsumeOutcome::Gone(c.status_at(now)),
                },
            );
        };
        let (challenge, user) = finish_consumption(&mut tx, &row, AuthMethod::Link, now).await?;
        let issued = AuthorizationCode {
            id: code.id.clone(),
            code_hash: code.code_hash.clone(),
            app_id: challenge.app_id.clone(),
            challenge_id: challenge.id.clone(),
            user_id: user.id.clone(),
            redirect_uri: challenge.redirect_uri.clone(),
            code_challenge: challenge.code_challenge.clone(),
            nonce: challenge.nonce.clone(),
            auth_method: AuthMethod::Link,
            auth_time: now,
            org_id: challenge.org_id.clone(),
            expires_at: code.expires_at,
        };
        sqlx::query(
            "INSERT INTO authorization_codes (id, code_hash, app_id, challenge_id, user_id, redirect_uri, \
             code_challenge, nonce, auth_method, auth_time, expires_at, org_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(issued.id.as_str())
        .bind(&issued.code_hash)
        .bind(issued.app_id.as_str())
        .bind(issued.challenge_id.as_str())
        .bind(issued.user_id.as_str())
        .bind(issued.redirect_uri.as_str())
        .bind(issued.code_challenge.as_ref().map(|p| p.as_str()))
        .bind(issued.nonce.as_deref())
        .bind(issued.auth_method.amr())
        .bind(now_ms)
        .bind(millis(issued.expires_at))
        .bind(issued.org_id.as_ref().map(|o| o.as_str()))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(ConsumeOutcome::Consumed { challenge: Box::new(challenge), user, code: Box::new(issued) })
    }

    async fn authorization_code(&self, code_hash: &[u8]) -> StoreResult<Option<AuthorizationCode>> {
        let row = sqlx::query("SELECT * FROM authorization_codes WHERE code_hash = $1")
            .bind(code_hash)
            .fetch_optional(&self.reader)
            .await
            .map_err(map_err)?;
        one(row, rows::authorization_code)
    }

    async fn redeem_authorization_code(
        &self,
        code_hash: &[u8],
        app_id: &AppId,
        now: OffsetDateTime,
        then: Option<(&RefreshToken, &Event)>,
    ) -> StoreResult<Option<AuthorizationCode>> {
        let mut tx = self.writer.begin().await.map_err(map_err)?;
        let row = sqlx::query(
            "UPDATE authorization_codes SET used_at = $3 \
             WHERE code_hash = $1 AND app_id = $2 AND used_at IS NULL AND expires_at > $3 RETURNING *",
        )
        .bind(code_hash)
        .bind(app_id.as_str())
        .bind(millis(now))
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
        let Some(code) = one(row, rows::authorization_code)? else { return Ok(None) };
        if let Some((refresh, event)) = then {
            insert_refresh(&mut tx, refresh).await?;
            insert_event(&mut tx, event).await?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(Some(code))
    }

    async fn user(&self, id: &UserId) -> StoreResult<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.reader)
            .await
            .map_err(map_err)?;
        one(row, rows::user)
    }

    async fn user_by_email(&self, email: &EmailAddress) -> StoreResult<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE email = $1")
            .bind(email.as_str())
            .fetch_optional(&self.reader)
            .await
            .map_err(map_err)?;
        one(row, rows::user)
    }

    async fn claim_outbox(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> StoreResult<Vec<OutboxMessage>> {
        let rows = sqlx::query(
            "UPDATE outbox SET lease_until = $2 WHERE id IN ( \
               SELECT id FROM outbox WHERE status = 'queued' AND next_attempt_at <= $1 \
               AND (lease_until IS NULL OR lease_until <= $1) ORDER BY next_attempt_at LIMIT $3) \
             RETURNING id, sealed, attempts, created_at",
        )
        .bind(millis(now))
        .bind(millis(lease_until))
        .bind(i64::from(limit))
        .fetch_all(&self.writer)
        .await
        .map_err(map_err)?;
        let mut messages = all(&rows, rows::outbox_message)?;
        messages
            .sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.as_str().cmp(b.id.as_str())));
        Ok(messages)
    }

    async fn outbox_sent(&self, id: &OutboxId, now: OffsetDateTime) -> StoreResult<()> {
        let mut tx = self.writer.begin().await.map_err(map_err)?;
        let row = sqlx::query(
            "UPDATE outbox SET status = 'sent', sent_at = $2, attempts = attempts + 1, sealed = NULL, \
             lease_until = NULL, last_error = NULL WHERE id = $1 RETURNING app_id, challenge_id",
        )
        .bind(id.as_str())
        .bind(millis(now))
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
        if let Some(row) = row {
            let app_id: Option<String> = row.try_get("app_id").map_err(map_err)?;
            let challenge_id: Option<String> = row.try_get("challenge_id").map_err(map_err)?;
            let mut event = Event::new(EventKind::ChallengeDelivered, now)
                .subject(challenge_id.unwrap_or_else(|| id.to_string()));
            event.app_id = app_id.map(AppId::from_trusted);
            insert_event(&mut tx, &event).await?;
        }
        tx.commit().await.map_err(map_err)
    }

    async fn outbox_attempt_failed(
        &self,
        id: &OutboxId,
        error: &str,
        next_attempt_at: Option<OffsetDateTime>,
    ) -> StoreResult<()> {
        let query = match next_attempt_at {
            Some(_) => {
                "UPDATE outbox SET attempts = attempts + 1, last_error = $2, next_attempt_at = $3, \
                 lease_until = NULL WHERE id = $1"
            }
            None => {
                "UPDATE outbox SET attempts = attempts + 1, last_error = $2, status = 'failed', sealed = NULL, \
                 lease_until = NULL WHERE id = $1 AND $3 IS NULL"
            }
        };
        sqlx::query(query)
            .bind(id.as_str())
            .bind(error)
            .bind(next_attempt_at.map(millis))
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn signing_keys(&self) -> StoreResult<Vec<StoredSigningKey>> {
        let rows = sqlx::query("SELECT * FROM signing_keys ORDER BY created_at, kid")
            .fetch_all(&self.reader)
            .await
            .map_err(map_err)?;
        all(&rows, rows::signing_key)
    }

    async fn insert_signing_key(&self, key: &StoredSigningKey) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, sealed_pkcs8, created_at, retired_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&key.kid)
        .bind(key.alg.as_str())
        .bind(&key.sealed_pkcs8)
        .bind(millis(key.created_at))
        .bind(key.retired_at.map(millis))
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn insert_user(&self, u: &User) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO users (id, email, email_verified, name, metadata, created_at, updated_at, last_sign_in_at, \
             locale) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(u.id.as_str())
        .bind(u.email.as_str())
        .bind(u.email_verified)
        .bind(u.name.as_deref())
        .bind(rows::metadata_json(u))
        .bind(millis(u.created_at))
        .bind(millis(u.updated_at))
        .bind(u.last_sign_in_at.map(millis))
        .bind(u.locale.as_deref())
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn list_users(&self, after: Option<&UserId>, limit: u32) -> StoreResult<Vec<User>> {
        let rows = sqlx::query("SELECT * FROM users WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2")
            .bind(after.map(|a| a.as_str()))
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await
            .map_err(map_err)?;
        all(&rows, rows::user)
    }

    async fn update_user(&self, u: &User) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE users SET email = $2, name = $3, metadata = $4, updated_at = $5, locale = $6 WHERE id = $1",
        )
        .bind(u.id.as_str())
        .bind(u.email.as_str())
        .bind(u.name.as_deref())
        .bind(rows::metadata_json(u))
        .bind(millis(u.updated_at))
        .bind(u.locale.as_deref())
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_user(&self, id: &UserId) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_refresh_token(&self, t: &RefreshToken, event: Option<&Event>) -> StoreResult<()> {
        let mut tx = self.writer.begin().await.map_err(map_err)?;
        insert_refresh(&mut tx, t).await?;
        if let Some(event) = event {
            insert_event(&mut tx, event).await?;
        }
        tx.commit().await.map_err(map_err)
    }

    async fn rotate_refresh_token(
        &self,
        token_hash: &[u8],
        app_id: &AppId,
        next: &RefreshToken,
        event: Option<&Event>,
        now: OffsetDateTime,
    ) -> StoreResult<RotateOutcome> {
        let now_ms = millis(now);
        let mut tx = self.writer.begin().await.map_err(map_err)?;
        let rotated = sqlx::query(
            "UPDATE refresh_tokens SET rotated_at = $3 WHERE token_hash = $1 AND app_id = $2 \
             AND rotated_at IS NULL AND revoked_at IS NULL AND expires_at > $3 RETURNING *",
        )
        .bind(token_hash)
        .bind(app_id.as_str())
        .bind(now_ms)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
        if let Some(row) = rotated {
            let old = rows::refresh_token(&R(&row))?;
            insert_refresh(&mut tx, next).await?;
            if let Some(event) = event {
                insert_event(&mut tx, event).await?;
            }
            tx.commit().await.map_err(map_err)?;
            return Ok(RotateOutcome::Rotated(Box::new(old)));
        }
        let known = sqlx::query("SELECT * FROM refresh_tokens WHERE token_hash = $1 AND app_id = $2")
            .bind(token_hash)
            .bind(app_id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?;
        let Some(token) = one(known, rows::refresh_token)? else { return Ok(RotateOutcome::Invalid) };
        if token.rotated_at.is_none() {
            return Ok(RotateOutcome::Invalid);
        }
        sqlx::query("UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL")
            .bind(token.family_id.as_str())
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        let event = Event::new(EventKind::RefreshReuseDetected, now)
            .app(app_id)
            .user(&token.user_id)
            .subject(token.family_id.as_str());
        insert_event(&mut tx, &event).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(RotateOutcome::Reused { family_id: token.family_id, user_id: token.user_id })
    }

    async fn refresh_token(&self, token_hash: &[u8]) -> StoreResult<Option<RefreshToken>> {
        let row = sqlx::query("SELECT * FROM refresh_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.reader)
            .await
            .map_err(map_err)?;
        one(row, rows::refresh_token)
    }

    async fn revoke_refresh_family(&self, family_id: &FamilyId, now: OffsetDateTime) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
        )
        .bind(family_id.as_str())
        .bind(millis(now))
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected())
    }

    async fn user_sessions(&self, user_id: &UserId, now: OffsetDateTime) -> StoreResult<Vec<RefreshToken>> {
        let rows = sqlx::query(
            "SELECT * FROM refresh_tokens WHERE user_id = $1 AND rotated_at IS NULL AND revoked_at IS NULL \
             AND expires_at > $2 ORDER BY created_at, id",
        )
        .bind(user_id.as_str())
        .bind(millis(now))
        .fetch_all(&self.reader)
        .await
        .map_err(map_err)?;
        all(&rows, rows::refresh_token)
    }

    async fn revoke_user_sessions(&self, user_id: &UserId, now: OffsetDateTime) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL \
             AND rotated_at IS NULL AND expires_at > $2",
        )
        .bind(user_id.as_str())
        .bind(millis(now))
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected())
    }

    async fn insert_event(&self, event: &Event) -> StoreResult<()> {
        let mut conn = self.writer.acquire().await.map_err(map_err)?;
        insert_event(&mut conn, event).await
    }

    async fn events(&self, after: Option<&str>, limit: u32) -> StoreResult<Vec<Event>> {
        let rows = sqlx::query("SELECT * FROM events WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2")
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await
            .map_err(map_err)?;
        all(&rows, rows::event)
    }

    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> StoreResult<bool> {
        let row = sqlx::query(
            "INSERT INTO leases (name, holder, until) VALUES ($1, $2, $4) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until \
             WHERE leases.until <= $3 OR leases.holder = excluded.holder RETURNING holder",
        )
        .bind(name)
        .bind(holder)
        .bind(millis(now))
        .bind(millis(until))
        .fetch_optional(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(row.is_some())
    }

    async fn purge_expired(&self, now: OffsetDateTime) -> StoreResult<u64> {
        let now_ms = millis(now);
        let day_ago = millis(now - time::Duration::days(1));
        // Small batches keep the single writer available to requests meanwhile.
        let statements: [(&str, i64); 6] = [
            (
                "DELETE FROM challenges WHERE id IN (SELECT id FROM challenges WHERE expires_at < $1 LIMIT 2000)",
                day_ago,
            ),
            (
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE status <> 'queued' AND created_at < $1 LIMIT 2000)",
                day_ago,
            ),
            (
                "DELETE FROM authorization_codes WHERE id IN (SELECT id FROM authorization_codes WHERE expires_at < $1 LIMIT 2000)",
                now_ms,
            ),
            (
                "DELETE FROM refresh_tokens WHERE id IN (SELECT id FROM refresh_tokens WHERE expires_at < $1 LIMIT 2000)",
                now_ms,
            ),
            (
                "DELETE FROM rate_limits WHERE key IN (SELECT key FROM rate_limits WHERE expires_at < $1 LIMIT 2000)",
                now_ms,
            ),
            (
                "DELETE FROM leases WHERE name IN (SELECT name FROM leases WHERE until < $1 LIMIT 2000)",
                day_ago,
            ),
        ];
        let mut total = 0;
        for (sql, cutoff) in statements {
            loop {
                let done = sqlx::query(sql).bind(cutoff).execute(&self.writer).await.map_err(map_err)?;
                total += done.rows_affected();
                if done.rows_affected() < 2000 {
                    break;
                }
            }
        }
        Ok(total)
    }

    async fn retire_signing_keys(&self, alg: SigningAlg, now: OffsetDateTime) -> StoreResult<()> {
        sqlx::query("UPDATE signing_keys SET retired_at = $2 WHERE alg = $1 AND retired_at IS NULL")
            .bind(alg.as_str())
            .bind(millis(now))
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn delete_signing_keys_retired_before(&self, cutoff: OffsetDateTime) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at < $1")
            .bind(millis(cutoff))
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected())
    }

    async fn consume_by_token(
        &self,
        purpose: Purpose,
        link_hash: &[u8],
        app_id: &AppId,
        now: OffsetDateTime,
    ) -> StoreResult<TokenOutcome> {
        let mut tx = self.writer.begin().await.map_err(map_err)?;
        let consumed = sqlx::query(
            "UPDATE challenges SET status = 'consumed', consumed_at = $4 \
             WHERE link_hash = $1 AND purpose = $2 AND app_id = $3 AND status = 'pending' AND expires_at > $4 \
             RETURNING *",
        )
        .bind(link_hash)
        .bind(purpose.as_str())
        .bind(app_id.as_str())
        .bind(millis(now))
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
        let Some(row) = consumed else {
            drop(tx);
            let found = self
                .challenge_by_link(link_hash)
                .await?
                .filter(|c| c.purpose == purpose && &c.app_id == app_id);
            return Ok(found.map_or(TokenOutcome::NotFound, |c| TokenOutcome::Gone(c.status_at(now))));
        };
        let challenge = rows::challenge(&R(&row))?;
        let event = Event::new(EventKind::ChallengeConsumed, now)
            .app(app_id)
            .subject(challenge.id.as_str())
            .detail(serde_json::json!({ "purpose": purpose.as_str() }));
        insert_event(&mut tx, &event).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(TokenOutcome::Consumed(Box::new(challenge)))
    }

    async fn insert_organization(&self, org: &Organization) -> StoreResult<()> {
        let mut tx = self.writer.begin().await.map_err(map_err)?;
        sqlx::query(
            "INSERT INTO organizations (id, name, slug, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(org.id.as_str())
        .bind(&org.name)
        .bind(&org.slug)
        .bind(millis(org.created_at))
        .bind(millis(org.updated_at))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        insert_domains(&mut tx, org).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn organization(&self, id: &OrgId) -> StoreResult<Option<Organization>> {
        self.organization_where(OrgKey::Id, id.as_str()).await
    }

    async fn organization_by_slug(&self, slug: &str) -> StoreResult<Option<Organization>> {
        self.organization_where(OrgKey::Slug, slug).await
    }

    async fn organization_by_domain(&self, domain: &str) -> StoreResult<Option<Organization>> {
        self.organization_where(OrgKey::Domain, domain).await
    }

    async fn list_organizations(&self) -> StoreResult<Vec<Organization>> {
        let orgs = sqlx::query("SELECT * FROM organizations ORDER BY id")
            .fetch_all(&self.reader)
            .await
            .map_err(map_err)?;
        let domains: Vec<(String, String)> =
            sqlx::query_as("SELECT domain, org_id FROM organization_domains ORDER BY domain")
                .fetch_all(&self.reader)
                .await
                .map_err(map_err)?;
        let readers: Vec<R<'_>> = orgs.iter().map(R).collect();
        rows::organizations(&readers.iter().map(|r| r as &dyn RowReader).collect::<Vec<_>>(), domains)
    }

    async fn update_organization(&self, org: &Organization) -> StoreResult<bool> {
        let mut tx = self.writer.begin().await.map_err(map_err)?;
        let done =
            sqlx::query("UPDATE organizations SET name = $2, slug = $3, updated_at = $4 WHERE id = $1")
                .bind(org.id.as_str())
                .bind(&org.name)
                .bind(&org.slug)
                .bind(millis(org.updated_at))
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM organization_domains WHERE org_id = $1")
            .bind(org.id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        insert_domains(&mut tx, org).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(true)
    }

    async fn delete_organization(&self, id: &OrgId) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM organizations WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn user_organizations(&self, user_id: &UserId) -> StoreResult<Vec<OrgId>> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT org_id FROM memberships WHERE user_id = $1 ORDER BY org_id")
                .bind(user_id.as_str())
                .fetch_all(&self.reader)
                .await
                .map_err(map_err)?;
        Ok(ids.into_iter().map(OrgId::from_trusted).collect())
    }
}

/// How an organization is looked up.
enum OrgKey {
    Id,
    Slug,
    Domain,
}

impl SqliteStore {
    async fn organization_where(&self, key: OrgKey, value: &str) -> StoreResult<Option<Organization>> {
        let sql = match key {
            OrgKey::Id => "SELECT * FROM organizations WHERE id = $1",
            OrgKey::Slug => "SELECT * FROM organizations WHERE slug = $1",
            OrgKey::Domain => {
                "SELECT * FROM organizations WHERE id = (SELECT org_id FROM organization_domains WHERE domain = $1)"
            }
        };
        let Some(row) = sqlx::query(sql).bind(value).fetch_optional(&self.reader).await.map_err(map_err)?
        else {
            return Ok(None);
        };
        let id: String = row.try_get("id").map_err(map_err)?;
        let domains: Vec<String> =
            sqlx::query_scalar("SELECT domain FROM organization_domains WHERE org_id = $1 ORDER BY domain")
                .bind(&id)
                .fetch_all(&self.reader)
                .await
                .map_err(map_err)?;
        rows::organization(&R(&row), domains).map(Some)
    }
}

async fn insert_domains(conn: &mut SqliteConnection, org: &Organization) -> StoreResult<()> {
    for domain in &org.domains {
        sqlx::query("INSERT INTO organization_domains (domain, org_id) VALUES ($1, $2)")
            .bind(domain)
            .bind(org.id.as_str())
            .execute(&mut *conn)
            .await
            .map_err(map_err)?;
    }
    Ok(())
}
