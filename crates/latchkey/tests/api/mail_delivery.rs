//! Delivery through real SMTP conversations: the outbox survives `kill -9`, retries with
//! backoff until the window closes, and talks plain SMTP, STARTTLS and implicit TLS with
//! authentication and a private CA; `latchkey mail test` reports the conversation.

use crate::backend_tests;
use crate::helpers::{ADMIN_TOKEN, As, Backend, CALLBACK, Client, TestApp, eventually, random_email};
use latchkey::run::{StartOptions, start};
use latchkey_core::SystemClock;
use latchkey_mail::WorkerConfig;
use latchkey_mail::sink::{SinkAuth, SinkConfig, SinkMode, SinkTls, SmtpSink};
use latchkey_postgres::testing::TestDatabase;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

backend_tests!(
    a_message_fails_for_good_once_the_retry_window_closes,
    a_permanent_refusal_fails_at_once,
    an_smtp_server_down_for_a_while_gets_the_mail_when_it_is_back,
    a_connection_dropped_mid_message_is_retried_and_delivered_once,
    a_slow_delivery_keeps_its_lease_and_is_sent_once,
);

const SECRET: &str = "integration-test-master-secret-0123456789";

/// Polls a magic link until `done` holds for its state (10 s at most); returns the last state.
async fn wait_for_state(app: &TestApp, client: &Client, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    app.magic_link_when(client, id, Duration::from_secs(10), done).await
}

fn attempts(state: &Value) -> u64 {
    state["delivery"]["attempts"].as_u64().unwrap_or_default()
}

async fn link_for(app: &TestApp, client: &Client, body: Value) -> String {
    let res = app.request_link(client, body).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
}

async fn a_message_fails_for_good_once_the_retry_window_closes(app: TestApp) {
    app.sink.set_mode(SinkMode::RefuseTemporarily);
    let client = app.client().await;
    let id = link_for(&app, &client, json!({ "email": random_email(), "expires_in": 86_400 })).await;
    let state = wait_for_state(&app, &client, &id, |s| attempts(s) >= 1).await;
    assert_eq!(state["delivery"]["status"], "queued");

    // Half a day later it is still being retried.
    app.advance(12 * 3600);
    let state = wait_for_state(&app, &client, &id, |s| attempts(s) >= 2).await;
    assert_eq!((state["delivery"]["status"].as_str(), attempts(&state)), (Some("queued"), 2), "{state}");

    // Past 24 hours, the next failure is the last.
    app.advance(12 * 3600 + 60);
    let state = wait_for_state(&app, &client, &id, |s| s["delivery"]["status"] != "queued").await;
    assert_eq!(state["delivery"]["status"], "failed", "{state}");
    assert_eq!(attempts(&state), 3);
    assert!(state["delivery"]["last_error"].as_str().unwrap().contains("451"), "{state}");

    // Failed is final: a server that accepts again gets nothing.
    app.sink.set_mode(SinkMode::Accept);
    app.advance(3600);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(app.sink.mails().is_empty());
}

async fn a_permanent_refusal_fails_at_once(app: TestApp) {
    app.sink.set_mode(SinkMode::RefusePermanently);
    let client = app.client().await;
    let id = link_for(&app, &client, json!({ "email": random_email() })).await;
    let state = wait_for_state(&app, &client, &id, |s| s["delivery"]["status"] != "queued").await;
    assert_eq!(state["delivery"]["status"], "failed", "{state}");
    assert_eq!(attempts(&state), 1);
    assert!(state["delivery"]["last_error"].as_str().unwrap().contains("550"), "{state}");
}

async fn an_smtp_server_down_for_a_while_gets_the_mail_when_it_is_back(app: TestApp) {
    app.sink.pause();
    let client = app.client().await;
    let id = link_for(&app, &client, json!({ "email": random_email() })).await;
    let state = wait_for_state(&app, &client, &id, |s| attempts(s) >= 1).await;
    assert_eq!(state["delivery"]["status"], "queued");
    let error = state["delivery"]["last_error"].as_str().unwrap().to_lowercase();
    assert!(error.contains("connection"), "{state}");

    app.sink.resume().unwrap();
    app.advance(60);
    let mails = app.wait_for_mails(1).await;
    let state = wait_for_state(&app, &client, &id, |s| s["delivery"]["status"] == "sent").await;
    assert_eq!((state["delivery"]["status"].as_str(), attempts(&state)), (Some("sent"), 2));
    assert_eq!(state["delivery"]["last_error"], Value::Null);
    assert!(app.link_in(&mails[0]).starts_with(&app.url("/l/")));
}

