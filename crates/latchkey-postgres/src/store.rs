use crate::events;
use crate::pool::{Pool, Query, Run, Tx};
use async_trait::async_trait;
use latchkey_core::challenge::Purpose;
use latchkey_core::challenge::{AuthMethod, AuthorizationCode, NewAuthorizationCode};
use latchkey_core::event::Event;
use latchkey_core::hosted::{BrowserSession, HostedRequest, HostedStatus, SignedIn};
use latchkey_core::id::{AppId, ChallengeId, FamilyId, HostedRequestId, OrgId, OutboxId, SecretId, UserId};
use latchkey_core::link_view::{self, LinkView, LinkViews, ViewMethod};
use latchkey_core::organization::Organization;
use latchkey_core::rate_limit::{self, RateLimit, RateLimitKind, RateLimited};
use latchkey_core::refresh::RefreshToken;
use latchkey_core::signing::SigningAlg;
use latchkey_core::{Application, Challenge, EmailAddress, User};
use latchkey_store::rows::{self, RowReader, millis};
use latchkey_store::{
    ChallengeRecord, ClientSecret, ConsumeOutcome, MailFate, NewOutboxMessage, OtpOutcome, OutboxMessage,
    RecordedView, RegistrationOutcome, RotateOutcome, SentMail, Store, StoreError, StoreResult,
    StoredDkimKey, StoredSigningKey, Suppression, TokenOutcome,
};
use latchkey_store::{DeliveryStatus, OutboxBacklog};
use sqlx::postgres::{PgConnectOptions, PgRow};
use sqlx::{Connection, PgConnection, Postgres, Row};
use std::str::FromStr;
use std::sync::{Arc, LazyLock};
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
    pool: Arc<Pool>,
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
        let pool = Pool::connect(connect, options.max_connections, options.acquire_timeout).await?;
        Ok(Self { pool: Arc::new(pool) })
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

/// The columns of a row whose names start with a prefix, read without it: a second record
/// joined into the row (`u_id`, `u_email`… for a user).
struct Prefixed<'a>(&'a PgRow, &'static str);

impl Prefixed<'_> {
    fn get<'r, T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>>(&'r self, col: &str) -> StoreResult<T> {
        self.0.try_get(format!("{}{col}", self.1).as_str()).map_err(map_err)
    }
}

