//! What an attacker tried: each probe that once got through, kept as a test.

use crate::backend_tests;
use crate::helpers::{CALLBACK, TestApp, query_param};
use latchkey_mail::sink::{SinkAuth, SinkConfig, SmtpSink};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::io::{BufRead as _, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

pub(crate) const ADMIN: &str = "hardening-admin-token-0123456789";
const MASTER: &str = "hardening-master-secret-0123456789abcdef";

/// The release binary as `latchkey serve` runs it, on port 0 with a database of its own, its
/// output kept for the test to read. Killed when dropped.
pub(crate) struct Binary {
    child: Child,
    pub(crate) addr: SocketAddr,
    output: Arc<Mutex<String>>,
    _dir: Option<tempfile::TempDir>,
}

impl Binary {
    /// `prefix` runs before the binary (e.g. `prlimit --nofile=256:256`).
    fn start(prefix: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_with(prefix, &[], env, &[])
    }

    /// With arguments after `serve`, and variables of the defaults left out.
    fn start_with(prefix: &[&str], args: &[&str], env: &[(&str, &str)], unset: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut binary = Self::start_in(dir.path(), prefix, args, env, unset);
        binary._dir = Some(dir);
        binary
    }

    /// In `dir`, which the caller keeps (its SQLite database outlives this process).
    pub(crate) fn start_in(
        dir: &std::path::Path,
        prefix: &[&str],
        args: &[&str],
        env: &[(&str, &str)],
        unset: &[&str],
    ) -> Self {
        // Another build (the release binary, to measure it) when LATCHKEY_TEST_BINARY names one.
        let bin =
            std::env::var("LATCHKEY_TEST_BINARY").unwrap_or_else(|_| env!("CARGO_BIN_EXE_latchkey").into());
        let mut command = match prefix.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        command
            .arg("serve")
            .args(args)
            .current_dir(dir)
            .env("LATCHKEY_LISTEN", "127.0.0.1:0")
            .env("LATCHKEY_DATABASE_URL", format!("sqlite://{}", dir.join("latchkey.db").display()))
            .env("LATCHKEY_ADMIN_TOKEN", ADMIN)
            .env("LATCHKEY_SECRET_KEY", MASTER)
            .env("LATCHKEY_LOG", "info")
            .env_remove("LATCHKEY_SMTP_URL")
            .envs(env.iter().copied());
        for name in unset {
            command.env_remove(name);
        }
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("the binary starts");
        let output = Arc::new(Mutex::new(String::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        for (stream, tx) in [
            (Box::new(stdout) as Box<dyn Read + Send>, Some(addr_tx)),
            (Box::new(stderr) as Box<dyn Read + Send>, None),
        ] {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { return };
                    if let (Some(tx), Some(rest)) = (&tx, line.strip_prefix("Latchkey is listening on ")) {
                        let addr = rest.split_whitespace().next().unwrap_or_default();
                        let _ = tx.send(addr.parse::<SocketAddr>());
                    }
                    let mut out = output.lock().unwrap();
                    out.push_str(&line);
                    out.push('\n');
                }
            });
        }
        let addr = match addr_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(addr)) => addr,
            other => {
                let _ = child.kill();
                panic!("the server did not start ({other:?}): {}", output.lock().unwrap());
            }
        };
        Self { child, addr, output, _dir: None }
    }

    /// SIGKILL: no shutdown, no flush; waits until the process is gone.
    pub(crate) fn kill_9(mut self) {
        self.child.kill().expect("the server is killed");
        self.child.wait().expect("the killed server is reaped");
    }

    /// SIGTERM: the graceful shutdown.
    pub(crate) fn terminate(&self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        assert!(status.expect("kill runs").success(), "SIGTERM was sent");
    }

    /// The exit status, once the process has ended within `wait`; `None` if it has not.
    pub(crate) fn exited_within(&mut self, wait: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            if let Some(status) = self.child.try_wait().expect("the process can be waited for") {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// The output once it holds `needle`, waiting at most five seconds for it.
    fn output_with(&self, needle: &str) -> String {
        for _ in 0..100 {
            let output = self.output();
            if output.contains(needle) {
                return output;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{needle:?} never came: {}", self.output());
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads until the server closes the connection (or resets it); `None` if it has not within
/// `wait`. Returns what was read.
async fn read_until_closed(stream: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(seen),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// A GET of `/healthz` on a connection of its own, with a bound on the whole exchange.
async fn healthz(addr: SocketAddr, wait: Duration) -> Result<String, String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&response).into_owned())
    };
    tokio::time::timeout(wait, exchange).await.map_err(|_| "no answer in time".to_owned())?
}

/// About a thousand stalled sockets once exhausted the descriptors and `/healthz` stopped
/// answering. Here the server may hold 256 descriptors and gets 400 stalled connections of
/// three kinds: headers that never end, a body that stops after one byte, and nothing at all.
/// The timeouts (3 s) leave the burst of connections time to fill every descriptor even on a
/// busy machine: with 1 s, the first ones were sometimes cut before the last arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_health_still_answers() {
    let server = Binary::start(
        &["prlimit", "--nofile=256:256"],
        &[("LATCHKEY_HTTP_HEADER_TIMEOUT_MS", "3000"), ("LATCHKEY_HTTP_BODY_TIMEOUT_MS", "3000")],
    );
    assert!(healthz(server.addr, Duration::from_secs(10)).await.is_ok_and(|r| r.starts_with("HTTP/1.1 200")));

    let body_stall = format!(
        "POST /v1/applications HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    );
    let mut connecting = Vec::new();
    for i in 0..400 {
        let addr = server.addr;
        let first: Vec<u8> = match i % 3 {
            0 => b"POST /v1/magic-links HTTP/1.1\r\nHost: x\r\n".to_vec(),
            1 => body_stall.clone().into_bytes(),
            _ => Vec::new(),
        };
        connecting.push(tokio::spawn(async move {
            let mut stream =
                tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await.ok()?.ok()?;
            stream.write_all(&first).await.ok()?;
            Some(stream)
        }));
    }
    let mut stalled = Vec::new();
    for (i, task) in connecting.into_iter().enumerate() {
        if let Some(stream) = task.await.unwrap() {
            stalled.push((i % 3, stream));
        }
    }
    assert!(stalled.len() > 256, "only {} stalled connections were opened", stalled.len());

    // The stalled sockets hold every descriptor the server has; it must cut them off and
    // answer again once their time is up.
    let health = healthz(server.addr, Duration::from_secs(15)).await;
    assert!(
        health.as_ref().is_ok_and(|r| r.starts_with("HTTP/1.1 200")),
        "/healthz: {health:?}\n{}",
        server.output()
    );

    let closed = futures_util::future::join_all(
        stalled.iter_mut().map(|(_, stream)| read_until_closed(stream, Duration::from_secs(15))),
    )
    .await;
    let mut still_open = [0; 3];
    for ((kind, _), closed) in stalled.iter().zip(&closed) {
        if closed.is_none() {
            still_open[*kind] += 1;
        }
    }
    assert_eq!(
        still_open,
        [0; 3],
        "stalled connections the server did not close (unfinished head, stopped body, nothing)\n{}",
        server.output()
    );

    // An idle kept-alive connection is closed too, after its answer.
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let answered = read_until_closed(&mut idle, Duration::from_secs(15)).await;
    let answered = answered.expect("the idle kept-alive connection was not closed");
    assert!(String::from_utf8_lossy(&answered).starts_with("HTTP/1.1 200"));

    // The server did run out of descriptors, and said so without a line per failed accept.
    let log = server.output();
    let logged = log.matches("accept error").count();
    assert!((1..=10).contains(&logged), "{logged} lines of accept errors: {log}");
}

backend_tests!(
    quoted_local_parts_are_refused,
    redirect_uris_match_only_as_registered,
    the_exchange_names_the_redirect_uri_when_the_sign_in_did,
);

async fn quoted_local_parts_are_refused(app: TestApp) {
    let client = app.client().await;
    for email in ["\"a b\"@example.com", "\"<script>alert(1)</script>\"@example.com", "(c)ada@example.com"] {
        let res = app.request_link(&client, json!({ "email": email })).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{email}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], "invalid_field", "{email}: {body}");
    }
    assert!(app.sink.mails().is_empty(), "nothing was sent");
}

