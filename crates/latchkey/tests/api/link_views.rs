//! Scanner telemetry: every request for a link's landing page is recorded and classified, shown
//! by `GET /v1/magic-links/{id}`, written as events, counted by a metric, and bounded per link.

use crate::backend_tests;
use crate::helpers::{TestApp, eventually, random_email};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

backend_tests!(views_of_a_link_are_recorded_and_classified, a_flood_of_views_of_one_link_stays_bounded);

const BROWSER: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36";
const SAFE_LINKS: &str = "Mozilla/5.0 (compatible; SafeLinks/1.0; +https://example.com)";

fn views_total(link: &Value) -> u64 {
    link["views"]["total"].as_u64().unwrap_or(0)
}

fn link_views_total(metrics: &str, class: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("latchkey_link_views_total{") && l.contains(&format!("class=\"{class}\"")))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

async fn scrape(app: &TestApp) -> String {
    app.as_admin().get("/metrics").send().await.unwrap().text().await.unwrap()
}

async fn views_of_a_link_are_recorded_and_classified(app: TestApp) {
    let client = app.client().await;
    let before = scrape(&app).await;
    let res = app.request_link(&client, json!({ "email": random_email() })).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let id = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let mail = app.wait_for_mails(1).await.pop().unwrap();
    let link = app.link_in(&mail);
    app.magic_link_when(&client, &id, Duration::from_secs(10), |l| l["delivery"]["status"] == "sent").await;
    let fresh = app.magic_link(&client, &id).await;
    assert_eq!(fresh["views"], json!({ "total": 0, "kept": [] }), "{fresh}");

    // Views are recorded in the background, in the order they reach the database: wait for
    // each before the next, so that the order below is the order of the requests.
    let recorded = |n: u64| {
        eventually(Duration::from_secs(10), || app.magic_link(&client, &id), move |l| views_total(l) == n)
    };
    // A filter's HEAD and its GET as soon as the e-mail arrives.
    let head = app.http.head(&link).header("user-agent", BROWSER).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    recorded(1).await;
    let scanned = app.http.get(&link).header("user-agent", SAFE_LINKS).send().await.unwrap();
    assert_eq!(scanned.status(), StatusCode::OK);
    recorded(2).await;
    // The person, a minute later, from behind a proxy; then the press.
    app.advance(60);
    let person = app.http.get(&link).header("user-agent", BROWSER).header("x-forwarded-for", "203.0.113.9");
    assert_eq!(person.send().await.unwrap().status(), StatusCode::OK);
    recorded(3).await;
    let press = app.http.post(&link).header("user-agent", BROWSER).header("origin", &app.base);
    assert_eq!(press.send().await.unwrap().status(), StatusCode::SEE_OTHER);

    let read = recorded(4).await;
    assert_eq!(views_total(&read), 4, "three views and the press: {read}");
    let kept = read["views"]["kept"].as_array().unwrap();
    assert_eq!(kept.len(), 3, "the press is not listed as a view: {read}");
    let methods: Vec<&str> = kept.iter().map(|v| v["method"].as_str().unwrap()).collect();
    assert_eq!(methods, ["HEAD", "GET", "GET"]);
    assert_eq!(kept[0]["signs"], json!(["head", "too_soon"]));
    assert_eq!(kept[1]["signs"], json!(["too_soon", "scanner_agent"]));
    assert_eq!(kept[1]["user_agent"], SAFE_LINKS);
    assert!(kept[..2].iter().all(|v| v["likely_scanner"] == true && v["followed_by_press"] == true));
    assert_eq!(kept[2]["signs"], json!([]));
    assert_eq!(kept[2]["likely_scanner"], false);
    assert_eq!(kept[2]["followed_by_press"], true);
    assert_eq!(kept[2]["ip"], "203.0.113.9");
    assert_eq!(kept[2]["since_delivery_ms"], 60_000);
    assert_eq!(kept[0]["since_delivery_ms"], 0);

    // The events API tells the same story, and no secret of the link is in it.
    let viewed_events = || async {
        let events: Value = app.admin(Method::GET, "/v1/events?limit=100", None).await.json().await.unwrap();
        let viewed: Vec<Value> = events["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "link.viewed" && e["subject"] == id.as_str())
            .cloned()
            .collect();
        (events, viewed)
    };
    // The event of a view is written just after the view.
    let (events, viewed) = eventually(Duration::from_secs(10), viewed_events, |(_, v)| v.len() == 4).await;
    assert_eq!(viewed.len(), 4, "{events}");
    assert_eq!(
        viewed[0]["detail"],
        json!({ "method": "HEAD", "likely_scanner": true, "signs": ["head", "too_soon"] })
    );
    assert_eq!(viewed[3]["detail"]["method"], "POST");
    let token = link.rsplit('/').next().unwrap();
    assert!(!events.to_string().contains(token), "no link token in events");

    // The metric counts them by class (the counters are the process's: they only grow).
    let after = scrape(&app).await;
    assert!(link_views_total(&after, "likely_scanner") >= link_views_total(&before, "likely_scanner") + 2.0);
    assert!(link_views_total(&after, "unclassified") >= link_views_total(&before, "unclassified") + 2.0);
}

async fn a_flood_of_views_of_one_link_stays_bounded(app: TestApp) {
    let client = app.client().await;
    let (id, link, _) = app.link_without_mail(&client, &random_email()).await;
    let requests = (0..40).map(|_| app.http.get(&link).header("user-agent", BROWSER).send());
    for res in futures_util::future::join_all(requests).await {
        assert_eq!(res.unwrap().status(), StatusCode::OK);
    }
    let read =
        eventually(Duration::from_secs(10), || app.magic_link(&client, &id), |l| views_total(l) == 40).await;
    assert_eq!(views_total(&read), 40);
    let kept = read["views"]["kept"].as_array().unwrap();
    assert_eq!(kept.len(), 20, "only the first views are kept in full");
    // Not delivered by this server: no timing to judge; and the link is still open.
    assert!(kept.iter().all(|v| v["since_delivery_ms"].is_null() && v["signs"] == json!([])), "{read}");

    // Once the link has expired unused, every view was never followed by a press.
    app.advance(16 * 60);
    let expired = app.magic_link(&client, &id).await;
    assert_eq!(expired["status"], "expired");
    let kept = expired["views"]["kept"].as_array().unwrap();
    assert!(kept.iter().all(|v| v["signs"] == json!(["never_pressed"]) && v["likely_scanner"] == true));
}
