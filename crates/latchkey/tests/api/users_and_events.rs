//! Users through the admin API, their sessions, the audit events, and no enumeration.

use crate::backend_tests;
use crate::helpers::{TestApp, claims, random_email};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

backend_tests!(
    users_are_managed_and_paginated,
    sessions_are_listed_and_revoked,
    events_tell_the_story_in_order,
    a_first_sign_in_verifies_the_address
);

async fn users_are_managed_and_paginated(app: TestApp) {
    let mut ids = Vec::new();
    for i in 0..5 {
        let res = app.admin(Method::POST, "/v1/users", Some(json!({"email": format!("P{i}@Example.com"), "name": format!("P {i}"), "metadata": {"plan": "pro"}}))).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let user: Value = res.json().await.unwrap();
        assert_eq!(user["email"], format!("p{i}@example.com"));
        assert_eq!(user["email_verified"], false);
        ids.push(user["id"].as_str().unwrap().to_owned());
    }
    let res = app.admin(Method::POST, "/v1/users", Some(json!({"email": "p0@example.com"}))).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let res = app.admin(Method::POST, "/v1/users", Some(json!({"email": "nope"}))).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/users?limit=2&after={c}"),
            None => "/v1/users?limit=2".to_owned(),
        };
        let page: Value = app.admin(Method::GET, &path, None).await.json().await.unwrap();
        seen.extend(page["data"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    assert_eq!(
        app.admin(Method::GET, "/v1/users?limit=1000", None).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(app.admin(Method::GET, "/v1/users?limit=abc", None).await.status(), StatusCode::BAD_REQUEST);

    let res = app
        .admin(
            Method::PATCH,
            &format!("/v1/users/{}", ids[1]),
            Some(json!({"name": "Renamed", "metadata": {"plan": "free"}})),
        )
        .await;
    let user: Value = res.json().await.unwrap();
    assert_eq!((user["name"].clone(), user["metadata"]["plan"].clone()), (json!("Renamed"), json!("free")));
    let res = app
        .admin(Method::PATCH, &format!("/v1/users/{}", ids[1]), Some(json!({"email": "p2@example.com"})))
        .await;
    assert_eq!(res.status(), StatusCode::CONFLICT);

    assert_eq!(
        app.admin(Method::DELETE, &format!("/v1/users/{}", ids[0]), None).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.admin(Method::GET, &format!("/v1/users/{}", ids[0]), None).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.admin(Method::GET, "/v1/users/user_nope", None).await.status(), StatusCode::NOT_FOUND);
}

async fn sessions_are_listed_and_revoked(app: TestApp) {
    let client = app.client().await;
    let email = random_email();
    let mut refresh_tokens = Vec::new();
    let mut sub = String::new();
    for _ in 0..2 {
        let (_, link, _) = app.link_without_mail(&client, &email).await;
        let code = app.code_from(&link).await;
        let tokens: Value = app.exchange(&client, &code).await.json().await.unwrap();
        sub = claims(tokens["id_token"].as_str().unwrap())["sub"].as_str().unwrap().to_owned();
        refresh_tokens.push(tokens["refresh_token"].as_str().unwrap().to_owned());
    }
    let sessions: Value =
        app.admin(Method::GET, &format!("/v1/users/{sub}/sessions"), None).await.json().await.unwrap();
    assert_eq!(sessions["data"].as_array().unwrap().len(), 2);
    assert_eq!(sessions["data"][0]["application_id"], client.id.as_str());

    let res = app.admin(Method::DELETE, &format!("/v1/users/{sub}/sessions"), None).await;
    assert_eq!(res.json::<Value>().await.unwrap()["revoked"], 2);
    let sessions: Value =
        app.admin(Method::GET, &format!("/v1/users/{sub}/sessions"), None).await.json().await.unwrap();
    assert!(sessions["data"].as_array().unwrap().is_empty());
    for token in &refresh_tokens {
        let res = app
            .as_app(&client)
            .post("/oauth/token")
            .form(&[("grant_type", "refresh_token"), ("refresh_token", token.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    }
}

async fn events_tell_the_story_in_order(app: TestApp) {
    let client = app.client().await;
    let res = app.request_link(&client, json!({"email": random_email()})).await;
    let id = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let mails = app.wait_for_mails(1).await;
    // The worker records the delivery just after the server accepted the message: wait for it,
    // so that the story's order does not depend on who is faster.
    app.magic_link_when(&client, &id, Duration::from_secs(2), |s| s["delivery"]["status"] == "sent").await;
    let code = app.code_from(&app.link_in(&mails[0])).await;
    assert_eq!(app.exchange(&client, &code).await.status(), StatusCode::OK);

    let all: Value = app.admin(Method::GET, "/v1/events?limit=100", None).await.json().await.unwrap();
    let about_this: Vec<(String, Value)> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["application_id"] == client.id.as_str())
        // The landing page's views are recorded in the background, at their own pace (their
        // events are checked in link_views.rs).
        .filter(|e| e["type"] != "link.viewed")
        .map(|e| (e["type"].as_str().unwrap().to_owned(), e["subject"].clone()))
        .collect();
    let kinds: Vec<&str> = about_this.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "application.created",
            "challenge.created",
            "challenge.delivered",
            "challenge.consumed",
            "user.created",
            "token.issued"
        ]
    );
    assert_eq!(about_this[1].1, json!(id));
    let text = all.to_string();
    assert!(!text.contains(&code), "no secrets in events");

    // Paging with a cursor.
    let first: Value = app.admin(Method::GET, "/v1/events?limit=2", None).await.json().await.unwrap();
    let cursor = first["next_cursor"].as_str().unwrap();
    let next: Value = app
        .admin(Method::GET, &format!("/v1/events?limit=100&after={cursor}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(next["data"][0]["id"], all["data"][2]["id"]);
}

async fn a_first_sign_in_verifies_the_address(app: TestApp) {
    let client = app.client().await;
    let email = random_email();
    let res = app.admin(Method::POST, "/v1/users", Some(json!({"email": email}))).await;
    let id = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let (_, link, _) = app.link_without_mail(&client, &email).await;
    let code = app.code_from(&link).await;
    let tokens: Value = app.exchange(&client, &code).await.json().await.unwrap();
    assert_eq!(claims(tokens["id_token"].as_str().unwrap())["sub"], id.as_str());
    let user: Value = app.admin(Method::GET, &format!("/v1/users/{id}"), None).await.json().await.unwrap();
    assert_eq!(user["email_verified"], true);
    assert!(user["last_sign_in_at"].is_string());
}
