//! What an attacker tried: each probe that once got through, kept as a test.

use crate::backend_tests;
use crate::helpers::TestApp;
use reqwest::StatusCode;
use serde_json::{Value, json};

backend_tests!(quoted_local_parts_are_refused, redirect_uris_match_only_as_registered);

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
