//! What only shows on PostgreSQL: several instances (here, several pools) on one database,
//! and the mapping of server errors. Skipped, but for the first, without
//! `LATCHKEY_TEST_DATABASE_URL`.

use latchkey_core::challenge::{AuthMethod, NewAuthorizationCode, otp_subject};
use latchkey_core::event::EventKind;
use latchkey_core::id::OutboxId;
use latchkey_core::rate_limit::RateLimit;
use latchkey_core::refresh::RefreshToken;
use latchkey_core::secret::HashPurpose;
use latchkey_core::{ChallengeStatus, EmailAddress, Otp, User};
use latchkey_postgres::testing::TestDatabase;
use latchkey_postgres::{PostgresOptions, PostgresStore};
use latchkey_store::conformance::{
    application, challenge, challenge_with_otp, key, organization, queued_messages, t0,
};
use latchkey_store::{ConsumeOutcome, OtpOutcome, RotateOutcome, Store, StoreError, StoredSigningKey};
use sqlx::{Connection, Executor, PgConnection};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

async fn instances(db: &TestDatabase, n: usize, options: &PostgresOptions) -> Vec<Arc<PostgresStore>> {
    let mut stores = Vec::new();
    for _ in 0..n {
        stores.push(Arc::new(PostgresStore::connect(&db.url, options).await.expect("connect")));
    }
    stores
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    let options = PostgresOptions { acquire_timeout: Duration::from_secs(2), ..Default::default() };
    let err = PostgresStore::connect("postgres://postgres@127.0.0.1:1/none", &options).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs LATCHKEY_TEST_DATABASE_URL (PostgreSQL)"]
async fn instances_migrate_together() {
    let db = TestDatabase::from_env().await;
    let stores = instances(&db, 4, &PostgresOptions::default()).await;
    let mut tasks = JoinSet::new();
    for store in &stores {
        let store = store.clone();
        tasks.spawn(async move { store.migrate().await });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap().expect("every instance migrates");
    }
    stores[0].migrate().await.expect("migrating again does nothing");
    stores[0].ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs LATCHKEY_TEST_DATABASE_URL (PostgreSQL)"]
async fn one_new_address_signing_in_twice_at_once_gets_one_user() {
    let db = TestDatabase::from_env().await;
    let stores = instances(&db, 2, &PostgresOptions::default()).await;
    stores[0].migrate().await.unwrap();
    let app = application("Twice");
    stores[0].insert_application(&app, None).await.unwrap();
    for round in 0..20 {
        let email = format!("new{round}@example.com");
        let mut tasks = JoinSet::new();
        for store in &stores {
            let (c, token) = challenge(&app, &email, t0());
            store.create_challenge(&c, None, &[], t0()).await.unwrap().expect("no limits");
            let (store, app) = (store.clone(), app.clone());
            tasks.spawn(async move {
                let code = NewAuthorizationCode::generate(&app, &key(), t0());
                store.consume_link(&key().hash(HashPurpose::LinkToken, &token), &code, t0()).await
            });
        }
        let mut users = HashSet::new();
        while let Some(done) = tasks.join_next().await {
            match done.unwrap() {
                Ok(ConsumeOutcome::Consumed { user, .. }) => users.insert(user.id),
                other => panic!("both challenges consume: {other:?}"),
            };
        }
        assert_eq!(users.len(), 1, "one user for one address");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs LATCHKEY_TEST_DATABASE_URL (PostgreSQL)"]
async fn workers_drain_the_outbox_without_sharing_a_message() {
    let db = TestDatabase::from_env().await;
    let stores = instances(&db, 4, &PostgresOptions::default()).await;
    stores[0].migrate().await.unwrap();
    let queued: HashSet<OutboxId> = queued_messages(&*stores[0], 200).await.into_iter().collect();

    let lease = t0() + time::Duration::minutes(5);
    let mut workers = JoinSet::new();
    for store in stores.iter().chain(stores.iter()) {
        let store = store.clone();
        workers.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = store.claim_outbox(t0(), lease, 7).await.expect("claim");
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch.into_iter().map(|m| m.id));
            }
        });
    }
    let mut claimed = Vec::new();
    while let Some(done) = workers.join_next().await {
        claimed.extend(done.unwrap());
    }
    let distinct: HashSet<_> = claimed.iter().cloned().collect();
    assert_eq!(distinct.len(), claimed.len(), "a message was handed to two workers");
    assert_eq!(distinct, queued);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs LATCHKEY_TEST_DATABASE_URL (PostgreSQL)"]
async fn errors_are_classified() {
    let db = TestDatabase::from_env().await;
    let options =
        PostgresOptions { statement_timeout: Some(Duration::from_millis(200)), ..Default::default() };
    let store = PostgresStore::connect(&db.url, &options).await.unwrap();
    store.migrate().await.unwrap();

    let signing_key = StoredSigningKey {
        kid: "k1".into(),
        alg: latchkey_core::signing::SigningAlg::ES256,
        sealed_pkcs8: vec![1],
        created_at: t0(),
        retired_at: None,
    };
    store.insert_signing_key(&signing_key).await.unwrap();
    let err = store.insert_signing_key(&signing_key).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    // A statement stuck behind another session's lock is cancelled by the statement timeout.
    let app = application("Slow");
    store.insert_application(&app, None).await.unwrap();
    let mut other = PgConnection::connect(&db.url).await.unwrap();
    other.execute("BEGIN").await.unwrap();
    other.execute("LOCK TABLE applications IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let err = store.application(&app.id).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    other.execute("ROLLBACK").await.unwrap();
    assert!(store.application(&app.id).await.unwrap().is_some());

    // The migrator runs without the statement timeout, so it waits for locks instead of failing.
    store.close().await;
    let store = PostgresStore::connect(&db.url, &options).await.unwrap();
    other.execute("BEGIN").await.unwrap();
    other.execute("LOCK TABLE _sqlx_migrations IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let migrating = tokio::spawn({
        let store = store.clone();
        async move { store.migrate().await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    other.execute("ROLLBACK").await.unwrap();
    migrating.await.unwrap().expect("migrate waits past the statement timeout");
    store.close().await;
}

/// Several instances on one database, `migrate`d, with one application.
async fn migrated(
    db: &TestDatabase,
    n: usize,
    app_name: &str,
) -> (Vec<Arc<PostgresStore>>, latchkey_core::Application) {
    let stores = instances(db, n, &PostgresOptions::default()).await;
    stores[0].migrate().await.unwrap();
    let app = application(app_name);
    stores[0].insert_application(&app, None).await.unwrap();
    (stores, app)
}

async fn kinds(store: &PostgresStore) -> Vec<EventKind> {
    store.events(None, 10_000).await.unwrap().into_iter().map(|e| e.kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs LATCHKEY_TEST_DATABASE_URL (PostgreSQL)"]
async fn rate_limits_hold_across_instances() {
    let db = TestDatabase::from_env().await;
    let (stores, app) = migrated(&db, 4, "Limits").await;
    let limits = [RateLimit { key: "email:shared:m".into(), window: time::Duration::minutes(1), limit: 5 }];
    let mut tasks = JoinSet::new();
    for i in 0..40 {
        let store = stores[i % stores.len()].clone();
        let (c, token) = challenge(&app, &format!("l{i}@example.com"), t0());
        let limits = limits.clone();
        tasks.spawn(async move {
            let outcome = store.create_challenge(&c, None, &limits, t0()).await.expect("no store error");
            (outcome.is_ok(), key().hash(HashPurpose::LinkToken, &token))
        });
    }
    let mut allowed = 0;
    while let Some(done) = tasks.join_next().await {
        let (ok, link_hash) = done.unwrap();
        let stored = stores[0].challenge_by_link(&link_hash).await.unwrap().is_some();
        assert_eq!(ok, stored, "a challenge is written exactly when it is allowed");
        allowed += usize::from(ok);
    }
    assert_eq!(allowed, 5);
    let created = kinds(&stores[0]).await.into_iter().filter(|k| *k == EventKind::ChallengeCreated).count();
    assert_eq!(created, 5, "refused requests write no event");
    // The refusals counted nothing: the window's count is still the limit, not 40.
    let refused = stores[1].hit_rate_limits(&limits, t0()).await.unwrap();
    assert!(refused.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs LATCHKEY_TEST_DATABASE_URL (PostgreSQL)"]
async fn counters_taken_in_any_order_do_not_deadlock() {
    let db = TestDatabase::from_env().await;
    let (stores, _) = migrated(&db, 4, "Order").await;
    let minute = time::Duration::minutes(1);
    let a = RateLimit { key: "a".into(), window: minute, limit: 1000 };
    let b = RateLimit { key: "b".into(), window: minute, limit: 1000 };
    let mut tasks = JoinSet::new();
    for i in 0..200 {
        let store = stores[i % stores.len()].clone();
        let limits = if i % 2 == 0 { [a.clone(), b.clone()] } else { [b.clone(), a.clone()] };
        tasks.spawn(async move { store.hit_rate_limits(&limits, t0()).await });
    }
    while let Some(done) = tasks.join_next().await {
        assert_eq!(done.unwrap().expect("no deadlock"), Ok(()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs LATCHKEY_TEST_DATABASE_URL (PostgreSQL)"]
async fn concurrent_wrong_codes_each_count_once() {
    let db = TestDatabase::from_env().await;
    let (stores, app) = migrated(&db, 4, "Guesses").await;
    let (c, _, otp) = challenge_with_otp(&app, "guess@example.com", t0());
    stores[0].create_challenge(&c, None, &[], t0()).await.unwrap().unwrap();
    let wrong = ["000000", "111111"].into_iter().map(|w| Otp::parse(w).unwrap()).find(|w| w != &otp).unwrap();
    let wrong_hash = key().hash(HashPurpose::Otp, &otp_subject(&c.id, &wrong));
    let mut tasks = JoinSet::new();
    for i in 0..20 {
        let (store, id, hash) = (stores[i % stores.len()].clone(), c.id.clone(), wrong_hash.clone());
        tasks.spawn(async move { store.consume_by_otp(&id, &hash, 5, t0()).await });
    }
    let mut left = Vec::new();
    let mut gone = 0;
    while let Some(done) = tasks.join_next().await {
        match done.unwrap().unwrap() {
            OtpOutcome::Wrong { attempts_left } => left.push(attempts_left),
            OtpOutcome::Gone => gone += 1,
            other => panic!("{other:?}"),
        }
    }
    left.sort_unstable();
    assert_eq!((left, gone), (vec![0, 1, 2, 3, 4], 15));
    let rec = stores[0].challenge(&app.id, &c.id).await.unwrap().unwrap();
    assert_eq!((rec.challenge.status, rec.challenge.otp_attempts), (ChallengeStatus::Revoked, 5));
    let rejected = kinds(&stores[0]).await.into_iter().filter(|k| *k == EventKind::ChallengeRejected).count();
    assert_eq!(rejected, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs LATCHKEY_TEST_DATABASE_URL (PostgreSQL)"]
async fn a_refresh_token_presented_twice_at_once_rotates_once() {
    let db = TestDatabase::from_env().await;
    let (stores, app) = migrated(&db, 4, "Rotate").await;
    let user = User::new(EmailAddress::parse("rotate@example.com").unwrap(), t0());
    stores[0].insert_user(&user).await.unwrap();
    let issue = |family| {
        let (t, plain) = RefreshToken::issue(
            &key(),
            family,
            app.id.clone(),
            user.id.clone(),
            AuthMethod::Otp,
            t0(),
            "openid",
            time::Duration::days(1),
            t0(),
        );
        let hash = key().hash(HashPurpose::RefreshToken, &plain);
        (t, hash)
    };
    for _ in 0..10 {
        let (first, first_hash) = issue(None);
        stores[0].insert_refresh_token(&first, None).await.unwrap();
        let mut tasks = JoinSet::new();
        for i in 0..8 {
            let (next, _) = issue(Some(first.family_id.clone()));
            let (store, hash, app_id) =
                (stores[i % stores.len()].clone(), first_hash.clone(), app.id.clone());
            tasks.spawn(async move { store.rotate_refresh_token(&hash, &app_id, &next, None, t0()).await });
        }
        let (mut rotated, mut reused) = (0, 0);
        while let Some(done) = tasks.join_next().await {
            match done.unwrap().unwrap() {
                RotateOutcome::Rotated(_) => rotated += 1,
                RotateOutcome::Reused { family_id, .. } => {
                    assert_eq!(family_id, first.family_id);
                    reused += 1;
                }
                RotateOutcome::Invalid => panic!("the token is known and was rotated"),
            }
        }
        assert_eq!((rotated, reused), (1, 7));
    }
    // Every family saw reuse: nothing is left signed in.
    assert!(stores[0].user_sessions(&user.id, t0()).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs LATCHKEY_TEST_DATABASE_URL (PostgreSQL)"]
async fn one_instance_takes_a_free_lease() {
    let db = TestDatabase::from_env().await;
    let (stores, _) = migrated(&db, 4, "Lease").await;
    for round in 0..20 {
        let name = format!("job{round}");
        let mut tasks = JoinSet::new();
        for (i, store) in stores.iter().chain(stores.iter()).enumerate() {
            let (store, name) = (store.clone(), name.clone());
            let until = t0() + time::Duration::seconds(30);
            tasks.spawn(async move { store.try_lease(&name, &format!("holder{i}"), t0(), until).await });
        }
        let mut taken = 0;
        while let Some(done) = tasks.join_next().await {
            taken += usize::from(done.unwrap().unwrap());
        }
        assert_eq!(taken, 1, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs LATCHKEY_TEST_DATABASE_URL (PostgreSQL)"]
async fn concurrent_revocations_count_each_token_once() {
    let db = TestDatabase::from_env().await;
    let (stores, app) = migrated(&db, 4, "Revoke").await;
    let user = User::new(EmailAddress::parse("revoke@example.com").unwrap(), t0());
    stores[0].insert_user(&user).await.unwrap();
    for _ in 0..10 {
        // One family of twelve active tokens: overlapping multi-row revocations of every kind.
        let mut family = None;
        for _ in 0..12 {
            let (t, _) = RefreshToken::issue(
                &key(),
                family.clone(),
                app.id.clone(),
                user.id.clone(),
                AuthMethod::Link,
                t0(),
                "openid",
                time::Duration::days(1),
                t0(),
            );
            family = Some(t.family_id.clone());
            stores[0].insert_refresh_token(&t, None).await.unwrap();
        }
        let family = family.unwrap();
        let mut tasks = JoinSet::new();
        for i in 0..12 {
            let (store, family, user_id) =
                (stores[i % stores.len()].clone(), family.clone(), user.id.clone());
            tasks.spawn(async move {
                if i % 2 == 0 {
                    store.revoke_refresh_family(&family, t0()).await
                } else {
                    store.revoke_user_sessions(&user_id, t0()).await
                }
            });
        }
        let mut revoked = 0;
        while let Some(done) = tasks.join_next().await {
            revoked += done.unwrap().expect("no deadlock");
        }
        assert_eq!(revoked, 12, "each token is counted by exactly one revocation");
    }
}

fn one_connection() -> PostgresOptions {
    PostgresOptions { max_connections: 1, acquire_timeout: Duration::from_secs(5), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs LATCHKEY_TEST_DATABASE_URL (PostgreSQL)"]
async fn a_statement_abandoned_midway_leaves_no_connection_behind_it() {
    let db = TestDatabase::from_env().await;
    let store = PostgresStore::connect(&db.url, &one_connection()).await.unwrap();
    store.migrate().await.unwrap();
    let (a, b) = (application("A"), application("B"));
    store.insert_application(&a, None).await.unwrap();
    store.insert_application(&b, None).await.unwrap();

    // The caller gives up on a read stuck behind a lock: its future is dropped mid-statement.
    let mut other = PgConnection::connect(&db.url).await.unwrap();
    other.execute("BEGIN").await.unwrap();
    other.execute("LOCK TABLE applications IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let abandoned = tokio::time::timeout(Duration::from_millis(300), store.application(&a.id)).await;
    assert!(abandoned.is_err(), "the read waits for the lock");
    other.execute("ROLLBACK").await.unwrap();

    // The only connection of the pool answered nothing more to the next caller: each read gets
    // its own row, not the one the abandoned read was waiting for.
    for _ in 0..3 {
        assert_eq!(store.application(&b.id).await.unwrap().unwrap().id, b.id);
        assert_eq!(store.application(&a.id).await.unwrap().unwrap().id, a.id);
    }
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs LATCHKEY_TEST_DATABASE_URL (PostgreSQL)"]
async fn connections_cut_while_idle_are_replaced() {
    let db = TestDatabase::from_env().await;
    let store = PostgresStore::connect(&db.url, &PostgresOptions::default()).await.unwrap();
    store.migrate().await.unwrap();
    store.ping().await.unwrap();
    let mut admin = PgConnection::connect(&db.url).await.unwrap();
    let terminate = format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()",
        db.name
    );
    admin.execute(terminate.as_str()).await.unwrap();
    // A connection that sat idle is checked before it is handed out.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    store.ping().await.expect("a new connection replaces the one cut");

    // Cut again and used at once: that call may fail, as unavailable, and the next one works.
    admin.execute(terminate.as_str()).await.unwrap();
    if let Err(err) = store.ping().await {
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    }
    store.ping().await.expect("the broken connection was not kept");
    store.close().await;
    assert!(matches!(store.ping().await, Err(StoreError::Unavailable(_))), "a closed store refuses");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs LATCHKEY_TEST_DATABASE_URL (PostgreSQL)"]
async fn a_transaction_that_fails_is_rolled_back_and_frees_its_connection() {
    let db = TestDatabase::from_env().await;
    let store = PostgresStore::connect(&db.url, &one_connection()).await.unwrap();
    store.migrate().await.unwrap();
    let acme = organization("acme", &["acme.example"]);
    let beta = organization("beta", &["beta.example"]);
    store.insert_organization(&acme).await.unwrap();
    store.insert_organization(&beta).await.unwrap();

    // The rename is written, then a domain of beta's refuses the whole update.
    let mut taken = acme.clone();
    taken.name = "Renamed".into();
    taken.domains = vec!["acme.example".into(), "beta.example".into()];
    let err = store.update_organization(&taken).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    // No lock is left held by the connection of that transaction: the same rows can be written.
    let got = store.organization(&acme.id).await.unwrap().unwrap();
    assert_eq!((got.name.as_str(), got.domains.clone()), ("ACME", vec!["acme.example".to_owned()]));
    let mut renamed = acme.clone();
    renamed.name = "Renamed".into();
    renamed.domains = vec!["acme.example".into(), "acme.test".into()];
    assert!(store.update_organization(&renamed).await.unwrap());
    assert_eq!(store.organization_by_domain("acme.test").await.unwrap().unwrap().name, "Renamed");
    assert!(!store.update_organization(&organization("ghost", &[])).await.unwrap());
    assert_eq!(store.list_organizations().await.unwrap().len(), 2);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs LATCHKEY_TEST_DATABASE_URL (PostgreSQL)"]
async fn one_statement_writes_the_events_of_a_step() {
    let db = TestDatabase::from_env().await;
    let store = PostgresStore::connect(&db.url, &PostgresOptions::default()).await.unwrap();
    store.migrate().await.unwrap();
    let app = application("Events");
    store.insert_application(&app, None).await.unwrap();
    let acme = organization("acme", &["acme.example"]);
    store.insert_organization(&acme).await.unwrap();

    // A first sign-in for an organization: consumed, user created, member, in that order.
    let (mut c, token) = challenge(&app, "ada@acme.example", t0());
    c.org_id = Some(acme.id.clone());
    store.create_challenge(&c, None, &[], t0()).await.unwrap().unwrap();
    let code = NewAuthorizationCode::generate(&app, &key(), t0());
    let ConsumeOutcome::Consumed { user, .. } =
        store.consume_link(&key().hash(HashPurpose::LinkToken, &token), &code, t0()).await.unwrap()
    else {
        panic!("consumed");
    };
    let events = store.events(None, 100).await.unwrap();
    let seen: Vec<_> = events
        .iter()
        .map(|e| (e.kind, e.app_id.clone(), e.user_id.clone(), e.subject.clone(), e.detail.clone()))
        .collect();
    let (app_id, user_id) = (Some(app.id.clone()), Some(user.id.clone()));
    assert_eq!(
        seen,
        [
            (EventKind::ChallengeCreated, app_id.clone(), None, Some(c.id.to_string()), None),
            (
                EventKind::ChallengeConsumed,
                app_id.clone(),
                user_id.clone(),
                Some(c.id.to_string()),
                Some(format!(r#"{{"method":"{}"}}"#, AuthMethod::Link.amr()))
            ),
            (EventKind::UserCreated, app_id.clone(), user_id.clone(), None, None),
            (EventKind::MembershipCreated, app_id.clone(), user_id.clone(), Some(acme.id.to_string()), None),
        ]
    );
    assert!(events.iter().all(|e| e.created_at == t0()));

    // A wrong code: its detail reads as the one SQLite writes.
    let (c2, _, otp) = challenge_with_otp(&app, "bob@example.com", t0());
    store.create_challenge(&c2, None, &[], t0()).await.unwrap().unwrap();
    let wrong = ["000000", "111111"].into_iter().map(|w| Otp::parse(w).unwrap()).find(|w| w != &otp).unwrap();
    let hash = key().hash(HashPurpose::Otp, &otp_subject(&c2.id, &wrong));
    assert!(matches!(
        store.consume_by_otp(&c2.id, &hash, 5, t0()).await.unwrap(),
        OtpOutcome::Wrong { attempts_left: 4 }
    ));
    let last = store.events(None, 100).await.unwrap().pop().unwrap();
    assert_eq!(last.kind, EventKind::ChallengeRejected);
    assert_eq!(last.subject.as_deref(), Some(c2.id.as_str()));
    assert_eq!(last.detail.as_deref(), Some(r#"{"attempts":1,"reason":"wrong_code"}"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs LATCHKEY_TEST_DATABASE_URL (PostgreSQL)"]
async fn a_refusal_names_the_first_limit_in_the_callers_order() {
    let db = TestDatabase::from_env().await;
    let store = PostgresStore::connect(&db.url, &PostgresOptions::default()).await.unwrap();
    store.migrate().await.unwrap();
    let minute = time::Duration::minutes(1);
    let at = t0() + time::Duration::seconds(15);
    // Keys in the opposite order to the caller's; both are exceeded by the third hit.
    let limits = [
        RateLimit { key: "z:hour".into(), window: time::Duration::hours(1), limit: 2 },
        RateLimit { key: "a:minute".into(), window: minute, limit: 2 },
    ];
    for _ in 0..2 {
        assert_eq!(store.hit_rate_limits(&limits, at).await.unwrap(), Ok(()));
    }
    let refused = store.hit_rate_limits(&limits, at).await.unwrap().unwrap_err();
    assert_eq!(refused.retry_after, time::Duration::seconds(3600 - 15), "the hour's, named first");
    let reversed = [limits[1].clone(), limits[0].clone()];
    let refused = store.hit_rate_limits(&reversed, at).await.unwrap().unwrap_err();
    assert_eq!(refused.retry_after, time::Duration::seconds(45), "the minute's, named first");
}

/// Several live instances share the outbox, so a starting instance takes back no lease: it
/// cannot tell a dead instance's from a live one's. A lease nobody renews (its instance died)
/// lapses within one lease and the message goes to the next claim; a renewed one holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs LATCHKEY_TEST_DATABASE_URL (PostgreSQL)"]
async fn a_starting_instance_leaves_live_leases_alone_and_dead_ones_lapse() {
    let db = TestDatabase::from_env().await;
    let stores = instances(&db, 2, &PostgresOptions::default()).await;
    let (live, starting) = (&stores[0], &stores[1]);
    live.migrate().await.unwrap();
    let ids = queued_messages(&**live, 2).await;
    let lease = time::Duration::seconds(6);
    assert_eq!(live.claim_outbox(t0(), t0() + lease, 10).await.unwrap().len(), 2);

    assert_eq!(starting.release_leftover_outbox_leases().await.unwrap(), 0);
    let now = t0() + time::Duration::seconds(2);
    assert!(starting.claim_outbox(now, now + lease, 10).await.unwrap().is_empty(), "live leases hold");

    // The first is still being delivered and renewed; the second's instance died.
    assert_eq!(live.renew_outbox_leases(&ids[..1], now + lease).await.unwrap(), 1);
    let lapsed = t0() + lease;
    let taken: Vec<_> =
        starting.claim_outbox(lapsed, lapsed + lease, 10).await.unwrap().into_iter().map(|m| m.id).collect();
    assert_eq!(taken, ids[1..].to_vec());
}