impl RowReader for Prefixed<'_> {
    fn text(&self, col: &str) -> Result<Option<String>, StoreError> {
        self.get(col)
    }
    fn int(&self, col: &str) -> Result<Option<i64>, StoreError> {
        self.get(col)
    }
    fn bytes(&self, col: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(col)
    }
    fn boolean(&self, col: &str) -> Result<Option<bool>, StoreError> {
        self.get(col)
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

pub(crate) fn map_err(e: sqlx::Error) -> StoreError {
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

/// How many rows one purge statement deletes at most: short statements, short row locks.
const PURGE_BATCH: u64 = 2000;

// Column lists shared by statements, in the order of the binders below.
macro_rules! event_columns {
    () => {
        "id, kind, app_id, user_id, subject, detail, created_at"
    };
}
macro_rules! refresh_columns {
    () => {
        "id, token_hash, family_id, app_id, user_id, auth_method, auth_time, scope, created_at, expires_at, \
         rotated_at, revoked_at, org_id"
    };
}

const INSERT_EVENT: &str =
    concat!("INSERT INTO events (", event_columns!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7)");

/// Binds an event's columns, in the order of `event_columns!`.
fn bind_event<'q>(q: Query<'q>, e: &'q Event) -> Query<'q> {
    q.bind(e.id.as_str())
        .bind(e.kind.as_str())
        .bind(e.app_id.as_ref().map(|a| a.as_str()))
        .bind(e.user_id.as_ref().map(|u| u.as_str()))
        .bind(e.subject.as_deref())
        .bind(e.detail.as_deref())
        .bind(millis(e.created_at))
}

/// Binds a refresh token's columns, in the order of `refresh_columns!`.
fn bind_refresh<'q>(q: Query<'q>, t: &'q RefreshToken) -> Query<'q> {
    q.bind(t.id.as_str())
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
}

/// A request's rate limits as the arguments of `latchkey_count_hits` (migration 0006): sorted
/// by key, each with its place in the caller's order, which names the refusal.
struct Hits {
    keys: Vec<String>,
    window_starts: Vec<i64>,
    expiries: Vec<i64>,
    limits: Vec<i64>,
    positions: Vec<i32>,
    /// What is left of each limit's window, in the caller's order: the refusal's retry-after.
    left_ms: Vec<i64>,
    /// What each limit counts, in the caller's order.
    kinds: Vec<RateLimitKind>,
}

impl Hits {
    fn new(limits: &[RateLimit], now: OffsetDateTime) -> Self {
        let now_ms = millis(now);
        let windows: Vec<(i64, i64)> = limits.iter().map(|l| rate_limit::window(now_ms, l.window)).collect();
        let mut order: Vec<usize> = (0..limits.len()).collect();
        order.sort_by(|&a, &b| limits[a].key.cmp(&limits[b].key));
        let mut hits = Hits {
            keys: Vec::with_capacity(limits.len()),
            window_starts: Vec::with_capacity(limits.len()),
            expiries: Vec::with_capacity(limits.len()),
            limits: Vec::with_capacity(limits.len()),
            positions: Vec::with_capacity(limits.len()),
            left_ms: windows.iter().map(|&(_, left)| left).collect(),
            kinds: limits.iter().map(RateLimit::kind).collect(),
        };
        for i in order {
            let (start, left) = windows[i];
            hits.keys.push(limits[i].key.clone());
            hits.window_starts.push(start);
            hits.expiries.push(now_ms + left);
            hits.limits.push(i64::from(limits[i].limit));
            hits.positions.push(i32::try_from(i).unwrap_or(i32::MAX));
        }
        hits
    }

    /// Binds the five arguments of `latchkey_count_hits`.
    fn bind<'q>(&'q self, q: Query<'q>) -> Query<'q> {
        q.bind(&self.keys[..])
            .bind(&self.window_starts[..])
            .bind(&self.expiries[..])
            .bind(&self.limits[..])
            .bind(&self.positions[..])
    }

    /// The outcome of the count, from the place the function returned.
    fn outcome(&self, refused: Option<i32>) -> Result<(), RateLimited> {
        match refused {
            None => Ok(()),
            Some(place) => {
                let place = usize::try_from(place).ok();
                let left = place.and_then(|p| self.left_ms.get(p)).copied().unwrap_or(0);
                let kind = place.and_then(|p| self.kinds.get(p)).copied().unwrap_or(RateLimitKind::Other);
                Err(RateLimited { retry_after: time::Duration::milliseconds(left), kind })
            }
        }
    }
}

/// Consumes a challenge and signs its user in, in one statement: the `UPDATE` of the challenge
/// (given, with its own parameters from `$3`), then its user found or created and marked
/// verified, the membership of its organization, and the events that say so; `more` adds
/// statements of the caller's (parameters after the update's, the events' from `first_event`).
/// Answers one row, the challenge with its user's columns prefixed `u_`, or none when the update
/// matched nothing, in which case nothing was written.
///
/// Concurrent callers queue on the challenge's row lock; once the winner commits, READ COMMITTED
/// re-checks the update's condition on the new row version, which no longer matches. The user
/// upsert never fails on the unique e-mail: a concurrent insert of the same address makes this
/// one wait, then update the row the other committed. Foreign keys are checked at the end of the
/// statement, when the user exists.
///
/// The user's columns are listed one by one (a second `*` would repeat the challenge's names):
/// a column `rows::user` comes to read must be added there.
fn consume_sql(update: &str, more: &str, first_event: usize) -> String {
    let events = Consumption::new(AuthMethod::Link, OffsetDateTime::UNIX_EPOCH);
    let (consumed, next) = events::select_list(&events.consumed, first_event);
    let (created, next) = events::select_list(&events.created, next);
    let (joined, _) = events::select_list(&events.joined, next);
    format!(
        "WITH challenge AS ({update} RETURNING *), \
         signed_in AS ( \
           INSERT INTO users (id, email, email_verified, created_at, updated_at, last_sign_in_at) \
           SELECT $2, email, TRUE, $1, $1, $1 FROM challenge \
           ON CONFLICT (email) DO UPDATE SET email_verified = TRUE, updated_at = $1, last_sign_in_at = $1 \
           RETURNING *), \
         joined AS ( \
           INSERT INTO memberships (org_id, user_id, created_at) \
           SELECT c.org_id, u.id, $1 FROM challenge c, signed_in u WHERE c.org_id IS NOT NULL \
           ON CONFLICT DO NOTHING RETURNING org_id), \
         logged AS ( \
           INSERT INTO events ({columns}) \
           SELECT {consumed} FROM challenge c, signed_in u \
           UNION ALL SELECT {created} FROM challenge c, signed_in u WHERE u.id = $2 \
           UNION ALL SELECT {joined} FROM challenge c, signed_in u, joined j){more} \
         SELECT c.*, u.id AS u_id, u.email AS u_email, u.email_verified AS u_email_verified, u.name AS u_name, \
           u.metadata AS u_metadata, u.locale AS u_locale, u.created_at AS u_created_at, \
           u.updated_at AS u_updated_at, u.last_sign_in_at AS u_last_sign_in_at \
         FROM challenge c, signed_in u",
        columns = event_columns!(),
    )
}

/// What a `consume_sql` statement binds besides the update's own parameters: the time and the
/// user that would be created (`$1`, `$2`), and the events that may be written, made before the
/// statement so that their ids keep their order. The events are those of the constructors, with
/// the challenge (`c`), the user (`u`) and the membership (`j`) late: the statement finds them.
struct Consumption {
    now_ms: i64,
    new_user: UserId,
    consumed: Event,
    created: Event,
    joined: Event,
}

impl Consumption {
    fn new(method: AuthMethod, now: OffsetDateTime) -> Self {
        let app = AppId::from_trusted(events::late("c.app_id"));
        let challenge = ChallengeId::from_trusted(events::late("c.id"));
        let user = UserId::from_trusted(events::late("u.id"));
        let org = OrgId::from_trusted(events::late("j.org_id"));
        Self {
            now_ms: millis(now),
            new_user: UserId::generate(now),
            consumed: Event::challenge_consumed(&app, &challenge, &user, method, now),
            created: Event::user_created(&app, &user, None, now),
            joined: Event::membership_created(&app, &user, &org, now),
        }
    }

    /// Binds `$1` and `$2`.
    fn bind<'q>(&'q self, q: Query<'q>) -> Query<'q> {
        q.bind(self.now_ms).bind(self.new_user.as_str())
    }

    /// Binds the events' parameters, last.
    fn bind_events<'q>(&'q self, q: Query<'q>) -> Query<'q> {
        events::bind(events::bind(events::bind(q, &self.consumed), &self.created), &self.joined)
    }

    /// The consumed challenge and its user from the statement's row.
    fn read(row: &PgRow) -> StoreResult<(Challenge, User)> {
        Ok((rows::challenge(&R(row))?, rows::user(&Prefixed(row, "u_"))?))
    }
}

/// Revokes the unrevoked tokens of a family; returns how many.
///
/// Revoking several rows locks them one by one. The rows are locked in id order first
/// (`ORDER BY` comes before `FOR UPDATE`), so revocations of overlapping sets (the losers of
/// a rotation race each revoking the family, say) queue instead of deadlocking. A row revoked
/// meanwhile no longer matches once its lock is granted, and is not counted twice.
async fn revoke_family(pool: &Pool, family_id: &FamilyId, now_ms: i64) -> StoreResult<u64> {
    let done = sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $2 WHERE id IN ( \
           SELECT id FROM refresh_tokens WHERE family_id = $1 AND revoked_at IS NULL ORDER BY id FOR UPDATE)",
    )
    .bind(family_id.as_str())
    .bind(now_ms)
    .execute_on(pool)
    .await?;
    Ok(done.rows_affected())
}

// Ids are ordered with COLLATE "C": byte order, which is creation order for our ids, whatever
// the database's collation.
#[async_trait]
impl Store for PostgresStore {
    async fn migrate(&self) -> StoreResult<()> {
        // A connection of its own without the statement timeout: a long migration, or waiting
        // for another instance's migration (the migrator holds an advisory lock), is not an error.
        let mut conn = PgConnection::connect_with(self.pool.connect_options()).await.map_err(map_err)?;
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
        sqlx::query("SELECT 1").execute_on(&self.pool).await?;
        Ok(())
    }

    async fn pending_migrations(&self) -> StoreResult<u32> {
        let rows = sqlx::query("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all_on(&self.pool)
            .await?;
        let applied: Vec<i64> = rows.iter().filter_map(|r| r.try_get(0).ok()).collect();
        let missing = MIGRATOR
            .iter()
            .filter(|m| !m.migration_type.is_down_migration() && !applied.contains(&m.version));
        Ok(missing.count() as u32)
    }

    async fn outbox_backlog(&self) -> StoreResult<OutboxBacklog> {
        let row = sqlx::query("SELECT COUNT(*), MIN(created_at) FROM outbox WHERE status = 'queued'")
            .fetch_one_on(&self.pool)
            .await?;
        let queued: i64 = row.try_get(0).map_err(map_err)?;
        let oldest: Option<i64> = row.try_get(1).map_err(map_err)?;
        Ok(OutboxBacklog { queued: queued as u64, oldest_queued_at: oldest.and_then(rows::from_millis) })
    }

    async fn record_link_views(&self, views: &[LinkView], keep: u32) -> StoreResult<Vec<RecordedView>> {
        // One statement per view: counted, kept while under the bound, and the challenge's
        // application and delivery time read back for the event.
        const RECORD: &str = "WITH target AS (SELECT id, app_id FROM challenges WHERE id = $1), \
             counted AS ( \
               INSERT INTO link_view_counts (challenge_id, total, pressed_at) SELECT id, 1, $2 FROM target \
               ON CONFLICT (challenge_id) DO UPDATE SET total = link_view_counts.total + 1, \
               pressed_at = COALESCE(link_view_counts.pressed_at, EXCLUDED.pressed_at) RETURNING total), \
             kept AS ( \
               INSERT INTO link_views (challenge_id, seq, at, method, ip, user_agent) \
               SELECT $1, total, $3, $4, $5, $6 FROM counted WHERE total <= $7 RETURNING seq) \
             SELECT (SELECT app_id FROM target), (SELECT COUNT(*) FROM kept), \
               (SELECT MIN(sent_at) FROM outbox WHERE challenge_id = $1)";
        let mut recorded = Vec::with_capacity(views.len());
        for view in views {
            let pressed = (view.method == ViewMethod::Post).then(|| millis(view.at));
            let row = sqlx::query(RECORD)
                .bind(view.challenge_id.as_str())
                .bind(pressed)
                .bind(millis(view.at))
                .bind(view.method.as_str())
                .bind(view.ip.as_deref())
                .bind(view.user_agent.as_deref())
                .bind(i64::from(keep))
                .fetch_one_on(&self.pool)
                .await?;
            let app_id: Option<String> = row.try_get(0).map_err(map_err)?;
            let kept: i64 = row.try_get(1).map_err(map_err)?;
            let delivered: Option<i64> = row.try_get(2).map_err(map_err)?;
            let signs = link_view::signs_on_arrival(view, delivered.and_then(rows::from_millis));
            if let (Some(app_id), true) = (app_id, kept > 0) {
                self.insert_event(&Event::link_viewed(&AppId::from_trusted(app_id), view, &signs)).await?;
            }
            recorded.push(RecordedView { kept: kept > 0, signs });
        }
        Ok(recorded)
    }

    async fn link_views(&self, challenge_id: &ChallengeId) -> StoreResult<LinkViews> {
        let id = challenge_id.as_str();
        let views = sqlx::query("SELECT * FROM link_views WHERE challenge_id = $1 ORDER BY seq")
            .bind(id)
            .fetch_all_on(&self.pool)
            .await?;
        let row = sqlx::query(
            "SELECT (SELECT total FROM link_view_counts WHERE challenge_id = $1), \
             (SELECT pressed_at FROM link_view_counts WHERE challenge_id = $1), \
             (SELECT MIN(sent_at) FROM outbox WHERE challenge_id = $1)",
        )
        .bind(id)
        .fetch_one_on(&self.pool)
        .await?;
        let total: Option<i64> = row.try_get(0).map_err(map_err)?;
        let pressed: Option<i64> = row.try_get(1).map_err(map_err)?;
        let delivered: Option<i64> = row.try_get(2).map_err(map_err)?;
        Ok(LinkViews {
            views: all(&views, rows::link_view)?,
            total: total.unwrap_or(0) as u64,
            delivered_at: delivered.and_then(rows::from_millis),
            pressed_at: pressed.and_then(rows::from_millis),
        })
    }

    async fn insert_application(&self, app: &Application, secret: Option<&ClientSecret>) -> StoreResult<()> {
        const INSERT: &str = "INSERT INTO applications (id, client_id, name, public, redirect_uris, \
             default_redirect_uri, settings, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
        // The secret in the same statement: both rows or neither.
        const INSERT_WITH_SECRET: &str = "WITH app AS (INSERT INTO applications (id, client_id, name, public, \
             redirect_uris, default_redirect_uri, settings, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)) \
             INSERT INTO client_secrets (id, app_id, hash, created_at) VALUES ($10, $1, $11, $12)";
        let (uris, settings) = rows::application_json(app);
        let query = sqlx::query(if secret.is_some() { INSERT_WITH_SECRET } else { INSERT })
            .bind(app.id.as_str())
            .bind(&app.client_id)
            .bind(&app.name)
            .bind(app.public)
            .bind(uris)
            .bind(app.default_redirect_uri.as_ref().map(|u| u.as_str()))
            .bind(settings)
            .bind(millis(app.created_at))
            .bind(millis(app.updated_at));
        let query = match secret {
            Some(s) => query.bind(s.id.as_str()).bind(&s.hash).bind(millis(s.created_at)),
            None => query,
        };
        query.execute_on(&self.pool).await?;
        Ok(())
    }

    async fn application(&self, id: &AppId) -> StoreResult<Option<Application>> {
        let row = sqlx::query("SELECT * FROM applications WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional_on(&self.pool)
            .await?;
        one(row, rows::application)
    }

    async fn list_applications(&self) -> StoreResult<Vec<Application>> {
        let rows = sqlx::query(r#"SELECT * FROM applications ORDER BY id COLLATE "C""#)
            .fetch_all_on(&self.pool)
            .await?;
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
        .execute_on(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_application(&self, id: &AppId) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM applications WHERE id = $1")
            .bind(id.as_str())
            .execute_on(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_client_secret(&self, s: &ClientSecret) -> StoreResult<()> {
        sqlx::query("INSERT INTO client_secrets (id, app_id, hash, created_at) VALUES ($1, $2, $3, $4)")
            .bind(s.id.as_str())
            .bind(s.app_id.as_str())
            .bind(&s.hash)
            .bind(millis(s.created_at))
            .execute_on(&self.pool)
            .await?;
        Ok(())
    }

    async fn client_secrets(&self, app_id: &AppId) -> StoreResult<Vec<ClientSecret>> {
        let rows = sqlx::query(r#"SELECT * FROM client_secrets WHERE app_id = $1 ORDER BY id COLLATE "C""#)
            .bind(app_id.as_str())
            .fetch_all_on(&self.pool)
            .await?;
        all(&rows, rows::client_secret)
    }

    async fn delete_client_secret(&self, app_id: &AppId, id: &SecretId) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM client_secrets WHERE id = $1 AND app_id = $2")
            .bind(id.as_str())
            .bind(app_id.as_str())
            .execute_on(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn application_by_secret_hash(&self, hash: &[u8]) -> StoreResult<Option<Application>> {
        let row = sqlx::query(
            "SELECT a.* FROM applications a JOIN client_secrets s ON s.app_id = a.id WHERE s.hash = $1",
        )
        .bind(hash)
        .fetch_optional_on(&self.pool)
        .await?;
        one(row, rows::application)
    }

    async fn create_challenge(
        &self,
        c: &Challenge,
        mail: Option<&NewOutboxMessage>,
        limits: &[RateLimit],
        now: OffsetDateTime,
    ) -> StoreResult<Result<MailFate, RateLimited>> {
        // One statement, atomic without a transaction of its own: the counters, then (unless
        // refused) the challenge, its e-mail and its event, which are written from the
        // challenge's row and so only when it was. An e-mail to a suppressed address is
        // written `suppressed` without its body, with an event of its own.
        macro_rules! create_sql {
            // Each part is a list of string pieces, each followed by a comma.
            ([$($mail:tt)*], [$($answer:tt)*]) => {
                concat!(
                    "WITH counted AS (SELECT latchkey_count_hits($1, $2, $3, $4, $5) AS refused), \
                     challenge AS ( \
                       INSERT INTO challenges (id, purpose, app_id, email, redirect_uri, state, nonce, \
                         code_challenge, client_ip, user_agent, create_user, link_hash, otp_hash, otp_attempts, \
                         status, created_at, expires_at, otp_expires_at, consumed_at, org_id, context_data, \
                         created_by, code_is_credential, redirect_uri_given) \
                       SELECT $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, \
                         $23, $24, $25, $26, $27, $28, $29 FROM counted WHERE refused IS NULL \
                       RETURNING id), \
                     logged AS (INSERT INTO events (",
                    event_columns!(),
                    ") SELECT $30, $31, $32, $33, $34, $35, $36 FROM challenge)",
                    $($mail)*
                    " SELECT refused",
                    $($answer)*
                    " FROM counted"
                )
            };
        }
        const PLAIN: &str = create_sql!([], []);
        const WITH_MAIL: &str = create_sql!(
            [
                ", suppressed AS (SELECT EXISTS (SELECT 1 FROM suppressions WHERE email = $9 AND until > $43) AS yes), \
             queued AS (INSERT INTO outbox (id, app_id, challenge_id, sealed, status, attempts, \
               next_attempt_at, created_at) \
               SELECT $37, $38, $39, CASE WHEN s.yes THEN NULL ELSE $40 END, \
                 CASE WHEN s.yes THEN 'suppressed' ELSE $42 END, 0, $41, $41 \
               FROM challenge, suppressed s RETURNING status), \
             noted AS (INSERT INTO events (",
                event_columns!(),
                ") SELECT $44, $45, $46, $47, $48, $49, $50 FROM queued WHERE status = 'suppressed')",
            ],
            [", (SELECT status FROM queued) AS mail_status",]
        );
        let hits = Hits::new(limits, now);
        let event = Event::challenge_created(&c.app_id, &c.id, c.created_at);
        let suppressed = Event::mail_suppressed(&c.app_id, &c.id, now);
        let query = hits
            .bind(sqlx::query(if mail.is_some() { WITH_MAIL } else { PLAIN }))
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
            .bind(c.code_is_credential)
            .bind(c.redirect_uri_given);
        let mut query = bind_event(query, &event);
        if let Some(m) = mail {
            query = query
                .bind(m.id.as_str())
                .bind(m.app_id.as_ref().map(|a| a.as_str()))
                .bind(m.challenge_id.as_ref().map(|c| c.as_str()))
                .bind(&m.sealed)
                .bind(millis(m.created_at))
                .bind(m.initial_status().as_str())
                .bind(millis(now));
            query = bind_event(query, &suppressed);
        }
        let row = query.fetch_one_on(&self.pool).await?;
        let refused: Option<i32> = row.try_get("refused").map_err(map_err)?;
        let fate = match mail {
            None => MailFate::NoMail,
            Some(_) => {
                let status: Option<String> = row.try_get("mail_status").map_err(map_err)?;
                if status.as_deref() == Some(DeliveryStatus::Suppressed.as_str()) {
                    MailFate::Suppressed
                } else {
                    MailFate::Written
                }
            }
        };
        Ok(hits.outcome(refused).map(|()| fate))
    }

    async fn hit_rate_limits(
        &self,
        limits: &[RateLimit],
        now: OffsetDateTime,
    ) -> StoreResult<Result<(), RateLimited>> {
        if limits.is_empty() {
            return Ok(Ok(()));
        }
        let hits = Hits::new(limits, now);
        let refused: Option<i32> = hits
            .bind(sqlx::query("SELECT latchkey_count_hits($1, $2, $3, $4, $5)"))
            .fetch_one_on(&self.pool)
            .await?
            .try_get(0)
            .map_err(map_err)?;
        Ok(hits.outcome(refused))
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
        .fetch_optional_on(&self.pool).await?;
        one(row, rows::challenge)
    }

    async fn consume_by_otp(
        &self,
        id: &ChallengeId,
        otp_hash: &[u8],
        max_attempts: u32,
        now: OffsetDateTime,
    ) -> StoreResult<OtpOutcome> {
        // As in consume_link: callers racing on the challenge (by code or by link) queue on the
        // row lock, and READ COMMITTED re-checks the condition on the winner's row version.
        static CONSUME: LazyLock<String> = LazyLock::new(|| {
            consume_sql(
                "UPDATE challenges SET status = 'consumed', consumed_at = $1 \
                 WHERE id = $3 AND status = 'pending' AND otp_hash = $4 AND otp_expires_at > $1 AND otp_attempts < $5",
                "",
                6,
            )
        });
        // Wrong code: count the attempt. Concurrent wrong guesses each count once (each
        // increments the version the previous one committed, holding its lock until the
        // transaction ends), and exactly one of them reaches the limit and revokes.
        const COUNT_WRONG: &str = "UPDATE challenges SET otp_attempts = otp_attempts + 1, \
             status = CASE WHEN otp_attempts + 1 >= $3 THEN 'revoked' ELSE status END, \
             consumed_at = CASE WHEN otp_attempts + 1 >= $3 THEN $2 ELSE consumed_at END \
             WHERE id = $1 AND status = 'pending' AND otp_expires_at > $2 RETURNING app_id, otp_attempts";
        let consumption = Consumption::new(AuthMethod::Otp, now);
        let consumed = consumption
            .bind(sqlx::query(&CONSUME))
            .bind(id.as_str())
            .bind(otp_hash)
            .bind(i64::from(max_attempts));
        let consumed = consumption.bind_events(consumed).fetch_optional_on(&self.pool).await?;
        if let Some(row) = consumed {
            let (challenge, user) = Consumption::read(&row)?;
            return Ok(OtpOutcome::Consumed { challenge: Box::new(challenge), user });
        }
        // The event's detail carries the count the update made: the count comes back from the
        // update, and the event, built from it, is written in the same transaction. (Not the
        // path of a sign-in: only wrong guesses pay for the transaction's round trips.)
        let mut tx = Tx::begin(&self.pool).await?;
        let failed = sqlx::query(COUNT_WRONG)
            .bind(id.as_str())
            .bind(millis(now))
            .bind(i64::from(max_attempts))
            .fetch_optional(tx.conn())
            .await
            .map_err(map_err)?;
        let Some(row) = failed else {
            tx.commit().await?;
            return Ok(OtpOutcome::Gone);
        };
        let app_id: String = row.try_get("app_id").map_err(map_err)?;
        let attempts: i64 = row.try_get("otp_attempts").map_err(map_err)?;
        let counted = u32::try_from(attempts).unwrap_or(u32::MAX);
        let event = Event::wrong_code(&AppId::from_trusted(app_id), id, counted, now);
        bind_event(sqlx::query(INSERT_EVENT), &event).execute(tx.conn()).await.map_err(map_err)?;
        tx.commit().await?;
        let left = i64::from(max_attempts).saturating_sub(attempts).max(0);
        Ok(OtpOutcome::Wrong { attempts_left: u32::try_from(left).unwrap_or(0) })
    }

    async fn challenge(&self, app_id: &AppId, id: &ChallengeId) -> StoreResult<Option<ChallengeRecord>> {
        let row = sqlx::query(
            "SELECT c.*, o.status AS delivery_status, o.attempts AS delivery_attempts, \
             o.last_error AS delivery_error, o.relay AS delivery_relay \
             FROM challenges c LEFT JOIN outbox o ON o.challenge_id = c.id \
             WHERE c.id = $1 AND c.app_id = $2",
        )
        .bind(id.as_str())
        .bind(app_id.as_str())
        .fetch_optional_on(&self.pool)
        .await?;
        one(row, rows::challenge_record)
    }

    async fn challenge_by_link(&self, link_hash: &[u8]) -> StoreResult<Option<Challenge>> {
        let row = sqlx::query("SELECT * FROM challenges WHERE link_hash = $1")
            .bind(link_hash)
            .fetch_optional_on(&self.pool)
            .await?;
        one(row, rows::challenge)
    }

    async fn revoke_challenge(
        &self,
        app_id: &AppId,
        id: &ChallengeId,
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        const REVOKE: &str = concat!(
            "WITH revoked AS ( \
               UPDATE challenges SET status = 'revoked', consumed_at = $3 \
               WHERE id = $1 AND app_id = $2 AND status = 'pending' RETURNING id) \
             INSERT INTO events (",
            event_columns!(),
            ") SELECT $4, $5, $6, $7, $8, $9, $10 FROM revoked"
        );
        let event = Event::challenge_revoked(app_id, id, now);
        let query = sqlx::query(REVOKE).bind(id.as_str()).bind(app_id.as_str()).bind(millis(now));
        let done = bind_event(query, &event).execute_on(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    async fn consume_link(
        &self,
        link_hash: &[u8],
        code: &NewAuthorizationCode,
        now: OffsetDateTime,
    ) -> StoreResult<ConsumeOutcome> {
        static CONSUME: LazyLock<String> = LazyLock::new(|| {
            consume_sql(
                "UPDATE challenges SET status = 'consumed', consumed_at = $1 \
                 WHERE link_hash = $3 AND purpose = 'login' AND status = 'pending' AND expires_at > $1",
                ", issued AS ( \
                   INSERT INTO authorization_codes (id, code_hash, app_id, challenge_id, user_id, redirect_uri, \
                     code_challenge, nonce, auth_method, auth_time, expires_at, org_id, code_is_credential, \
                     redirect_uri_given) \
                   SELECT $4, $5, c.app_id, c.id, u.id, c.redirect_uri, c.code_challenge, c.nonce, $6, $1, $7, \
                     c.org_id, c.code_is_credential, c.redirect_uri_given FROM challenge c, signed_in u)",
                8,
            )
        });
        let consumption = Consumption::new(AuthMethod::Link, now);
        let consumed = consumption
            .bind(sqlx::query(&CONSUME))
            .bind(link_hash)
            .bind(code.id.as_str())
            .bind(&code.code_hash)
            .bind(AuthMethod::Link.amr())
            .bind(millis(code.expires_at));
        let consumed = consumption.bind_events(consumed).fetch_optional_on(&self.pool).await?;
        let Some(row) = consumed else {
            // Nothing was written; a read tells an unknown link from a spent one.
            return Ok(
                match self.challenge_by_link(link_hash).await?.filter(|c| c.purpose == Purpose::Login) {
                    None => ConsumeOutcome::NotFound,
                    Some(c) => ConsumeOutcome::Gone(c.status_at(now)),
                },
            );
        };
        let (challenge, user) = Consumption::read(&row)?;
        let issued = code.issued_for(&challenge, &user.id, now);
        Ok(ConsumeOutcome::Consumed { challenge: Box::new(challenge), user, code: Box::new(issued) })
    }

    async fn authorization_code(&self, code_hash: &[u8]) -> StoreResult<Option<(AuthorizationCode, User)>> {
        let row =
            sqlx::query(rows::CODE_AND_USER_BY_HASH).bind(code_hash).fetch_optional_on(&self.pool).await?;
        one(row, rows::code_and_user)
    }

    async fn redeem_authorization_code(
        &self,
        code_hash: &[u8],
        app_id: &AppId,
        now: OffsetDateTime,
        then: Option<(&RefreshToken, &Event)>,
    ) -> StoreResult<Option<AuthorizationCode>> {
        // Of concurrent redeemers, one updates the row; the others wait for its lock and no
        // longer match. The refresh token and its event are written from the redeemed row, so
        // only when the code was redeemed, and in the same statement.
        const REDEEM: &str = "UPDATE authorization_codes SET used_at = $3 \
             WHERE code_hash = $1 AND app_id = $2 AND used_at IS NULL AND expires_at > $3 RETURNING *";
        const REDEEM_AND_ISSUE: &str = concat!(
            "WITH code AS ( \
               UPDATE authorization_codes SET used_at = $3 \
               WHERE code_hash = $1 AND app_id = $2 AND used_at IS NULL AND expires_at > $3 RETURNING *), \
             issued AS (INSERT INTO refresh_tokens (",
            refresh_columns!(),
            ") SELECT $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16 FROM code), \
             logged AS (INSERT INTO events (",
            event_columns!(),
            ") SELECT $17, $18, $19, $20, $21, $22, $23 FROM code) \
             SELECT * FROM code"
        );
        let query = sqlx::query(if then.is_some() { REDEEM_AND_ISSUE } else { REDEEM })
            .bind(code_hash)
            .bind(app_id.as_str())
            .bind(millis(now));
        let query = match then {
            Some((refresh, event)) => bind_event(bind_refresh(query, refresh), event),
            None => query,
        };
        let row = query.fetch_optional_on(&self.pool).await?;
        one(row, rows::authorization_code)
    }

    async fn user(&self, id: &UserId) -> StoreResult<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional_on(&self.pool)
            .await?;
        one(row, rows::user)
    }

    async fn user_by_email(&self, email: &EmailAddress) -> StoreResult<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE email = $1")
            .bind(email.as_str())
            .fetch_optional_on(&self.pool)
            .await?;
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
                 RETURNING o.id, o.app_id, o.sealed, o.attempts, o.created_at
               )
               SELECT * FROM leased ORDER BY created_at, id COLLATE "C""#,
        )
        .bind(millis(now))
        .bind(millis(lease_until))
        .bind(i64::from(limit))
        .fetch_all_on(&self.pool)
        .await?;
        all(&rows, rows::outbox_message)
    }

    async fn release_held_mail(
        &self,
        app_id: &AppId,
        challenge_id: &ChallengeId,
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        let released = sqlx::query(
            "UPDATE outbox SET status = 'queued', next_attempt_at = $3 \
             WHERE challenge_id = $1 AND app_id = $2 AND status = 'held'",
        )
        .bind(challenge_id.as_str())
        .bind(app_id.as_str())
        .bind(millis(now))
        .execute_on(&self.pool)
        .await?;
        Ok(released.rows_affected() > 0)
    }

    async fn renew_outbox_leases(&self, ids: &[OutboxId], until: OffsetDateTime) -> StoreResult<u64> {
        let ids: Vec<&str> = ids.iter().map(OutboxId::as_str).collect();
        let done = sqlx::query("UPDATE outbox SET lease_until = $2 WHERE id = ANY($1) AND status = 'queued' AND lease_until IS NOT NULL")
            .bind(ids)
            .bind(millis(until))
            .execute_on(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn release_leftover_outbox_leases(&self) -> StoreResult<u64> {
        // Several live instances share the outbox: a lease here may be a live one's. A dead
        // instance's leases lapse on their own, since nobody renews them.
        Ok(0)
    }

    async fn outbox_sent(&self, sent: &[SentMail], now: OffsetDateTime) -> StoreResult<()> {
        // The application and the challenge come from the message's row.
        //
        // Committed without waiting for the WAL to reach the disk (`synchronous_commit` off for
        // this statement's transaction): until the record is durable a crash of ours sends the
        // message again, so the sooner the better; what a crash of the database server could
        // lose (its last fraction of a second) is a record, and costs a duplicate, never a mail.
        fn delivered(now: OffsetDateTime) -> Event {
            let app = AppId::from_trusted(events::late("s.app_id"));
            Event::challenge_delivered(Some(&app), &events::late("COALESCE(s.challenge_id, $1)"), now)
        }
        static SENT: LazyLock<String> = LazyLock::new(|| {
            let (event, _) = events::select_list(&delivered(OffsetDateTime::UNIX_EPOCH), 4);
            format!(
                "WITH quick AS (SELECT set_config('synchronous_commit', 'off', true)), \
                 sent AS ( \
                   UPDATE outbox SET status = 'sent', sent_at = $2, attempts = attempts + 1, sealed = NULL, \
                   lease_until = NULL, last_error = NULL, relay = $3 WHERE id = $1 RETURNING app_id, challenge_id) \
                 INSERT INTO events ({}) SELECT {event} FROM sent s, quick",
                event_columns!()
            )
        });
        // One statement per message: each writes its own event, whose id is a parameter.
        for mail in sent {
            let event = delivered(now);
            let query =
                sqlx::query(&SENT).bind(mail.id.as_str()).bind(millis(now)).bind(mail.relay.as_deref());
            events::bind(query, &event).execute_on(&self.pool).await?;
        }
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
        query.execute_on(&self.pool).await?;
        Ok(())
    }

    async fn signing_keys(&self) -> StoreResult<Vec<StoredSigningKey>> {
        let rows = sqlx::query(r#"SELECT * FROM signing_keys ORDER BY created_at, kid COLLATE "C""#)
            .fetch_all_on(&self.pool)
            .await?;
        all(&rows, rows::signing_key)
    }

    async fn suppress(&self, suppression: &Suppression, app_id: Option<&AppId>) -> StoreResult<()> {
        const SUPPRESS: &str = concat!(
            "WITH suppressed AS (INSERT INTO suppressions (email, reason, created_at, until) VALUES ($1, $2, $3, $4) \
               ON CONFLICT (email) DO UPDATE SET reason = excluded.reason, created_at = excluded.created_at, \
               until = excluded.until) \
             INSERT INTO events (",
            event_columns!(),
            ") VALUES ($5, $6, $7, $8, $9, $10, $11)"
        );
        let s = suppression;
        let event = Event::suppression_created(app_id, s.email.as_str(), s.created_at);
        let query = sqlx::query(SUPPRESS)
            .bind(s.email.as_str())
            .bind(&s.reason)
            .bind(millis(s.created_at))
            .bind(millis(s.until));
        bind_event(query, &event).execute_on(&self.pool).await?;
        Ok(())
    }

    async fn suppression(
        &self,
        email: &EmailAddress,
        now: OffsetDateTime,
    ) -> StoreResult<Option<Suppression>> {
        let row = sqlx::query("SELECT * FROM suppressions WHERE email = $1 AND until > $2")
            .bind(email.as_str())
            .bind(millis(now))
            .fetch_optional_on(&self.pool)
            .await?;
        one(row, rows::suppression)
    }

    async fn list_suppressions(
        &self,
        after: Option<&EmailAddress>,
        limit: u32,
        now: OffsetDateTime,
    ) -> StoreResult<Vec<Suppression>> {
        let rows = sqlx::query(
            "SELECT * FROM suppressions WHERE email > COALESCE($1::text, '') AND until > $2 ORDER BY email LIMIT $3",
        )
        .bind(after.map(|a| a.as_str()))
        .bind(millis(now))
        .bind(i64::from(limit))
        .fetch_all_on(&self.pool)
        .await?;
        all(&rows, rows::suppression)
    }

    async fn delete_suppression(&self, email: &EmailAddress, now: OffsetDateTime) -> StoreResult<bool> {
        const DELETE: &str = concat!(
            "WITH lifted AS (DELETE FROM suppressions WHERE email = $1 AND until > $2 RETURNING email), \
             logged AS (INSERT INTO events (",
            event_columns!(),
            ") SELECT $3, $4, $5, $6, $7, $8, $9 FROM lifted) \
             SELECT count(*) AS lifted FROM lifted"
        );
        let event = Event::suppression_deleted(email.as_str(), now);
        let query = sqlx::query(DELETE).bind(email.as_str()).bind(millis(now));
        let row = bind_event(query, &event).fetch_one_on(&self.pool).await?;
        let lifted: i64 = row.try_get("lifted").map_err(map_err)?;
        Ok(lifted > 0)
    }

    async fn dkim_key(&self, selector: &str) -> StoreResult<Option<StoredDkimKey>> {
        let row = sqlx::query("SELECT * FROM dkim_keys WHERE selector = $1")
            .bind(selector)
            .fetch_optional_on(&self.pool)
            .await?;
        one(row, rows::dkim_key)
    }

    async fn insert_dkim_key(&self, key: &StoredDkimKey) -> StoreResult<StoredDkimKey> {
        sqlx::query(
            "INSERT INTO dkim_keys (selector, algorithm, sealed_pkcs8, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (selector) DO NOTHING",
        )
        .bind(&key.selector)
        .bind(&key.algorithm)
        .bind(&key.sealed_pkcs8)
        .bind(millis(key.created_at))
        .execute_on(&self.pool)
        .await?;
        self.dkim_key(&key.selector).await?.ok_or_else(|| StoreError::Corrupt("DKIM key"))
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
        .execute_on(&self.pool).await?;
        Ok(())
    }

    async fn retire_signing_keys(&self, alg: SigningAlg, now: OffsetDateTime) -> StoreResult<()> {
        sqlx::query("UPDATE signing_keys SET retired_at = $2 WHERE alg = $1 AND retired_at IS NULL")
            .bind(alg.as_str())
            .bind(millis(now))
            .execute_on(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_signing_keys_retired_before(&self, cutoff: OffsetDateTime) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at < $1")
            .bind(millis(cutoff))
            .execute_on(&self.pool)
            .await?;
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
        .execute_on(&self.pool).await?;
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
        .fetch_all_on(&self.pool).await?;
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
        .execute_on(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_user(&self, id: &UserId) -> StoreResult<bool> {
        // Its refresh tokens and codes go with it (ON DELETE CASCADE).
        let done =
            sqlx::query("DELETE FROM users WHERE id = $1").bind(id.as_str()).execute_on(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_refresh_token(&self, t: &RefreshToken, event: Option<&Event>) -> StoreResult<()> {
        const INSERT: &str = concat!(
            "INSERT INTO refresh_tokens (",
            refresh_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        );
        // One statement: both rows or neither.
        const INSERT_WITH_EVENT: &str = concat!(
            "WITH issued AS (INSERT INTO refresh_tokens (",
            refresh_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)) \
             INSERT INTO events (",
            event_columns!(),
            ") VALUES ($14, $15, $16, $17, $18, $19, $20)"
        );
        let query = match event {
            Some(event) => bind_event(bind_refresh(sqlx::query(INSERT_WITH_EVENT), t), event),
            None => bind_refresh(sqlx::query(INSERT), t),
        };
        query.execute_on(&self.pool).await?;
        Ok(())
    }

    async fn rotate_refresh_token(
        &self,
        token_hash: &[u8],
        app_id: &AppId,
        next: &RefreshToken,
        event: Option<&Event>,
        now: OffsetDateTime,
    ) -> StoreResult<RotateOutcome> {
        // Single use rests on the conditional update: of callers presenting the same token at
        // once, one rotates it; the others wait for its row lock, no longer match, and find
        // the token rotated out below, which is reuse. The next token and the event are written
        // from the rotated row, so only when it was rotated.
        macro_rules! rotate_sql {
            ($event:literal) => {
                concat!(
                    "WITH old AS ( \
                       UPDATE refresh_tokens SET rotated_at = $3 WHERE token_hash = $1 AND app_id = $2 \
                       AND rotated_at IS NULL AND revoked_at IS NULL AND expires_at > $3 RETURNING *), \
                     issued AS (INSERT INTO refresh_tokens (",
                    refresh_columns!(),
                    ") SELECT $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16 FROM old)",
                    $event,
                    " SELECT * FROM old"
                )
            };
        }
        const ROTATE: &str = rotate_sql!("");
        const ROTATE_WITH_EVENT: &str = rotate_sql!(
            ", logged AS (INSERT INTO events (id, kind, app_id, user_id, subject, detail, created_at) \
               SELECT $17, $18, $19, $20, $21, $22, $23 FROM old)"
        );
        // A statement of its own, so that its snapshot sees the rotation that made the first one
        // miss. The family is revoked as in revoke_family (rows locked in id order).
        // The user and the family come from the known token's row.
        fn reused(app_id: &AppId, now: OffsetDateTime) -> Event {
            let user = UserId::from_trusted(events::late("k.user_id"));
            let family = FamilyId::from_trusted(events::late("k.family_id"));
            Event::refresh_reuse_detected(app_id, &user, &family, now)
        }
        static REUSED: LazyLock<String> = LazyLock::new(|| {
            let shape = reused(&AppId::generate(OffsetDateTime::UNIX_EPOCH), OffsetDateTime::UNIX_EPOCH);
            let (event, _) = events::select_list(&shape, 4);
            format!(
                "WITH known AS ( \
                   SELECT family_id, user_id FROM refresh_tokens \
                   WHERE token_hash = $1 AND app_id = $2 AND rotated_at IS NOT NULL), \
                 revoked AS ( \
                   UPDATE refresh_tokens SET revoked_at = $3 WHERE id IN ( \
                     SELECT id FROM refresh_tokens WHERE family_id = (SELECT family_id FROM known) \
                     AND revoked_at IS NULL ORDER BY id FOR UPDATE)), \
                 logged AS (INSERT INTO events ({}) SELECT {event} FROM known k) \
                 SELECT family_id, user_id FROM known",
                event_columns!()
            )
        });
        let now_ms = millis(now);
        let query = sqlx::query(if event.is_some() { ROTATE_WITH_EVENT } else { ROTATE })
            .bind(token_hash)
            .bind(app_id.as_str())
            .bind(now_ms);
        let query = bind_refresh(query, next);
        let query = match event {
            Some(event) => bind_event(query, event),
            None => query,
        };
        if let Some(row) = query.fetch_optional_on(&self.pool).await? {
            return Ok(RotateOutcome::Rotated(Box::new(rows::refresh_token(&R(&row))?)));
        }
        // Unknown, another application's, revoked or expired: Invalid. Rotated out: reuse.
        let reuse = reused(app_id, now);
        let known = sqlx::query(&REUSED).bind(token_hash).bind(app_id.as_str()).bind(now_ms);
        let known = events::bind(known, &reuse).fetch_optional_on(&self.pool).await?;
        let Some(row) = known else { return Ok(RotateOutcome::Invalid) };
        let family_id: String = row.try_get("family_id").map_err(map_err)?;
        let user_id: String = row.try_get("user_id").map_err(map_err)?;
        Ok(RotateOutcome::Reused {
            family_id: FamilyId::from_trusted(family_id),
            user_id: UserId::from_trusted(user_id),
        })
    }

    async fn refresh_token(&self, token_hash: &[u8]) -> StoreResult<Option<RefreshToken>> {
        let row = sqlx::query("SELECT * FROM refresh_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional_on(&self.pool)
            .await?;
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
        .fetch_all_on(&self.pool)
        .await?;
        all(&rows, rows::refresh_token)
    }

    async fn revoke_user_sessions(&self, user_id: &UserId, now: OffsetDateTime) -> StoreResult<u64> {
        // Rows locked in id order first, as in revoke_family; browser sessions in the same statement.
        let done = sqlx::query(
            "WITH browsers AS (UPDATE browser_sessions SET revoked_at = $2 WHERE user_id = $1 \
               AND revoked_at IS NULL AND expires_at > $2 RETURNING 1), \
             families AS (UPDATE refresh_tokens SET revoked_at = $2 WHERE id IN ( \
               SELECT id FROM refresh_tokens WHERE user_id = $1 AND revoked_at IS NULL \
               AND rotated_at IS NULL AND expires_at > $2 ORDER BY id FOR UPDATE) RETURNING 1) \
             SELECT (SELECT COUNT(*) FROM browsers) + (SELECT COUNT(*) FROM families)",
        )
        .bind(user_id.as_str())
        .bind(millis(now))
        .fetch_one_on(&self.pool)
        .await?;
        let revoked: i64 = done.try_get(0).map_err(map_err)?;
        Ok(revoked as u64)
    }

    async fn insert_event(&self, event: &Event) -> StoreResult<()> {
        bind_event(sqlx::query(INSERT_EVENT), event).execute_on(&self.pool).await?;
        Ok(())
    }

    async fn events(&self, after: Option<&str>, limit: u32) -> StoreResult<Vec<Event>> {
        // The key's collation is "C" (see the migration), so this walks the primary key; as in
        // list_users, no id is empty.
        let rows = sqlx::query(
            r#"SELECT * FROM events WHERE id COLLATE "C" > COALESCE($1::text, '') ORDER BY id COLLATE "C" LIMIT $2"#,
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all_on(&self.pool).await?;
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
        .fetch_optional_on(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    async fn purge_expired(&self, now: OffsetDateTime) -> StoreResult<u64> {
        let now_ms = millis(now);
        let day_ago = millis(now - time::Duration::days(1));
        // Small batches keep statements and their row locks short. SKIP LOCKED passes over a
        // row someone is writing right now (a rate-limit window being reopened, say) instead of
        // waiting for it; and FOR UPDATE re-checks the condition on the newest row version, so
        // a row brought back to life meanwhile is not deleted.
        let statements: [(&str, i64); 9] = [
            (
                "DELETE FROM hosted_requests WHERE id IN \
                 (SELECT id FROM hosted_requests WHERE expires_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
                day_ago,
            ),
            (
                "DELETE FROM browser_sessions WHERE id IN \
                 (SELECT id FROM browser_sessions WHERE expires_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
                now_ms,
            ),
            (
                "DELETE FROM challenges WHERE id IN \
                 (SELECT id FROM challenges WHERE expires_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
                day_ago,
            ),
            (
                "DELETE FROM outbox WHERE id IN \
                 (SELECT id FROM outbox WHERE status <> 'queued' AND COALESCE(sent_at, next_attempt_at) < $1 LIMIT $2 \
                  FOR UPDATE SKIP LOCKED)",
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
            (
                "DELETE FROM suppressions WHERE email IN \
                 (SELECT email FROM suppressions WHERE until <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
                now_ms,
            ),
        ];
        let mut total = 0;
        for (sql, cutoff) in statements {
            loop {
                let done =
                    sqlx::query(sql).bind(cutoff).bind(PURGE_BATCH as i64).execute_on(&self.pool).await?;
                total += done.rows_affected();
                if done.rows_affected() < PURGE_BATCH {
                    break;
                }
            }
        }
        Ok(total)
    }

    async fn insert_authorization_code(&self, code: &AuthorizationCode) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO authorization_codes (id, code_hash, app_id, challenge_id, user_id, redirect_uri, \
             code_challenge, nonce, auth_method, auth_time, expires_at, org_id, code_is_credential, \
             redirect_uri_given) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(code.id.as_str())
        .bind(&code.code_hash)
        .bind(code.app_id.as_str())
        .bind(code.challenge_id.as_str())
        .bind(code.user_id.as_str())
        .bind(code.redirect_uri.as_str())
        .bind(code.code_challenge.as_ref().map(|p| p.as_str()))
        .bind(code.nonce.as_deref())
        .bind(code.auth_method.amr())
        .bind(millis(code.auth_time))
        .bind(millis(code.expires_at))
        .bind(code.org_id.as_ref().map(|o| o.as_str()))
        .bind(code.code_is_credential)
        .bind(code.redirect_uri_given)
        .execute_on(&self.pool)
        .await?;
        Ok(())
    }

    async fn insert_hosted_request(&self, r: &HostedRequest) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO hosted_requests (id, app_id, challenge_id, browser_hash, match_number, choices, \
             status, ip, user_agent, locale, restart, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(r.id.as_str())
        .bind(r.app_id.as_str())
        .bind(r.challenge_id.as_str())
        .bind(&r.browser_hash)
        .bind(i64::from(r.match_number))
        .bind(rows::choices_text(&r.choices))
        .bind(r.status.as_str())
        .bind(r.ip.as_deref())
        .bind(r.user_agent.as_deref())
        .bind(r.locale.as_deref())
        .bind(r.restart.as_deref())
        .bind(millis(r.created_at))
        .bind(millis(r.expires_at))
        .execute_on(&self.pool)
        .await?;
        Ok(())
    }

    async fn hosted_request(&self, id: &HostedRequestId) -> StoreResult<Option<HostedRequest>> {
        let row = sqlx::query("SELECT * FROM hosted_requests WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional_on(&self.pool)
            .await?;
        one(row, rows::hosted_request)
    }

    async fn challenge_and_hosted_request_by_link(
        &self,
        link_hash: &[u8],
    ) -> StoreResult<Option<(Challenge, Option<HostedRequest>)>> {
        let row = sqlx::query(
            "SELECT *, EXISTS (SELECT 1 FROM hosted_requests h WHERE h.challenge_id = challenges.id) AS hosted \
             FROM challenges WHERE link_hash = $1",
        )
        .bind(link_hash)
        .fetch_optional_on(&self.pool)
        .await?;
        let Some((challenge, hosted)) = one(row, rows::challenge_marked_hosted)? else { return Ok(None) };
        if !hosted {
            return Ok(Some((challenge, None)));
        }
        let row = sqlx::query("SELECT * FROM hosted_requests WHERE challenge_id = $1")
            .bind(challenge.id.as_str())
            .fetch_optional_on(&self.pool)
            .await?;
        Ok(Some((challenge, one(row, rows::hosted_request)?)))
    }

    async fn advance_hosted_request(
        &self,
        id: &HostedRequestId,
        from: HostedStatus,
        to: HostedStatus,
        signed_in: Option<&SignedIn>,
        now: OffsetDateTime,
    ) -> StoreResult<Option<HostedRequest>> {
        let row = sqlx::query(
            "UPDATE hosted_requests SET status = $3, user_id = COALESCE($4, user_id), \
             auth_method = COALESCE($5, auth_method), auth_time = COALESCE($6, auth_time) \
             WHERE id = $1 AND status = $2 AND expires_at > $7 RETURNING *",
        )
        .bind(id.as_str())
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(signed_in.map(|s| s.user_id.as_str()))
        .bind(signed_in.map(|s| s.auth_method.amr()))
        .bind(signed_in.map(|s| millis(s.auth_time)))
        .bind(millis(now))
        .fetch_optional_on(&self.pool)
        .await?;
        one(row, rows::hosted_request)
    }

    async fn insert_browser_session(&self, s: &BrowserSession) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO browser_sessions (id, token_hash, user_id, challenge_id, auth_method, auth_time, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(s.id.as_str())
        .bind(&s.token_hash)
        .bind(s.user_id.as_str())
        .bind(s.challenge_id.as_str())
        .bind(s.auth_method.amr())
        .bind(millis(s.auth_time))
        .bind(millis(s.created_at))
        .bind(millis(s.expires_at))
        .execute_on(&self.pool)
        .await?;
        Ok(())
    }

    async fn browser_session(
        &self,
        token_hash: &[u8],
        now: OffsetDateTime,
    ) -> StoreResult<Option<BrowserSession>> {
        let row = sqlx::query(
            "SELECT * FROM browser_sessions WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(millis(now))
        .fetch_optional_on(&self.pool)
        .await?;
        one(row, rows::browser_session)
    }

    async fn revoke_browser_session(&self, token_hash: &[u8], now: OffsetDateTime) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE browser_sessions SET revoked_at = $2 \
             WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(millis(now))
        .execute_on(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn user_browser_sessions(
        &self,
        user_id: &UserId,
        now: OffsetDateTime,
    ) -> StoreResult<Vec<BrowserSession>> {
        let rows = sqlx::query(
            r#"SELECT * FROM browser_sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2
               ORDER BY created_at, id COLLATE "C""#,
        )
        .bind(user_id.as_str())
        .bind(millis(now))
        .fetch_all_on(&self.pool)
        .await?;
        all(&rows, rows::browser_session)
    }

    async fn consume_by_token(
        &self,
        purpose: Purpose,
        link_hash: &[u8],
        app_id: &AppId,
        now: OffsetDateTime,
    ) -> StoreResult<TokenOutcome> {
        // The challenge comes from the consumed row.
        fn consumed(app_id: &AppId, purpose: Purpose, now: OffsetDateTime) -> Event {
            let challenge = ChallengeId::from_trusted(events::late("c.id"));
            Event::challenge_consumed_by_token(app_id, &challenge, None, purpose, now)
        }
        static CONSUME: LazyLock<String> = LazyLock::new(|| {
            let shape = consumed(
                &AppId::generate(OffsetDateTime::UNIX_EPOCH),
                Purpose::Verification,
                OffsetDateTime::UNIX_EPOCH,
            );
            let (event, _) = events::select_list(&shape, 5);
            format!(
                "WITH challenge AS ( \
                   UPDATE challenges SET status = 'consumed', consumed_at = $4 \
                   WHERE link_hash = $1 AND purpose = $2 AND app_id = $3 AND status = 'pending' AND expires_at > $4 \
                   RETURNING *), \
                 logged AS (INSERT INTO events ({}) SELECT {event} FROM challenge c) \
                 SELECT * FROM challenge",
                event_columns!()
            )
        });
        let event = consumed(app_id, purpose, now);
        let query = sqlx::query(&CONSUME)
            .bind(link_hash)
            .bind(purpose.as_str())
            .bind(app_id.as_str())
            .bind(millis(now));
        let consumed = events::bind(query, &event).fetch_optional_on(&self.pool).await?;
        let Some(row) = consumed else {
            let found = self
                .challenge_by_link(link_hash)
                .await?
                .filter(|c| c.purpose == purpose && &c.app_id == app_id);
            return Ok(found.map_or(TokenOutcome::NotFound, |c| TokenOutcome::Gone(c.status_at(now))));
        };
        Ok(TokenOutcome::Consumed(Box::new(rows::challenge(&R(&row))?)))
    }

    async fn consume_registration(
        &self,
        link_hash: &[u8],
        app_id: &AppId,
        user: &User,
        now: OffsetDateTime,
    ) -> StoreResult<RegistrationOutcome> {
        // One statement: the challenge consumed, its user inserted (no ON CONFLICT: a taken
        // address fails the whole statement, so nothing is written and the challenge stays
        // pending), and the events, the challenge's id coming from its row. Concurrent callers
        // queue on the challenge's row lock, as in consume_by_token; the losers insert nothing.
        fn written(app_id: &AppId, user_id: &UserId, now: OffsetDateTime) -> [Event; 2] {
            let challenge = ChallengeId::from_trusted(events::late("c.id"));
            [
                Event::challenge_consumed_by_token(
                    app_id,
                    &challenge,
                    Some(user_id),
                    Purpose::Registration,
                    now,
                ),
                Event::user_created(app_id, user_id, Some(&challenge), now),
            ]
        }
        static CONSUME: LazyLock<String> = LazyLock::new(|| {
            let [consumed, created] = written(
                &AppId::generate(OffsetDateTime::UNIX_EPOCH),
                &UserId::generate(OffsetDateTime::UNIX_EPOCH),
                OffsetDateTime::UNIX_EPOCH,
            );
            let (consumed, next) = events::select_list(&consumed, 12);
            let (created, _) = events::select_list(&created, next);
            format!(
                "WITH challenge AS ( \
                   UPDATE challenges SET status = 'consumed', consumed_at = $3 \
                   WHERE link_hash = $1 AND purpose = 'registration' AND app_id = $2 AND status = 'pending' \
                   AND expires_at > $3 RETURNING *), \
                 created AS ( \
                   INSERT INTO users (id, email, email_verified, name, metadata, created_at, updated_at, \
                     last_sign_in_at, locale) \
                   SELECT $4, $5, TRUE, $6, $7, $8, $9, $10, $11 FROM challenge), \
                 logged AS (INSERT INTO events ({columns}) \
                   SELECT {consumed} FROM challenge c UNION ALL SELECT {created} FROM challenge c) \
                 SELECT * FROM challenge",
                columns = event_columns!()
            )
        });
        let user = User { email_verified: true, ..user.clone() };
        let written = written(app_id, &user.id, now);
        let query = sqlx::query(&CONSUME)
            .bind(link_hash)
            .bind(app_id.as_str())
            .bind(millis(now))
            .bind(user.id.as_str())
            .bind(user.email.as_str())
            .bind(user.name.as_deref())
            .bind(rows::metadata_json(&user))
            .bind(millis(user.created_at))
            .bind(millis(user.updated_at))
            .bind(user.last_sign_in_at.map(millis))
            .bind(user.locale.as_deref());
        let query = events::bind(events::bind(query, &written[0]), &written[1]);
        let row = match query.fetch_optional_on(&self.pool).await {
            Ok(row) => row,
            Err(StoreError::Conflict(_)) => return Ok(RegistrationOutcome::EmailTaken),
            Err(e) => return Err(e),
        };
        let Some(row) = row else {
            let found = self
                .challenge_by_link(link_hash)
                .await?
                .filter(|c| c.purpose == Purpose::Registration && &c.app_id == app_id);
            return Ok(
                found.map_or(RegistrationOutcome::NotFound, |c| RegistrationOutcome::Gone(c.status_at(now)))
            );
        };
        Ok(RegistrationOutcome::Consumed { challenge: Box::new(rows::challenge(&R(&row))?), user })
    }

    async fn insert_organization(&self, org: &Organization) -> StoreResult<()> {
        let mut tx = Tx::begin(&self.pool).await?;
        sqlx::query(
            "INSERT INTO organizations (id, name, slug, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(org.id.as_str())
        .bind(&org.name)
        .bind(&org.slug)
        .bind(millis(org.created_at))
        .bind(millis(org.updated_at))
        .execute(tx.conn())
        .await
        .map_err(map_err)?;
        insert_domains(tx.conn(), org).await?;
        tx.commit().await
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
            .fetch_all_on(&self.pool)
            .await?;
        let domains = sqlx::query("SELECT domain, org_id FROM organization_domains ORDER BY domain")
            .fetch_all_on(&self.pool)
            .await?
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<Result<Vec<(String, String)>, sqlx::Error>>()
            .map_err(map_err)?;
        let readers: Vec<R<'_>> = orgs.iter().map(R).collect();
        rows::organizations(&readers.iter().map(|r| r as &dyn RowReader).collect::<Vec<_>>(), domains)
    }

    async fn update_organization(&self, org: &Organization) -> StoreResult<bool> {
        let mut tx = Tx::begin(&self.pool).await?;
        let done =
            sqlx::query("UPDATE organizations SET name = $2, slug = $3, updated_at = $4 WHERE id = $1")
                .bind(org.id.as_str())
                .bind(&org.name)
                .bind(&org.slug)
                .bind(millis(org.updated_at))
                .execute(tx.conn())
                .await
                .map_err(map_err)?;
        if done.rows_affected() != 1 {
            // Nothing was written; committing returns the connection to the pool.
            tx.commit().await?;
            return Ok(false);
        }
        sqlx::query("DELETE FROM organization_domains WHERE org_id = $1")
            .bind(org.id.as_str())
            .execute(tx.conn())
            .await
            .map_err(map_err)?;
        insert_domains(tx.conn(), org).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn delete_organization(&self, id: &OrgId) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM organizations WHERE id = $1")
            .bind(id.as_str())
            .execute_on(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn user_organizations(&self, user_id: &UserId) -> StoreResult<Vec<OrgId>> {
        let rows =
            sqlx::query("SELECT org_id FROM memberships WHERE user_id = $1 ORDER BY org_id COLLATE \"C\"")
                .bind(user_id.as_str())
                .fetch_all_on(&self.pool)
                .await?;
        rows.iter().map(|row| row.try_get(0).map(OrgId::from_trusted).map_err(map_err)).collect()
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
        // The organization and its domains in one statement.
        macro_rules! org_sql {
            ($condition:literal) => {
                concat!(
                    "SELECT o.*, ARRAY(SELECT domain FROM organization_domains d WHERE d.org_id = o.id \
                     ORDER BY domain) AS domains FROM organizations o WHERE ",
                    $condition
                )
            };
        }
        let sql = match key {
            OrgKey::Id => org_sql!("o.id = $1"),
            OrgKey::Slug => org_sql!("o.slug = $1"),
            OrgKey::Domain => org_sql!("o.id = (SELECT org_id FROM organization_domains WHERE domain = $1)"),
        };
        let Some(row) = sqlx::query(sql).bind(value).fetch_optional_on(&self.pool).await? else {
            return Ok(None);
        };
        let domains: Vec<String> = row.try_get("domains").map_err(map_err)?;
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
