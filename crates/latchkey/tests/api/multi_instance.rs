//! Several instances on one PostgreSQL database (issue #4): whatever one instance starts,
//! another can finish; single use, the outbox and the signing keys are held by the database;
//! an instance rides out an outage of the database and recovers by itself.
//!
//! These tests only make sense on PostgreSQL: a plain `cargo test` reports them as ignored;
//! with `--include-ignored` they fail when `LATCHKEY_TEST_DATABASE_URL` is not set. The outage test drives the server with `psql`.

use crate::helpers::{
    ADMIN_TOKEN, As, Backend, CALLBACK, Client, TestApp, eventually, query_param, random_email,
};
use futures_util::future::join_all;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation, decode};
use latchkey::Config;
use latchkey::run::{Running, StartOptions, start};
use latchkey_core::ManualClock;
use latchkey_mail::WorkerConfig;
use latchkey_postgres::testing::{TestDatabase, URL_VAR};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// Another instance on the test app's database: the same configuration and clock, and the
/// first instance's public URL, as instances behind one load balancer share one
/// `LATCHKEY_PUBLIC_URL`. Links and the issuer therefore name the first instance; `base` is
/// where this one really listens.
struct Instance {
    running: Running,
    base: String,
}

impl Instance {
    async fn beside(app: &TestApp) -> Self {
        Self::beside_with(app, app.options(false)).await
    }

