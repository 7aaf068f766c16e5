//! The WorkOS face over raw HTTP: what the SDK cases (`sdk_workos.rs`, run when the SDKs are
//! installed) cannot show or need not: held mail, the bounds, and bad input on every route.

use crate::backend_tests;
use crate::helpers::{CALLBACK, Client, TestApp, query_param, random_email};
use latchkey_core::Clock;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

backend_tests!(
    a_session_mails_its_link_once_when_sent,
    expiry_is_bounded_as_workos_bounds_it,
    the_token_endpoints_take_json_and_forms_and_say_errors_as_oauth,
    bad_input_on_every_route_is_a_workos_error,
    unknown_paths_and_methods_answer_json,
    a_magic_auth_code_signs_in_and_users_read_back,
);

/// Requests made with the application's secret as the WorkOS API key.
fn workos(app: &TestApp, client: &Client, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    app.http.request(method, app.url(path)).bearer_auth(&client.secret)
}

async fn json_of(res: reqwest::Response) -> (StatusCode, Value) {
    let status = res.status();
    let content_type = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    assert!(
        content_type.as_deref().is_some_and(|c| c.starts_with("application/json")),
        "{status} answered {content_type:?}"
    );
    (status, res.json().await.expect("a JSON body"))
}

fn mails_to(app: &TestApp, email: &str) -> usize {
    app.sink.mails().iter().filter(|m| m.rcpt_to.iter().any(|r| r == email)).count()
}

async fn a_session_mails_its_link_once_when_sent(app: TestApp) {
    let client = app.client().await;
    let email = random_email();
    let body = json!({ "email": email, "type": "MagicLink", "redirect_uri": CALLBACK, "state": "s-1" });
    let res = workos(&app, &client, reqwest::Method::POST, "/passwordless/sessions")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["cache-control"], "no-store");
    let (status, session) = json_of(res).await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    assert_eq!(
        (session["object"].as_str(), session["email"].as_str()),
        (Some("passwordless_session"), Some(&*email))
    );
    let id = session["id"].as_str().unwrap().to_owned();
    let link = session["link"].as_str().unwrap().to_owned();
    assert!(id.starts_with("passwordless_session_") && link.starts_with(&app.url("/l/")), "{session}");

    // Held: written with the session (visible through the native API), not delivered.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(mails_to(&app, &email), 0, "creating a session sends nothing");
    let native_id = id.replace("passwordless_session_", "ml_");
    assert_eq!(app.magic_link(&client, &native_id).await["delivery"]["status"], "held");

    let send = format!("/passwordless/sessions/{id}/send");
    for _ in 0..2 {
        let (status, body) =
            json_of(workos(&app, &client, reqwest::Method::POST, &send).send().await.unwrap()).await;
        assert_eq!((status, body), (StatusCode::CREATED, json!({ "success": true })));
    }
    let mails = app.wait_for_mails(1).await;
    assert_eq!(app.link_in(&mails[0]), link, "the e-mail carries the link create answered");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(mails_to(&app, &email), 1, "a second send mails nothing more");
    let sent = app
        .magic_link_when(&client, &native_id, Duration::from_secs(5), |l| l["delivery"]["status"] == "sent")
        .await;
    assert_eq!(sent["delivery"]["status"], "sent");

    let (status, location) = app.press(&link).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = location.unwrap();
    assert!(location.starts_with(CALLBACK), "{location}");
    assert_eq!(query_param(&location, "state").as_deref(), Some("s-1"));
    assert!(query_param(&location, "code").is_some());
    // A session no longer pending sends nothing.
    let (status, body) =
        json_of(workos(&app, &client, reqwest::Method::POST, &send).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["code"], "session_not_pending");

    // Another application's key does not reach the session.
    let other = app.client().await;
    let (status, body) =
        json_of(workos(&app, &other, reqwest::Method::POST, &send).send().await.unwrap()).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("entity_not_found")));
}

