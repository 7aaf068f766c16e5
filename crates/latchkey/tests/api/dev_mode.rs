//! `--dev` and the development mailbox: a first sign-in without SMTP or configuration.

use crate::helpers::{Backend, TestApp, eventually, query_param};
use reqwest::StatusCode;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_signs_in_with_the_demo_application() {
    let mut app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.smtp_url = None;
        c.admin_token = None;
    })
    .await;
    app.start(true).await;
    let server = app.server.as_ref().unwrap();
    assert!(
        server.admin_token.as_deref().is_some_and(|t| t.starts_with("lka_")),
        "--dev generates an admin token"
    );
    let home = app.http.get(app.url("/dev")).send().await.unwrap();
    assert_eq!(home.status(), StatusCode::OK);

    let res = app
        .http
        .post(app.url("/dev/sign-in"))
        .form(&[("email", "newcomer@example.com")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let mailbox = app.server.as_ref().unwrap().dev_mailbox.clone().unwrap();
    let messages =
        eventually(Duration::from_secs(5), || async { mailbox.messages() }, |m: &Vec<_>| !m.is_empty()).await;
    assert_eq!(messages.len(), 1);
    let page = app.http.get(app.url("/dev/mailbox")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("newcomer@example.com"));
    let link = messages[0].text.split_whitespace().find(|w| w.contains("/l/")).unwrap().to_owned();

    let res = app.http.post(&link).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&app.url("/dev/callback")));
    assert!(query_param(&location, "code").is_some());
    let done = app.http.get(&location).send().await.unwrap();
    assert_eq!(done.status(), StatusCode::OK);
    let html = done.text().await.unwrap();
    assert!(
        html.contains("Signed in")
            && html.contains("newcomer@example.com")
            && html.contains("&quot;amr&quot;"),
        "{html}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn development_pages_are_off_without_dev_and_with_smtp() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for path in ["/dev", "/dev/mailbox", "/dev/callback?code=x"] {
        assert_eq!(
            app.http.get(app.url(path)).send().await.unwrap().status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
}
