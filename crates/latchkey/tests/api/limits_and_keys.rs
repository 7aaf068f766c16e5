//! Rate limits, key rotation, and links opened in another browser.

use crate::backend_tests;
use crate::helpers::{CALLBACK, TestApp, claims, eventually, header, random_email};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation, decode};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

backend_tests!(
    per_address_limits_answer_429_and_recover,
    per_ip_and_per_application_limits_apply,
    unknown_addresses_are_limited_and_answered_alike,
    rotated_keys_keep_old_tokens_verifiable,
    rs256_applications_get_rs256_tokens,
    strict_binding_sends_other_browsers_to_the_code,
);

async fn per_address_limits_answer_429_and_recover(app: TestApp) {
    let client = app.client().await;
    let email = random_email();
    for _ in 0..3 {
        assert_eq!(
            app.request_link(&client, json!({"email": email, "send_email": false})).await.status(),
            StatusCode::CREATED
        );
    }
    let res = app.request_link(&client, json!({"email": email, "send_email": false})).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: i64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "rate_limited");
    // Other addresses are not affected; the limit holds across a restart... (same database)
    assert_eq!(
        app.request_link(&client, json!({"email": random_email(), "send_email": false})).await.status(),
        StatusCode::CREATED
    );
    app.advance(retry);
    assert_eq!(
        app.request_link(&client, json!({"email": email, "send_email": false})).await.status(),
        StatusCode::CREATED
    );
}

