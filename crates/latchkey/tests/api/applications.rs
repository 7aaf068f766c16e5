//! Applications through the admin API and the command line's data path.

use crate::backend_tests;
use crate::helpers::{CALLBACK, Client, TestApp, random_email};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

backend_tests!(
    applications_are_managed_by_the_admin,
    secrets_rotate_without_downtime,
    invalid_applications_are_refused
);

async fn applications_are_managed_by_the_admin(app: TestApp) {
    let res = app
        .admin(Method::POST, "/v1/applications", Some(json!({
            "name": "Acme", "redirect_uris": [CALLBACK, "https://app.example/two"], "default_redirect_uri": CALLBACK,
            "branding": {"product_name": "Acme Cloud", "primary_color": "#ff0000"}, "lifetimes": {"link": 600}
        })))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["object"], "application");
    assert_eq!(created["client_id"], id.as_str());
    assert!(created["client_secret"].as_str().unwrap().starts_with("lks_"));
    assert_eq!(created["secrets"].as_array().unwrap().len(), 1);

    let read: Value =
        app.admin(Method::GET, &format!("/v1/applications/{id}"), None).await.json().await.unwrap();
    assert!(read.get("client_secret").is_none(), "the secret is shown once");
    assert_eq!(read["branding"]["product_name"], "Acme Cloud");
    assert_eq!(read["lifetimes"]["link"], 600);

    let list: Value = app.admin(Method::GET, "/v1/applications", None).await.json().await.unwrap();
    assert!(list["data"].as_array().unwrap().iter().any(|a| a["id"] == id.as_str()));

    let res = app
        .admin(
            Method::PATCH,
            &format!("/v1/applications/{id}"),
            Some(json!({"name": "Acme 2", "redirect_uris": ["https://app.example/two"]})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let patched: Value = res.json().await.unwrap();
    assert_eq!(patched["name"], "Acme 2");
    assert_eq!(patched["redirect_uris"], json!(["https://app.example/two"]));
    assert_eq!(patched["default_redirect_uri"], Value::Null, "a default no longer allowed is dropped");

    // The link lifetime and branding are used.
    let client = Client { id: id.clone(), secret: created["client_secret"].as_str().unwrap().to_owned() };
    let res = app.request_link(&client, json!({"email": random_email()})).await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["id"].as_str().map(|s| s.starts_with("ml_")), Some(true));
    let mails = app.wait_for_mails(1).await;
    assert!(mails[0].header("Subject").unwrap().contains("Acme Cloud"));
    assert!(mails[0].text().contains("10 minutes"));

    // Settings changes are in the audit trail.
    let events: Value = app.admin(Method::GET, "/v1/events?limit=100", None).await.json().await.unwrap();
    let changes: Vec<&str> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["application_id"] == id.as_str() && e["type"].as_str().unwrap().starts_with("application.")
        })
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(changes, ["application.created", "application.updated"]);

    assert_eq!(
        app.admin(Method::DELETE, &format!("/v1/applications/{id}"), None).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.admin(Method::GET, &format!("/v1/applications/{id}"), None).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.admin(Method::DELETE, &format!("/v1/applications/{id}"), None).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.request_link(&client, json!({"email": random_email()})).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

async fn secrets_rotate_without_downtime(app: TestApp) {
    let client = app.client().await;
    let res = app.admin(Method::POST, &format!("/v1/applications/{}/secrets", client.id), None).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let added: Value = res.json().await.unwrap();
    let second =
        Client { id: client.id.clone(), secret: added["client_secret"].as_str().unwrap().to_owned() };
    for c in [&client, &second] {
        assert_eq!(
            app.request_link(c, json!({"email": random_email(), "send_email": false})).await.status(),
            StatusCode::CREATED
        );
    }
    let read: Value =
        app.admin(Method::GET, &format!("/v1/applications/{}", client.id), None).await.json().await.unwrap();
    let first_id = read["secrets"][0]["id"].as_str().unwrap().to_owned();
    let res =
        app.admin(Method::DELETE, &format!("/v1/applications/{}/secrets/{first_id}", client.id), None).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.request_link(&client, json!({"email": random_email()})).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.request_link(&second, json!({"email": random_email(), "send_email": false})).await.status(),
        StatusCode::CREATED
    );
    let second_id = added["id"].as_str().unwrap();
    let res =
        app.admin(Method::DELETE, &format!("/v1/applications/{}/secrets/{second_id}", client.id), None).await;
    assert_eq!(res.status(), StatusCode::CONFLICT, "the last secret stays");
}

async fn invalid_applications_are_refused(app: TestApp) {
    let cases = [
        (json!({"name": "", "redirect_uris": [CALLBACK]}), "name"),
        (json!({"name": "x", "redirect_uris": ["/relative"]}), "redirect_uris"),
        (json!({"name": "x", "redirect_uris": ["javascript:alert(1)"]}), "redirect_uris"),
        (
            json!({"name": "x", "redirect_uris": [CALLBACK], "default_redirect_uri": "https://other.example/"}),
            "default_redirect_uri",
        ),
        (json!({"name": "x", "redirect_uris": [CALLBACK], "signing_alg": "HS256"}), "signing_alg"),
        (
            json!({"name": "x", "redirect_uris": [CALLBACK], "lifetimes": {"authorization_code": 3600}}),
            "lifetimes",
        ),
        (json!({"name": "x", "redirect_uris": [CALLBACK], "branding": {"sender_email": "nope"}}), "branding"),
    ];
    for (body, field) in cases {
        let res = app.admin(Method::POST, "/v1/applications", Some(body.clone())).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(res.json::<Value>().await.unwrap()["field"], field, "{body}");
    }
    let res = app.admin(Method::GET, "/v1/applications/app_nope", None).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}
