//! SIGTERM with the real binary, under load: no request the server took up fails, no queued
//! mail is lost or sent twice, the process exits within its grace period, and every log line
//! written for a request carries that request's id (and no secret).
//!
//! What "took up" means is checked on the server's side rather than guessed from the client's
//! errors: a client whose connection was closed as the listener stopped cannot tell whether
//! its request was read, but the mail can. Every link creation that the server processed queues
//! exactly one e-mail, so after a restart has delivered what was left, the addresses that got
//! mail must be exactly those that were answered `201`.

use crate::hardening::{ADMIN, Binary};
use crate::helpers::{As, Client};
use latchkey_mail::sink::{ReceivedMail, SinkConfig, SmtpSink};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const CLIENTS: usize = 8;
const LOAD: Duration = Duration::from_secs(2);
const GRACE_MS: u64 = 10_000;

#[derive(Default)]
struct Seen {
    accepted: Vec<String>,
    answered_otherwise: Vec<StatusCode>,
    failed_before_the_signal: Vec<String>,
    after_the_signal: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_fails_no_request_loses_no_mail_and_exits_within_the_grace_period() {
    let _alone = crate::helpers::ALONE.write().await;
    let dir = tempfile::tempdir().unwrap();
    // A relay that takes a moment per message: mail is in flight when the signal comes.
    let sink = SmtpSink::start_with(SinkConfig {
        delay_before_data: Duration::from_millis(50),
        ..Default::default()
    })
    .await
    .unwrap();
    let smtp_url = sink.url();
    let grace = GRACE_MS.to_string();
    let env = [
        ("LATCHKEY_SMTP_URL", smtp_url.as_str()),
        ("LATCHKEY_LOG", "debug"),
        ("LATCHKEY_LOG_FORMAT", "json"),
        ("LATCHKEY_SHUTDOWN_GRACE_MS", grace.as_str()),
    ];
    let mut server = Binary::start_in(dir.path(), &[], &[], &env, &[]);
    let base = format!("http://{}", server.addr);
    let client = crate::crash::application(&reqwest::Client::new(), &base).await;

    // A request surely in flight at the signal: its head sent, half its body still to come.
    let body = json!({ "email": "in-flight@example.com" }).to_string();
    let (first_half, second_half) = body.split_at(body.len() / 2);
    let mut in_flight = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /v1/magic-links HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{first_half}",
        client.secret,
        body.len()
    );
    in_flight.write_all(head.as_bytes()).await.unwrap();

    let seen = Arc::new(Mutex::new(Seen::default()));
    let signalled = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for n in 0..CLIENTS {
        let (base, seen, signalled) = (base.clone(), seen.clone(), signalled.clone());
        let client = Client { id: client.id.clone(), secret: client.secret.clone() };
        clients.push(tokio::spawn(async move {
            // A new connection per request: once the listener is closed, a request fails to
            // connect, which says plainly that the server never saw it.
            let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
            let caller = As::app(&client).on(&http, &base);
            for i in 0.. {
                let email = format!("term-{n}-{i}@example.com");
                let after_signal = signalled.load(Ordering::SeqCst);
                let sent = caller
                    .post("/v1/magic-links")
                    .json(&json!({ "email": email }))
                    .timeout(Duration::from_secs(15))
                    .send()
                    .await;
                let mut seen = seen.lock().unwrap();
                match sent {
                    Ok(res) if res.status() == StatusCode::CREATED => {
                        seen.after_the_signal += usize::from(after_signal);
                        seen.accepted.push(email);
                    }
                    Ok(res) => seen.answered_otherwise.push(res.status()),
                    Err(_) if signalled.load(Ordering::SeqCst) => return,
                    Err(e) => seen.failed_before_the_signal.push(e.to_string()),
                }
            }
        }));
    }
    tokio::time::sleep(LOAD).await;

    signalled.store(true, Ordering::SeqCst);
    let signalled_at = Instant::now();
    server.terminate();
    // The rest of the body after the signal: the request still gets its answer.
    tokio::time::sleep(Duration::from_millis(200)).await;
    in_flight.write_all(second_half.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), in_flight.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(read.is_ok(), "the request in flight was answered and its connection closed");

    let status = server.exited_within(Duration::from_millis(GRACE_MS + 5_000));
    let stopped_after = signalled_at.elapsed();
    for c in clients {
        tokio::time::timeout(Duration::from_secs(20), c).await.expect("the clients stop").unwrap();
    }
    let log = server.output();
    let status = status.unwrap_or_else(|| panic!("still running {stopped_after:?} after SIGTERM:\n{log}"));
    assert!(status.success(), "exit status {status:?}:\n{log}");
    assert!(stopped_after < Duration::from_millis(GRACE_MS), "exited {stopped_after:?} after SIGTERM");
    assert!(answer.starts_with("HTTP/1.1 201"), "the request in flight: {answer}");

