//! `GET /metrics`: what the server counts, in the Prometheus text format, behind the admin token
//! or on a listener of its own. Counters labelled by application are exact (each test has its
//! own application); the others are shared by the tests of this process and only grow.

use crate::backend_tests;
use crate::helpers::{ADMIN_TOKEN, Backend, Client, TestApp, random_email};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

backend_tests!(sign_ins_codes_refusals_and_mail_are_counted);

/// The samples of a scrape: `name{labels}` → value.
struct Scrape(Vec<(String, f64)>);

impl Scrape {
    async fn take(app: &TestApp) -> Self {
        let res = app.as_admin().get("/metrics").send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
        Self::parse(&res.text().await.unwrap())
    }

    fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| l.rsplit_once(' '))
            .map(|(series, value)| (series.to_owned(), value.parse().unwrap_or(f64::NAN)))
            .collect();
        Self(samples)
    }

    /// The sum of the series of `name` that carry every one of `labels` (`key="value"`).
    fn sum(&self, name: &str, labels: &[&str]) -> f64 {
        self.0
            .iter()
            .filter(|(series, _)| {
                let (n, rest) = series.split_once('{').unwrap_or((series, ""));
                n == name && labels.iter().all(|l| rest.contains(l))
            })
            .map(|(_, v)| v)
            .sum()
    }
}

async fn app_id(app: &TestApp, client: &Client) -> String {
    let list: Value = app.as_admin().get("/v1/applications").send().await.unwrap().json().await.unwrap();
    let found = list["data"].as_array().unwrap().iter().find(|a| a["client_id"] == client.id.as_str());
    found.unwrap()["id"].as_str().unwrap().to_owned()
}

async fn sign_ins_codes_refusals_and_mail_are_counted(app: TestApp) {
    let unauthenticated = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    let wrong = app.http.get(app.url("/metrics")).bearer_auth("not-the-token").send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    let client = app.client().await;
    let app_label = format!("application=\"{}\"", app_id(&app, &client).await);
    let before = Scrape::take(&app).await;

    // A sign-in by link, without mail.
    app.sign_in(&client).await;
    // A sign-in by code, with mail: one wrong code, then the right one.
    let email = random_email();
    assert_eq!(app.request_link(&client, json!({ "email": email })).await.status(), StatusCode::CREATED);
    let mail = app.wait_for_mails(1).await.pop().unwrap();
    let otp = app.otp_in(&mail);
    let wrong = if otp == "000000" { "111111" } else { "000000" };
    let grant = "urn:latchkey:params:oauth:grant-type:email-otp";
    for (code, expected) in [(wrong, StatusCode::BAD_REQUEST), (otp.as_str(), StatusCode::OK)] {
        let res = app
            .as_app(&client)
            .post("/oauth/token")
            .form(&[("grant_type", grant), ("email", email.as_str()), ("otp", code)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), expected);
    }
    // A revoked link, another, and a fourth request for one address within a minute (refused).
    let (id, _, _) = app.link_without_mail(&client, &email).await;
    app.link_without_mail(&client, &email).await;
    assert_eq!(
        app.as_app(&client).delete(&format!("/v1/magic-links/{id}")).send().await.unwrap().status(),
        200
    );
    let limited = app.request_link(&client, json!({ "email": email, "send_email": false })).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);

    let after = crate::helpers::eventually(
        Duration::from_secs(10),
        || Scrape::take(&app),
        |s: &Scrape| s.sum("latchkey_mail_deliveries_total", &["outcome=\"sent\""]) >= 1.0,
    )
    .await;
    let exact = |name: &str, labels: &[&str]| {
        let mut with_app = labels.to_vec();
        with_app.push(&app_label);
        after.sum(name, &with_app)
    };
    assert_eq!(exact("latchkey_challenges_created_total", &["purpose=\"login\""]), 4.0);
    assert_eq!(exact("latchkey_challenges_consumed_total", &["method=\"link\""]), 1.0);
    assert_eq!(exact("latchkey_challenges_consumed_total", &["method=\"code\""]), 1.0);
    assert_eq!(exact("latchkey_challenges_revoked_total", &["purpose=\"login\""]), 1.0);
    assert_eq!(exact("latchkey_otp_failures_total", &[]), 1.0);
    assert_eq!(exact("latchkey_otp_burned_total", &[]), 0.0);

    let grew = |name: &str, labels: &[&str], by: f64| {
        let (b, a) = (before.sum(name, labels), after.sum(name, labels));
        assert!(a - b >= by, "{name}{labels:?}: {b} → {a}, expected at least +{by}");
    };
    grew("latchkey_tokens_issued_total", &["grant=\"authorization_code\""], 1.0);
    grew("latchkey_tokens_issued_total", &["grant=\"otp\""], 1.0);
    grew("latchkey_rate_limited_total", &["kind=\"email\""], 1.0);
    grew("latchkey_mail_deliveries_total", &["outcome=\"sent\""], 1.0);
    grew("latchkey_mail_delivery_seconds_count", &[], 1.0);
    grew(
        "latchkey_http_requests_total",
        &["route=\"/v1/magic-links\"", "status=\"2xx\"", "method=\"POST\""],
        3.0,
    );
    grew("latchkey_http_requests_total", &["route=\"/v1/magic-links\"", "status=\"4xx\""], 1.0);
    grew("latchkey_http_requests_total", &["route=\"/l/{token}\"", "status=\"3xx\""], 1.0);
    grew("latchkey_http_request_duration_seconds_count", &["route=\"/oauth/token\""], 3.0);
    assert_eq!(after.sum("latchkey_database_up", &[]), 1.0);
    assert!(after.0.iter().any(|(s, _)| s.starts_with("latchkey_mail_queue_depth")));
    assert!(after.0.iter().any(|(s, _)| s.starts_with("latchkey_mail_queue_oldest_age_seconds")));
    assert!(after.0.iter().any(|(s, _)| s.starts_with("latchkey_build_info{version=")));
    // Routes are named by their pattern: no path with a token in it becomes a label.
    assert!(!after.0.iter().any(|(s, _)| s.contains("route=\"/l/") && !s.contains("route=\"/l/{token}\"")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_listener_of_its_own_needs_no_token_and_serves_nothing_else() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.metrics_listen = Some("127.0.0.1:0".into())).await;
    let at = app.server.as_ref().unwrap().metrics_addr.expect("a metrics listener");
    let res = app.http.get(format!("http://{at}/metrics")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("# TYPE latchkey_build_info gauge"));
    let other =
        app.http.get(format!("http://{at}/v1/applications")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
    // The main listener still asks for the admin token.
    let main = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(main.status(), StatusCode::UNAUTHORIZED);
}
