//! The Transmit Mosaic-compatible face, with raw HTTP as Transmit documents it: a client access
//! token, a user, an e-mail magic link with the caller's own wording, the click, and the
//! authentication of the code the redirect carried.

use crate::backend_tests;
use crate::helpers::{CALLBACK, Client, TestApp, claims, header, query_param, random_email};
use latchkey_core::Clock;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

backend_tests!(
    a_created_user_signs_in_by_a_link_worded_by_the_caller,
    links_go_by_user_id_or_the_older_email_and_expire_in_the_minutes_asked,
    an_unknown_identifier_answers_as_a_known_one_and_nothing_is_mailed,
    every_route_answers_bad_input_in_transmit_s_error_shape,
);

/// `POST /oidc/token` with the client's id and secret, form-encoded: the access token.
async fn client_token(app: &TestApp, client: &Client) -> String {
    let res = app
        .http
        .post(app.url("/oidc/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client.id.as_str()),
            ("client_secret", client.secret.as_str()),
            ("resource", "https://api.example"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert!(body["scope"].is_string(), "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

async fn post(app: &TestApp, path: &str, token: Option<&str>, body: &Value) -> reqwest::Response {
    let mut req = app.http.post(app.url(path)).json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("request")
}

async fn create_user(app: &TestApp, token: &str, email: &str) -> Value {
    let res = post(app, "/cis/v1/users", Some(token), &json!({ "email": email })).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json::<Value>().await.unwrap()["result"].clone()
}

async fn error_of(res: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(res.status(), status);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("application/json"), "{content_type}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error_code"], status.as_u16(), "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    body
}

async fn a_created_user_signs_in_by_a_link_worded_by_the_caller(app: TestApp) {
    let client = app.client().await;
    let token = client_token(&app, &client).await;
    let email = random_email();
    let body = json!({
        "email": email, "username": "ada", "external_user_id": "crm-42",
        "name": { "first_name": "Ada", "last_name": "Lovelace" }, "custom_data": { "plan": "pro", "seats": 3 },
    });
    let res = post(&app, "/cis/v1/users", Some(&token), &body).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let result = res.json::<Value>().await.unwrap()["result"].clone();
    let now_ms = app.clock.now().unix_timestamp() * 1000;
    let user_id = result["user_id"].as_str().unwrap();
    assert!(user_id.starts_with("user_"), "{result}");
    assert_eq!(result["status"], "Active");
    assert_eq!(result["email"], json!({ "value": email, "email_verified": false }));
    assert_eq!(result["created_at"], now_ms);
    assert_eq!(result["updated_at"], now_ms);
    assert_eq!(result["name"], "Ada Lovelace");
    assert_eq!(result["username"], "ada");
    let taken = post(&app, "/cis/v1/users", Some(&token), &json!({ "email": email })).await;
    error_of(taken, StatusCode::CONFLICT).await;

    let send = json!({
        "identifier": email, "identifier_type": "email", "redirect_uri": CALLBACK, "state": "st-1",
        "email_content": {
            "subject": "Your <Acme> link", "primaryColor": "#0a7d48", "headerText": "Welcome <b>back</b> & co",
            "bodyText": "Press the button to enter Acme.", "linkText": "Enter Acme",
            "infoText": "This link lasts a quarter of an hour.", "footerText": "Acme Ltd, 1 Main St",
            "senderName": "Acme Support",
        },
        "client_attributes": { "user_agent": "Mozilla/5.0 test", "ip_address": "192.0.2.7" },
    });
    let res = post(&app, "/cis/v1/auth/link/email/send", Some(&token), &send).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(res.json::<Value>().await.unwrap(), json!({ "message": "Email sent successfully" }));

    let mails = app.wait_for_mails(1).await;
    let mail = &mails[0];
    assert_eq!(mail.subject().unwrap(), "Your <Acme> link");
    assert!(mail.decoded_header("from").unwrap().contains("Acme Support"), "{:?}", mail.header("from"));
    let (text, html) = (mail.text(), mail.html());
    for words in [
        "Welcome <b>back</b> & co",
        "Press the button to enter Acme.",
        "Enter Acme:",
        "This link lasts a quarter of an hour.",
        "Acme Ltd, 1 Main St",
    ] {
        assert!(text.contains(words), "text part lacks {words:?}: {text}");
    }
    assert!(html.contains("Welcome &lt;b&gt;back&lt;&#x2f;b&gt; &amp; co"), "escaped in HTML: {html}");
    assert!(!html.contains("<b>back"), "{html}");
    assert!(html.contains("background:#0a7d48"), "{html}");
    assert!(html.contains(">Enter Acme</a>") && html.contains("Acme Ltd, 1 Main St"), "{html}");
    assert!(!text.contains("Someone asked to sign in"), "the caller's words replace the built-in ones");

    let location = app.click(&app.link_in(mail)).await;
    assert!(location.starts_with(CALLBACK), "{location}");
    assert_eq!(query_param(&location, "state").unwrap(), "st-1");
    let code = query_param(&location, "code").unwrap();

    let res =
        post(&app, "/cis/v1/auth/link/email/authenticate", Some(&token), &json!({ "code": code })).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let tokens: Value = res.json().await.unwrap();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 3600);
    assert!(tokens["refresh_token"].as_str().unwrap().starts_with("lkr_"));
    assert!(tokens["session_id"].as_str().is_some_and(|s| !s.is_empty()), "{tokens}");
    let id_token = tokens["id_token"].as_str().unwrap();
    let id = claims(id_token);
    assert_eq!(id["sub"], user_id);
    assert_eq!(id["email"], email);
    assert_eq!(id["email_verified"], true);
    assert_eq!(claims(tokens["access_token"].as_str().unwrap())["sub"], user_id);

    // The key set that signed it.
    let res = app.http.get(app.url("/cis/oidc/jwks")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/json");
    let jwks: Value = res.json().await.unwrap();
    let kid = header(id_token)["kid"].clone();
    assert!(jwks["keys"].as_array().unwrap().iter().any(|k| k["kid"] == kid), "{jwks}");

    // The same session continues by refresh at the standard endpoint; the code is spent.
    let again =
        post(&app, "/cis/v1/auth/link/email/authenticate", Some(&token), &json!({ "code": code })).await;
    error_of(again, StatusCode::BAD_REQUEST).await;
}

async fn links_go_by_user_id_or_the_older_email_and_expire_in_the_minutes_asked(app: TestApp) {
    let client = app.client().await;
    let token = client_token(&app, &client).await;
    let (by_id, by_email, by_username) = (random_email(), random_email(), random_email());
    let user = create_user(&app, &token, &by_id).await;
    create_user(&app, &token, &by_email).await;
    create_user(&app, &token, &by_username).await;

    let send = json!({ "identifier": user["user_id"], "identifier_type": "user_id", "redirect_uri": CALLBACK, "email_expiration": 2 });
    let res = post(&app, "/cis/v1/auth/link/email/send", Some(&token), &send).await;
    assert_eq!(res.status(), StatusCode::OK);
    let older = json!({ "email": by_email, "redirect_uri": CALLBACK });
    let res = post(&app, "/cis/v1/auth/link/email/send", Some(&token), &older).await;
    assert_eq!(res.status(), StatusCode::OK);
    // A username is the user's e-mail address.
    let named = json!({ "identifier": by_username, "identifier_type": "username", "redirect_uri": CALLBACK });
    let res = post(&app, "/cis/v1/auth/link/email/send", Some(&token), &named).await;
    assert_eq!(res.status(), StatusCode::OK);

    let mails = app.wait_for_mails(3).await;
    let to = |m: &latchkey_mail::sink::ReceivedMail| m.header("to").unwrap();
    let first = mails.iter().find(|m| to(m) == by_id).expect("the mail to the user named by id");
    let second = mails.iter().find(|m| to(m) == by_email).expect("the mail of the older call");
    assert!(mails.iter().any(|m| to(m) == by_username), "the mail to the user named by username");
    assert!(first.text().contains("2 minutes"), "{}", first.text());

    // The older call's link, exchanged at /oidc/token with the client's credentials.
    let code = query_param(&app.click(&app.link_in(second)).await, "code").unwrap();
    let res = app
        .http
        .post(app.url("/oidc/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("client_id", client.id.as_str()),
            ("client_secret", client.secret.as_str()),
            ("redirect_uri", CALLBACK),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let tokens: Value = res.json().await.unwrap();
    assert_eq!(claims(tokens["id_token"].as_str().unwrap())["email"], by_email);
    assert!(tokens["refresh_token"].is_string());

    // Two minutes, then the link is gone.
    app.advance(121);
    let res = app.http.get(app.link_in(first)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::GONE);
}

async fn an_unknown_identifier_answers_as_a_known_one_and_nothing_is_mailed(app: TestApp) {
    let client = app.client().await;
    let token = client_token(&app, &client).await;
    let known = random_email();
    create_user(&app, &token, &known).await;
    let answer = |res: reqwest::Response| async move {
        assert_eq!(res.status(), StatusCode::OK);
        res.json::<Value>().await.unwrap()
    };
    let reference = answer(
        post(
            &app,
            "/cis/v1/auth/link/email/send",
            Some(&token),
            &json!({ "identifier": known, "identifier_type": "email", "redirect_uri": CALLBACK }),
        )
        .await,
    )
    .await;
    app.wait_for_mails(1).await;
    let unknown = [
        json!({ "identifier": random_email(), "identifier_type": "email", "redirect_uri": CALLBACK }),
        json!({ "identifier": "user_01JZZZZZZZZZZZZZZZZZZZZZZZ", "identifier_type": "user_id", "redirect_uri": CALLBACK }),
        json!({ "identifier": "not-an-id", "identifier_type": "user_id" }),
        json!({ "email": random_email(), "redirect_uri": CALLBACK }),
    ];
    for body in unknown {
        let got = answer(post(&app, "/cis/v1/auth/link/email/send", Some(&token), &body).await).await;
        assert_eq!(got, reference, "{body}");
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(app.sink.mails().len(), 1, "only the known user got mail");
    // An unknown user id is no way around the redirect allow list.
    let off_list = json!({ "identifier": "user_01JZZZZZZZZZZZZZZZZZZZZZZZ", "identifier_type": "user_id", "redirect_uri": "https://evil.example/" });
    error_of(
        post(&app, "/cis/v1/auth/link/email/send", Some(&token), &off_list).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
}

async fn every_route_answers_bad_input_in_transmit_s_error_shape(app: TestApp) {
    let client = app.client().await;
    let token = client_token(&app, &client).await;
    let t = Some(token.as_str());
    let (send, users, auth) =
        ("/cis/v1/auth/link/email/send", "/cis/v1/users", "/cis/v1/auth/link/email/authenticate");
    let known = random_email();
    create_user(&app, &token, &known).await;
    let with = |extra: Value| {
        let mut body = json!({ "identifier": known, "identifier_type": "email", "redirect_uri": CALLBACK });
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    let cases: Vec<(&str, Option<&str>, Value, StatusCode)> = vec![
        (send, t, json!({}), StatusCode::BAD_REQUEST),
        (send, t, json!({ "identifier": "nope", "identifier_type": "email" }), StatusCode::BAD_REQUEST),
        (send, t, json!({ "identifier": "ada", "identifier_type": "username" }), StatusCode::BAD_REQUEST),
        (send, t, json!({ "identifier": "ada", "identifier_type": "phone" }), StatusCode::BAD_REQUEST),
        (send, t, with(json!({ "redirect_uri": "https://evil.example/" })), StatusCode::BAD_REQUEST),
        (send, t, with(json!({ "redirect_uri": "not a url" })), StatusCode::BAD_REQUEST),
        (send, t, with(json!({ "email_expiration": 0 })), StatusCode::BAD_REQUEST),
        (send, t, with(json!({ "email_expiration": 9_223_372_036_854_775_807i64 })), StatusCode::BAD_REQUEST),
        (send, t, with(json!({ "email_expiration": "soon" })), StatusCode::BAD_REQUEST),
        (
            send,
            t,
            with(json!({ "email_content": { "primaryColor": "red;background:url(x)" } })),
            StatusCode::BAD_REQUEST,
        ),
        (
            send,
            t,
            with(json!({ "email_content": { "senderName": "a\r\nBcc: x@y.example" } })),
            StatusCode::BAD_REQUEST,
        ),
        (
            send,
            t,
            with(json!({ "email_content": { "headerText": "h".repeat(3000) } })),
            StatusCode::BAD_REQUEST,
        ),
        (send, t, with(json!({ "email_content": { "subject": "s".repeat(300) } })), StatusCode::BAD_REQUEST),
        (send, t, with(json!({ "state": "s".repeat(2000) })), StatusCode::BAD_REQUEST),
        (
            send,
            t,
            with(json!({ "client_attributes": { "ip_address": "i".repeat(600) } })),
            StatusCode::BAD_REQUEST,
        ),
        (send, t, with(json!({ "email_content": "not an object" })), StatusCode::BAD_REQUEST),
        (send, None, with(json!({})), StatusCode::UNAUTHORIZED),
        (send, Some("a.b.c"), with(json!({})), StatusCode::UNAUTHORIZED),
        (users, t, json!({}), StatusCode::BAD_REQUEST),
        (users, t, json!({ "email": "nope" }), StatusCode::BAD_REQUEST),
        (users, t, json!({ "email": random_email(), "name": "not an object" }), StatusCode::BAD_REQUEST),
        (
            users,
            t,
            json!({ "email": random_email(), "name": { "first_name": "n".repeat(300) } }),
            StatusCode::BAD_REQUEST,
        ),
        (users, None, json!({ "email": random_email() }), StatusCode::UNAUTHORIZED),
        (auth, t, json!({}), StatusCode::BAD_REQUEST),
        (auth, t, json!({ "code": "nope" }), StatusCode::BAD_REQUEST),
        (auth, t, json!({ "code": "c".repeat(5000) }), StatusCode::BAD_REQUEST),
        (auth, None, json!({ "code": "nope" }), StatusCode::UNAUTHORIZED),
        ("/oidc/token", None, json!({}), StatusCode::BAD_REQUEST),
        ("/oidc/token", None, json!({ "grant_type": "password" }), StatusCode::BAD_REQUEST),
        ("/oidc/token", None, json!({ "grant_type": "client_credentials" }), StatusCode::UNAUTHORIZED),
        (
            "/oidc/token",
            None,
            json!({ "grant_type": "client_credentials", "client_id": client.id, "client_secret": "lks_wrong" }),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "/oidc/token",
            None,
            json!({ "grant_type": "authorization_code", "client_id": client.id, "client_secret": client.secret }),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/oidc/token",
            None,
            json!({ "grant_type": "authorization_code", "code": "x", "client_id": client.id, "client_secret": client.secret }),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (path, token, body, status) in cases {
        let res = post(&app, path, token, &body).await;
        let got = res.status();
        let text = format!("{path} {body}");
        assert_eq!(got, status, "{}", &text[..text.len().min(300)]);
        error_of(res, status).await;
    }
    for path in [send, users, auth, "/oidc/token"] {
        let res = app.http.post(app.url(path)).bearer_auth(&token).header("content-type", "application/json");
        error_of(res.body("{\"code\": ").send().await.unwrap(), StatusCode::BAD_REQUEST).await;
        let res = app.http.post(app.url(path)).bearer_auth(&token).header("content-type", "application/xml");
        error_of(res.body("<a/>").send().await.unwrap(), StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
        let res =
            app.http.post(app.url(path)).bearer_auth(&token).json(&json!({ "email": "e".repeat(70 * 1024) }));
        error_of(res.send().await.unwrap(), StatusCode::PAYLOAD_TOO_LARGE).await;
        let res = app.http.get(app.url(path)).send().await.unwrap();
        error_of(res, StatusCode::METHOD_NOT_ALLOWED).await;
    }
    // The fourth link for one address in a minute waits, in Transmit's shape.
    let busy = random_email();
    create_user(&app, &token, &busy).await;
    let to_busy = json!({ "identifier": busy, "identifier_type": "email", "redirect_uri": CALLBACK });
    for _ in 0..3 {
        assert_eq!(post(&app, send, t, &to_busy).await.status(), StatusCode::OK);
    }
    let res = post(&app, send, t, &to_busy).await;
    assert!(res.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    error_of(res, StatusCode::TOO_MANY_REQUESTS).await;
    let res = app.http.post(app.url("/cis/oidc/jwks")).send().await.unwrap();
    error_of(res, StatusCode::METHOD_NOT_ALLOWED).await;
    for path in ["/cis/v1/nothing", "/cis", "/oidc/nothing", "/oidc", "/cis/v1/users/x"] {
        error_of(app.http.get(app.url(path)).send().await.unwrap(), StatusCode::NOT_FOUND).await;
    }
}
