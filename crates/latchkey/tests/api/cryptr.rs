//! The Cryptr-compatible face, judged by Cryptr's documented curl calls, made byte for byte:
//! the API token, the magic-link challenge (form, JSON, query string), the click, and the code
//! exchange with no credentials (or the application's bearer).

use crate::backend_tests;
use crate::helpers::{CALLBACK, Client, TestApp, claims, header, query_param, random_email};
use latchkey_core::Clock;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

backend_tests!(
    client_credentials_give_an_api_token_with_the_header_cryptr_reads,
    a_challenge_by_e_mail_ends_in_tokens_through_the_documented_curl_calls,
    send_email_false_hands_back_the_link_and_api_v2_answers_scope_as_a_list,
    org_domain_names_an_organization_that_must_own_the_address,
    a_code_not_made_by_a_challenge_here_still_needs_the_application,
    every_route_answers_bad_input_in_cryptr_s_error_shape,
);

/// Sends a form body exactly as `curl -d` does.
async fn curl_form(app: &TestApp, path: &str, bearer: Option<&str>, body: &str) -> reqwest::Response {
    let mut req = app
        .http
        .post(app.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned());
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    req.send().await.expect("request")
}

async fn api_token(app: &TestApp, client: &Client) -> String {
    let body = format!(
        "client_id={}&client_secret={}&grant_type=client_credentials&audience=https%3A%2F%2Fapi.example&tenant_domain=acme",
        client.id, client.secret
    );
    let res = curl_form(app, "/api/v2/oauth/token", None, &body).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
}

async fn error_of(res: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(res.status(), status);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("application/json"), "{content_type}");
    let body: Value = res.json().await.unwrap();
    let error = &body["error"];
    assert!(error["type"].is_string() && error["message"].is_string(), "{body}");
    assert_eq!(error["doc_urls"], json!([]), "{body}");
    error.clone()
}