async fn a_connection_dropped_mid_message_is_retried_and_delivered_once(app: TestApp) {
    app.sink.set_mode(SinkMode::Drop);
    let client = app.client().await;
    let id = link_for(&app, &client, json!({ "email": random_email() })).await;
    let state = wait_for_state(&app, &client, &id, |s| attempts(s) >= 1).await;
    assert_eq!(state["delivery"]["status"], "queued", "{state}");
    app.sink.set_mode(SinkMode::Accept);
    app.advance(60);
    app.wait_for_mails(1).await;
    wait_for_state(&app, &client, &id, |s| s["delivery"]["status"] == "sent").await;
    app.advance(3600);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.sink.mails().len(), 1);
}

/// Leases are short (here 600 ms) and renewed while a message is being delivered: a delivery
/// that lasts several leases (an SMTP server taking 2.5 s) is never handed to another worker,
/// and goes out once.
async fn a_slow_delivery_keeps_its_lease_and_is_sent_once(mut app: TestApp) {
    let slow = SinkConfig { delay_before_data: Duration::from_millis(2500), ..Default::default() };
    let sink = SmtpSink::start_with(slow).await.unwrap();
    app.config.smtp_url = Some(sink.url());
    app.server.take().expect("the test's server").shutdown().await;
    // The real clock, since leases lapse by it here.
    let options = StartOptions {
        clock: Arc::new(SystemClock),
        worker: WorkerConfig {
            lease: time::Duration::milliseconds(600),
            poll_interval: Duration::from_millis(50),
            ..WorkerConfig::default()
        },
        ..app.options(false)
    };
    let server = start(app.config.clone(), options).await.expect("the server starts");
    app.base = server.public_url.trim_end_matches('/').to_owned();
    let store = server.store.clone();
    app.server = Some(server);

    let client = app.client().await;
    let id = link_for(&app, &client, json!({ "email": random_email() })).await;
    let delivering = eventually(Duration::from_secs(10), || async { sink.connections() }, |n| *n > 0).await;
    assert!(delivering > 0, "the worker started the delivery");
    let started = Instant::now();
    while sink.mails().is_empty() && started.elapsed() < Duration::from_secs(10) {
        let now = time::OffsetDateTime::now_utc();
        let taken = store.claim_outbox(now, now + time::Duration::milliseconds(600), 10).await.unwrap();
        assert!(taken.is_empty(), "another worker took a message in flight after {:?}", started.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(started.elapsed() >= Duration::from_secs(2), "the delivery lasted over three leases");
    let state = wait_for_state(&app, &client, &id, |s| s["delivery"]["status"] == "sent").await;
    assert_eq!(attempts(&state), 1, "{state}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sink.mails().len(), 1, "sent once");
}

/// A sink with TLS and authentication, and its CA in a file for `LATCHKEY_SMTP_CA_FILE`.
async fn tls_sink(tls: SinkTls, dir: &Path) -> (SmtpSink, PathBuf) {
    let sink = SmtpSink::start_with(SinkConfig {
        tls,
        auth: Some(SinkAuth::new("latchkey", "p@ss word")),
        ..Default::default()
    })
    .await
    .unwrap();
    let ca = dir.join("smtp-ca.pem");
    std::fs::write(&ca, sink.ca_pem().unwrap()).unwrap();
    (sink, ca)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_over_starttls_and_implicit_tls_with_a_private_ca_reuses_its_connection_on_sqlite() {
    delivery_over_tls_reuses_its_connection(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs LATCHKEY_TEST_DATABASE_URL (PostgreSQL)"]
async fn delivery_over_starttls_and_implicit_tls_with_a_private_ca_reuses_its_connection_on_postgres() {
    delivery_over_tls_reuses_its_connection(Backend::Postgres).await;
}

async fn delivery_over_tls_reuses_its_connection(backend: Backend) {
    for tls in [SinkTls::StartTls, SinkTls::Implicit] {
        let dir = tempfile::tempdir().unwrap();
        let (sink, ca) = tls_sink(tls, dir.path()).await;
        let url = sink.url();
        let app = TestApp::spawn_with(backend, |c| {
            c.smtp_url = Some(url);
            c.smtp_ca_file = Some(ca);
        })
        .await;
        let client = app.client().await;
        for n in 1..=3 {
            link_for(&app, &client, json!({ "email": random_email() })).await;
            let mails = sink.wait_for(n, Duration::from_secs(10)).await;
            assert_eq!(mails.len(), n, "{tls:?}");
            // The pool takes the connection back between messages.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for m in sink.mails() {
            assert!(m.tls, "{tls:?}: over TLS");
            assert_eq!(m.user.as_deref(), Some("latchkey"));
            assert!(app.link_in(&m).starts_with(&app.url("/l/")));
        }
        assert_eq!(sink.connections(), 1, "{tls:?}: one connection for three messages");
        assert!(app.sink.mails().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_keeps_the_message_queued() {
    let dir = tempfile::tempdir().unwrap();
    let (sink, _) = tls_sink(SinkTls::StartTls, dir.path()).await;
    let url = sink.url();
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.smtp_url = Some(url)).await;
    let client = app.client().await;
    let id = link_for(&app, &client, json!({ "email": random_email() })).await;
    let state = wait_for_state(&app, &client, &id, |s| attempts(s) >= 1).await;
    assert_eq!(state["delivery"]["status"], "queued");
    assert!(state["delivery"]["last_error"].as_str().unwrap().contains("certificate"), "{state}");
    assert!(sink.mails().is_empty());
}

/// The real binary, as a child process.
struct Child {
    process: std::process::Child,
    base: String,
}

impl Child {
    async fn start(dir: &Path, database_url: &str, smtp_url: &str, life: u32) -> Child {
        let (dir, database_url, smtp_url) = (dir.to_owned(), database_url.to_owned(), smtp_url.to_owned());
        tokio::task::spawn_blocking(move || {
            let log = std::fs::File::create(dir.join(format!("server-{life}.log"))).unwrap();
            let mut process = Command::new(env!("CARGO_BIN_EXE_latchkey"))
                .arg("serve")
                .current_dir(&dir)
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("LATCHKEY_LISTEN", "127.0.0.1:0")
                .env("LATCHKEY_DATABASE_URL", &database_url)
                .env("LATCHKEY_SMTP_URL", &smtp_url)
                .env("LATCHKEY_ADMIN_TOKEN", ADMIN_TOKEN)
                .env("LATCHKEY_SECRET_KEY", SECRET)
                .env("LATCHKEY_LOG", "info")
                .stdout(Stdio::piped())
                .stderr(log)
                .spawn()
                .expect("the latchkey binary starts");
            let stdout = process.stdout.take().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(rest) = line.strip_prefix("Latchkey is listening on ") {
                        let _ = tx.send(rest.split_whitespace().next().unwrap_or_default().to_owned());
                    }
                }
            });
            let addr = rx.recv_timeout(Duration::from_secs(60)).expect("the server says where it listens");
            Child { process, base: format!("http://{addr}") }
        })
        .await
        .unwrap()
    }

    /// SIGKILL: no shutdown, no flush, nothing.
    fn kill_9(mut self) {
        self.process.kill().unwrap();
        self.process.wait().unwrap();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

async fn delivery_state(http: &reqwest::Client, child: &Child, client: &Client, id: &str) -> Value {
    let res =
        As::app(client).on(http, &child.base).get(&format!("/v1/magic-links/{id}")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json::<Value>().await.unwrap()["delivery"].clone()
}

/// Waits until every link's delivery satisfies `done` (the real clock runs here).
async fn wait_all(
    http: &reqwest::Client,
    child: &Child,
    client: &Client,
    ids: &[String],
    seconds: u64,
    done: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let states = || async {
        let mut states = Vec::new();
        for id in ids {
            states.push(delivery_state(http, child, client, id).await);
        }
        states
    };
    eventually(Duration::from_secs(seconds), states, |states: &Vec<Value>| states.iter().all(&done)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_every_queued_message_is_delivered_exactly_once_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}", dir.path().join("latchkey.db").display());
    crash_and_recover(dir.path(), &database_url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs LATCHKEY_TEST_DATABASE_URL (PostgreSQL)"]
async fn after_kill_9_every_queued_message_is_delivered_exactly_once_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::from_env().await;
    crash_and_recover(dir.path(), &db.url).await;
}

async fn crash_and_recover(dir: &Path, database_url: &str) {
    const MESSAGES: usize = 8;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let sink = SmtpSink::start().await.unwrap();
    sink.set_mode(SinkMode::RefuseTemporarily);

    // First life: links are created, their mail is refused and stays queued; then SIGKILL.
    let first = Child::start(dir, database_url, &sink.url(), 1).await;
    let res = As::admin()
        .on(&http, &first.base)
        .post("/v1/applications")
        .json(&json!({ "name": "Acme", "redirect_uris": [CALLBACK] }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();
    let client = Client {
        id: body["client_id"].as_str().unwrap().into(),
        secret: body["client_secret"].as_str().unwrap().into(),
    };
    let mut ids = Vec::new();
    let mut recipients = BTreeSet::new();
    for _ in 0..MESSAGES {
        let email = random_email();
        let res = As::app(&client)
            .on(&http, &first.base)
            .post("/v1/magic-links")
            .json(&json!({ "email": email }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        ids.push(res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
        recipients.insert(email);
    }
    let states = wait_all(&http, &first, &client, &ids, 20, |d| d["attempts"].as_u64() >= Some(1)).await;
    for d in &states {
        assert_eq!(d["status"], "queued", "{d}");
        assert!(d["last_error"].as_str().unwrap_or_default().contains("451"), "{d}");
    }
    first.kill_9();
    assert!(sink.mails().is_empty());

    // Second life on the same database, with a server that accepts: every message, once.
    sink.set_mode(SinkMode::Accept);
    let second = Child::start(dir, database_url, &sink.url(), 2).await;
    let mails = sink.wait_for(MESSAGES, Duration::from_secs(45)).await;
    assert_eq!(mails.len(), MESSAGES, "every queued message is delivered after the crash");
    let states = wait_all(&http, &second, &client, &ids, 20, |d| d["status"] == "sent").await;
    assert!(states.iter().all(|d| d["status"] == "sent"), "{states:?}");
    second.kill_9();

    // Third life: what the outbox recorded as sent is not sent again.
    let third = Child::start(dir, database_url, &sink.url(), 3).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mails = sink.mails();
    assert_eq!(mails.len(), MESSAGES, "nothing is sent twice");
    let got: BTreeSet<String> = mails.iter().flat_map(|m| m.rcpt_to.clone()).collect();
    assert_eq!(got, recipients);
    let message_ids: BTreeSet<String> = mails.iter().filter_map(|m| m.header("Message-ID")).collect();
    assert_eq!(message_ids.len(), MESSAGES, "one Message-ID per outbox entry");

    // The mail composed before the crash carries a link that works now.
    let text = mails[0].text();
    let link = text.split_whitespace().find(|w| w.contains("/l/")).unwrap();
    let path = &link[link.find("/l/").unwrap()..];
    let res = http.post(format!("{}{path}", third.base)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    third.kill_9();
}

fn mail_test(dir: &Path, envs: &[(&str, &str)], to: &str) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_latchkey"));
    command.args(["mail", "test", "--to", to]).current_dir(dir).env_clear();
    command.env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for (k, v) in envs {
        command.env(k, v);
    }
    command.output().expect("latchkey mail test runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_test_reports_the_smtp_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let (sink, ca) = tls_sink(SinkTls::Implicit, dir.path()).await;
    let (path, url, ca) = (dir.path().to_owned(), sink.url(), ca.display().to_string());
    let run = move |to: &'static str, with_ca: bool| {
        let (path, url, ca) = (path.clone(), url.clone(), ca.clone());
        tokio::task::spawn_blocking(move || {
            let mut envs =
                vec![("LATCHKEY_SMTP_URL", url.as_str()), ("LATCHKEY_MAIL_FROM", "Acme <hi@acme.example>")];
            if with_ca {
                envs.push(("LATCHKEY_SMTP_CA_FILE", ca.as_str()));
            }
            mail_test(&path, &envs, to)
        })
    };

    let out = run("ada@example.com", true).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("Accepted by the SMTP server: 250"), "{stdout}");
    assert!(stdout.contains("smtps://127.0.0.1:") && !stdout.contains("p@ss"), "no password shown: {stdout}");
    let mails = sink.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(mails[0].rcpt_to, ["ada@example.com"]);
    assert_eq!(mails[0].subject().as_deref(), Some("Latchkey test message"));
    assert!(stdout.contains(&mails[0].header("Message-ID").unwrap()), "{stdout}");

    // Refused: the server's answer, and exit status 1.
    sink.set_mode(SinkMode::RefusePermanently);
    let out = run("ada@example.com", true).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("refused") && stderr.contains("550"), "{stderr}");

    // Without the private CA the TLS handshake fails, and says why.
    sink.set_mode(SinkMode::Accept);
    let out = run("ada@example.com", false).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");

    // No SMTP configured at all.
    let path = dir.path().to_owned();
    let out = tokio::task::spawn_blocking(move || mail_test(&path, &[], "ada@example.com")).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no SMTP server is configured"));
    assert_eq!(sink.mails().len(), 1);
}

mod relays {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refusing_relay_is_skipped_and_the_delivery_names_the_one_that_took_it_on_sqlite() {
        super::a_refusing_relay_is_skipped(super::Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs LATCHKEY_TEST_DATABASE_URL (PostgreSQL)"]
    async fn a_refusing_relay_is_skipped_and_the_delivery_names_the_one_that_took_it_on_postgres() {
        super::a_refusing_relay_is_skipped(super::Backend::Postgres).await;
    }
}

/// Two relays: the first refuses connections (nothing listens on its port), then answers 4xx;
/// the second takes the mail, and the magic link's delivery says so.
async fn a_refusing_relay_is_skipped(backend: Backend) {
    let first = SmtpSink::start().await.unwrap();
    let first_url = first.url();
    first.pause();
    let app = TestApp::spawn_with(backend, |c| {
        c.smtp_url = Some(format!("{first_url},{}", c.smtp_url.as_deref().unwrap()));
    })
    .await;
    let second = app.sink.addr().to_string();
    let client = app.client().await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let res = app.request_link(&client, json!({ "email": random_email() })).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        ids.push(res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
        if ids.len() == 1 {
            let link = app
                .magic_link_when(&client, &ids[0], Duration::from_secs(10), |l| {
                    l["delivery"]["status"] == "sent"
                })
                .await;
            assert_eq!(link["delivery"]["relay"], json!(second), "{link}");
            // Now the first relay is up but answers 4xx: skipped too.
            first.resume().unwrap();
            first.set_mode(SinkMode::RefuseTemporarily);
        }
    }
    let link = app
        .magic_link_when(&client, &ids[1], Duration::from_secs(10), |l| l["delivery"]["status"] == "sent")
        .await;
    assert_eq!(link["delivery"]["relay"], json!(second), "{link}");
    assert_eq!(app.wait_for_mails(2).await.len(), 2);
    assert!(first.mails().is_empty());

    // Once the first relay accepts again, it is preferred, and named.
    first.set_mode(SinkMode::Accept);
    let res = app.request_link(&client, json!({ "email": random_email() })).await;
    let id = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let link = app
        .magic_link_when(&client, &id, Duration::from_secs(10), |l| l["delivery"]["status"] == "sent")
        .await;
    assert_eq!(link["delivery"]["relay"], json!(first.addr().to_string()), "{link}");
}

/// A DNS server on a loopback UDP port that answers TXT questions from `records` (lower-case
/// names without the final dot) and NXDOMAIN for any other name.
fn dns_server(records: std::collections::HashMap<String, String>) -> std::net::SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let query = &buf[..n];
            let (mut at, mut labels) = (12, Vec::new());
            while at < n && query[at] != 0 {
                let len = query[at] as usize;
                labels.push(String::from_utf8_lossy(&query[at + 1..at + 1 + len]).to_lowercase());
                at += 1 + len;
            }
            let question_end = at + 5;
            let value = records.get(&labels.join("."));
            let mut answer = query[..2].to_vec();
            answer.extend_from_slice(if value.is_some() { &[0x81, 0x80] } else { &[0x81, 0x83] });
            answer.extend_from_slice(&[0, 1, 0, u8::from(value.is_some()), 0, 0, 0, 0]);
            answer.extend_from_slice(&query[12..question_end]);
            if let Some(value) = value {
                let mut data = Vec::new();
                for chunk in value.as_bytes().chunks(255) {
                    data.push(chunk.len() as u8);
                    data.extend_from_slice(chunk);
                }
                answer.extend_from_slice(&[0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 60]);
                answer.extend_from_slice(&(data.len() as u16).to_be_bytes());
                answer.extend_from_slice(&data);
            }
            let _ = socket.send_to(&answer, from);
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_test_reports_whether_the_records_are_published_when_dns_answers() {
    let dir = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start().await.unwrap();
    let base_env = |dns: String| {
        vec![
            ("LATCHKEY_SMTP_URL".to_owned(), sink.url()),
            ("LATCHKEY_MAIL_FROM".to_owned(), "Acme <hi@acme.example>".to_owned()),
            ("LATCHKEY_SECRET_KEY".to_owned(), "mail-test-master-secret-0123456789abcdef".to_owned()),
            ("LATCHKEY_DNS_SERVER".to_owned(), dns),
        ]
    };
    let run = |envs: Vec<(String, String)>, args: &'static [&'static str]| {
        let path = dir.path().to_owned();
        tokio::task::spawn_blocking(move || {
            let mut command = Command::new(env!("CARGO_BIN_EXE_latchkey"));
            command.args(args).current_dir(&path).env_clear();
            command.env("PATH", std::env::var_os("PATH").unwrap_or_default());
            for (k, v) in &envs {
                command.env(k, v);
            }
            command.output().expect("latchkey runs")
        })
    };

    // The DKIM record as `latchkey mail dns` prints it for this database's key.
    let out = run(base_env("127.0.0.1:9".into()), &["mail", "dns"]).await.unwrap();
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{printed}{}", String::from_utf8_lossy(&out.stderr));
    let dkim_line = printed.lines().find(|l| l.starts_with("latchkey._domainkey.acme.example.")).unwrap();
    let dkim: String = dkim_line.split('"').skip(1).step_by(2).collect();

    // SPF and DKIM published, DMARC not.
    let dns = dns_server(
        [
            ("acme.example".to_owned(), "v=spf1 include:relay.example ~all".to_owned()),
            ("latchkey._domainkey.acme.example".to_owned(), dkim),
        ]
        .into_iter()
        .collect(),
    );
    let out = run(base_env(dns.to_string()), &["mail", "test", "--to", "ada@example.com"]).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("DNS: SPF record of acme.example: published"), "{stdout}");
    assert!(stdout.contains("DNS: DKIM record of latchkey._domainkey.acme.example: published"), "{stdout}");
    assert!(stdout.contains("DNS: DMARC record of _dmarc.acme.example: NOT published"), "{stdout}");
    assert_eq!(sink.wait_for(1, Duration::from_secs(5)).await.len(), 1);

    // A DNS server that does not answer: said so, and the message still goes.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let out =
        run(base_env(silent.local_addr().unwrap().to_string()), &["mail", "test", "--to", "ada@example.com"])
            .await
            .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("DNS: not reachable") && stdout.contains("cannot say"), "{stdout}");
    assert_eq!(sink.wait_for(2, Duration::from_secs(5)).await.len(), 2);
}
