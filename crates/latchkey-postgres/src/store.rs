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
        || code == "55000" // the database does not allow connections (being maintained, or turned off)
        || code.starts_with("53") // insufficient resources: too many connections, out of memory or disk
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

/// How many rows one purge statement deletes at most: short statements, short row locks.
const PURGE_BATCH: u64 = 2000;

/// Counts one hit on each limit; returns the refusal of the first limit (in the given order)
/// that is exceeded, and the caller then rolls back, so a refused request counts nothing.
///
/// Each counter stays row-locked until the transaction ends, so counters are taken in key
/// order: two requests sharing counters then never wait for each other in a cycle. Every
/// counter is taken even after a refusal, so the refusal reported is the one the given order
/// names first, as on SQLite.
async fn count_hits(
    conn: &mut PgConnection,
    limits: &[RateLimit],
    now: OffsetDateTime,
) -> StoreResult<Result<(), RateLimited>> {
    let now_ms = millis(now);
    let mut order: Vec<usize> = (0..limits.len()).collect();
    order.sort_by(|&a, &b| limits[a].key.cmp(&limits[b].key));
    let mut refused: Option<(usize, RateLimited)> = None;
    for i in order {
        let limit = &limits[i];
        let (start, left_ms) = rate_limit::window(now_ms, limit.window);
        // A concurrent hit on the same key waits for the row lock, then counts on the row the
        // other committed: no hit is lost.
        let count: i64 = sqlx::query_scalar(
            "INSERT INTO rate_limits (key, window_start, count, expires_at) VALUES ($1, $2, 1, $3) \
             ON CONFLICT (key) DO UPDATE SET \
               count = CASE WHEN rate_limits.window_start = EXCLUDED.window_start THEN rate_limits.count + 1 ELSE 1 END, \
               window_start = EXCLUDED.window_start, expires_at = EXCLUDED.expires_at \
             RETURNING count",
        )
        .bind(&limit.key)
        .bind(start)
        .bind(now_ms + left_ms)
        .fetch_one(&mut *conn)
        .await
        .map_err(map_err)?;
        if count > i64::from(limit.limit) && refused.is_none_or(|(first, _)| i < first) {
            refused = Some((i, RateLimited { retry_after: time::Duration::milliseconds(left_ms) }));
        }
    }
    Ok(refused.map_or(Ok(()), |(_, r)| Err(r)))
}

async fn insert_event(db: impl PgExecutor<'_>, e: &Event) -> StoreResult<()> {
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
    .execute(db)
    .await
    .map_err(map_err)?;
    Ok(())
}

async fn insert_refresh(db: impl PgExecutor<'_>, t: &RefreshToken) -> StoreResult<()> {
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
    .execute(db)
    .await
    .map_err(map_err)?;
    Ok(())
}

/// Revokes the unrevoked tokens of a family; returns how many.
///
/// Revoking several rows locks them one by one. The rows are locked in id order first
/// (`ORDER BY` comes before `FOR UPDATE`), so revocations of overlapping sets (the losers of
/// a rotation race each revoking the family, say) queue instead of deadlocking. A row revoked
/// meanwhile no longer matches once its lock is granted, and is not counted twice.
async fn revoke_family(db: impl PgExecutor<'_>, family_id: &FamilyId, now_ms: i64) -> StoreResult<u64> {
    let done = sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $2 WHERE id IN ( \
           SELECT id FROM refresh_tokens WHERE family_id = $1 AND revoked_at IS NULL ORDER BY id FOR UPDATE)",
    )
    .bind(family_id.as_str())
    .bind(now_ms)
    .execute(db)
    .await
    .map_err(map_err)?;
    Ok(done.rows_affected())
}