async fn expiry_is_bounded_as_workos_bounds_it(app: TestApp) {
    let client = app.client().await;
    for (expires_in, accepted) in [(899, false), (900, true), (86_400, true), (86_401, false), (-1, false)] {
        let body = json!({ "email": random_email(), "type": "MagicLink", "expires_in": expires_in });
        let res = workos(&app, &client, reqwest::Method::POST, "/passwordless/sessions")
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, body) = json_of(res).await;
        if accepted {
            assert_eq!(status, StatusCode::CREATED, "{expires_in}: {body}");
            let expires_at = time::OffsetDateTime::parse(
                body["expires_at"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap();
            assert_eq!((expires_at - app.clock.now()).whole_seconds(), expires_in);
        } else {
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{expires_in}: {body}");
            assert_eq!(body["code"], "invalid_request_parameters");
            assert_eq!(body["errors"], json!([{ "code": "expires_in_out_of_range", "field": "expires_in" }]));
        }
    }
    // A form body carries numbers as text.
    let res = workos(&app, &client, reqwest::Method::POST, "/passwordless/sessions")
        .form(&[("email", random_email().as_str()), ("type", "MagicLink"), ("expires_in", "1200")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
}

/// `POST /sso/token` as the Node SDK sends it (a form) and as the Python one does (JSON).
async fn the_token_endpoints_take_json_and_forms_and_say_errors_as_oauth(app: TestApp) {
    let client = app.client().await;
    for form in [true, false] {
        let (_, link, _) = app.link_without_mail(&client, &random_email()).await;
        let code = app.code_from(&link).await;
        let fields = [
            ("grant_type", "authorization_code"),
            ("client_id", &client.id),
            ("client_secret", &client.secret),
            ("code", &code),
        ];
        let req = app.http.post(app.url("/sso/token"));
        let req = if form {
            req.form(&fields)
        } else {
            req.json(&fields.into_iter().collect::<std::collections::BTreeMap<_, _>>())
        };
        let (status, body) = json_of(req.send().await.unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["token_type"], "Bearer");
        let keys = [
            "object",
            "id",
            "organization_id",
            "connection_id",
            "connection_type",
            "idp_id",
            "email",
            "first_name",
            "last_name",
            "name",
            "raw_attributes",
        ];
        for key in keys {
            assert!(body["profile"].get(key).is_some(), "profile lacks {key}: {body}");
        }
        assert_eq!(body["profile"]["organization_id"], Value::Null, "no organization owns example.com");
        let token = body["access_token"].as_str().unwrap();
        let res = app.http.get(app.url("/sso/profile")).bearer_auth(token).send().await.unwrap();
        let (status, profile) = json_of(res).await;
        assert_eq!((status, &profile), (StatusCode::OK, &body["profile"]));
    }
    let secret = client.secret.as_str();
    let refusals = [
        ("/sso/token", json!({ "grant_type": "authorization_code", "code": "nope" }), 401, None),
        (
            "/user_management/authenticate",
            json!({ "grant_type": "refresh_token", "refresh_token": "x" }),
            401,
            None,
        ),
        (
            "/sso/token",
            json!({ "grant_type": "authorization_code", "client_secret": secret, "code": "nope" }),
            400,
            Some("invalid_grant"),
        ),
        (
            "/user_management/authenticate",
            json!({ "grant_type": "refresh_token", "client_secret": secret, "refresh_token": "lkr_nope" }),
            400,
            Some("invalid_grant"),
        ),
        (
            "/sso/token",
            json!({ "grant_type": "password", "client_secret": secret }),
            400,
            Some("unsupported_grant_type"),
        ),
        (
            "/user_management/authenticate",
            json!({ "grant_type": "password", "client_secret": secret }),
            400,
            Some("unsupported_grant_type"),
        ),
    ];
    for (path, body, want, error) in refusals {
        let (status, answer) = json_of(app.http.post(app.url(path)).json(&body).send().await.unwrap()).await;
        assert_eq!(status.as_u16(), want, "{path} {body}: {answer}");
        if let Some(error) = error {
            assert_eq!(answer["error"], error, "{path} {body}: {answer}");
            assert!(answer["error_description"].is_string());
        }
    }
    let magic = json!({
        "grant_type": "urn:workos:oauth:grant-type:magic-auth:code",
        "client_secret": client.secret, "email": random_email(), "code": "12345x",
    });
    let (status, answer) =
        json_of(app.http.post(app.url("/user_management/authenticate")).json(&magic).send().await.unwrap())
            .await;
    assert_eq!(
        (status, answer["code"].as_str(), answer["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_one_time_code"), Some("invalid_grant"))
    );
}

async fn bad_input_on_every_route_is_a_workos_error(app: TestApp) {
    let client = app.client().await;
    let unknown_session = "/passwordless/sessions/passwordless_session_00000000000000000000000000/send";
    let posts = [
        "/passwordless/sessions",
        unknown_session,
        "/sso/token",
        "/user_management/magic_auth",
        "/user_management/authenticate",
    ];
    let huge = "x".repeat(70 * 1024);
    for path in posts {
        let post = || workos(&app, &client, reqwest::Method::POST, path);
        let cases = [
            (post().header("content-type", "application/json").body("{\"email\":"), "malformed JSON"),
            (post().json(&json!({ "email": 123, "type": ["MagicLink"], "expires_in": "soon" })), "wrong types"),
            (post().header("content-type", "application/json").body(format!("{{\"email\":\"{huge}\"}}")), "a huge body"),
            (post().json(&json!({ "email": format!("{}@example.com", "a".repeat(5000)), "type": "MagicLink", "state": "s".repeat(5000) })), "huge fields"),
            (post().json(&json!({})), "nothing at all"),
            (post().header("content-type", "image/png").body("x"), "a foreign content type"),
        ];
        for (req, what) in cases {
            let (status, body) = json_of(req.send().await.unwrap()).await;
            assert!(status.is_client_error(), "{path}, {what}: {status} {body}");
            assert!(body["code"].is_string() && body["message"].is_string(), "{path}, {what}: {body}");
        }
    }
    // A missing e-mail names its field; so does one that is no address.
    for path in ["/passwordless/sessions", "/user_management/magic_auth"] {
        for (email, code) in [(Value::Null, "required"), (json!("not-an-address"), "invalid")] {
            let body = json!({ "email": email, "type": "MagicLink" });
            let (status, answer) =
                json_of(workos(&app, &client, reqwest::Method::POST, path).json(&body).send().await.unwrap())
                    .await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {answer}");
            assert_eq!(answer["errors"], json!([{ "code": code, "field": "email" }]), "{path}");
        }
    }
    let (status, answer) = json_of(
        workos(&app, &client, reqwest::Method::POST, "/passwordless/sessions")
            .json(&json!({ "email": random_email(), "type": "MagicAuth" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, answer["errors"][0]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("type"))
    );

    let gets = [
        "/user_management/magic_auth/magic_auth_x",
        "/user_management/magic_auth/ml_00000000000000000000000000",
        "/user_management/users/nobody",
        "/user_management/users?limit=1000",
        "/user_management/users?limit=ten",
        "/user_management/users?after=somebody",
        "/user_management/users?before=user_00000000000000000000000000",
        "/user_management/users?organization_id=org_1",
        "/user_management/users?order=sideways",
        "/user_management/users?email=nobody",
    ];
    for path in gets {
        let (status, body) =
            json_of(workos(&app, &client, reqwest::Method::GET, path).send().await.unwrap()).await;
        assert!(matches!(status.as_u16(), 400 | 404 | 422), "{path}: {status} {body}");
        assert!(body["code"].is_string(), "{path}: {body}");
    }
    // No API key, or a wrong one: 401 on every route that needs one.
    for path in
        ["/passwordless/sessions", "/user_management/magic_auth", "/user_management/users", "/sso/profile"]
    {
        for key in [None, Some("lks_wrong"), Some("a.b.c")] {
            let method = if path.ends_with("users") || path.ends_with("profile") {
                reqwest::Method::GET
            } else {
                reqwest::Method::POST
            };
            let mut req = app
                .http
                .request(method, app.url(path))
                .json(&json!({ "email": random_email(), "type": "MagicLink" }));
            if let Some(key) = key {
                req = req.bearer_auth(key);
            }
            let (status, body) = json_of(req.send().await.unwrap()).await;
            assert_eq!(
                (status, body["code"].as_str()),
                (StatusCode::UNAUTHORIZED, Some("unauthorized")),
                "{path} {key:?}"
            );
        }
    }
}

async fn unknown_paths_and_methods_answer_json(app: TestApp) {
    let client = app.client().await;
    for path in [
        "/passwordless/nothing",
        "/sso/nothing/at/all",
        "/user_management/organizations",
        "/passwordless/sessions/x",
    ] {
        let (status, body) =
            json_of(workos(&app, &client, reqwest::Method::GET, path).send().await.unwrap()).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{path}");
    }
    let wrong = [
        (reqwest::Method::GET, "/passwordless/sessions"),
        (reqwest::Method::DELETE, "/user_management/users/user_00000000000000000000000000"),
        (reqwest::Method::PUT, "/sso/token"),
        (reqwest::Method::POST, "/sso/jwks/anything"),
    ];
    for (method, path) in wrong {
        let (status, body) = json_of(workos(&app, &client, method.clone(), path).send().await.unwrap()).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed")),
            "{method} {path}"
        );
    }
    let (status, keys) = json_of(app.http.get(app.url("/sso/jwks/whatever")).send().await.unwrap()).await;
    let (_, oidc) = json_of(app.http.get(app.url("/oauth/jwks")).send().await.unwrap()).await;
    assert_eq!((status, &keys), (StatusCode::OK, &oidc), "the one key set");
}

/// Magic Auth over raw HTTP (the SDK cases run only where the SDKs are installed): the code of
/// the e-mail for the user and tokens of the address's organization; refresh; users read back.
async fn a_magic_auth_code_signs_in_and_users_read_back(app: TestApp) {
    let client = app.client().await;
    let org = app
        .admin(
            reqwest::Method::POST,
            "/v1/organizations",
            Some(json!({ "name": "Acme", "slug": "acme", "domains": ["acme.example"] })),
        )
        .await;
    let org_id = org.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let email = "grace@acme.example";
    let res = workos(&app, &client, reqwest::Method::POST, "/user_management/magic_auth")
        .json(&json!({ "email": email, "ip_address": "192.0.2.7", "user_agent": "test" }))
        .send()
        .await
        .unwrap();
    let (status, created) = json_of(res).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let user_id = created["user_id"].as_str().unwrap().to_owned();
    assert!(created["id"].as_str().unwrap().starts_with("magic_auth_") && user_id.starts_with("user_"));
    assert_eq!((created["email"].as_str(), &created["code"]), (Some(email), &Value::Null));
    let path = format!("/user_management/magic_auth/{}", created["id"].as_str().unwrap());
    let (status, read) =
        json_of(workos(&app, &client, reqwest::Method::GET, &path).send().await.unwrap()).await;
    assert_eq!((status, &read), (StatusCode::OK, &created));

    let code = app.otp_in(&app.wait_for_mails(1).await[0]);
    let authenticate =
        |body: Value| app.http.post(app.url("/user_management/authenticate")).json(&body).send();
    let magic = |code: &str| {
        json!({
            "grant_type": "urn:workos:oauth:grant-type:magic-auth:code", "code": code, "email": email,
            "client_id": client.id, "client_secret": client.secret,
        })
    };
    let (status, auth) = json_of(authenticate(magic(&code)).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{auth}");
    assert_eq!(auth["authentication_method"], "MagicAuth");
    assert_eq!(auth["organization_id"], org_id.as_str());
    assert_eq!(
        (auth["user"]["id"].as_str(), auth["user"]["email_verified"].as_bool()),
        (Some(&*user_id), Some(true))
    );
    let keys = [
        "object",
        "id",
        "email",
        "email_verified",
        "first_name",
        "last_name",
        "profile_picture_url",
        "external_id",
        "last_sign_in_at",
        "created_at",
        "updated_at",
        "metadata",
    ];
    for key in keys {
        assert!(auth["user"].get(key).is_some(), "user lacks {key}: {auth}");
    }
    assert_eq!(crate::helpers::claims(auth["access_token"].as_str().unwrap())["org_id"], org_id.as_str());
    let (status, again) = json_of(authenticate(magic(&code)).await.unwrap()).await;
    assert_eq!((status, again["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_one_time_code")));

    let refresh = |token: &Value| json!({ "grant_type": "refresh_token", "refresh_token": token, "client_secret": client.secret });
    let (status, rotated) = json_of(authenticate(refresh(&auth["refresh_token"])).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert_ne!(rotated["refresh_token"], auth["refresh_token"]);
    assert_eq!(rotated["organization_id"], org_id.as_str());
    let (status, reused) = json_of(authenticate(refresh(&auth["refresh_token"])).await.unwrap()).await;
    assert_eq!((status, reused["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));

    // Users, one page at a time, and by e-mail.
    let other = app.sign_in(&client).await;
    let other_id =
        crate::helpers::claims(other["id_token"].as_str().unwrap())["sub"].as_str().unwrap().to_owned();
    let mut seen = Vec::new();
    let mut path = "/user_management/users?limit=1&order=desc".to_owned();
    loop {
        let (status, page) =
            json_of(workos(&app, &client, reqwest::Method::GET, &path).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(page["data"].as_array().unwrap().len() <= 1);
        seen.extend(page["data"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap().to_owned()));
        match page["list_metadata"]["after"].as_str() {
            Some(after) => path = format!("/user_management/users?limit=1&after={after}"),
            None => break,
        }
    }
    assert_eq!(seen, vec![user_id.clone(), other_id], "in creation order, each once");
    let by_email = format!("/user_management/users?email={email}");
    let (_, page) =
        json_of(workos(&app, &client, reqwest::Method::GET, &by_email).send().await.unwrap()).await;
    assert_eq!(page["data"][0]["id"], user_id.as_str());
    let (status, user) = json_of(
        workos(&app, &client, reqwest::Method::GET, &format!("/user_management/users/{user_id}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, &user), (StatusCode::OK, &page["data"][0]));
}