async fn redirect_uris_match_only_as_registered(app: TestApp) {
    let client = app
        .create_client(json!({
            "name": "Exact",
            "redirect_uris": ["https://app.example/cb", "http://127.0.0.1:3000/cb"],
            "default_redirect_uri": "https://app.example/cb",
        }))
        .await;
    for registered in ["https://app.example/cb", "http://127.0.0.1:3000/cb"] {
        let res = app
            .request_link(
                &client,
                json!({ "email": "ada@example.com", "redirect_uri": registered, "send_email": false }),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED, "{registered}");
    }
    for variant in [
        "https://APP.EXAMPLE/cb",
        "https://app.example:443/cb",
        "https://app.example/x/../cb",
        "https://app.example/./cb",
        "https://%61pp.example/cb",
        "https://app.example/%63b",
        "https://app.example/cb?",
        "http://127.1:3000/cb",
        "http://127.0.0.1:3000/cb/",
    ] {
        let res = app
            .request_link(
                &client,
                json!({ "email": "ada@example.com", "redirect_uri": variant, "send_email": false }),
            )
            .await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{variant}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], "redirect_uri_not_allowed", "{variant}: {body}");
    }
    // A tab is not part of any URI: the URL parser used to drop it silently.
    let res = app
        .request_link(
            &client,
            json!({ "email": "ada@example.com", "redirect_uri": "https://app.exa\tmple/cb", "send_email": false }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_redirect_uri", "{body}");
}

/// RFC 6749 §4.1.3: when the sign-in named its `redirect_uri`, the code's exchange must name
/// the same one; a sign-in that took the application's default needs none at the exchange.
async fn the_exchange_names_the_redirect_uri_when_the_sign_in_did(app: TestApp) {
    const OTHER: &str = "https://app.example/other";
    let client = app
        .create_client(json!({
            "name": "Named", "redirect_uris": [CALLBACK, OTHER], "default_redirect_uri": CALLBACK,
        }))
        .await;
    let code_for = |redirect_uri: Option<&str>| {
        let mut body = json!({ "email": crate::helpers::random_email(), "send_email": false });
        if let Some(uri) = redirect_uri {
            body["redirect_uri"] = uri.into();
        }
        let (app, client) = (&app, &client);
        async move {
            let res = app.request_link(client, body).await;
            assert_eq!(res.status(), StatusCode::CREATED);
            let link: Value = res.json().await.unwrap();
            app.code_from(link["link"].as_str().unwrap()).await
        }
    };
    let exchange = |code: String, redirect_uri: Option<&'static str>| {
        let mut form = vec![("grant_type", "authorization_code".to_owned()), ("code", code)];
        if let Some(uri) = redirect_uri {
            form.push(("redirect_uri", uri.to_owned()));
        }
        let (app, client) = (&app, &client);
        async move {
            let res = app.as_app(client).post("/oauth/token").form(&form).send().await.unwrap();
            let status = res.status();
            (status, res.json::<Value>().await.unwrap())
        }
    };

    // Named (even when it is the default): the exchange must name it, exactly.
    for named in [OTHER, CALLBACK] {
        let code = code_for(Some(named)).await;
        let (status, body) = exchange(code.clone(), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{named}: {body}");
        assert_eq!(body["error"], "invalid_grant", "{body}");
        assert!(body["error_description"].as_str().unwrap().contains("redirect_uri"), "{body}");
        let wrong = if named == OTHER { CALLBACK } else { OTHER };
        let (status, body) = exchange(code.clone(), Some(wrong)).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
        // Refused before it was spent: with the right URI, the same code still works.
        let (status, body) = exchange(code, Some(named)).await;
        assert_eq!(status, StatusCode::OK, "{named}: {body}");
        assert!(body["access_token"].is_string());
    }

    // The default, not named: no redirect_uri needed, and the one it went to is accepted.
    let (status, body) = exchange(code_for(None).await, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = exchange(code_for(None).await, Some(CALLBACK)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = exchange(code_for(None).await, Some(OTHER)).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
}

/// With the most verbose log level, a whole sign-in (the mail, its landing page, the code's
/// exchange, a refresh) writes none of its secrets to the output: not the link's token, the
/// code, the client secret, the tokens, the admin token, the master secret nor the SMTP
/// password. (The mail library once logged every SMTP line at `debug`: the message with its
/// live link and code, and the credentials.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_most_verbose_log_holds_no_secret_on_sqlite() {
    secrets_stay_out_of_the_log(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs LATCHKEY_TEST_DATABASE_URL (PostgreSQL)"]
async fn the_most_verbose_log_holds_no_secret_on_postgres() {
    let db = latchkey_postgres::testing::TestDatabase::from_env().await;
    secrets_stay_out_of_the_log(Some(db.url.clone())).await;
}

async fn secrets_stay_out_of_the_log(database_url: Option<String>) {
    const SMTP_PASSWORD: &str = "smtp-password-0123456789";
    let sink = SmtpSink::start_with(SinkConfig {
        auth: Some(SinkAuth::new("mailer", SMTP_PASSWORD)),
        ..Default::default()
    })
    .await
    .unwrap();
    let smtp_url = sink.url();
    let mut env = vec![("LATCHKEY_LOG", "trace"), ("LATCHKEY_SMTP_URL", smtp_url.as_str())];
    if let Some(url) = &database_url {
        env.push(("LATCHKEY_DATABASE_URL", url));
    }
    let server = Binary::start(&[], &env);
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();

    let res = http
        .post(format!("{base}/v1/applications"))
        .bearer_auth(ADMIN)
        .json(&json!({ "name": "Logged", "redirect_uris": [CALLBACK] }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let app: Value = res.json().await.unwrap();
    let (client_id, client_secret) =
        (app["client_id"].as_str().unwrap().to_owned(), app["client_secret"].as_str().unwrap().to_owned());

    let res = http
        .post(format!("{base}/v1/magic-links"))
        .basic_auth(&client_id, Some(&client_secret))
        .json(&json!({ "email": "logged@example.com" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let mails = sink.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(mails.len(), 1, "the mail was delivered: {}", server.output());
    let text = mails[0].text();
    let link = text.split_whitespace().find(|w| w.contains("/l/")).expect("a link").to_owned();
    let link_token = link.rsplit('/').next().unwrap().to_owned();
    let otp = text
        .split_whitespace()
        .find(|w| w.len() == 6 && w.bytes().all(|b| b.is_ascii_digit()))
        .expect("a code")
        .to_owned();
    assert!(link_token.len() >= 40, "{link}");

    assert_eq!(http.get(&link).send().await.unwrap().status(), StatusCode::OK);
    let res = http.post(&link).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let code = query_param(&location, "code").expect("a code in the redirect");
    let res = http
        .post(format!("{base}/oauth/token"))
        .basic_auth(&client_id, Some(&client_secret))
        .form(&[("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", CALLBACK)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let tokens: Value = res.json().await.unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let res = http
        .post(format!("{base}/oauth/token"))
        .basic_auth(&client_id, Some(&client_secret))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let refreshed: Value = res.json().await.unwrap();

    let log = server.output();
    assert!(log.contains("TRACE") || log.contains("DEBUG"), "the log is verbose: {log}");
    let secrets = [
        ("the link's token", link_token.as_str()),
        ("the code", otp.as_str()),
        ("the authorization code", code.as_str()),
        ("the client secret", client_secret.as_str()),
        ("the access token", tokens["access_token"].as_str().unwrap()),
        ("the id token", tokens["id_token"].as_str().unwrap_or("no id token")),
        ("the refresh token", refresh.as_str()),
        ("the new refresh token", refreshed["refresh_token"].as_str().unwrap()),
        ("the admin token", ADMIN),
        ("the master secret", MASTER),
        ("the SMTP password", SMTP_PASSWORD),
    ];
    for (what, secret) in secrets {
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(secret)).collect();
        assert!(lines.is_empty(), "{what} ({secret}) is in the log:\n{}", lines.join("\n"));
    }
    // The 6-digit code could match some unrelated number; the mail's body, though, is its own.
    let body_line = text.lines().find(|l| l.contains(&otp)).unwrap();
    assert!(!log.contains(body_line.trim()), "the mail's body is in the log");
}

/// `serve --dev` shows the admin token it generated, never one from the configuration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_shows_only_an_admin_token_it_generated() {
    let configured = Binary::start_with(&[], &["--dev"], &[], &[]);
    let output = configured.output_with("Try a sign-in");
    assert!(!output.contains(ADMIN), "the configured admin token was printed: {output}");
    drop(configured);

    let generated = Binary::start_with(&[], &["--dev"], &[], &["LATCHKEY_ADMIN_TOKEN"]);
    let output = generated.output_with("Try a sign-in");
    let shown = output
        .lines()
        .find_map(|l| l.strip_prefix("Admin token: lka_"))
        .expect("the generated token is shown");
    let token = format!("lka_{shown}");
    let res = reqwest::Client::new()
        .get(format!("http://{}/v1/applications", generated.addr))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "the token shown is the one in force");
}

/// On shutdown the listener stops accepting at once, and a request in flight (here, its body
/// half sent) still gets its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_accepting_and_finishes_requests_in_flight() {
    let mut app = TestApp::spawn(crate::helpers::Backend::Sqlite).await;
    let addr = app.server.as_ref().unwrap().addr;
    let body = json!({ "name": "In flight", "redirect_uris": [CALLBACK] }).to_string();
    let (first, rest) = body.split_at(body.len() / 2);
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/applications HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{first}",
        crate::helpers::ADMIN_TOKEN,
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // Let the server read the head and start on the request.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let server = app.server.take().unwrap();
    let stopping = tokio::spawn(server.shutdown());
    let mut refused = false;
    for _ in 0..50 {
        if TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "new connections are refused once shutting down");
    assert!(!stopping.is_finished(), "the shutdown waits for the request in flight");

    stream.write_all(rest.as_bytes()).await.unwrap();
    let answer =
        read_until_closed(&mut stream, Duration::from_secs(10)).await.expect("an answer, then close");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    tokio::time::timeout(Duration::from_secs(10), stopping).await.expect("the shutdown ends").unwrap();
}
