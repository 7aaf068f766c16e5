//! Sign-in by code, refresh tokens, client credentials, userinfo, revocation, introspection.

use crate::backend_tests;
use crate::helpers::{CALLBACK, Client, TestApp, claims, random_email};
use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

const OTP_GRANT: &str = "urn:latchkey:params:oauth:grant-type:email-otp";

backend_tests!(
    the_code_in_the_email_signs_in_once,
    five_wrong_codes_burn_the_challenge,
    only_the_newest_challenge_takes_a_code,
    a_code_and_its_link_race_and_one_wins,
    refresh_tokens_rotate_and_reuse_revokes_the_family,
    client_credentials_work_as_the_applications_credential,
    userinfo_revoke_and_introspect,
);

async fn otp(app: &TestApp, client: &Client, email: &str, code: &str) -> reqwest::Response {
    app.as_app(client)
        .post("/oauth/token")
        .form(&[("grant_type", OTP_GRANT), ("email", email), ("otp", code)])
        .send()
        .await
        .unwrap()
}

async fn the_code_in_the_email_signs_in_once(app: TestApp) {
    let client = app.client().await;
    let email = random_email();
    let res = app.request_link(&client, json!({"email": email, "nonce": "n-otp"})).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let mails = app.wait_for_mails(1).await;
    let code = app.otp_in(&mails[0]);
    let link = app.link_in(&mails[0]);

    let res = otp(&app, &client, &email.to_uppercase(), &format!("{} {}", &code[..3], &code[3..])).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let tokens: Value = res.json().await.unwrap();
    let id = claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(
        (id["amr"].clone(), id["email"].clone(), id["nonce"].clone()),
        (json!(["otp"]), json!(email), json!("n-otp"))
    );
    assert!(tokens["refresh_token"].as_str().unwrap().starts_with("lkr_"));

    // The code and the link were one credential.
    let again = otp(&app, &client, &email, &code).await;
    assert_eq!(again.json::<Value>().await.unwrap()["error"], "invalid_grant");
    assert_eq!(app.press(&link).await.0, StatusCode::GONE);
}

async fn five_wrong_codes_burn_the_challenge(app: TestApp) {
    let client = app.client().await;
    let email = random_email();
    let (_, link, code) = app.link_without_mail(&client, &email).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        let res = otp(&app, &client, &email, wrong).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_grant");
    }
    let res = otp(&app, &client, &email, &code).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "burned: even the right code fails");
    assert_eq!(app.press(&link).await.0, StatusCode::GONE, "and so does the link");
    // Another application's client cannot use the code at all.
    let (_, _, code) = app.link_without_mail(&client, &email).await;
    let other = app.client().await;
    assert_eq!(otp(&app, &other, &email, &code).await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(otp(&app, &client, &email, &code).await.status(), StatusCode::OK);
}

async fn only_the_newest_challenge_takes_a_code(app: TestApp) {
    let client = app.client().await;
    let email = random_email();
    let (_, _, first) = app.link_without_mail(&client, &email).await;
    app.advance(1);
    let (_, _, second) = app.link_without_mail(&client, &email).await;
    if first != second {
        assert_eq!(otp(&app, &client, &email, &first).await.status(), StatusCode::BAD_REQUEST);
    }
    assert_eq!(otp(&app, &client, &email, &second).await.status(), StatusCode::OK);
    // The code expires before the link: ten minutes.
    let (_, link, code) = app.link_without_mail(&client, &email).await;
    app.advance(10 * 60);
    assert_eq!(otp(&app, &client, &email, &code).await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.press(&link).await.0, StatusCode::SEE_OTHER, "the link still works");
}

async fn a_code_and_its_link_race_and_one_wins(app: TestApp) {
    let client = app.client().await;
    for _ in 0..5 {
        let email = random_email();
        let (_, link, code) = app.link_without_mail(&client, &email).await;
        let (by_code, (by_link, _)) = tokio::join!(otp(&app, &client, &email, &code), app.press(&link));
        let code_won = by_code.status() == StatusCode::OK;
        let link_won = by_link == StatusCode::SEE_OTHER;
        assert!(code_won ^ link_won, "code {code_won}, link {link_won}");
    }
}

async fn refresh(app: &TestApp, client: &Client, token: &str) -> reqwest::Response {
    app.as_app(client)
        .post("/oauth/token")
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
        .send()
        .await
        .unwrap()
}