async fn client_credentials_give_an_api_token_with_the_header_cryptr_reads(app: TestApp) {
    let client = app.client().await;
    let now = app.clock.now().unix_timestamp();
    // Form, as the documented curl; JSON, with the fields Cryptr's SDKs add.
    let form = format!(
        "client_id={}&client_secret={}&grant_type=client_credentials&audience=x&domain=acme&tenant_domain=acme",
        client.id, client.secret
    );
    let json_body = json!({
        "client_id": client.id, "client_secret": client.secret, "grant_type": "client_credentials",
        "audience": "https://api.example", "domain": "acme", "tenant_domain": "acme",
    });
    let by_form = curl_form(&app, "/api/v2/oauth/token", None, &form).await;
    let by_json = app.http.post(app.url("/api/v2/oauth/token")).json(&json_body).send().await.unwrap();
    for res in [by_form, by_json] {
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["cache-control"], "no-store");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 3600);
        let token = body["access_token"].as_str().unwrap();
        let h = header(token);
        assert_eq!(h["typ"], "JWT");
        assert_eq!(h["iss"], app.base);
        assert!(h["kid"].is_string() && h["alg"] == "ES256", "{h}");
        let c = claims(token);
        assert_eq!(c["iat"], now);
        assert_eq!(c["exp"], now + 3600);
        assert_eq!(c["client_id"], client.id);
        // The token is the application's credential on the challenge endpoint.
        let res = curl_form(
            &app,
            "/api/v2/magic-link-challenge",
            Some(token),
            &format!("user_email={}&send_email=false", random_email()),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    // The standard endpoint takes the same call and answers its own RFC 9068 token, which
    // works here as well.
    let res = curl_form(&app, "/oauth/token", None, &form).await;
    assert_eq!(res.status(), StatusCode::OK);
    let token = res.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
    let h = header(&token);
    assert_eq!(h["typ"], "at+jwt");
    assert!(h["kid"].is_string() && h["alg"].is_string());
    let res = curl_form(
        &app,
        "/api/v2/magic-link-challenge",
        Some(&token),
        &format!("user_email={}&send_email=false", random_email()),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    // A wrong secret is refused in Cryptr's shape, a public client cannot act for itself.
    let wrong = format!("client_id={}&client_secret=lks_wrong&grant_type=client_credentials", client.id);
    let error =
        error_of(curl_form(&app, "/api/v2/oauth/token", None, &wrong).await, StatusCode::UNAUTHORIZED).await;
    assert_eq!(error["type"], "unauthorized");
}

async fn a_challenge_by_e_mail_ends_in_tokens_through_the_documented_curl_calls(app: TestApp) {
    let client = app.client().await;
    let token = api_token(&app, &client).await;
    let email = random_email();
    let body = format!(
        "user_email={}&redirect_uri={}",
        email.replace('@', "%40"),
        "https%3A%2F%2Fapp.example%2Fcallback"
    );
    let res = curl_form(&app, "/api/v2/magic-link-challenge", Some(&token), &body).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/json");
    let answer: Value = res.json().await.unwrap();
    let expired_at = answer["expired_at"].as_i64().unwrap();
    assert_eq!(expired_at, app.clock.now().unix_timestamp() + 15 * 60);
    let request_id = answer["request_id"].as_str().unwrap();
    assert!(request_id.starts_with("ml_"), "{answer}");
    assert_eq!(
        answer,
        json!({
            "__type__": "MagicLinkChallenge", "__domain__": null, "__environment__": "production",
            "request_id": request_id, "email_address": email, "magic_link": null, "code": null,
            "find_or_create_user": true, "expired_at": expired_at, "redirect_uri": CALLBACK,
        })
    );

    let mails = app.wait_for_mails(1).await;
    assert_eq!(mails[0].header("to").unwrap(), email);
    let link = app.link_in(&mails[0]);
    let location = app.click(&link).await;
    assert!(location.starts_with(&format!("{CALLBACK}?code=")), "{location}");
    let code = query_param(&location, "code").unwrap();

    // `curl -X POST $BASE/oauth/token -d code=… -d grant_type=authorization_code`: no credentials.
    let res =
        curl_form(&app, "/oauth/token", None, &format!("code={code}&grant_type=authorization_code")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let tokens: Value = res.json().await.unwrap();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 3600);
    assert!(tokens["refresh_token"].as_str().unwrap().starts_with("lkr_"));
    let id = claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["email"], email);
    assert_eq!(id["aud"], client.id);
    assert_eq!(id["amr"], json!(["email"]));
    assert_eq!(header(tokens["access_token"].as_str().unwrap())["typ"], "at+jwt");

    // Once only.
    let again =
        curl_form(&app, "/oauth/token", None, &format!("code={code}&grant_type=authorization_code")).await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert_eq!(again.json::<Value>().await.unwrap()["error"], "invalid_grant");
}

