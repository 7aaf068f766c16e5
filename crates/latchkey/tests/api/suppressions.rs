//! Bounces and suppression: an address refused for good at `RCPT TO` gets no mail for a while.
//! Later requests for it answer as usual and queue nothing; the admin reads and lifts it.

use crate::backend_tests;
use crate::helpers::{CALLBACK, Client, TestApp, random_email};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

backend_tests!(a_bounced_address_gets_no_mail_until_lifted_or_expired);

async fn create(app: &TestApp, client: &Client, email: &str) -> Value {
    let res = app.request_link(client, json!({ "email": email })).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json().await.unwrap()
}

async fn delivered(app: &TestApp, client: &Client, id: &str) -> Value {
    let link = app
        .magic_link_when(client, id, Duration::from_secs(10), |l| {
            !matches!(l["delivery"]["status"].as_str(), Some("queued"))
        })
        .await;
    link["delivery"].clone()
}

async fn get(app: &TestApp, path: &str) -> (StatusCode, Value) {
    let res = app.admin(Method::GET, path, None).await;
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

async fn events_of(app: &TestApp, kind: &str) -> Vec<Value> {
    let (_, page) = get(app, "/v1/events?limit=100").await;
    page["data"].as_array().unwrap().iter().filter(|e| e["type"] == kind).cloned().collect()
}

async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app.as_admin().get("/metrics").send().await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

async fn a_bounced_address_gets_no_mail_until_lifted_or_expired(app: TestApp) {
    // One address asks for more links than the default per-address limits allow.
    let limits = json!({ "per_email_per_minute": 100, "per_email_per_hour": 100 });
    let client = app
        .create_client(json!({ "name": "Acme", "redirect_uris": [CALLBACK], "rate_limits": limits }))
        .await;
    let (suppressed_before, suppressions_before) = (
        metric(&app, "latchkey_mail_suppressed_total").await,
        metric(&app, "latchkey_mail_suppressions_total").await,
    );
    let gone = random_email();
    app.sink.set_unknown(&gone, true);

    // The first message bounces at RCPT TO: failed at once, and the address is suppressed.
    let first = create(&app, &client, &gone).await;
    let delivery = delivered(&app, &client, first["id"].as_str().unwrap()).await;
    assert_eq!((delivery["status"].as_str(), delivery["attempts"].as_u64()), (Some("failed"), Some(1)));
    assert!(delivery["last_error"].as_str().unwrap().starts_with("550 5.1.1"), "{delivery}");
    let (status, suppression) = get(&app, &format!("/v1/suppressions/{gone}")).await;
    assert_eq!(status, StatusCode::OK, "{suppression}");
    assert_eq!(
        (suppression["object"].as_str(), suppression["email"].as_str()),
        (Some("suppression"), Some(gone.as_str()))
    );
    assert!(suppression["reason"].as_str().unwrap().starts_with("550 5.1.1"), "{suppression}");
    let at = |field: &str| {
        time::OffsetDateTime::parse(
            suppression[field].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    assert_eq!(at("until") - at("created_at"), time::Duration::days(30), "the default suppression");
    let (_, list) = get(&app, "/v1/suppressions").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(
        (list["data"][0]["email"].as_str(), &list["next_cursor"]),
        (Some(gone.as_str()), &Value::Null)
    );

    // A refusal of the message itself (550 after the data) fails it, but suppresses nobody.
    let refused = random_email();
    app.sink.set_mode(latchkey_mail::sink::SinkMode::RefusePermanently);
    let other = create(&app, &client, &refused).await;
    assert_eq!(delivered(&app, &client, other["id"].as_str().unwrap()).await["status"], "failed");
    assert_eq!(get(&app, &format!("/v1/suppressions/{refused}")).await.0, StatusCode::NOT_FOUND);
    app.sink.set_mode(latchkey_mail::sink::SinkMode::Accept);

    // Even with its mailbox back, a suppressed address gets nothing: the request answers as
    // for any other address, and its e-mail is written suppressed, never sent.
    app.sink.set_unknown(&gone, false);
    let known = random_email();
    let quiet = create(&app, &client, &gone).await;
    let loud = create(&app, &client, &known).await;
    assert_eq!(keys(&quiet), keys(&loud), "the same answer for a suppressed address");
    let quiet_id = quiet["id"].as_str().unwrap();
    let delivery = app.magic_link(&client, quiet_id).await["delivery"].clone();
    assert_eq!((delivery["status"].as_str(), delivery["attempts"].as_u64()), (Some("suppressed"), Some(0)));
    // The other address's mail arrives; by then the worker has had every chance to send.
    let mails = app.wait_for_mails(1).await;
    assert!(mails.iter().all(|m| !m.rcpt_to.contains(&gone)), "nothing was sent to the suppressed address");
    assert!(mails.iter().any(|m| m.rcpt_to.contains(&known)));
    assert_eq!(app.magic_link(&client, quiet_id).await["delivery"]["status"], "suppressed");

    let noted = events_of(&app, "mail.suppressed").await;
    assert_eq!(noted.len(), 1, "{noted:?}");
    assert_eq!(noted[0]["subject"], quiet["id"]);
    let created = events_of(&app, "suppression.created").await;
    assert_eq!(created.iter().map(|e| e["subject"].clone()).collect::<Vec<_>>(), vec![json!(gone)]);
    // The counters are the process's, shared with the other engine's run of this case.
    assert!(metric(&app, "latchkey_mail_suppressed_total").await >= suppressed_before + 1.0);
    assert!(metric(&app, "latchkey_mail_suppressions_total").await >= suppressions_before + 1.0);

    // The admin's calls: the token is required, a path that is no address finds nothing, a
    // bad cursor or size is refused.
    let anonymous = app.http.get(app.url("/v1/suppressions")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(get(&app, "/v1/suppressions/not-an-address").await.0, StatusCode::NOT_FOUND);
    let (status, body) = get(&app, "/v1/suppressions?after=nope").await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("after")), "{body}");
    assert_eq!(get(&app, "/v1/suppressions?limit=0").await.0, StatusCode::UNPROCESSABLE_ENTITY);

    // Lifted: the next e-mail goes out.
    let res = app.admin(Method::DELETE, &format!("/v1/suppressions/{gone}"), None).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = app.admin(Method::DELETE, &format!("/v1/suppressions/{gone}"), None).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(events_of(&app, "suppression.deleted").await.len(), 1);
    let again = create(&app, &client, &gone).await;
    assert_eq!(delivered(&app, &client, again["id"].as_str().unwrap()).await["status"], "sent");
    let mails = app.wait_for_mails(2).await;
    assert!(mails.iter().any(|m| m.rcpt_to.contains(&gone)));

    // Suppressed again, then the time runs out: mail is queued once more.
    app.sink.set_unknown(&gone, true);
    let bounced = create(&app, &client, &gone).await;
    assert_eq!(delivered(&app, &client, bounced["id"].as_str().unwrap()).await["status"], "failed");
    assert_eq!(get(&app, &format!("/v1/suppressions/{gone}")).await.0, StatusCode::OK);
    app.sink.set_unknown(&gone, false);
    app.advance(30 * 24 * 3600 + 1);
    assert_eq!(get(&app, &format!("/v1/suppressions/{gone}")).await.0, StatusCode::NOT_FOUND);
    let (_, list) = get(&app, "/v1/suppressions").await;
    assert_eq!(list["data"], json!([]));
    let after = create(&app, &client, &gone).await;
    assert_eq!(delivered(&app, &client, after["id"].as_str().unwrap()).await["status"], "sent");
}