/// After a challenge was consumed (by link or code): its user, found or created, marked
/// verified, and the events that say so.
async fn finish_consumption(
    conn: &mut PgConnection,
    row: &PgRow,
    method: AuthMethod,
    now: OffsetDateTime,
) -> StoreResult<(Challenge, User)> {
    let challenge = rows::challenge(&R(row))?;
    let new_id = UserId::generate();
    // ON CONFLICT DO UPDATE never fails on the unique e-mail: a concurrent insert of the
    // same address makes this one wait, then update the row the other committed.
    let user_row = sqlx::query(
        "INSERT INTO users (id, email, email_verified, created_at, updated_at, last_sign_in_at) \
         VALUES ($1, $2, TRUE, $3, $3, $3) \
         ON CONFLICT (email) DO UPDATE SET email_verified = TRUE, updated_at = $3, last_sign_in_at = $3 \
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
        .subject(challenge.id.as_str());
    let consumed = consumed.detail(serde_json::json!({ "method": method.amr() }));
    insert_event(&mut *conn, &consumed).await?;
    if user.id == new_id {
        insert_event(
            &mut *conn,
            &Event::new(EventKind::UserCreated, now).app(&challenge.app_id).user(&user.id),
        )
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
            insert_event(&mut *conn, &event).await?;
        }
    }
    Ok((challenge, user))
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

    async fn create_challenge(
        &self,
        c: &Challenge,
        mail: Option<&NewOutboxMessage>,
        limits: &[RateLimit],
        now: OffsetDateTime,
    ) -> StoreResult<Result<(), RateLimited>> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        if let Err(refused) = count_hits(&mut tx, limits, now).await? {
            tx.rollback().await.map_err(map_err)?;
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
        insert_event(&mut *tx, &event).await?;
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
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let outcome = count_hits(&mut tx, limits, now).await?;
        if outcome.is_ok() {
            tx.commit().await.map_err(map_err)?;
        } else {
            tx.rollback().await.map_err(map_err)?;
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
            r#"SELECT * FROM challenges WHERE app_id = $1 AND email = $2 AND status = 'pending' AND expires_at > $3
               ORDER BY created_at DESC, id COLLATE "C" DESC LIMIT 1"#,
        )
        .bind(app_id.as_str())
        .bind(email.as_str())
        .bind(millis(now))
        .fetch_optional(&self.pool)
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
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        // As in consume_link: callers racing on the challenge (by code or by link) queue on the
        // row lock, and READ COMMITTED re-checks the condition on the winner's row version.
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
        // Wrong code: count the attempt. Concurrent wrong guesses each count once (each
        // increments the version the previous one committed), and exactly one of them reaches
        // the limit and revokes.
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
        let Some(row) = failed else {
            tx.rollback().await.map_err(map_err)?;
            return Ok(OtpOutcome::Gone);
        };
        let attempts: i64 = row.try_get("otp_attempts").map_err(map_err)?;
        let app_id: String = row.try_get("app_id").map_err(map_err)?;
        let event = Event::new(EventKind::ChallengeRejected, now)
            .app(&AppId::from_trusted(app_id))
            .subject(id.as_str());
        let event = event.detail(serde_json::json!({ "reason": "wrong_code", "attempts": attempts }));
        insert_event(&mut *tx, &event).await?;
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
        let mut tx = self.pool.begin().await.map_err(map_err)?;
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
            tx.rollback().await.map_err(map_err)?;
            return Ok(false);
        }
        insert_event(
            &mut *tx,
            &Event::new(EventKind::ChallengeRevoked, now).app(app_id).subject(id.as_str()),
        )
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
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        // Concurrent callers queue on the row lock; once the winner commits, READ COMMITTED
        // re-checks the condition on the new row version, which no longer matches.
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
            tx.rollback().await.map_err(map_err)?;
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
            .fetch_optional(&self.pool)
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
        let mut tx = self.pool.begin().await.map_err(map_err)?;
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
            insert_refresh(&mut *tx, refresh).await?;
            insert_event(&mut *tx, event).await?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(Some(code))
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
        let mut tx = self.pool.begin().await.map_err(map_err)?;
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
            insert_event(&mut *tx, &event).await?;
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

    async fn retire_signing_keys(&self, alg: SigningAlg, now: OffsetDateTime) -> StoreResult<()> {
        sqlx::query("UPDATE signing_keys SET retired_at = $2 WHERE alg = $1 AND retired_at IS NULL")
            .bind(alg.as_str())
            .bind(millis(now))
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn delete_signing_keys_retired_before(&self, cutoff: OffsetDateTime) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at < $1")
            .bind(millis(cutoff))
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected())
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
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn list_users(&self, after: Option<&UserId>, limit: u32) -> StoreResult<Vec<User>> {
        // No id is empty, so `> ''` is "from the start": one condition the index on
        // (id COLLATE "C") can start from, where `$1 IS NULL OR id > $1` could not.
        let rows = sqlx::query(
            r#"SELECT * FROM users WHERE id COLLATE "C" > COALESCE($1::text, '') ORDER BY id COLLATE "C" LIMIT $2"#,
        )
        .bind(after.map(|a| a.as_str()))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
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
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_user(&self, id: &UserId) -> StoreResult<bool> {
        // Its refresh tokens and codes go with it (ON DELETE CASCADE).
        let done = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_refresh_token(&self, t: &RefreshToken, event: Option<&Event>) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        insert_refresh(&mut *tx, t).await?;
        if let Some(event) = event {
            insert_event(&mut *tx, event).await?;
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
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        // Single use rests on this conditional update: of callers presenting the same token at
        // once, one rotates it; the others wait for its row lock, no longer match, and find
        // the token rotated out below, which is reuse.
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
            insert_refresh(&mut *tx, next).await?;
            if let Some(event) = event {
                insert_event(&mut *tx, event).await?;
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
        let token = match one(known, rows::refresh_token)? {
            Some(token) if token.rotated_at.is_some() => token,
            // Unknown, another application's, revoked or expired.
            _ => {
                tx.rollback().await.map_err(map_err)?;
                return Ok(RotateOutcome::Invalid);
            }
        };
        revoke_family(&mut *tx, &token.family_id, now_ms).await?;
        let event = Event::new(EventKind::RefreshReuseDetected, now)
            .app(app_id)
            .user(&token.user_id)
            .subject(token.family_id.as_str());
        insert_event(&mut *tx, &event).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(RotateOutcome::Reused { family_id: token.family_id, user_id: token.user_id })
    }

    async fn refresh_token(&self, token_hash: &[u8]) -> StoreResult<Option<RefreshToken>> {
        let row = sqlx::query("SELECT * FROM refresh_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        one(row, rows::refresh_token)
    }

    async fn revoke_refresh_family(&self, family_id: &FamilyId, now: OffsetDateTime) -> StoreResult<u64> {
        revoke_family(&self.pool, family_id, millis(now)).await
    }

    async fn user_sessions(&self, user_id: &UserId, now: OffsetDateTime) -> StoreResult<Vec<RefreshToken>> {
        let rows = sqlx::query(
            r#"SELECT * FROM refresh_tokens WHERE user_id = $1 AND rotated_at IS NULL AND revoked_at IS NULL
               AND expires_at > $2 ORDER BY created_at, id COLLATE "C""#,
        )
        .bind(user_id.as_str())
        .bind(millis(now))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        all(&rows, rows::refresh_token)
    }

    async fn revoke_user_sessions(&self, user_id: &UserId, now: OffsetDateTime) -> StoreResult<u64> {
        // Rows locked in id order first, as in revoke_family.
        let done = sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $2 WHERE id IN ( \
               SELECT id FROM refresh_tokens WHERE user_id = $1 AND revoked_at IS NULL \
               AND rotated_at IS NULL AND expires_at > $2 ORDER BY id FOR UPDATE)",
        )
        .bind(user_id.as_str())
        .bind(millis(now))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected())
    }

    async fn insert_event(&self, event: &Event) -> StoreResult<()> {
        insert_event(&self.pool, event).await
    }

    async fn events(&self, after: Option<&str>, limit: u32) -> StoreResult<Vec<Event>> {
        // The key's collation is "C" (see the migration), so this walks the primary key; as in
        // list_users, no id is empty.
        let rows = sqlx::query(
            r#"SELECT * FROM events WHERE id COLLATE "C" > COALESCE($1::text, '') ORDER BY id COLLATE "C" LIMIT $2"#,
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
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
        // When the WHERE blocks the update (another holder's lease runs), no row is returned.
        // Concurrent takers of a free lease queue on the row: one inserts or takes it, the
        // others then see its lease running.
        let row = sqlx::query(
            "INSERT INTO leases (name, holder, until) VALUES ($1, $2, $4) \
             ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, until = EXCLUDED.until \
             WHERE leases.until <= $3 OR leases.holder = EXCLUDED.holder RETURNING holder",
        )
        .bind(name)
        .bind(holder)
        .bind(millis(now))
        .bind(millis(until))
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(row.is_some())
    }

    async fn purge_expired(&self, now: OffsetDateTime) -> StoreResult<u64> {
        let now_ms = millis(now);
        let day_ago = millis(now - time::Duration::days(1));
        // Small batches keep statements and their row locks short. SKIP LOCKED passes over a
        // row someone is writing right now (a rate-limit window being reopened, say) instead of
        // waiting for it; and FOR UPDATE re-checks the condition on the newest row version, so
        // a row brought back to life meanwhile is not deleted.
        let statements: [(&str, i64); 6] = [
            (
                "DELETE FROM challenges WHERE id IN \
                 (SELECT id FROM challenges WHERE expires_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
                day_ago,
            ),
            (
                "DELETE FROM outbox WHERE id IN \
                 (SELECT id FROM outbox WHERE status <> 'queued' AND created_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
                day_ago,
            ),
            (
                "DELETE FROM authorization_codes WHERE id IN \
                 (SELECT id FROM authorization_codes WHERE expires_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
                now_ms,
            ),
            (
                "DELETE FROM refresh_tokens WHERE id IN \
                 (SELECT id FROM refresh_tokens WHERE expires_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
                now_ms,
            ),
            (
                "DELETE FROM rate_limits WHERE key IN \
                 (SELECT key FROM rate_limits WHERE expires_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
                now_ms,
            ),
            (
                "DELETE FROM leases WHERE name IN \
                 (SELECT name FROM leases WHERE until < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
                day_ago,
            ),
        ];
        let mut total = 0;
        for (sql, cutoff) in statements {
            loop {
                let done = sqlx::query(sql)
                    .bind(cutoff)
                    .bind(PURGE_BATCH as i64)
                    .execute(&self.pool)
                    .await
                    .map_err(map_err)?;
                total += done.rows_affected();
                if done.rows_affected() < PURGE_BATCH {
                    break;
                }
            }
        }
        Ok(total)
    }

    async fn consume_by_token(
        &self,
        purpose: Purpose,
        link_hash: &[u8],
        app_id: &AppId,
        now: OffsetDateTime,
    ) -> StoreResult<TokenOutcome> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
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
        insert_event(&mut *tx, &event).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(TokenOutcome::Consumed(Box::new(challenge)))
    }

    async fn insert_organization(&self, org: &Organization) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
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
        let orgs = sqlx::query("SELECT * FROM organizations ORDER BY id COLLATE \"C\"")
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        let domains: Vec<(String, String)> =
            sqlx::query_as("SELECT domain, org_id FROM organization_domains ORDER BY domain")
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
        let readers: Vec<R<'_>> = orgs.iter().map(R).collect();
        rows::organizations(&readers.iter().map(|r| r as &dyn RowReader).collect::<Vec<_>>(), domains)
    }

    async fn update_organization(&self, org: &Organization) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
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
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn user_organizations(&self, user_id: &UserId) -> StoreResult<Vec<OrgId>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT org_id FROM memberships WHERE user_id = $1 ORDER BY org_id COLLATE \"C\"",
        )
        .bind(user_id.as_str())
        .fetch_all(&self.pool)
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

impl PostgresStore {
    async fn organization_where(&self, key: OrgKey, value: &str) -> StoreResult<Option<Organization>> {
        let sql = match key {
            OrgKey::Id => "SELECT * FROM organizations WHERE id = $1",
            OrgKey::Slug => "SELECT * FROM organizations WHERE slug = $1",
            OrgKey::Domain => {
                "SELECT * FROM organizations WHERE id = (SELECT org_id FROM organization_domains WHERE domain = $1)"
            }
        };
        let Some(row) = sqlx::query(sql).bind(value).fetch_optional(&self.pool).await.map_err(map_err)?
        else {
            return Ok(None);
        };
        let id: String = row.try_get("id").map_err(map_err)?;
        let domains: Vec<String> =
            sqlx::query_scalar("SELECT domain FROM organization_domains WHERE org_id = $1 ORDER BY domain")
                .bind(&id)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
        rows::organization(&R(&row), domains).map(Some)
    }
}

async fn insert_domains(conn: &mut PgConnection, org: &Organization) -> StoreResult<()> {
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