async fn send_email_false_hands_back_the_link_and_api_v2_answers_scope_as_a_list(app: TestApp) {
    let client = app.client().await;
    let email = random_email();
    // JSON with the Kotlin SDK's names, the API key as bearer, no redirect_uri: the default.
    let res = app
        .http
        .post(app.url("/api/v2/magic-link-challenge"))
        .bearer_auth(&client.secret)
        .json(&json!({ "userEmail": email, "send_email": false }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["email_address"], email);
    assert_eq!(answer["redirect_uri"], CALLBACK);
    let link = answer["magic_link"].as_str().unwrap();
    assert!(link.starts_with(&app.url("/l/")), "{answer}");

    let code = query_param(&app.click(link).await, "code").unwrap();
    // The Kotlin SDK exchanges with the application's bearer; scope comes back as a list.
    let res = curl_form(
        &app,
        "/api/v2/oauth/token",
        Some(&client.secret),
        &format!("code={code}&grant_type=authorization_code"),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let tokens: Value = res.json().await.unwrap();
    assert_eq!(tokens["scope"], json!(["openid", "email"]));
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(claims(tokens["id_token"].as_str().unwrap())["email"], email);
    assert!(tokens["access_token"].is_string() && tokens["refresh_token"].is_string());
    // A user's tokens are no API token.
    for user_token in [&tokens["id_token"], &tokens["access_token"]] {
        let body = format!("user_email={}&send_email=false", random_email());
        let res = curl_form(&app, "/api/v2/magic-link-challenge", user_token.as_str(), &body).await;
        assert_eq!(error_of(res, StatusCode::UNAUTHORIZED).await["type"], "unauthorized");
    }

    let bare = format!("code={code}&grant_type=authorization_code");
    let again = curl_form(&app, "/api/v2/oauth/token", None, &bare).await;
    let error = error_of(again, StatusCode::BAD_REQUEST).await;
    assert_eq!(error["type"], "invalid_grant");

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(app.sink.mails().is_empty(), "send_email=false sends nothing");
}

async fn org_domain_names_an_organization_that_must_own_the_address(app: TestApp) {
    let client = app.client().await;
    let res = app
        .admin(
            reqwest::Method::POST,
            "/v1/organizations",
            Some(json!({ "name": "Misapret", "slug": "misapret", "domains": ["misapret.com"] })),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let org_id = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();

    // The seed's example, in the query string.
    let path =
        "/api/v2/magic-link-challenge?user_email=john%40misapret.com&org_domain=misapret&send_email=false";
    let res = app.http.post(app.url(path)).bearer_auth(&client.secret).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["__domain__"], "misapret");
    assert_eq!(answer["email_address"], "john@misapret.com");
    let code = query_param(&app.click(answer["magic_link"].as_str().unwrap()).await, "code").unwrap();
    let res =
        curl_form(&app, "/oauth/token", None, &format!("code={code}&grant_type=authorization_code")).await;
    let tokens: Value = res.json().await.unwrap();
    assert_eq!(claims(tokens["id_token"].as_str().unwrap())["org_id"], org_id);

    let outside = "/api/v2/magic-link-challenge?user_email=jane%40elsewhere.example&org_domain=misapret";
    let res = app.http.post(app.url(outside)).bearer_auth(&client.secret).send().await.unwrap();
    assert_eq!(error_of(res, StatusCode::FORBIDDEN).await["type"], "forbidden");
    let unknown = "/api/v2/magic-link-challenge?user_email=john%40misapret.com&org_domain=nobody";
    let res = app.http.post(app.url(unknown)).bearer_auth(&client.secret).send().await.unwrap();
    assert_eq!(error_of(res, StatusCode::NOT_FOUND).await["type"], "organization_not_found");
}

async fn a_code_not_made_by_a_challenge_here_still_needs_the_application(app: TestApp) {
    let client = app.client().await;
    let other = app.client().await;
    // A native sign-in's code: no credentials is no client.
    let (_, link, _) = app.link_without_mail(&client, &random_email()).await;
    let code = query_param(&app.click(&link).await, "code").unwrap();
    let bare = format!("code={code}&grant_type=authorization_code");
    let res = curl_form(&app, "/oauth/token", None, &bare).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_client");
    let res = curl_form(&app, "/api/v2/oauth/token", None, &bare).await;
    assert_eq!(error_of(res, StatusCode::UNAUTHORIZED).await["type"], "unauthorized");
    // Another application's credentials do not reach it; its own still do (nothing was spent).
    let res = curl_form(&app, "/api/v2/oauth/token", Some(&other.secret), &bare).await;
    assert_eq!(error_of(res, StatusCode::BAD_REQUEST).await["type"], "invalid_grant");
    let res = curl_form(&app, "/api/v2/oauth/token", Some(&client.secret), &bare).await;
    assert_eq!(res.status(), StatusCode::OK);

    // A code of this face, presented with another application's credentials, is refused too.
    let res = curl_form(
        &app,
        "/api/v2/magic-link-challenge",
        Some(&client.secret),
        &format!("user_email={}&send_email=false", random_email()),
    )
    .await;
    let link = res.json::<Value>().await.unwrap()["magic_link"].as_str().unwrap().to_owned();
    let code = query_param(&app.click(&link).await, "code").unwrap();
    let with_other = format!("code={code}&grant_type=authorization_code");
    let res = curl_form(&app, "/oauth/token", Some(&other.secret), &with_other).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_grant");
}

async fn every_route_answers_bad_input_in_cryptr_s_error_shape(app: TestApp) {
    let client = app.client().await;
    let key = Some(client.secret.as_str());
    let challenge = "/api/v2/magic-link-challenge";
    let cases: Vec<(&str, Option<&str>, &str, StatusCode, &str)> = vec![
        (challenge, key, "", StatusCode::BAD_REQUEST, "bad_request"),
        (challenge, key, "user_email=not-an-address", StatusCode::BAD_REQUEST, "bad_request"),
        (
            challenge,
            key,
            "user_email=a%40b.example&send_email=perhaps",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            challenge,
            key,
            "user_email=a%40b.example&redirect_uri=https%3A%2F%2Fevil.example%2F",
            StatusCode::BAD_REQUEST,
            "invalid_redirect_uri",
        ),
        (
            challenge,
            key,
            "user_email=a%40b.example&redirect_uri=not%20a%20url",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (challenge, None, "user_email=a%40b.example", StatusCode::UNAUTHORIZED, "unauthorized"),
        (challenge, Some("lks_wrong"), "user_email=a%40b.example", StatusCode::UNAUTHORIZED, "unauthorized"),
        (challenge, Some("a.b.c"), "user_email=a%40b.example", StatusCode::UNAUTHORIZED, "unauthorized"),
        ("/api/v2/oauth/token", None, "", StatusCode::BAD_REQUEST, "bad_request"),
        (
            "/api/v2/oauth/token",
            None,
            "grant_type=password",
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ),
        (
            "/api/v2/oauth/token",
            None,
            "grant_type=authorization_code",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/api/v2/oauth/token",
            None,
            "grant_type=authorization_code&code=nope",
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            "/api/v2/oauth/token",
            None,
            "grant_type=client_credentials",
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
    ];
    for (path, bearer, body, status, kind) in cases {
        let error = error_of(curl_form(&app, path, bearer, body).await, status).await;
        assert_eq!(error["type"], kind, "{path} {body}: {error}");
    }
    // Bodies that do not parse, or are too large, or of another type.
    for path in [challenge, "/api/v2/oauth/token"] {
        let res = app
            .http
            .post(app.url(path))
            .bearer_auth(&client.secret)
            .header("content-type", "application/json");
        let error =
            error_of(res.body("{\"user_email\": ").send().await.unwrap(), StatusCode::BAD_REQUEST).await;
        assert_eq!(error["type"], "bad_request");
        let res = app
            .http
            .post(app.url(path))
            .bearer_auth(&client.secret)
            .json(&json!({ "user_email": 5, "grant_type": 5 }));
        error_of(res.send().await.unwrap(), StatusCode::BAD_REQUEST).await;
        let res = app
            .http
            .post(app.url(path))
            .bearer_auth(&client.secret)
            .header("content-type", "application/xml");
        error_of(res.body("<a/>").send().await.unwrap(), StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
        let big = "a".repeat(70 * 1024);
        let res = app.http.post(app.url(path)).bearer_auth(&client.secret).form(&[("user_email", big)]);
        error_of(res.send().await.unwrap(), StatusCode::PAYLOAD_TOO_LARGE).await;
        // Other methods and unknown paths under the prefix answer JSON too.
        let res = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(error_of(res, StatusCode::METHOD_NOT_ALLOWED).await["type"], "method_not_allowed");
    }
    for path in ["/api/v2/nothing", "/api/v2", "/api/v2/oauth/token/x"] {
        let res = app.http.post(app.url(path)).send().await.unwrap();
        assert_eq!(error_of(res, StatusCode::NOT_FOUND).await["type"], "not_found");
    }
    // The fourth challenge for one address in a minute waits, in Cryptr's shape.
    let busy = format!("user_email={}&send_email=false", random_email());
    for _ in 0..3 {
        assert_eq!(curl_form(&app, challenge, key, &busy).await.status(), StatusCode::OK);
    }
    let res = curl_form(&app, challenge, key, &busy).await;
    assert!(res.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(error_of(res, StatusCode::TOO_MANY_REQUESTS).await["type"], "rate_limited");
    let long_org = format!("user_email=a%40b.example&org_domain={}", "o".repeat(200));
    let error = error_of(curl_form(&app, challenge, key, &long_org).await, StatusCode::BAD_REQUEST).await;
    assert_eq!(error["type"], "bad_request");
}
