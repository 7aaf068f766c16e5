use async_trait::async_trait;
use latchkey_core::challenge::{AuthMethod, AuthorizationCode, NewAuthorizationCode};
use latchkey_core::id::{AppId, ChallengeId, OutboxId, SecretId, UserId};
use latchkey_core::{Application, Challenge, EmailAddress, User};
use latchkey_store::rows::{self, RowReader, millis};
use latchkey_store::{
    ChallengeRecord, ClientSecret, ConsumeOutcome, NewOutboxMessage, OutboxMessage, Store, StoreError,
    StoreResult, StoredSigningKey,
};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, PgConnection, PgExecutor, Row};
use std::str::FromStr;
use std::time::Duration;
use time::OffsetDateTime;

#[derive(Debug, Clone)]
pub struct PostgresOptions {
    pub max_connections: u32,
    /// Cancels any statement running longer; `None` keeps the server's setting.
    pub statement_timeout: Option<Duration>,
    /// How long a query waits for a free connection from the pool.
    pub acquire_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            statement_timeout: Some(Duration::from_secs(5)),
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl PostgresStore {
    /// Connects to the database at `url` (which may carry `sslmode` and the like). Does not
    /// migrate: call [`Store::migrate`].
    pub async fn connect(url: &str, options: &PostgresOptions) -> StoreResult<Self> {
        let mut connect = PgConnectOptions::from_str(url).map_err(map_err)?;
        if let Some(timeout) = options.statement_timeout {
            // Sent in the startup packet: every connection of the pool has it, at no round trip.
            let ms = timeout.as_nanos().div_ceil(1_000_000);
            connect = connect.options([("statement_timeout", ms)]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(map_err)?;
        Ok(Self { pool })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

struct R<'a>(&'a PgRow);

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

/// Whether a SQLSTATE means the server is away, going away or too slow: worth retrying later.
fn unavailable_code(code: &str) -> bool {
    code.starts_with("08") // connection exception
        || matches!(code, "57P01" | "57P02" | "57P03") // admin or crash shutdown, starting up
        || code == "57014" // query canceled, which is how statement_timeout shows
}

fn map_err(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict("unique"),
        sqlx::Error::Database(db) if db.code().is_some_and(|c| unavailable_code(&c)) => {
            StoreError::Unavailable(Box::new(sqlx::Error::Database(db)))
        }
        e @ (sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)) => {
            StoreError::Unavailable(Box::new(e))
        }
        e @ (sqlx::Error::ColumnDecode { .. } | sqlx::Error::ColumnNotFound(_) | sqlx::Error::Decode(_)) => {
            tracing::error!(error = %e, "stored row does not decode");
            StoreError::Corrupt("row")
        }
        e => StoreError::Other(Box::new(e)),
    }
}

fn all<T>(rows: &[PgRow], f: fn(&dyn RowReader) -> StoreResult<T>) -> StoreResult<Vec<T>> {
    rows.iter().map(|r| f(&R(r))).collect()
}

fn one<T>(row: Option<PgRow>, f: fn(&dyn RowReader) -> StoreResult<T>) -> StoreResult<Option<T>> {
    row.map(|r| f(&R(&r))).transpose()
}

async fn insert_secret(db: impl PgExecutor<'_>, s: &ClientSecret) -> StoreResult<()> {
    sqlx::query("INSERT INTO client_secrets (id, app_id, hash, created_at) VALUES ($1, $2, $3, $4)")
        .bind(s.id.as_str())
        .bind(s.app_id.as_str())
        .bind(&s.hash)
        .bind(millis(s.created_at))
        .execute(db)
        .await
        .map_err(map_err)?;
    Ok(())
}

// Ids are ordered with COLLATE "C": byte order, which is creation order for our ids, whatever
// the database's collation.
#[async_trait]
impl Store for PostgresStore {
    async fn migrate(&self) -> StoreResult<()> {
        // A connection of its own without the statement timeout: a long migration, or waiting
        // for another instance's migration (the migrator holds an advisory lock), is not an error.
        let mut conn = PgConnection::connect_with(&self.pool.connect_options()).await.map_err(map_err)?;
        sqlx::query("SET statement_timeout = 0").execute(&mut conn).await.map_err(map_err)?;
        let result = MIGRATOR.run_direct(&mut conn).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => map_err(e),
            e => StoreError::Other(Box::new(e)),
        });
        // A failure to say goodbye does not matter once the migrations are in.
        let _ = conn.close().await;
        result
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(map_err)?;
        Ok(())
    }

