//! Sign-in by magic link, from the back end's request to the tokens.

use crate::backend_tests;
use crate::helpers::{CALLBACK, Client, TestApp, claims, query_param, random_email};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

backend_tests!(
    a_link_sent_by_email_signs_the_user_in,
    looking_at_the_link_consumes_nothing,
    send_email_false_returns_the_link_and_sends_nothing,
    delivery_status_is_visible_and_revocation_ends_the_link,
    expired_and_unknown_links_say_so,
    a_redirect_off_the_allow_list_is_refused_before_anything_is_sent,
    the_code_is_single_use_bound_and_short_lived,
    clients_authenticate_in_every_supported_way,
    public_clients_must_prove_pkce,
    no_sign_up_answers_like_a_known_address_and_sends_nothing,
    a_cross_site_post_is_refused,
    mail_is_retried_until_the_smtp_server_accepts_it,
    answers_that_carry_secrets_are_never_stored,
);

/// Links and codes (send_email: false), secrets and verification codes must not be kept by a
/// cache; JSON must not be sniffed as HTML.
async fn answers_that_carry_secrets_are_never_stored(app: TestApp) {
    let client = app.client().await;
    let res = app.request_link(&client, json!({ "email": random_email(), "send_email": false })).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let headers = res.headers().clone();
    let body: Value = res.json().await.unwrap();
    assert!(body["link"].is_string() && body["otp"].is_string(), "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["x-content-type-options"], "nosniff");

    let created = app
        .admin(
            reqwest::Method::POST,
            "/v1/applications",
            Some(json!({ "name": "N", "redirect_uris": [CALLBACK] })),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(created.headers()["cache-control"], "no-store");
    let id = created.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let secret = app.admin(reqwest::Method::POST, &format!("/v1/applications/{id}/secrets"), None).await;
    assert_eq!(secret.headers()["cache-control"], "no-store");
    let read = app.admin(reqwest::Method::GET, &format!("/v1/applications/{id}"), None).await;
    assert_eq!(read.headers()["cache-control"], "no-store");
    // An error is an API answer too.
    let refused = app.admin(reqwest::Method::GET, "/v1/applications/app_unknown", None).await;
    assert_eq!(refused.status(), StatusCode::NOT_FOUND);
    assert_eq!(refused.headers()["cache-control"], "no-store");
    assert_eq!(refused.headers()["x-content-type-options"], "nosniff");
    // The key set stays cacheable: it holds public keys only.
    let jwks = reqwest::get(app.url("/oauth/jwks")).await.unwrap();
    assert_eq!(jwks.headers()["cache-control"], "public, max-age=300");
}

async fn a_link_sent_by_email_signs_the_user_in(app: TestApp) {
    let client = app.client().await;
    let email = random_email();
    let res = app
        .request_link(&client, json!({ "email": email.to_uppercase(), "state": "s-1", "nonce": "n-1" }))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.unwrap();
    assert_eq!(created["object"], "magic_link");
    assert_eq!(created["email"], email.as_str());
    assert!(created["id"].as_str().unwrap().starts_with("ml_"));
    assert!(created.get("link").is_none() && created.get("otp").is_none(), "{created}");

    let mails = app.wait_for_mails(1).await;
    let mail = &mails[0];
    assert_eq!(mail.rcpt_to, vec![email.clone()]);
    assert!(mail.header("Message-ID").is_some_and(|id| id.starts_with("<msg_")));
    assert!(mail.header("Date").is_some());
    assert!(mail.header("Subject").unwrap().contains("Acme"));
    let link = app.link_in(mail);
    let otp = app.otp_in(mail);
    assert_eq!(otp.len(), 6);

    let (status, location) = app.press(&link).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = location.unwrap();
    assert!(location.starts_with(CALLBACK), "{location}");
    assert_eq!(query_param(&location, "state").as_deref(), Some("s-1"));
    let code = query_param(&location, "code").unwrap();

    let res = app.exchange(&client, &code).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let tokens: Value = res.json().await.unwrap();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 3600);
    assert_eq!(tokens["scope"], "openid email");
    let id = claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["email"], email.as_str());
    assert_eq!(id["email_verified"], true);
    assert_eq!(id["aud"], client.id.as_str());
    assert_eq!(id["iss"], app.base.as_str());
    assert_eq!(id["nonce"], "n-1");
    assert_eq!(id["amr"], json!(["email"]));
    assert!(id["sub"].as_str().unwrap().starts_with("user_"));

    // The link is spent: the page says so with 410, and its code cannot be used again.
    let (status, _) = app.press(&link).await;
    assert_eq!(status, StatusCode::GONE);
    let page = app.http.get(&link).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::GONE);
    assert!(page.text().await.unwrap().contains("already been used"));
    let again = app.exchange(&client, &code).await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert_eq!(again.json::<Value>().await.unwrap()["error"], "invalid_grant");
}

