//! The Auth Armor face through the vendor's own Python SDK (`autharmor-sdk` 0.1.5, unchanged):
//! `tests/sdk/autharmor/autharmor.py` validates a registration and a sign-in that this side
//! started over raw v4 HTTP, with the tokens this side read from the e-mails. The SDK gets its
//! access token with `GET /connect/token` and calls the v3 validations. Needs the SDK
//! installed by `crates/latchkey/tests/sdk/autharmor/install.sh`; run without it, a case fails.

use crate::autharmor::{REGISTER, access_token, autharmor_client, json_of, link_to, post};
use crate::helpers::{CALLBACK, Client, TestApp, query_param, random_email};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const NEEDS: &str = "needs the Auth Armor SDK (crates/latchkey/tests/sdk/autharmor/install.sh)";
/// The SDK calls `requests` without a timeout: the whole run is bounded here instead.
const RUN_LIMIT: Duration = Duration::from_secs(60);

mod sqlite {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs the Auth Armor SDK (crates/latchkey/tests/sdk/autharmor/install.sh)"]
    async fn the_sdk_validates_registrations_and_sign_ins() {
        let app = crate::helpers::TestApp::spawn(crate::helpers::Backend::Sqlite).await;
        super::the_sdk_validates_registrations_and_sign_ins(app).await;
    }
}

mod postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs the Auth Armor SDK (crates/latchkey/tests/sdk/autharmor/install.sh) and LATCHKEY_TEST_DATABASE_URL (PostgreSQL)"]
    async fn the_sdk_validates_registrations_and_sign_ins() {
        let app = crate::helpers::TestApp::spawn(crate::helpers::Backend::Postgres).await;
        super::the_sdk_validates_registrations_and_sign_ins(app).await;
    }
}

fn sdk_folder() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/autharmor")
}

/// The shared virtual environment's Python, checked to have the SDK; panics, saying how to
/// install it, when it does not.
fn python() -> PathBuf {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/sdk/venv/bin/python");
    let installed = Command::new(&python)
        .args(["-c", "import autharmor_sdk; assert autharmor_sdk.__version__ == '0.1.5'"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(installed, "{NEEDS}: autharmor-sdk 0.1.5 is not installed in {}", python.display());
    python
}

/// The SDK program, answering one line per command within [`RUN_LIMIT`] of its start.
struct Sdk {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr: std::thread::JoinHandle<String>,
    deadline: Instant,
}

impl Sdk {
    fn spawn(app: &TestApp, client: &Client) -> Self {
        let mut child = Command::new(python())
            .arg(sdk_folder().join("autharmor.py"))
            .env("LATCHKEY_BASE_URL", &app.base)
            .env("AUTHARMOR_CLIENT_ID", &client.id)
            .env("AUTHARMOR_CLIENT_SECRET", &client.secret)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the SDK program starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let stdin = child.stdin.take();
        Self { child, stdin, lines, stderr, deadline: Instant::now() + RUN_LIMIT }
    }

    /// Sends one command and returns the program's answer; fails with its error output when
    /// it answers nothing in time or exits.
    fn ask(&mut self, command: &str) -> String {
        let stdin = self.stdin.as_mut().expect("the program's input is open");
        writeln!(stdin, "{command}").and_then(|()| stdin.flush()).expect("the program reads its input");
        let left = self.deadline.saturating_duration_since(Instant::now());
        match tokio::task::block_in_place(|| self.lines.recv_timeout(left)) {
            Ok(line) => line,
            Err(_) => self.fail(&format!("no answer to {:?}", command.split(' ').next())),
        }
    }

    /// Closes the program's input and expects it to exit cleanly.
    fn finish(mut self) {
        drop(self.stdin.take());
        let status = tokio::task::block_in_place(|| {
            loop {
                if let Some(status) = self.child.try_wait().expect("the program's status") {
                    return Some(status);
                }
                if Instant::now() >= self.deadline {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        match status {
            Some(s) if s.success() => {}
            Some(s) => self.fail(&format!("exited with {s}")),
            None => self.fail("did not exit in time"),
        }
    }

    fn fail(&mut self, what: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let stderr = std::mem::replace(&mut self.stderr, std::thread::spawn(String::new));
        let output = stderr.join().unwrap_or_default();
        panic!("the Auth Armor SDK program {what}:\n{output}");
    }
}

impl Drop for Sdk {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `(id, token)` pair of the newest e-mail to `email` whose link goes to `base`.
async fn from_mail(
    app: &TestApp,
    count: usize,
    email: &str,
    base: &str,
    id: &str,
    token: &str,
) -> (String, String) {
    let mails = app.wait_for_mails(count).await;
    let link = link_to(&mails, email, base);
    (query_param(&link, id).unwrap(), query_param(&link, token).unwrap())
}

async fn events_of(app: &TestApp) -> Vec<Value> {
    let res = app.admin(Method::GET, "/v1/events?limit=100", None).await;
    json_of(res, StatusCode::OK).await["data"].as_array().unwrap().clone()
}

async fn the_sdk_validates_registrations_and_sign_ins(app: TestApp) {
    let client = autharmor_client(&app).await;
    let token = access_token(&app, &client).await;
    let mut sdk = Sdk::spawn(&app, &client);

    let email = random_email();
    let start = json!({
        "email_address": email, "registration_redirect_url": REGISTER, "context_data": {"plan": "pro"}
    });
    json_of(post(&app, &token, "/v4/users/registrations/magiclink_email/start", start).await, StatusCode::OK)
        .await;
    let (id, secret) =
        from_mail(&app, 1, &email, REGISTER, "registration_id", "registration_validation_token").await;
    let answer = sdk.ask(&format!("register {id} {secret} {email} plan=pro"));
    let user_id = answer.strip_prefix("registered ").unwrap_or_else(|| panic!("{answer}")).to_owned();
    let user =
        json_of(app.admin(Method::GET, &format!("/v1/users/{user_id}"), None).await, StatusCode::OK).await;
    assert_eq!((user["email"].clone(), user["email_verified"].clone()), (json!(email), json!(true)));

    let start = json!({"user_id": user_id, "auth_redirect_url": CALLBACK});
    let started =
        json_of(post(&app, &token, "/v4/auth/magiclink_email/start", start).await, StatusCode::OK).await;
    let (auth_id, secret) =
        from_mail(&app, 2, &email, CALLBACK, "auth_request_id", "auth_validation_token").await;
    assert_eq!(started["auth_request_id"], auth_id.as_str());
    assert_eq!(sdk.ask(&format!("auth {auth_id} {secret} {user_id} {email}")), "authorized");
    assert_eq!(sdk.ask(&format!("unknown {auth_id}")), "refused");
    sdk.finish();

    // What this side sees: the SDK got one token of its own by GET /connect/token, each
    // request was consumed once, and one e-mail went out per request.
    let events = events_of(&app).await;
    let client_tokens = events
        .iter()
        .filter(|e| e["type"] == "token.issued" && e["detail"]["grant"] == "client_credentials")
        .count();
    assert_eq!(client_tokens, 2, "this side's token and the SDK's");
    for subject in [&id, &auth_id] {
        let consumed = events
            .iter()
            .filter(|e| e["type"] == "challenge.consumed" && e["subject"] == subject.as_str())
            .count();
        assert_eq!(consumed, 1, "{subject} consumed once");
    }
    assert_eq!(app.sink.mails().len(), 2, "one e-mail per request");
}