    async fn beside_with(app: &TestApp, options: StartOptions) -> Self {
        let config = Config { public_url: Some(app.base.clone()), ..app.config.clone() };
        let running = start(config, options).await.expect("the second instance starts");
        let base = format!("http://{}", running.addr);
        assert_ne!(base, app.base, "the second instance listens elsewhere");
        Self { running, base }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The same link, sent to this instance instead of the public URL.
    fn link(&self, app: &TestApp, link: &str) -> String {
        let path = link.strip_prefix(&app.base).unwrap_or_else(|| panic!("{link} is not on {}", app.base));
        self.url(path)
    }

    async fn shutdown(self) {
        self.running.shutdown().await;
    }
}

async fn request_link_at(app: &TestApp, base: &str, client: &Client, body: Value) -> Response {
    app.as_app(client).post(&format!("{base}/v1/magic-links")).json(&body).send().await.expect("request")
}

async fn exchange_at(app: &TestApp, base: &str, client: &Client, code: &str) -> Response {
    app.as_app(client)
        .post(&format!("{base}/oauth/token"))
        .form(&[("grant_type", "authorization_code"), ("code", code), ("redirect_uri", CALLBACK)])
        .send()
        .await
        .expect("request")
}

async fn get_json(app: &TestApp, url: &str) -> Value {
    let res = app.http.get(url).send().await.expect("request");
    assert_eq!(res.status(), StatusCode::OK, "GET {url}");
    res.json().await.expect("JSON")
}

/// Verifies a token against the key set an instance publishes, with issuer and audience.
fn verify(jwks: &Value, jwt: &str, issuer: &str, audience: &str) -> Value {
    let jwks: JwkSet = serde_json::from_value(jwks.clone()).expect("a key set");
    let h = jsonwebtoken::decode_header(jwt).unwrap();
    let kid = h.kid.expect("the token names its key");
    let jwk = jwks.find(&kid).unwrap_or_else(|| panic!("key {kid} is not published"));
    let mut validation = Validation::new(h.alg);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    decode::<Value>(jwt, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .expect("the token verifies")
        .claims
}

fn kids(jwks: &Value) -> BTreeSet<String> {
    jwks["keys"].as_array().expect("keys").iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
}

/// Creates a link on `create_on`, presses its button on `press_on` and exchanges the code on
/// `exchange_on`; returns the tokens.
async fn sign_in_across(
    app: &TestApp,
    client: &Client,
    create_on: &str,
    press_on: &str,
    exchange_on: &str,
) -> Value {
    let email = random_email();
    let res = request_link_at(
        app,
        create_on,
        client,
        json!({ "email": email, "send_email": false, "state": "xyz" }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.unwrap();
    let link = created["link"].as_str().unwrap();
    assert!(link.starts_with(&format!("{}/l/", app.base)), "links carry the shared public URL: {link}");
    let link = format!("{press_on}{}", &link[app.base.len()..]);

    let page = app.http.get(&link).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let (status, location) = app.press(&link).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = location.unwrap();
    assert!(location.starts_with(CALLBACK), "{location}");
    assert_eq!(query_param(&location, "state").as_deref(), Some("xyz"));
    let code = query_param(&location, "code").expect("code in redirect");

    let res = exchange_at(app, exchange_on, client, &code).await;
    assert_eq!(res.status(), StatusCode::OK);
    let tokens: Value = res.json().await.unwrap();
    let again = exchange_at(app, create_on, client, &code).await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST, "the code is spent on every instance");
    tokens
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs LATCHKEY_TEST_DATABASE_URL (PostgreSQL)"]
async fn a_sign_in_started_on_one_instance_finishes_on_another() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let b = Instance::beside(&app).await;
    let client = app.client().await;

    // Both instances publish the same keys and the same issuer: they share the database and
    // the public URL.
    let jwks_a = get_json(&app, &app.url("/oauth/jwks")).await;
    let jwks_b = get_json(&app, &b.url("/oauth/jwks")).await;
    assert_eq!(jwks_a, jwks_b, "both instances publish the same key set");
    let discovery_b = get_json(&app, &b.url("/.well-known/openid-configuration")).await;
    assert_eq!(discovery_b["issuer"], app.base.as_str());

    // Created on A, pressed on B, exchanged on A; then the other way round.
    for (create_on, press_on, exchange_on) in [(&app.base, &b.base, &app.base), (&b.base, &app.base, &b.base)]
    {
        let tokens = sign_in_across(&app, &client, create_on, press_on, exchange_on).await;
        for jwks in [&jwks_a, &jwks_b] {
            for token in ["id_token", "access_token"] {
                let claims = verify(jwks, tokens[token].as_str().unwrap(), &app.base, &client.id);
                assert_eq!(claims["iss"], app.base.as_str());
            }
        }
    }

    // A link used on B is used for A too, and B reports what A did.
    let (id, link, _) = app.link_without_mail(&client, &random_email()).await;
    app.code_from(&link).await;
    let (status, _) = app.press(&b.link(&app, &link)).await;
    assert_eq!(status, StatusCode::GONE);
    let page = app.http.get(b.link(&app, &link)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::GONE);
    let seen_by_b = app.as_app(&client).get(&b.url(&format!("/v1/magic-links/{id}"))).send().await.unwrap();
    assert_eq!(seen_by_b.status(), StatusCode::OK);
    assert_eq!(seen_by_b.json::<Value>().await.unwrap()["status"], "consumed");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs LATCHKEY_TEST_DATABASE_URL (PostgreSQL)"]
async fn a_secret_deleted_on_one_instance_stops_working_on_the_other_within_a_second() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let b = Instance::beside(&app).await;
    let client = app.client().await;
    let body = || json!({ "email": random_email(), "send_email": false });
    // Both instances have just authenticated the application with this secret, and keep it.
    for base in [&app.base, &b.base] {
        assert_eq!(request_link_at(&app, base, &client, body()).await.status(), StatusCode::CREATED);
    }

    let res =
        app.admin(reqwest::Method::POST, &format!("/v1/applications/{}/secrets", client.id), None).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let added: Value = res.json().await.unwrap();
    let res = app.admin(reqwest::Method::GET, &format!("/v1/applications/{}", client.id), None).await;
    let secrets = res.json::<Value>().await.unwrap()["secrets"].clone();
    let old = secrets.as_array().unwrap().iter().find(|s| s["id"] != added["id"]).unwrap()["id"].clone();
    let path = format!("/v1/applications/{}/secrets/{}", client.id, old.as_str().unwrap());
    assert_eq!(app.admin(reqwest::Method::DELETE, &path, None).await.status(), StatusCode::NO_CONTENT);

    // A, where it was deleted, refuses the old secret at once.
    assert_eq!(request_link_at(&app, &app.base, &client, body()).await.status(), StatusCode::UNAUTHORIZED);
    // B may still accept it for at most a second, and not after.
    assert_eq!(request_link_at(&app, &b.base, &client, body()).await.status(), StatusCode::CREATED);
    app.advance(1);
    assert_eq!(request_link_at(&app, &b.base, &client, body()).await.status(), StatusCode::UNAUTHORIZED);
    let new = Client { id: client.id.clone(), secret: added["client_secret"].as_str().unwrap().into() };
    assert_eq!(request_link_at(&app, &b.base, &new, body()).await.status(), StatusCode::CREATED);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs LATCHKEY_TEST_DATABASE_URL (PostgreSQL)"]
async fn fifty_presses_across_two_instances_give_one_code() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let b = Instance::beside(&app).await;
    let client = app.client().await;
    let (id, link, _) = app.link_without_mail(&client, &random_email()).await;
    let on_b = b.link(&app, &link);

    let results = join_all((0..50).map(|i| app.press(if i % 2 == 0 { &link } else { &on_b }))).await;
    let statuses: Vec<StatusCode> = results.iter().map(|r| r.0).collect();
    let won = statuses.iter().filter(|s| **s == StatusCode::SEE_OTHER).count();
    let gone = statuses.iter().filter(|s| **s == StatusCode::GONE).count();
    assert_eq!((won, gone), (1, 49), "{statuses:?}");

    // The one code issued works, once.
    let location = results.iter().find_map(|(s, l)| (*s == StatusCode::SEE_OTHER).then_some(l)).unwrap();
    let code = query_param(location.as_deref().unwrap(), "code").unwrap();
    assert_eq!(exchange_at(&app, &b.base, &client, &code).await.status(), StatusCode::OK);
    assert_eq!(app.magic_link(&client, &id).await["status"], "consumed");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs LATCHKEY_TEST_DATABASE_URL (PostgreSQL)"]
async fn fifty_exchanges_across_two_instances_give_one_token() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let b = Instance::beside(&app).await;
    let client = app.client().await;
    let (_, link, _) = app.link_without_mail(&client, &random_email()).await;
    let code = app.code_from(&link).await;

    let results = join_all(
        (0..50).map(|i| exchange_at(&app, if i % 2 == 0 { &app.base } else { &b.base }, &client, &code)),
    )
    .await;
    let mut statuses = Vec::new();
    let mut tokens = Vec::new();
    for res in results {
        statuses.push(res.status());
        let body: Value = res.json().await.unwrap();
        if body["access_token"].is_string() {
            tokens.push(body);
        } else {
            assert_eq!(body["error"], "invalid_grant", "{body}");
        }
    }
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let refused = statuses.iter().filter(|s| **s == StatusCode::BAD_REQUEST).count();
    assert_eq!((ok, refused, tokens.len()), (1, 49, 1), "{statuses:?}");
    b.shutdown().await;
}

/// Worker settings that make a worker come back often for small batches, so that two workers
/// keep meeting at the head of the queue.
fn small_batches(app: &TestApp) -> StartOptions {
    StartOptions {
        worker: WorkerConfig {
            batch: 2,
            poll_interval: Duration::from_millis(20),
            ..WorkerConfig::default()
        },
        ..app.options(false)
    }
}

/// Asks `base` for a link with e-mail for each address; returns the links' ids.
async fn queue_mail(app: &TestApp, bases: &[&str], client: &Client, emails: &[String]) -> Vec<String> {
    let created =
        join_all(emails.iter().enumerate().map(|(i, email)| {
            request_link_at(app, bases[i % bases.len()], client, json!({ "email": email }))
        }))
        .await;
    let mut ids = Vec::new();
    for res in created {
        assert_eq!(res.status(), StatusCode::CREATED);
        ids.push(res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    ids
}

/// Every address got exactly one message, and every link says so: sent, at the first attempt.
async fn assert_each_mailed_once(app: &TestApp, client: &Client, ids: &[String], emails: &[String]) {
    let count = emails.len();
    let arrived = app.sink.wait_for(count, Duration::from_secs(30)).await;
    assert!(arrived.len() >= count, "expected {count} e-mails, got {}", arrived.len());
    // Give a second send, if there were one, time to arrive.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mails = app.sink.mails();
    assert_eq!(mails.len(), count, "each message is sent exactly once");
    let message_ids: HashSet<String> =
        mails.iter().map(|m| m.header("Message-ID").expect("a Message-ID")).collect();
    assert_eq!(message_ids.len(), count, "distinct Message-IDs");
    // Whom each message was for: its To header. (The sink keeps the RCPT TO of earlier messages
    // on a reused SMTP connection, so in the envelope only the last recipient is this message's.)
    let mut recipients = HashSet::new();
    for m in &mails {
        let to = m.header("To").expect("a To header");
        let to = to.trim().trim_start_matches('<').trim_end_matches('>').to_owned();
        assert_eq!(m.rcpt_to.last(), Some(&to), "the envelope goes to the addressee");
        assert!(recipients.insert(to.clone()), "{to} got two messages");
    }
    assert_eq!(recipients, emails.iter().cloned().collect::<HashSet<_>>(), "every address got its message");

    // The outcome is recorded once per message. It is written just after the SMTP server
    // accepted the message, so allow a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    for id in ids {
        let left = deadline.saturating_duration_since(Instant::now());
        let status = app.magic_link_when(client, id, left, |s| s["delivery"]["status"] != "queued").await;
        assert_eq!(
            status["delivery"],
            json!({ "status": "sent", "attempts": 1, "last_error": null, "relay": app.sink.addr().to_string() }),
            "{id}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs LATCHKEY_TEST_DATABASE_URL (PostgreSQL)"]
async fn mail_asked_of_both_instances_is_sent_once() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let b = Instance::beside_with(&app, small_batches(&app)).await;
    let client = app.client().await;
    let emails: Vec<String> = (0..100).map(|_| random_email()).collect();
    let ids = queue_mail(&app, &[&app.base, &b.base], &client, &emails).await;
    assert_each_mailed_once(&app, &client, &ids, &emails).await;
    b.shutdown().await;
}

/// A backlog (built up while no worker ran) drained by two instances starting together: both
/// workers meet at the head of the queue at once, and SKIP LOCKED keeps them apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs LATCHKEY_TEST_DATABASE_URL (PostgreSQL)"]
async fn a_backlog_drained_by_two_instances_at_once_is_sent_once() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let client = app.client().await;
    app.server.take().expect("the first instance").shutdown().await;

    // Queue through an instance whose worker takes nothing (batches of 0).
    let idle =
        StartOptions { worker: WorkerConfig { batch: 0, ..WorkerConfig::default() }, ..app.options(false) };
    let producer = start(app.config.clone(), idle).await.expect("the producer starts");
    let emails: Vec<String> = (0..100).map(|_| random_email()).collect();
    let ids = queue_mail(&app, &[&producer.public_url], &client, &emails).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(app.sink.mails().is_empty(), "nothing was sent while no worker ran");
    producer.shutdown().await;

    let (a, b) = tokio::join!(
        start(app.config.clone(), small_batches(&app)),
        start(app.config.clone(), small_batches(&app))
    );
    let (a, b) = (a.expect("an instance starts"), b.expect("another instance starts"));
    app.base = a.public_url.trim_end_matches('/').to_owned();
    app.server = Some(a);
    assert_each_mailed_once(&app, &client, &ids, &emails).await;
    b.shutdown().await;
}

/// The name of the database a `postgres://` URL connects to.
fn database_name(url: &str) -> String {
    let url = url::Url::parse(url).expect("a database URL");
    url.path().trim_start_matches('/').to_owned()
}

/// Runs SQL on the PostgreSQL server of `LATCHKEY_TEST_DATABASE_URL`, from a connection of its
/// own (the test database itself is what is being refused). Blocking, so that `Drop` can use it.
fn admin_sql(sql: &str) -> Result<(), String> {
    let url = std::env::var(URL_VAR).map_err(|_| format!("{URL_VAR} is not set"))?;
    let out = std::process::Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &url, "-c", sql])
        .output()
        .map_err(|e| format!("cannot run psql (the PostgreSQL client is needed for this test): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("psql failed on {sql:?}: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// PostgreSQL refuses the test database while this lives: new connections are refused and
/// the ones open are ended. Dropping it lets connections in again, even when an assertion
/// failed, so that the test database can be dropped.
struct Outage {
    database: String,
    over: bool,
}

impl Outage {
    fn begin(database: &str) -> Self {
        let outage = Self { database: database.to_owned(), over: false };
        admin_sql(&format!(r#"ALTER DATABASE "{database}" ALLOW_CONNECTIONS false"#)).expect("refuse");
        admin_sql(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{database}' AND pid <> pg_backend_pid()"
        ))
        .expect("end the open connections");
        outage
    }

    fn end(&mut self) {
        if !self.over {
            self.over = true;
            admin_sql(&format!(r#"ALTER DATABASE "{}" ALLOW_CONNECTIONS true"#, self.database))
                .expect("allow connections again");
        }
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        if !self.over {
            self.over = true;
            if let Err(e) =
                admin_sql(&format!(r#"ALTER DATABASE "{}" ALLOW_CONNECTIONS true"#, self.database))
            {
                eprintln!("could not end the outage: {e}");
            }
        }
    }
}

async fn timed<T>(f: impl Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let out = f.await;
    (out, started.elapsed())
}

fn retry_after(res: &Response) -> Option<u64> {
    res.headers().get("retry-after")?.to_str().ok()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs LATCHKEY_TEST_DATABASE_URL (PostgreSQL)"]
async fn an_instance_rides_out_a_database_outage_and_recovers_by_itself() {
    const PATIENCE: Duration = Duration::from_secs(10);
    let app = TestApp::spawn(Backend::Postgres).await;
    let client = app.client().await;
    let (_, link, _) = app.link_without_mail(&client, &random_email()).await;
    let code = app.code_from(&link).await;
    assert_eq!(app.exchange(&client, &code).await.status(), StatusCode::OK);

    let mut outage = Outage::begin(&database_name(&app.config.database_url));

    let (ready, took) = timed(app.http.get(app.url("/readyz")).timeout(PATIENCE).send()).await;
    let ready = ready.expect("/readyz answers during the outage");
    eprintln!("outage: /readyz answered {} after {took:?}", ready.status());
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(retry_after(&ready).is_some_and(|s| s > 0), "{:?}", ready.headers());
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["ready"], false, "{body}");

    let (res, took) = timed(
        app.as_app(&client)
            .post("/v1/magic-links")
            .json(&json!({ "email": random_email() }))
            .timeout(PATIENCE)
            .send(),
    )
    .await;
    let res = res.expect("POST /v1/magic-links answers within 10 s during the outage");
    eprintln!("outage: POST /v1/magic-links answered {} after {took:?}", res.status());
    let status = res.status();
    let retry = retry_after(&res);
    let body: Value = res.json().await.unwrap_or(Value::Null);
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "service_unavailable", "{body}");
    assert!(body["message"].is_string(), "{body}");
    assert!(retry.is_some_and(|s| s > 0), "a Retry-After header");

    let live = app.http.get(app.url("/healthz")).timeout(PATIENCE).send().await.expect("/healthz answers");
    assert_eq!(live.status(), StatusCode::OK, "liveness does not depend on the database");

    outage.end();
    let started = Instant::now();
    let ready = || async {
        let res = app.http.get(app.url("/readyz")).timeout(PATIENCE).send().await;
        res.is_ok_and(|r| r.status() == StatusCode::OK)
    };
    let ready = eventually(Duration::from_secs(15), ready, |ready| *ready).await;
    assert!(ready, "not ready 15 s after the database came back");
    eprintln!("outage: ready again {:?} after connections were allowed", started.elapsed());

    // A whole sign-in works again, without a restart.
    let (_, link, _) = app.link_without_mail(&client, &random_email()).await;
    let code = app.code_from(&link).await;
    assert_eq!(app.exchange(&client, &code).await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs LATCHKEY_TEST_DATABASE_URL (PostgreSQL)"]
async fn instances_starting_together_on_a_fresh_database_agree_on_the_keys() {
    // Several rounds, each on a fresh database: a race shows only now and then.
    for round in 0..5 {
        let db = TestDatabase::from_env().await;
        let config = Config {
            listen: "127.0.0.1:0".into(),
            database_url: db.url.clone(),
            admin_token: Some(ADMIN_TOKEN.into()),
            secret_key: Some("integration-test-master-secret-0123456789".into()),
            ..Config::default()
        };
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).expect("valid");
        let clock = Arc::new(ManualClock::new(now));
        let options = || StartOptions {
            dev: false,
            print_mail: false,
            clock: clock.clone(),
            worker: WorkerConfig { poll_interval: Duration::from_millis(50), ..WorkerConfig::default() },
            ..StartOptions::default()
        };
        let (a, b) = tokio::join!(start(config.clone(), options()), start(config.clone(), options()));
        let (a, b) = (a.expect("the first instance starts"), b.expect("the second instance starts"));

        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let mut key_sets = Vec::new();
        for running in [&a, &b] {
            let base = &running.public_url;
            let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
            assert_eq!(ready.status(), StatusCode::OK, "round {round}: {base} is ready");
            let jwks: Value =
                http.get(format!("{base}/oauth/jwks")).send().await.unwrap().json().await.unwrap();
            key_sets.push(jwks);
        }
        assert_eq!(
            kids(&key_sets[0]),
            kids(&key_sets[1]),
            "round {round}: both instances publish the same keys"
        );

        // What either instance signs verifies against the other's key set.
        let app = As::admin()
            .on(&http, &a.public_url)
            .post("/v1/applications")
            .json(&json!({ "name": "Acme", "redirect_uris": [CALLBACK] }))
            .send()
            .await
            .unwrap();
        assert_eq!(app.status(), StatusCode::CREATED);
        let app: Value = app.json().await.unwrap();
        let client = Client {
            id: app["client_id"].as_str().unwrap().to_owned(),
            secret: app["client_secret"].as_str().unwrap().to_owned(),
        };
        for (signer, other) in [(&a, &key_sets[1]), (&b, &key_sets[0])] {
            let base = &signer.public_url;
            let created: Value = As::app(&client)
                .on(&http, base)
                .post("/v1/magic-links")
                .json(&json!({ "email": random_email(), "send_email": false }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let pressed = http.post(created["link"].as_str().unwrap()).send().await.unwrap();
            assert_eq!(pressed.status(), StatusCode::SEE_OTHER);
            let location = pressed.headers()["location"].to_str().unwrap().to_owned();
            let code = query_param(&location, "code").unwrap();
            let tokens: Value = As::app(&client)
                .on(&http, base)
                .post("/oauth/token")
                .form(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", CALLBACK)])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            verify(other, tokens["id_token"].as_str().expect("tokens"), base, &client.id);
        }
        a.shutdown().await;
        b.shutdown().await;
        drop(db);
    }
}