    async fn insert_application(&self, app: &Application, secret: Option<&ClientSecret>) -> StoreResult<()> {
        let (uris, settings) = rows::application_json(app);
        let mut tx = self.pool.begin().await.map_err(map_err)?;
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
            insert_secret(&mut *tx, secret).await?;
        }
        tx.commit().await.map_err(map_err)
    }

    async fn application(&self, id: &AppId) -> StoreResult<Option<Application>> {
        let row = sqlx::query("SELECT * FROM applications WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        one(row, rows::application)
    }

    async fn list_applications(&self) -> StoreResult<Vec<Application>> {
        let rows = sqlx::query(r#"SELECT * FROM applications ORDER BY id COLLATE "C""#)
            .fetch_all(&self.pool)
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
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_application(&self, id: &AppId) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM applications WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_client_secret(&self, secret: &ClientSecret) -> StoreResult<()> {
        insert_secret(&self.pool, secret).await
    }

    async fn client_secrets(&self, app_id: &AppId) -> StoreResult<Vec<ClientSecret>> {
        let rows = sqlx::query(r#"SELECT * FROM client_secrets WHERE app_id = $1 ORDER BY id COLLATE "C""#)
            .bind(app_id.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        all(&rows, rows::client_secret)
    }

    async fn delete_client_secret(&self, app_id: &AppId, id: &SecretId) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM client_secrets WHERE id = $1 AND app_id = $2")
            .bind(id.as_str())
            .bind(app_id.as_str())
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn application_by_secret_hash(&self, hash: &[u8]) -> StoreResult<Option<Application>> {
        let row = sqlx::query(
            "SELECT a.* FROM applications a JOIN client_secrets s ON s.app_id = a.id WHERE s.hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        one(row, rows::application)
    }

    async fn insert_challenge(&self, c: &Challenge, mail: Option<&NewOutboxMessage>) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        sqlx::query(
            "INSERT INTO challenges (id, purpose, app_id, email, redirect_uri, state, nonce, code_challenge, \
             client_ip, user_agent, create_user, link_hash, otp_hash, otp_attempts, status, created_at, \
             expires_at, otp_expires_at, consumed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
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
        tx.commit().await.map_err(map_err)
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
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        one(row, rows::challenge_record)
    }

    async fn challenge_by_link(&self, link_hash: &[u8]) -> StoreResult<Option<Challenge>> {
        let row = sqlx::query("SELECT * FROM challenges WHERE link_hash = $1")
            .bind(link_hash)
            .fetch_optional(&self.pool)
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
        let done = sqlx::query(
            "UPDATE challenges SET status = 'revoked', consumed_at = $3 \
             WHERE id = $1 AND app_id = $2 AND status = 'pending'",
        )
        .bind(id.as_str())
        .bind(app_id.as_str())
        .bind(millis(now))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn consume_link(
        &self,
        link_hash: &[u8],
        code: &NewAuthorizationCode,
        now: OffsetDateTime,
    ) -> StoreResult<ConsumeOutcome> {
        let now_ms = millis(now);
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        // Concurrent callers queue on the row lock; once the winner commits, READ COMMITTED
        // re-checks the condition on the new row version, which no longer matches.
        let consumed = sqlx::query(
            "UPDATE challenges SET status = 'consumed', consumed_at = $2 \
             WHERE link_hash = $1 AND status = 'pending' AND expires_at > $2 RETURNING *",
        )
        .bind(link_hash)
        .bind(now_ms)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
        let Some(row) = consumed else {
            tx.rollback().await.map_err(map_err)?;
            return Ok(match self.challenge_by_link(link_hash).await? {
                None => ConsumeOutcome::NotFound,
                Some(c) => ConsumeOutcome::Gone(c.status_at(now)),
            });
        };
        let challenge = rows::challenge(&R(&row))?;
        // ON CONFLICT DO UPDATE never fails on the unique e-mail: a concurrent insert of the
        // same address makes this one wait, then update the row the other committed.
        let user_row = sqlx::query(
            "INSERT INTO users (id, email, email_verified, created_at, updated_at, last_sign_in_at) \
             VALUES ($1, $2, TRUE, $3, $3, $3) \
             ON CONFLICT (email) DO UPDATE SET email_verified = TRUE, updated_at = $3, last_sign_in_at = $3 \
             RETURNING *",
        )
        .bind(UserId::generate().as_str())
        .bind(challenge.email.as_str())
        .bind(now_ms)
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
        let user = rows::user(&R(&user_row))?;
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
            expires_at: code.expires_at,
        };
        sqlx::query(
            "INSERT INTO authorization_codes (id, code_hash, app_id, challenge_id, user_id, redirect_uri, \
             code_challenge, nonce, auth_method, auth_time, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
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
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(ConsumeOutcome::Consumed { challenge: Box::new(challenge), user, code: Box::new(issued) })
    }

    async fn redeem_authorization_code(
        &self,
        code_hash: &[u8],
        app_id: &AppId,
        now: OffsetDateTime,
    ) -> StoreResult<Option<AuthorizationCode>> {
        let row = sqlx::query(
            "UPDATE authorization_codes SET used_at = $3 \
             WHERE code_hash = $1 AND app_id = $2 AND used_at IS NULL AND expires_at > $3 RETURNING *",
        )
        .bind(code_hash)
        .bind(app_id.as_str())
        .bind(millis(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        one(row, rows::authorization_code)
    }

    async fn user(&self, id: &UserId) -> StoreResult<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        one(row, rows::user)
    }

    async fn user_by_email(&self, email: &EmailAddress) -> StoreResult<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE email = $1")
            .bind(email.as_str())
            .fetch_optional(&self.pool)
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
        // SKIP LOCKED: a row another worker is leasing right now is passed over, not waited for
        // and then handed out a second time.
        let rows = sqlx::query(
            r#"WITH due AS (
                 SELECT id FROM outbox
                 WHERE status = 'queued' AND next_attempt_at <= $1
                   AND (lease_until IS NULL OR lease_until <= $1)
                 ORDER BY next_attempt_at, created_at, id COLLATE "C"
                 LIMIT $3
                 FOR UPDATE SKIP LOCKED
               ), leased AS (
                 UPDATE outbox o SET lease_until = $2 FROM due WHERE o.id = due.id
                 RETURNING o.id, o.sealed, o.attempts, o.created_at
               )
               SELECT * FROM leased ORDER BY created_at, id COLLATE "C""#,
        )
        .bind(millis(now))
        .bind(millis(lease_until))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        all(&rows, rows::outbox_message)
    }

    async fn outbox_sent(&self, id: &OutboxId, now: OffsetDateTime) -> StoreResult<()> {
        sqlx::query(
            "UPDATE outbox SET status = 'sent', sent_at = $2, attempts = attempts + 1, sealed = NULL, \
             lease_until = NULL, last_error = NULL WHERE id = $1",
        )
        .bind(id.as_str())
        .bind(millis(now))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn outbox_attempt_failed(
        &self,
        id: &OutboxId,
        error: &str,
        next_attempt_at: Option<OffsetDateTime>,
    ) -> StoreResult<()> {
        let query = match next_attempt_at {
            Some(at) => sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, last_error = $2, next_attempt_at = $3, \
                 lease_until = NULL WHERE id = $1",
            )
            .bind(id.as_str())
            .bind(error)
            .bind(millis(at)),
            None => sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, last_error = $2, status = 'failed', sealed = NULL, \
                 lease_until = NULL WHERE id = $1",
            )
            .bind(id.as_str())
            .bind(error),
        };
        query.execute(&self.pool).await.map_err(map_err)?;
        Ok(())
    }

    async fn signing_keys(&self) -> StoreResult<Vec<StoredSigningKey>> {
        let rows = sqlx::query(r#"SELECT * FROM signing_keys ORDER BY created_at, kid COLLATE "C""#)
            .fetch_all(&self.pool)
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
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }
}
