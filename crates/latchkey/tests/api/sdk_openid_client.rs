//! A standard OpenID Connect relying party library, unchanged, signs in through the hosted
//! pages from the discovery document alone: `tests/sdk/openid-client/rp.mjs` (openid-client,
//! pinned) runs as a child process; the test plays the person (types the e-mail, opens the
//! link in the same browser) and answers the program with the URL the browser came back to.

use crate::helpers::{Backend, CALLBACK, TestApp, eventually, random_email};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

const INSTALL: &str = "crates/latchkey/tests/sdk/openid-client/install.sh";
const PROGRAM_TIMEOUT: Duration = Duration::from_secs(60);

fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/openid-client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs openid-client (crates/latchkey/tests/sdk/openid-client/install.sh)"]
async fn openid_client_signs_in_through_the_hosted_pages_from_discovery_alone() {
    let library = sdk_dir().join("node_modules/openid-client");
    assert!(
        library.exists(),
        "openid-client is not installed ({} is missing): run {INSTALL}",
        library.display()
    );
    let app = TestApp::spawn(Backend::Sqlite).await;
    // The library's defaults, untouched: it expects RS256 id_tokens unless told otherwise.
    let client = app
        .create_client(json!({"name": "Relying party", "redirect_uris": [CALLBACK], "signing_alg": "RS256"}))
        .await;
    let email = random_email();
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let mut child = Command::new("node")
        .arg(sdk_dir().join("rp.mjs"))
        .env("ISSUER", &app.base)
        .env("CLIENT_ID", &client.id)
        .env("CLIENT_SECRET", &client.secret)
        .env("CALLBACK", CALLBACK)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = child.stderr.take().unwrap();
    let mut transcript = Vec::new();
    let conversation = async {
        while let Some(line) = stdout.next_line().await.expect("the program's output") {
            transcript.push(line.clone());
            if let Some(url) = line.strip_prefix("AUTHORIZE ") {
                let back = person(&app, &browser, url, &email).await;
                stdin.write_all(format!("{back}\n").as_bytes()).await.unwrap();
            }
        }
        child.wait().await.expect("the program ends")
    };
    let status = tokio::time::timeout(PROGRAM_TIMEOUT, conversation).await;
    let mut errors = String::new();
    let read = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut errors);
    let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
    let said = format!("{}\n{errors}", transcript.join("\n"));
    let status = status.unwrap_or_else(|_| panic!("the program ran over {PROGRAM_TIMEOUT:?}:\n{said}"));
    assert!(status.success(), "the relying party failed ({status}):\n{said}");
    assert_eq!(transcript.last().map(String::as_str), Some("OK"), "{said}");
    let claims: Value = transcript
        .iter()
        .find_map(|l| l.strip_prefix("CLAIMS "))
        .map(|c| serde_json::from_str(c).unwrap())
        .expect("the id_token's claims");
    assert_eq!(claims["email"], email.as_str());
    assert_eq!(claims["amr"], json!(["email"]));
    assert!(claims["auth_time"].is_i64() && claims["nonce"].is_string(), "{claims}");
    let info: Value = transcript
        .iter()
        .find_map(|l| l.strip_prefix("USERINFO "))
        .map(|c| serde_json::from_str(c).unwrap())
        .expect("userinfo");
    assert_eq!(info["email"], email.as_str());
}

/// What the person does in the browser: the e-mail page, then the link in the same browser.
/// The URL the browser is sent back to.
async fn person(app: &TestApp, browser: &reqwest::Client, url: &str, email: &str) -> String {
    let page = browser.get(url).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK, "the e-mail page");
    let mut form: Vec<(String, String)> =
        url::Url::parse(url).unwrap().query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    form.push(("email".into(), email.into()));
    let same_origin = |req: reqwest::RequestBuilder| {
        req.header("origin", app.base.as_str()).header("sec-fetch-site", "same-origin")
    };
    let res = same_origin(browser.post(app.url("/oauth/authorize"))).form(&form).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let mails = eventually(
        Duration::from_secs(10),
        || async { app.sink.mails() },
        |m| m.iter().any(|m| m.rcpt_to.iter().any(|r| r == email)),
    )
    .await;
    let mail = mails.iter().find(|m| m.rcpt_to.iter().any(|r| r == email)).expect("the e-mail");
    let link = app.link_in(mail);
    let res = same_origin(browser.post(&link)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    res.headers()["location"].to_str().unwrap().to_owned()
}