async fn looking_at_the_link_consumes_nothing(app: TestApp) {
    let client = app.client().await;
    let email = random_email();
    let (_, link, _) = app.link_without_mail(&client, &email).await;
    for _ in 0..3 {
        let page = app.http.get(&link).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        let h = page.headers().clone();
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["cache-control"], "no-store");
        assert!(h["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
        let html = page.text().await.unwrap();
        assert!(html.contains(&email) && html.contains("Acme") && html.contains("method=\"post\""));
        let head = app.http.head(&link).send().await.unwrap();
        assert_eq!(head.status(), StatusCode::OK);
    }
    app.code_from(&link).await;
}

async fn send_email_false_returns_the_link_and_sends_nothing(app: TestApp) {
    let client = app.client().await;
    let (id, link, otp) = app.link_without_mail(&client, &random_email()).await;
    assert!(link.starts_with(&app.url("/l/")));
    assert_eq!(otp.len(), 6);
    let status = app.magic_link(&client, &id).await;
    assert_eq!(status["delivery"]["status"], "not_sent");
    assert_eq!(status["status"], "pending");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(app.sink.mails().is_empty());
    let code = app.code_from(&link).await;
    assert_eq!(app.exchange(&client, &code).await.status(), StatusCode::OK);
    assert_eq!(app.magic_link(&client, &id).await["status"], "consumed");
}

async fn delivery_status_is_visible_and_revocation_ends_the_link(app: TestApp) {
    let client = app.client().await;
    let res = app.request_link(&client, json!({ "email": random_email() })).await;
    let id = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let mails = app.wait_for_mails(1).await;
    let status = app.magic_link_when(&client, &id, Duration::from_millis(2500), sent).await;
    let relay = app.sink.addr().to_string();
    assert_eq!(
        status["delivery"],
        json!({ "status": "sent", "attempts": 1, "last_error": null, "relay": relay })
    );

    // Another application cannot see or revoke it.
    let other = app.client().await;
    let res = app.as_app(&other).get(&format!("/v1/magic-links/{id}")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = app.as_app(&other).delete(&format!("/v1/magic-links/{id}")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    let res = app.as_app(&client).delete(&format!("/v1/magic-links/{id}")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "revoked");
    let link = app.link_in(&mails[0]);
    assert_eq!(app.press(&link).await.0, StatusCode::GONE);
    let res = app.as_app(&client).delete(&format!("/v1/magic-links/{id}")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
}

async fn expired_and_unknown_links_say_so(app: TestApp) {
    let client = app.client().await;
    let (id, link, _) = app.link_without_mail(&client, &random_email()).await;
    app.advance(15 * 60);
    let page = app.http.get(&link).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::GONE);
    let html = page.text().await.unwrap();
    assert!(html.contains("expired") && html.contains("https://app.example"), "a way back: {html}");
    assert_eq!(app.press(&link).await.0, StatusCode::GONE);
    assert_eq!(app.magic_link(&client, &id).await["status"], "expired");

    let unknown = app.url("/l/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    assert_eq!(app.http.get(&unknown).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(app.press(&unknown).await.0, StatusCode::NOT_FOUND);
    let huge = app.url(&format!("/l/{}", "A".repeat(5000)));
    assert_eq!(app.http.get(&huge).send().await.unwrap().status(), StatusCode::NOT_FOUND);

    // A caller-chosen lifetime is honoured.
    let res = app
        .request_link(&client, json!({ "email": random_email(), "send_email": false, "expires_in": 120 }))
        .await;
    let link = res.json::<Value>().await.unwrap()["link"].as_str().unwrap().to_owned();
    app.advance(119);
    assert_eq!(app.http.get(&link).send().await.unwrap().status(), StatusCode::OK);
    app.advance(1);
    assert_eq!(app.http.get(&link).send().await.unwrap().status(), StatusCode::GONE);
}

async fn a_redirect_off_the_allow_list_is_refused_before_anything_is_sent(app: TestApp) {
    let client = app.create_client(json!({
        "name": "Two", "redirect_uris": [CALLBACK, "https://app.example/other"], "default_redirect_uri": CALLBACK
    })).await;
    for bad in [
        "https://evil.example/callback",
        "https://app.example/callback/x",
        "https://app.example/callback?x=1",
        "not a url",
    ] {
        let res = app.request_link(&client, json!({ "email": random_email(), "redirect_uri": bad })).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
        let body: Value = res.json().await.unwrap();
        assert!(
            matches!(body["error"].as_str(), Some("redirect_uri_not_allowed" | "invalid_redirect_uri")),
            "{body}"
        );
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(app.sink.mails().is_empty(), "nothing was sent");

    // An allowed non-default URI is used as given.
    let res = app.request_link(&client, json!({ "email": random_email(), "redirect_uri": "https://app.example/other", "send_email": false })).await;
    let link = res.json::<Value>().await.unwrap()["link"].as_str().unwrap().to_owned();
    let (_, location) = app.press(&link).await;
    assert!(location.unwrap().starts_with("https://app.example/other?code="));
}

async fn the_code_is_single_use_bound_and_short_lived(app: TestApp) {
    let client = app.client().await;
    let other = app.client().await;

    // Another application cannot redeem it, and its attempt does not burn it.
    let (_, link, _) = app.link_without_mail(&client, &random_email()).await;
    let code = app.code_from(&link).await;
    let res = app.exchange(&other, &code).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_grant");
    assert_eq!(app.exchange(&client, &code).await.status(), StatusCode::OK);

    // A different redirect_uri is refused.
    let (_, link, _) = app.link_without_mail(&client, &random_email()).await;
    let code = app.code_from(&link).await;
    let res = app
        .as_app(&client)
        .post("/oauth/token")
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "https://app.example/elsewhere"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_grant");

    // Five minutes, then it is gone.
    let (_, link, _) = app.link_without_mail(&client, &random_email()).await;
    let code = app.code_from(&link).await;
    app.advance(5 * 60);
    let res = app.exchange(&client, &code).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_grant");
}

async fn clients_authenticate_in_every_supported_way(app: TestApp) {
    let client = app.client().await;
    let token_url = app.url("/oauth/token");

    // client_secret_post
    let (_, link, _) = app.link_without_mail(&client, &random_email()).await;
    let code = app.code_from(&link).await;
    let res = app
        .http
        .post(&token_url)
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", &client.id),
            ("client_secret", &client.secret),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    // Authorization: Bearer <client_secret>, JSON body
    let (_, link, _) = app.link_without_mail(&client, &random_email()).await;
    let code = app.code_from(&link).await;
    let res = app
        .http
        .post(&token_url)
        .bearer_auth(&client.secret)
        .json(&json!({"grant_type": "authorization_code", "code": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    // The native API takes the secret as a bearer too.
    let res = app
        .http
        .post(app.url("/v1/magic-links"))
        .bearer_auth(&client.secret)
        .json(&json!({"email": random_email(), "send_email": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);

    // Wrong secrets, a secret with another application's id, no credentials at all.
    let other = app.client().await;
    let (_, link, _) = app.link_without_mail(&client, &random_email()).await;
    let code = app.code_from(&link).await;
    for (id, secret) in [(client.id.as_str(), "lks_wrong"), (other.id.as_str(), client.secret.as_str())] {
        let wrong = Client { id: id.to_owned(), secret: secret.to_owned() };
        let res = app
            .as_app(&wrong)
            .post(&token_url)
            .form(&[("grant_type", "authorization_code"), ("code", &code)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_client");
    }
    let res = app
        .http
        .post(&token_url)
        .form(&[("grant_type", "authorization_code"), ("code", &code)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // The code survived the failed attempts.
    assert_eq!(app.exchange(&client, &code).await.status(), StatusCode::OK);
}

async fn public_clients_must_prove_pkce(app: TestApp) {
    let res = app
        .admin(
            reqwest::Method::POST,
            "/v1/applications",
            Some(json!({"name": "SPA", "redirect_uris": [CALLBACK], "public": true})),
        )
        .await;
    let body: Value = res.json().await.unwrap();
    assert!(body["client_secret"].is_null());
    // A public client names itself by its id alone.
    let spa = Client { id: body["client_id"].as_str().unwrap().to_owned(), secret: String::new() };
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    let res = app.request_link(&spa, json!({"email": random_email(), "send_email": false})).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "pkce_required");

    let url = app.url("/oauth/token");
    let exchange = |code: String, verifier: Option<&'static str>| {
        let mut form = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code),
            ("client_id", spa.id.clone()),
        ];
        if let Some(v) = verifier {
            form.push(("code_verifier", v.to_owned()));
        }
        app.http.post(&url).form(&form).send()
    };
    let new_code = || async {
        let res = app.request_link(&spa, json!({"email": random_email(), "send_email": false, "code_challenge": challenge, "code_challenge_method": "S256"})).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let link = res.json::<Value>().await.unwrap()["link"].as_str().unwrap().to_owned();
        app.code_from(&link).await
    };

    let res = exchange(new_code().await, None).await.unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_grant", "a verifier is required");
    let res = exchange(new_code().await, Some("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXX")).await.unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_grant", "the verifier must match");
    let res = exchange(new_code().await, Some(verifier)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    // A confidential application cannot drop its secret and pass as public.
    let confidential = app.client().await;
    let bare = Client { id: confidential.id.clone(), secret: String::new() };
    assert_eq!(
        app.request_link(&bare, json!({"email": random_email()})).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

async fn no_sign_up_answers_like_a_known_address_and_sends_nothing(app: TestApp) {
    let client = app.client().await;
    let known = random_email();
    let (_, link, _) = app.link_without_mail(&client, &known).await;
    let code = app.code_from(&link).await;
    assert_eq!(app.exchange(&client, &code).await.status(), StatusCode::OK);

    let unknown = random_email();
    let ask = |email: String| app.request_link(&client, json!({ "email": email, "create_user": false }));
    let a = ask(known.clone()).await;
    let b = ask(unknown.clone()).await;
    assert_eq!(a.status(), StatusCode::CREATED);
    assert_eq!(b.status(), StatusCode::CREATED);
    let (a, b): (Value, Value) = (a.json().await.unwrap(), b.json().await.unwrap());
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&a), keys(&b));
    assert_eq!(b["email"], unknown.as_str());

    let mails = app.wait_for_mails(1).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mails = if mails.len() == 1 { app.sink.mails() } else { mails };
    assert_eq!(mails.len(), 1, "only the known address gets mail");
    assert_eq!(mails[0].rcpt_to, vec![known]);
}

async fn a_cross_site_post_is_refused(app: TestApp) {
    let client = app.client().await;
    let (_, link, _) = app.link_without_mail(&client, &random_email()).await;
    let res = app.http.post(&link).header("sec-fetch-site", "cross-site").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = app.http.post(&link).header("origin", "https://evil.example").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // A sandboxed frame sends `Origin: null`; a sibling subdomain is same-site, not same-origin;
    // a second Origin header must not hide behind a first good one.
    let res = app.http.post(&link).header("origin", "null").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = app.http.post(&link).header("sec-fetch-site", "same-site").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = app
        .http
        .post(&link)
        .header("origin", app.base.as_str())
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // None of these spent the link.
    assert_eq!(app.http.get(&link).send().await.unwrap().status(), StatusCode::OK);
    // The person's own press still works.
    let res = app
        .http
        .post(&link)
        .header("sec-fetch-site", "same-origin")
        .header("origin", app.base.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
}

async fn mail_is_retried_until_the_smtp_server_accepts_it(app: TestApp) {
    use latchkey_mail::sink::SinkMode;
    app.sink.set_mode(SinkMode::RefuseTemporarily);
    let client = app.client().await;
    let res = app.request_link(&client, json!({ "email": random_email() })).await;
    let id = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let tried = |s: &Value| s["delivery"]["attempts"].as_u64() >= Some(1);
    let status = app.magic_link_when(&client, &id, Duration::from_secs(5), tried).await;
    assert_eq!(status["delivery"]["status"], "queued");
    assert!(status["delivery"]["last_error"].as_str().unwrap().contains("451"), "{status}");

    app.sink.set_mode(SinkMode::Accept);
    app.advance(60);
    let mails = app.wait_for_mails(1).await;
    assert_eq!(mails.len(), 1);
    let status = app.magic_link_when(&client, &id, Duration::from_secs(5), sent).await;
    assert_eq!(status["delivery"]["status"], "sent");
    assert_eq!(status["delivery"]["attempts"], 2);
}

/// Whether a magic link's e-mail was accepted by the mail server.
fn sent(state: &Value) -> bool {
    state["delivery"]["status"] == "sent"
}