async fn per_ip_and_per_application_limits_apply(mut app: TestApp) {
    let res = app
        .admin(
            Method::POST,
            "/v1/applications",
            Some(json!({
                "name": "Limited", "redirect_uris": [CALLBACK],
                "rate_limits": {"per_ip_per_minute": 2, "per_application_per_minute": 5}
            })),
        )
        .await;
    let body: Value = res.json().await.unwrap();
    let client = crate::helpers::Client {
        id: body["client_id"].as_str().unwrap().into(),
        secret: body["client_secret"].as_str().unwrap().into(),
    };
    let ask = |ip: &str| {
        app.request_link(&client, json!({"email": random_email(), "send_email": false, "client_ip": ip}))
    };
    assert_eq!(ask("192.0.2.1").await.status(), StatusCode::CREATED);
    assert_eq!(ask("192.0.2.1").await.status(), StatusCode::CREATED);
    assert_eq!(ask("192.0.2.1").await.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(ask("192.0.2.2").await.status(), StatusCode::CREATED);
    // The limits live in the database: a restart does not reset them.
    app.start(false).await;
    let ask = |ip: &str| {
        app.request_link(&client, json!({"email": random_email(), "send_email": false, "client_ip": ip}))
    };
    assert_eq!(ask("192.0.2.1").await.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(ask("192.0.2.3").await.status(), StatusCode::CREATED);
    assert_eq!(ask("192.0.2.4").await.status(), StatusCode::CREATED);
    assert_eq!(
        ask("192.0.2.5").await.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the application's 5 per minute"
    );
}

async fn unknown_addresses_are_limited_and_answered_alike(app: TestApp) {
    let client = app.client().await;
    let unknown = random_email();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses
            .push(app.request_link(&client, json!({"email": unknown, "create_user": false})).await.status());
    }
    assert_eq!(
        statuses,
        [StatusCode::CREATED, StatusCode::CREATED, StatusCode::CREATED, StatusCode::TOO_MANY_REQUESTS]
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(app.sink.mails().is_empty());
}

async fn rotated_keys_keep_old_tokens_verifiable(app: TestApp) {
    let client = app.client().await;
    let (_, link, _) = app.link_without_mail(&client, &random_email()).await;
    let code = app.code_from(&link).await;
    let before: Value = app.exchange(&client, &code).await.json().await.unwrap();
    let old_token = before["id_token"].as_str().unwrap().to_owned();
    let old_kid = header(&old_token)["kid"].as_str().unwrap().to_owned();

    let res = app.admin(Method::POST, "/v1/keys/rotate", Some(json!({"alg": "ES256"}))).await;
    assert_eq!(res.status(), StatusCode::OK);
    let new_kid = res.json::<Value>().await.unwrap()["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);

    let (_, link, _) = app.link_without_mail(&client, &random_email()).await;
    let code = app.code_from(&link).await;
    let after: Value = app.exchange(&client, &code).await.json().await.unwrap();
    assert_eq!(header(after["id_token"].as_str().unwrap())["kid"], new_kid.as_str());

    let jwks: JwkSet = app.http.get(app.url("/oauth/jwks")).send().await.unwrap().json().await.unwrap();
    for token in [old_token.as_str(), after["id_token"].as_str().unwrap()] {
        let kid = header(token)["kid"].as_str().unwrap().to_owned();
        let key = DecodingKey::from_jwk(jwks.find(&kid).expect("published")).unwrap();
        let mut v = Validation::new(jsonwebtoken::Algorithm::ES256);
        v.set_audience(&[client.id.as_str()]);
        v.validate_exp = false;
        decode::<Value>(token, &key, &v).expect("verifies");
    }
    // Access tokens signed by the retired key still pass introspection.
    let introspected: Value = app
        .as_app(&client)
        .post("/oauth/introspect")
        .form(&[("token", before["access_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(introspected["active"], true);

    // A day later the retired key is gone from the key set (its tokens have all expired).
    app.advance(26 * 3600);
    let jwks = || async {
        let jwks: JwkSet = app.http.get(app.url("/oauth/jwks")).send().await.unwrap().json().await.unwrap();
        jwks
    };
    let jwks = eventually(Duration::from_secs(5), jwks, |jwks: &JwkSet| jwks.find(&old_kid).is_none()).await;
    assert!(jwks.find(&old_kid).is_none(), "the retired key is forgotten once its tokens expired");
    let bad = app.admin(Method::POST, "/v1/keys/rotate", Some(json!({"alg": "HS256"}))).await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

async fn rs256_applications_get_rs256_tokens(app: TestApp) {
    let client =
        app.create_client(json!({"name": "Rsa", "redirect_uris": [CALLBACK], "signing_alg": "RS256"})).await;
    let (_, link, _) = app.link_without_mail(&client, &random_email()).await;
    let code = app.code_from(&link).await;
    let tokens: Value = app.exchange(&client, &code).await.json().await.unwrap();
    let id_token = tokens["id_token"].as_str().unwrap();
    assert_eq!(header(id_token)["alg"], "RS256");
    let jwks: JwkSet = app.http.get(app.url("/oauth/jwks")).send().await.unwrap().json().await.unwrap();
    let key = DecodingKey::from_jwk(jwks.find(header(id_token)["kid"].as_str().unwrap()).unwrap()).unwrap();
    let mut v = Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_audience(&[client.id.as_str()]);
    assert_eq!(decode::<Value>(id_token, &key, &v).unwrap().claims["sub"], claims(id_token)["sub"]);
}

async fn strict_binding_sends_other_browsers_to_the_code(app: TestApp) {
    let client =
        app.create_client(json!({"name": "Strict", "redirect_uris": [CALLBACK], "binding": "strict"})).await;
    let email = random_email();
    let res = app
        .request_link(
            &client,
            json!({"email": email, "send_email": false, "client_ip": "127.0.0.1", "user_agent": "Phone/1.0"}),
        )
        .await;
    let body: Value = res.json().await.unwrap();
    let link = body["link"].as_str().unwrap();
    let res = app.http.post(link).header("user-agent", "Laptop/2.0").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let html = res.text().await.unwrap();
    assert!(html.contains("6-digit code"), "{html}");
    // Nothing was consumed: the original browser still can, and so can the code.
    let res = app.http.post(link).header("user-agent", "Phone/1.0").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);

    // With PKCE the page explains how to finish on the other device.
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let normal = app.client().await;
    let res = app
        .request_link(
            &normal,
            json!({"email": random_email(), "send_email": false, "code_challenge": challenge}),
        )
        .await;
    let link = res.json::<Value>().await.unwrap()["link"].as_str().unwrap().to_owned();
    let html = app.http.get(&link).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("type the 6-digit code"), "{html}");
}
