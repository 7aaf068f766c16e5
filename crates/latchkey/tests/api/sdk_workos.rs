//! The WorkOS face judged by the official SDKs, unchanged: the Python (`workos`) and Node
//! (`@workos-inc/node`) programs in `tests/sdk/workos/` run as child processes against a server
//! of the test's own, with only the base URL, API key and client id set. The test answers on
//! their stdin what only the e-mail carries (the link, the code) and what a browser does (the
//! press of the landing page's button), and checks what the programs cannot see.

use crate::helpers::{Backend, CALLBACK, TestApp, random_email};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

const INSTALL: &str = "crates/latchkey/tests/sdk/workos/install.sh";
/// The longest a program may run; it waits for nothing but our answers.
const PROGRAM_TIMEOUT: Duration = Duration::from_secs(120);

macro_rules! sdk_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs the WorkOS SDKs (crates/latchkey/tests/sdk/workos/install.sh)"]
                async fn $name() {
                    super::$name($crate::helpers::TestApp::spawn(super::Backend::Sqlite).await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs the WorkOS SDKs (crates/latchkey/tests/sdk/workos/install.sh) and LATCHKEY_TEST_DATABASE_URL (PostgreSQL)"]
                async fn $name() {
                    super::$name($crate::helpers::TestApp::spawn(super::Backend::Postgres).await).await;
                }
            )*
        }
    };
}

sdk_tests!(the_python_sdk_works_unchanged, the_node_sdk_works_unchanged);

async fn the_python_sdk_works_unchanged(app: TestApp) {
    let python = workspace().join("target/sdk/venv/bin/python");
    assert!(
        python.exists(),
        "the WorkOS Python SDK is not installed ({} is missing): run {INSTALL}",
        python.display()
    );
    let mut command = Command::new(python);
    command.arg(sdk_dir().join("workos_sdk.py"));
    drive(&app, command).await;
}

async fn the_node_sdk_works_unchanged(app: TestApp) {
    let sdk = sdk_dir().join("node_modules/@workos-inc/node");
    assert!(
        sdk.exists(),
        "the WorkOS Node SDK is not installed ({} is missing): run {INSTALL}",
        sdk.display()
    );
    let mut command = Command::new("node");
    command.arg(sdk_dir().join("workos.mjs"));
    drive(&app, command).await;
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/workos")
}

/// Runs one SDK program through every flow, answering what it asks, then checks the server's side.
async fn drive(app: &TestApp, mut command: Command) {
    let client = app.client().await;
    let domain = format!("{}.example", &random_email()[5..15]);
    let org = app
        .admin(
            reqwest::Method::POST,
            "/v1/organizations",
            Some(json!({ "name": "Org", "slug": &domain[..10], "domains": [&domain] })),
        )
        .await;
    assert_eq!(org.status(), StatusCode::CREATED);
    let org_id = org.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let link_email = format!("link@{domain}");
    let (code_email, limit_email) = (random_email(), random_email());

    let mut child = command
        .env("WORKOS_BASE_URL", &app.base)
        .env("WORKOS_API_KEY", &client.secret)
        .env("WORKOS_CLIENT_ID", &client.id)
        .env("CALLBACK", CALLBACK)
        .env("ORG_ID", &org_id)
        .env("LINK_EMAIL", &link_email)
        .env("CODE_EMAIL", &code_email)
        .env("LIMIT_EMAIL", &limit_email)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the SDK program starts");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = child.stderr.take().unwrap();
    let mut transcript = Vec::new();

    let conversation = async {
        while let Some(line) = stdout.next_line().await.expect("the program's output") {
            transcript.push(line.clone());
            let Some(need) = line.strip_prefix("NEED ") else { continue };
            let (kind, arg) = need.split_once(' ').unwrap_or((need, ""));
            let answer = answer(app, kind, arg).await;
            stdin.write_all(format!("{answer}\n").as_bytes()).await.unwrap();
        }
        child.wait().await.expect("the program ends")
    };
    let status = tokio::time::timeout(PROGRAM_TIMEOUT, conversation).await;
    let mut errors = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut errors).await.ok();
    let said = format!("{}\n{errors}", transcript.join("\n"));
    let status = status.unwrap_or_else(|_| panic!("the SDK program ran over {PROGRAM_TIMEOUT:?}:\n{said}"));
    assert!(status.success(), "the SDK program failed ({status}):\n{said}");
    assert_eq!(transcript.last().map(String::as_str), Some("OK"), "{said}");

    // `send` twice mailed once; sessions never sent mailed nothing; the code's user is verified.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(mails_to(app, &link_email), 1, "one e-mail for a session sent twice");
    assert_eq!(mails_to(app, &limit_email), 0, "sessions never sent mail nothing");
    assert_eq!(mails_to(app, &code_email), 1, "one e-mail with the Magic Auth code");
    let users =
        app.admin(reqwest::Method::GET, "/v1/users?limit=100", None).await.json::<Value>().await.unwrap();
    let verified = |email: &str| {
        users["data"].as_array().unwrap().iter().any(|u| u["email"] == email && u["email_verified"] == true)
    };
    assert!(verified(&link_email) && verified(&code_email), "{users}");
}

/// What only the e-mail or a browser can give the program.
async fn answer(app: &TestApp, kind: &str, arg: &str) -> String {
    match kind {
        "mails" => {
            // Long enough for the outbox worker (polling every 50 ms) to have sent anything due.
            tokio::time::sleep(Duration::from_millis(300)).await;
            mails_to(app, arg).to_string()
        }
        "mail-link" => app.link_in(&mail_to(app, arg).await),
        "mail-code" => app.otp_in(&mail_to(app, arg).await),
        "press" => {
            // As the landing page's form posts it from a browser.
            let res = app
                .http
                .post(arg)
                .header("Origin", &app.base)
                .header("Sec-Fetch-Site", "same-origin")
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::SEE_OTHER, "pressing the button");
            res.headers()["location"].to_str().unwrap().to_owned()
        }
        other => panic!("the program asked for {other:?}"),
    }
}

fn mails_to(app: &TestApp, email: &str) -> usize {
    app.sink.mails().iter().filter(|m| m.rcpt_to.iter().any(|r| r == email)).count()
}

async fn mail_to(app: &TestApp, email: &str) -> latchkey_mail::sink::ReceivedMail {
    let found = crate::helpers::eventually(
        Duration::from_secs(10),
        || async { app.sink.mails().into_iter().find(|m| m.rcpt_to.iter().any(|r| r == email)) },
        Option::is_some,
    )
    .await;
    found.unwrap_or_else(|| panic!("no e-mail to {email}"))
}
