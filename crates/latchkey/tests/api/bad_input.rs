//! Bad input gets a clear JSON error with the right status, never a 500, and loses nothing.

use crate::backend_tests;
use crate::helpers::{Client, TestApp, random_email};
use reqwest::StatusCode;
use serde_json::{Value, json};

backend_tests!(
    malformed_bodies_are_refused_clearly,
    invalid_fields_name_the_field,
    unknown_callers_are_refused,
    the_token_endpoint_speaks_oauth_errors
);

async fn error_of(res: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(res.status(), status);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let body: Value = res.json().await.unwrap();
    assert!(body["error"].is_string() && body["message"].is_string(), "{body}");
    body
}

async fn malformed_bodies_are_refused_clearly(app: TestApp) {
    let client = app.client().await;
    let url = app.url("/v1/magic-links");
    let post = || app.as_app(&client).post(&url);

    let res = post().header("content-type", "application/json").body("{\"email\": ").send().await.unwrap();
    assert_eq!(error_of(res, StatusCode::BAD_REQUEST).await["error"], "malformed_request");
    let res = post().header("content-type", "application/json").body("[1,2]").send().await.unwrap();
    assert_eq!(error_of(res, StatusCode::BAD_REQUEST).await["error"], "malformed_request");
    let res = post().json(&json!({"email": 42})).send().await.unwrap();
    assert_eq!(error_of(res, StatusCode::BAD_REQUEST).await["error"], "malformed_request");
    let big = format!("{{\"email\": \"{}\"}}", "a".repeat(100 * 1024));
    let res = post().header("content-type", "application/json").body(big).send().await.unwrap();
    assert_eq!(error_of(res, StatusCode::PAYLOAD_TOO_LARGE).await["error"], "payload_too_large");
    let res = post().header("content-type", "application/xml").body("<email/>").send().await.unwrap();
    assert_eq!(error_of(res, StatusCode::UNSUPPORTED_MEDIA_TYPE).await["error"], "unsupported_media_type");

    // Form bodies and unknown fields are fine.
    let email = random_email();
    let res = post()
        .form(&[("email", email.as_str()), ("send_email", "false"), ("favourite_colour", "blue")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    // A form body labelled JSON (as one vendor SDK sends) is understood.
    let res = post()
        .header("content-type", "application/json")
        .body(format!("email={}&send_email=false", random_email()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);

    let res = app.http.get(app.url("/no/such/endpoint")).send().await.unwrap();
    assert_eq!(error_of(res, StatusCode::NOT_FOUND).await["error"], "not_found");
}

async fn invalid_fields_name_the_field(app: TestApp) {
    let client = app.client().await;
    let cases = [
        (json!({}), "email"),
        (json!({"email": "not-an-address"}), "email"),
        (json!({"email": "Ada <ada@example.com>"}), "email"),
        (json!({"email": format!("{}@example.com", "a".repeat(300))}), "email"),
        (json!({"email": "a@example.com", "expires_in": 5}), "expires_in"),
        (json!({"email": "a@example.com", "expires_in": 864000}), "expires_in"),
        (json!({"email": "a@example.com", "state": "s".repeat(2000)}), "state"),
        (json!({"email": "a@example.com", "code_challenge": "short"}), "code_challenge"),
        (
            json!({"email": "a@example.com", "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "plain"}),
            "code_challenge",
        ),
        (json!({"email": "a@example.com", "user_agent": "u".repeat(600)}), "user_agent"),
    ];
    for (body, field) in cases {
        let res = app.request_link(&client, body.clone()).await;
        let err = error_of(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(
            (err["error"].as_str(), err["field"].as_str()),
            (Some("invalid_field"), Some(field)),
            "{body}"
        );
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(app.sink.mails().is_empty());
}

async fn unknown_callers_are_refused(app: TestApp) {
    let url = app.url("/v1/magic-links");
    let body = json!({"email": random_email()});
    let res = app.http.post(&url).json(&body).send().await.unwrap();
    assert!(res.headers().contains_key("www-authenticate"));
    assert_eq!(error_of(res, StatusCode::UNAUTHORIZED).await["error"], "unauthenticated");
    let res = app.http.post(&url).bearer_auth("lks_not-a-secret").json(&body).send().await.unwrap();
    error_of(res, StatusCode::UNAUTHORIZED).await;
    let stranger = Client { id: "app_01m83aq5mmekbtewx276ntfya5".into(), secret: "lks_x".into() };
    let res = app.as_app(&stranger).post(&url).json(&body).send().await.unwrap();
    error_of(res, StatusCode::UNAUTHORIZED).await;
    let res = app.http.post(&url).header("authorization", "Basic %%%").json(&body).send().await.unwrap();
    error_of(res, StatusCode::UNAUTHORIZED).await;

    // The admin API wants the admin token, and an application's secret is not it.
    let client = app.client().await;
    let res = app.http.get(app.url("/v1/applications")).send().await.unwrap();
    error_of(res, StatusCode::UNAUTHORIZED).await;
    let res = app.http.get(app.url("/v1/applications")).bearer_auth(&client.secret).send().await.unwrap();
    error_of(res, StatusCode::UNAUTHORIZED).await;
}

async fn the_token_endpoint_speaks_oauth_errors(app: TestApp) {
    let client = app.client().await;
    let url = app.url("/oauth/token");
    let post = || app.as_app(&client).post(&url);
    let oauth_error = |res: reqwest::Response, status: StatusCode| async move {
        assert_eq!(res.status(), status);
        assert_eq!(res.headers()["cache-control"], "no-store");
        let body: Value = res.json().await.unwrap();
        assert!(body["error_description"].is_string(), "{body}");
        body["error"].as_str().unwrap().to_owned()
    };
    assert_eq!(
        oauth_error(post().form(&[("code", "x")]).send().await.unwrap(), StatusCode::BAD_REQUEST).await,
        "invalid_request"
    );
    assert_eq!(
        oauth_error(
            post().form(&[("grant_type", "password")]).send().await.unwrap(),
            StatusCode::BAD_REQUEST
        )
        .await,
        "unsupported_grant_type"
    );
    assert_eq!(
        oauth_error(
            post().form(&[("grant_type", "authorization_code")]).send().await.unwrap(),
            StatusCode::BAD_REQUEST
        )
        .await,
        "invalid_request"
    );
    assert_eq!(
        oauth_error(
            post().form(&[("grant_type", "authorization_code"), ("code", "nope")]).send().await.unwrap(),
            StatusCode::BAD_REQUEST
        )
        .await,
        "invalid_grant"
    );
    let long = "c".repeat(10_000);
    assert_eq!(
        oauth_error(
            post()
                .form(&[("grant_type", "authorization_code"), ("code", long.as_str())])
                .send()
                .await
                .unwrap(),
            StatusCode::BAD_REQUEST
        )
        .await,
        "invalid_grant"
    );
    assert_eq!(
        oauth_error(
            post().header("content-type", "application/json").body("{oops").send().await.unwrap(),
            StatusCode::BAD_REQUEST
        )
        .await,
        "invalid_request"
    );
}