    let Seen { mut accepted, answered_otherwise, failed_before_the_signal, after_the_signal } =
        std::mem::take(&mut *seen.lock().unwrap());
    accepted.push("in-flight@example.com".into());
    assert!(failed_before_the_signal.is_empty(), "{failed_before_the_signal:?}");
    assert!(answered_otherwise.is_empty(), "answers other than 201: {answered_otherwise:?}");
    assert!(accepted.len() >= 50, "only {} links were accepted: not much of a load", accepted.len());

    // What the first run left queued, the next one delivers; then every accepted link has its
    // mail, once, and no address got mail for a request that was not answered.
    let arrived_before_restart = sink.mails().len();
    let second = Binary::start_in(dir.path(), &[], &[], &[("LATCHKEY_SMTP_URL", smtp_url.as_str())], &[]);
    let wanted: HashSet<&str> = accepted.iter().map(String::as_str).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while recipients(&sink.mails()).len() < wanted.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mails = sink.mails();
    let got = recipients(&mails);
    let got: HashSet<&str> = got.keys().map(String::as_str).collect();
    let missing: Vec<&&str> = wanted.difference(&got).collect();
    let unanswered: Vec<&&str> = got.difference(&wanted).collect();
    let mut copies: HashMap<String, usize> = HashMap::new();
    for m in &mails {
        *copies.entry(m.header("Message-ID").expect("a Message-ID")).or_default() += 1;
    }
    let twice = copies.values().filter(|n| **n > 1).count();
    eprintln!(
        "SIGTERM test: {} links accepted ({after_the_signal} answered after the signal), exit {stopped_after:?} \
         after SIGTERM, {arrived_before_restart} mails before the restart, {} in all",
        accepted.len(),
        mails.len()
    );
    assert!(missing.is_empty(), "accepted links without mail (lost): {missing:?}\n{}", second.output());
    assert!(unanswered.is_empty(), "requests processed but not answered 201: {unanswered:?}");
    assert_eq!(twice, 0, "a graceful shutdown sends nothing twice");
    drop(second);

    check_log_lines(&log, &client);
}

/// Every line is JSON; every line written for a request names it by its id; no secret.
fn check_log_lines(log: &str, client: &Client) {
    let mut for_requests = 0;
    let mut ids = HashSet::new();
    for line in log.lines().filter(|l| l.starts_with('{')) {
        let entry: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let spans = entry["spans"].as_array().cloned().unwrap_or_default();
        if let Some(request) = spans.iter().find(|s| s["name"] == "request") {
            for_requests += 1;
            let id = request["request_id"].as_str().unwrap_or_default();
            assert!(id.starts_with("req_"), "a request's line without its id: {line}");
            ids.insert(id.to_owned());
        }
        for secret in [client.secret.as_str(), ADMIN] {
            assert!(!line.contains(secret), "a secret in the log: {line}");
        }
    }
    assert!(for_requests >= 100 && ids.len() >= 50, "{for_requests} lines for {} requests", ids.len());
    let unstructured: Vec<&str> =
        log.lines().filter(|l| !l.starts_with('{') && !l.starts_with("Latchkey is listening")).collect();
    assert!(unstructured.len() <= 3, "lines that are not JSON: {unstructured:?}");
}

fn recipients(mails: &[ReceivedMail]) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for m in mails {
        let to = m.header("To").unwrap_or_default();
        *seen.entry(to.trim().trim_start_matches('<').trim_end_matches('>').to_owned()).or_default() += 1;
    }
    seen
}

/// A client that never finishes its request does not keep the process past the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_never_finishes_does_not_hold_the_exit_past_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("LATCHKEY_SHUTDOWN_GRACE_MS", "1500"), ("LATCHKEY_HTTP_BODY_TIMEOUT_MS", "60000")];
    let mut server = Binary::start_in(dir.path(), &[], &[], &env, &[]);
    let mut stuck = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /v1/applications HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    );
    stuck.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled_at = Instant::now();
    server.terminate();
    let status = server.exited_within(Duration::from_secs(10));
    let took = signalled_at.elapsed();
    let log = server.output();
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{log}");
    assert!(took >= Duration::from_millis(1_400), "it waited for the request ({took:?})");
    assert!(
        took < Duration::from_millis(4_000),
        "exited {took:?} after SIGTERM, past the grace period\n{log}"
    );
    assert!(log.contains("grace period ran out"), "{log}");
}