async fn refresh_tokens_rotate_and_reuse_revokes_the_family(app: TestApp) {
    let client = app.client().await;
    let tokens = app.sign_in(&client).await;
    let first = tokens["refresh_token"].as_str().unwrap().to_owned();
    let sub = claims(tokens["id_token"].as_str().unwrap())["sub"].clone();

    app.advance(3600);
    let res = refresh(&app, &client, &first).await;
    assert_eq!(res.status(), StatusCode::OK);
    let rotated: Value = res.json().await.unwrap();
    let second = rotated["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    assert_eq!(claims(rotated["id_token"].as_str().unwrap())["sub"], sub);
    assert_eq!(claims(rotated["access_token"].as_str().unwrap())["sub"], sub);

    // Another application cannot use it.
    let other = app.client().await;
    assert_eq!(refresh(&app, &other, &second).await.status(), StatusCode::BAD_REQUEST);

    // The rotated-out token again: the family dies, the current token with it.
    let res = refresh(&app, &client, &first).await;
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_grant");
    assert_eq!(refresh(&app, &client, &second).await.status(), StatusCode::BAD_REQUEST);
    let events: Value =
        app.admin(reqwest::Method::GET, "/v1/events?limit=100", None).await.json().await.unwrap();
    let kinds: Vec<&str> =
        events["data"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"refresh_token.reuse_detected"), "{kinds:?}");

    // Concurrent refreshes of one token: one rotation wins; the losers count as reuse.
    let tokens = app.sign_in(&client).await;
    let token = tokens["refresh_token"].as_str().unwrap().to_owned();
    let results = join_all((0..10).map(|_| refresh(&app, &client, &token))).await;
    assert_eq!(results.iter().filter(|r| r.status() == StatusCode::OK).count(), 1);

    // Sliding lifetime: unused for 30 days, a token is dead.
    let tokens = app.sign_in(&client).await;
    app.advance(30 * 86_400);
    let token = tokens["refresh_token"].as_str().unwrap();
    assert_eq!(refresh(&app, &client, token).await.status(), StatusCode::BAD_REQUEST);
}

async fn client_credentials_work_as_the_applications_credential(app: TestApp) {
    let client = app.client().await;
    let res = app
        .http
        .post(app.url("/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &client.id),
            ("client_secret", &client.secret),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert!(body.get("id_token").is_none() && body.get("refresh_token").is_none());
    let token = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(claims(&token)["sub"], client.id.as_str());

    let res = app
        .http
        .post(app.url("/v1/magic-links"))
        .bearer_auth(&token)
        .json(&json!({"email": random_email(), "send_email": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    // A user's access token is not an application credential, nor is an expired one.
    let user_token = app.sign_in(&client).await["access_token"].as_str().unwrap().to_owned();
    let res = app
        .http
        .post(app.url("/v1/magic-links"))
        .bearer_auth(&user_token)
        .json(&json!({"email": random_email()}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    app.advance(3600);
    let res = app
        .http
        .post(app.url("/v1/magic-links"))
        .bearer_auth(&token)
        .json(&json!({"email": random_email()}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

async fn userinfo_revoke_and_introspect(app: TestApp) {
    let client = app.client().await;
    let tokens = app.sign_in(&client).await;
    let access = tokens["access_token"].as_str().unwrap();
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    let id = claims(tokens["id_token"].as_str().unwrap());

    let info: Value = app
        .http
        .get(app.url("/oauth/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (info["sub"].clone(), info["email"].clone(), info["email_verified"].clone()),
        (id["sub"].clone(), id["email"].clone(), json!(true))
    );
    let res = app.http.post(app.url("/oauth/userinfo")).bearer_auth("not.a.token").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let introspect = |token: String, who: &Client| {
        app.as_app(who).post("/oauth/introspect").form(&[("token", token)]).send()
    };
    let active: Value = introspect(access.to_owned(), &client).await.unwrap().json().await.unwrap();
    assert_eq!(
        (active["active"].clone(), active["client_id"].clone(), active["sub"].clone()),
        (json!(true), json!(client.id), id["sub"].clone())
    );
    let r: Value = introspect(refresh_token.to_owned(), &client).await.unwrap().json().await.unwrap();
    assert_eq!((r["active"].clone(), r["token_type"].clone()), (json!(true), json!("refresh_token")));
    let other = app.client().await;
    let foreign: Value = introspect(access.to_owned(), &other).await.unwrap().json().await.unwrap();
    assert_eq!(foreign, json!({"active": false}), "only the owner sees its tokens");
    let garbage: Value = introspect("garbage".into(), &client).await.unwrap().json().await.unwrap();
    assert_eq!(garbage, json!({"active": false}));
    let res = app.http.post(app.url("/oauth/introspect")).form(&[("token", access)]).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // Revocation ends the refresh token's sign-in; unknown tokens are fine (RFC 7009).
    let revoke = |token: &str| app.as_app(&client).post("/oauth/revoke").form(&[("token", token)]).send();
    assert_eq!(revoke(refresh_token).await.unwrap().status(), StatusCode::OK);
    assert_eq!(revoke("lkr_unknown").await.unwrap().status(), StatusCode::OK);
    let r: Value = introspect(refresh_token.to_owned(), &client).await.unwrap().json().await.unwrap();
    assert_eq!(r, json!({"active": false}));
    assert_eq!(refresh(&app, &client, refresh_token).await.status(), StatusCode::BAD_REQUEST);

    let discovery: Value = app
        .http
        .get(app.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for key in ["userinfo_endpoint", "revocation_endpoint", "introspection_endpoint"] {
        assert!(discovery[key].as_str().unwrap().starts_with(&app.base), "{key}");
    }
    assert!(discovery["grant_types_supported"].as_array().unwrap().contains(&json!(OTP_GRANT)));
    let _ = CALLBACK;
}
