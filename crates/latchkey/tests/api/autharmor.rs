//! The Auth Armor face over raw HTTP: `/connect/token`, v4 registration and sign-in by e-mail
//! (the mail read from the SMTP sink), the v3 validations, replays, client binding, and bad
//! input on every route answered in Auth Armor's error shape.

use crate::backend_tests;
use crate::helpers::{CALLBACK, Client, TestApp, query_param, random_email};
use latchkey_core::Clock as _;
use latchkey_mail::sink::ReceivedMail;
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

pub const REGISTER: &str = "https://app.example/register";

backend_tests!(
    connect_token_answers_form_posts_and_query_strings,
    a_registration_mails_its_link_and_validates_once,
    registration_validation_refuses_another_client_and_takes_the_v3_form,
    an_application_that_reports_mismatches_validates_and_says_so,
    a_sign_in_mails_its_link_and_validates_once,
    sign_in_by_username_validates_through_v3_and_checks_the_client,
    expired_and_foreign_requests_are_refused,
    concurrent_validations_authorize_once,
    too_many_starts_for_one_address_wait,
    bad_input_on_every_route_answers_the_error_shape,
    unknown_paths_and_methods_answer_the_error_shape,
);

/// An application with Auth Armor's two allow lists: sign-in (`CALLBACK`) and registration.
pub async fn autharmor_client(app: &TestApp) -> Client {
    app.create_client(json!({
        "name": "Acme", "redirect_uris": [CALLBACK], "registration_redirect_uris": [REGISTER],
        "branding": {"product_name": "Acme Cloud"}
    }))
    .await
}

/// An access token from `/connect/token`, as the SDK gets one.
pub async fn access_token(app: &TestApp, client: &Client) -> String {
    let res = app
        .http
        .post(app.url("/connect/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client.id.as_str()),
            ("client_secret", client.secret.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

pub async fn post(app: &TestApp, token: &str, path: &str, body: Value) -> Response {
    app.http.post(app.url(path)).bearer_auth(token).json(&body).send().await.unwrap()
}

/// A JSON answer of `status`, its body.
pub async fn json_of(res: Response, status: StatusCode) -> Value {
    assert_eq!(res.status(), status);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("application/json"), "{content_type}");
    res.json().await.unwrap()
}

/// Auth Armor's error shape with `status` and `code`; the tracking id is the request's id.
pub async fn error_of(res: Response, status: StatusCode, code: u64) -> Value {
    let request_id = res.headers().get("x-request-id").map(|v| v.to_str().unwrap().to_owned());
    let body = json_of(res, status).await;
    assert_eq!(body["error_code"], code, "{body}");
    assert!(body["error_message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert!(request_id.is_some(), "every response carries its request id");
    assert_eq!(body["tracking_id"].as_str(), request_id.as_deref(), "{body}");
    body
}

/// The link of the newest e-mail to `email` that goes to `base`, with its query.
pub fn link_to(mails: &[ReceivedMail], email: &str, base: &str) -> String {
    let mail = mails
        .iter()
        .rev()
        .find(|m| m.header("To").is_some_and(|to| to.contains(email)))
        .unwrap_or_else(|| panic!("no e-mail to {email}"));
    let text = mail.text();
    let link = text
        .split_whitespace()
        .find(|w| w.starts_with(&format!("{base}?")))
        .unwrap_or_else(|| panic!("no link to {base} in {text}"))
        .to_owned();
    assert!(mail.html().contains(&link.replace('&', "&amp;")), "the HTML part carries the same link");
    link
}

fn param(link: &str, name: &str) -> String {
    query_param(link, name).unwrap_or_else(|| panic!("no {name} in {link}"))
}

/// A user made by the operator, as a registration would; its id.
pub async fn registered_user(app: &TestApp, email: &str) -> String {
    let res = app.admin(Method::POST, "/v1/users", Some(json!({ "email": email }))).await;
    let body = json_of(res, StatusCode::CREATED).await;
    body["id"].as_str().unwrap().to_owned()
}

/// An access token of a new application, and a registered user's address and id.
async fn token_and_user(app: &TestApp) -> (String, String, String) {
    let client = autharmor_client(app).await;
    let token = access_token(app, &client).await;
    let email = random_email();
    let user_id = registered_user(app, &email).await;
    (token, email, user_id)
}

async fn connect_token_answers_form_posts_and_query_strings(app: TestApp) {
    let client = autharmor_client(&app).await;
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", client.id.as_str()),
        ("client_secret", client.secret.as_str()),
    ];
    let by_post = app.http.post(app.url("/connect/token")).form(&form).send().await.unwrap();
    let by_get = app.http.get(app.url("/connect/token")).query(&form).send().await.unwrap();
    for res in [by_post, by_get] {
        assert_eq!(res.headers()["cache-control"], "no-store");
        let body = json_of(res, StatusCode::OK).await;
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 3600);
        assert!(body["scope"].is_string(), "{body}");
        let token = body["access_token"].as_str().unwrap();
        // The token is the application's credential on the v4 calls.
        let res = post(&app, token, "/v4/auth/magiclink_email/start", json!({})).await;
        error_of(res, StatusCode::BAD_REQUEST, 1000).await;
    }
    // The API key itself works as the bearer too.
    let res = post(&app, &client.secret, "/v4/auth/magiclink_email/start", json!({})).await;
    error_of(res, StatusCode::BAD_REQUEST, 1000).await;

    let wrong = [("grant_type", "client_credentials"), ("client_id", &client.id), ("client_secret", "nope")];
    let res = app.http.get(app.url("/connect/token")).query(&wrong).send().await.unwrap();
    let body = error_of(res, StatusCode::UNAUTHORIZED, 2000).await;
    assert!(!body.to_string().contains("nope"), "the secret is not echoed");
    let other_grant =
        [("grant_type", "password"), ("client_id", &client.id), ("client_secret", &client.secret)];
    let res = app.http.post(app.url("/connect/token")).form(&other_grant).send().await.unwrap();
    error_of(res, StatusCode::BAD_REQUEST, 1003).await;
    let res = app.http.get(app.url("/connect/token")).send().await.unwrap();
    error_of(res, StatusCode::BAD_REQUEST, 1000).await;
    let res = post(&app, "not-a-token", "/v4/auth/magiclink_email/start", json!({})).await;
    error_of(res, StatusCode::UNAUTHORIZED, 2000).await;
    let res = app.http.post(app.url("/v3/auth/magiclink/validate")).json(&json!({})).send().await.unwrap();
    error_of(res, StatusCode::UNAUTHORIZED, 2000).await;
}

async fn a_registration_mails_its_link_and_validates_once(app: TestApp) {
    let client = autharmor_client(&app).await;
    let token = access_token(&app, &client).await;
    let email = random_email();
    let res = post(
        &app,
        &token,
        "/v4/users/registrations/magiclink_email/start",
        json!({
            "email_address": email, "registration_redirect_url": REGISTER,
            "action_name": "Create your account", "short_msg": "Welcome aboard.",
            "timeout_in_seconds": 600, "ip_address": "203.0.113.7", "user_agent": "Browser/1.0",
            "context_data": {"plan": "pro", "ref": "ad-42"}
        }),
    )
    .await;
    let started = json_of(res, StatusCode::OK).await;
    assert_eq!(started["timeout_in_seconds"], 600);
    let until = time::OffsetDateTime::parse(
        started["timeout_utc_datetime"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(until, app.clock.now() + time::Duration::seconds(600));

    let mails = app.wait_for_mails(1).await;
    assert_eq!(mails[0].subject().unwrap(), "Create your account at Acme Cloud");
    assert!(mails[0].text().contains("Welcome aboard."));
    let link = link_to(&mails, &email, REGISTER);
    let (id, secret) = (param(&link, "registration_id"), param(&link, "registration_validation_token"));
    assert!(id.starts_with("reg_"), "{id}");

    let users: Value = app.admin(Method::GET, "/v1/users", None).await.json().await.unwrap();
    assert!(users["data"].as_array().unwrap().is_empty(), "no user before validation");

    let path = format!("/v4/users/registrations/magiclink_email/{id}/validate");
    let same_client = json!({
        "registration_validation_token": secret, "ip_address": "203.0.113.7", "user_agent": "Browser/1.0"
    });
    let done = json_of(post(&app, &token, &path, same_client.clone()).await, StatusCode::OK).await;
    assert_eq!(done["magiclink_email_registration_type"], "new_user");
    assert_eq!(done["email_address"], email.as_str());
    assert_eq!(done["username"], email.as_str());
    assert_eq!(done["context_data"], json!({"plan": "pro", "ref": "ad-42"}));
    assert_eq!((done["is_replay"].clone(), done["authorized"].clone()), (json!(false), json!(true)));
    let user_id = done["user_id"].as_str().unwrap();
    let user: Value =
        app.admin(Method::GET, &format!("/v1/users/{user_id}"), None).await.json().await.unwrap();
    assert_eq!((user["email"].clone(), user["email_verified"].clone()), (json!(email), json!(true)));

    let again = json_of(post(&app, &token, &path, same_client).await, StatusCode::OK).await;
    assert_eq!((again["is_replay"].clone(), again["authorized"].clone()), (json!(true), json!(false)));
    assert_eq!(again["user_id"], user_id, "the replay names the user it made, and makes no other");
    let users: Value = app.admin(Method::GET, "/v1/users", None).await.json().await.unwrap();
    assert_eq!(users["data"].as_array().unwrap().len(), 1);
    assert_eq!(app.sink.mails().len(), 1, "one e-mail");

    // The address is taken now.
    let res = post(
        &app,
        &token,
        "/v4/users/registrations/magiclink_email/start",
        json!({"email_address": email, "registration_redirect_url": REGISTER}),
    )
    .await;
    error_of(res, StatusCode::CONFLICT, 4090).await;
}

/// Starts a registration (optional fields as explicit nulls) and returns `(id, token)` from its e-mail.
async fn start_registration(
    app: &TestApp,
    token: &str,
    email: &str,
    client_hints: Value,
) -> (String, String) {
    let mut body = json!({
        "email_address": email, "registration_redirect_url": REGISTER, "action_name": null,
        "short_msg": null, "timeout_in_seconds": null, "context_data": null, "ip_address": null,
        "user_agent": null,
    });
    for (k, v) in client_hints.as_object().unwrap() {
        body[k] = v.clone();
    }
    let started = post(app, token, "/v4/users/registrations/magiclink_email/start", body).await;
    let started = json_of(started, StatusCode::OK).await;
    assert_eq!(started["timeout_in_seconds"], 300, "five minutes by default");
    let mails = crate::helpers::eventually(
        std::time::Duration::from_secs(10),
        || async { app.sink.mails() },
        |mails| mails.iter().any(|m| m.header("To").is_some_and(|to| to.contains(email))),
    )
    .await;
    let link = link_to(&mails, email, REGISTER);
    (param(&link, "registration_id"), param(&link, "registration_validation_token"))
}

async fn registration_validation_refuses_another_client_and_takes_the_v3_form(app: TestApp) {
    let client = autharmor_client(&app).await;
    let token = access_token(&app, &client).await;
    let email = random_email();
    let hints = json!({"ip_address": "203.0.113.7", "user_agent": "Browser/1.0"});
    let (id, secret) = start_registration(&app, &token, &email, hints).await;
    let path = format!("/v4/users/registrations/magiclink_email/{id}/validate");
    for other in [
        json!({"ip_address": "198.51.100.1", "user_agent": "Browser/1.0"}),
        json!({"ip_address": "203.0.113.7", "user_agent": "Other/2.0"}),
    ] {
        let mut body = other;
        body["registration_validation_token"] = secret.clone().into();
        error_of(post(&app, &token, &path, body).await, StatusCode::FORBIDDEN, 3001).await;
    }
    // Another registration's id with this token names nothing.
    let (other_id, _) = start_registration(&app, &token, &random_email(), json!({})).await;
    let wrong_id = format!("/v4/users/registrations/magiclink_email/{other_id}/validate");
    let res = post(&app, &token, &wrong_id, json!({"registration_validation_token": secret})).await;
    error_of(res, StatusCode::NOT_FOUND, 4000).await;

    // The refusals spent nothing: the v3 call, as the SDK makes it (a form body labelled
    // JSON, the registration's id as auth_request_id), validates it.
    let form = format!("registration_validation_token={secret}&auth_request_id={id}");
    let res = app
        .http
        .post(app.url("/v3/users/register/magiclink/validate"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(form.clone())
        .send()
        .await
        .unwrap();
    let done = json_of(res, StatusCode::OK).await;
    assert_eq!(done["magiclink_email_registration_type"], "new_user");
    assert_eq!(done["email_address"], email.as_str());
    assert_eq!(done["context_data"], json!({}));
    let res = app
        .http
        .post(app.url("/v3/users/register/magiclink/validate"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(res, StatusCode::OK).await["is_replay"], true);
}

async fn an_application_that_reports_mismatches_validates_and_says_so(app: TestApp) {
    let client = app
        .create_client(json!({
            "name": "Acme", "redirect_uris": [CALLBACK], "registration_redirect_uris": [REGISTER],
            "registration_mismatch": "report"
        }))
        .await;
    let token = access_token(&app, &client).await;
    let (id, secret) =
        start_registration(&app, &token, &random_email(), json!({"ip_address": "203.0.113.7"})).await;
    let path = format!("/v4/users/registrations/magiclink_email/{id}/validate");
    let body = json!({"registration_validation_token": secret, "ip_address": "198.51.100.1"});
    let done = json_of(post(&app, &token, &path, body).await, StatusCode::OK).await;
    assert_eq!((done["client_mismatch"].clone(), done["authorized"].clone()), (json!(true), json!(true)));
}

/// Starts a sign-in and returns the start's answer and `(id, token)` from its e-mail.
async fn start_sign_in(app: &TestApp, token: &str, email: &str, body: Value) -> (Value, String, String) {
    let before = app.sink.mails().len();
    let started =
        json_of(post(app, token, "/v4/auth/magiclink_email/start", body).await, StatusCode::OK).await;
    let mails = app.wait_for_mails(before + 1).await;
    let link = link_to(&mails, email, CALLBACK);
    let text = mails.last().unwrap().text();
    let code = text.split_whitespace().find(|w| w.len() == 6 && w.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(code, None, "the application confirms the sign-in: no code to type anywhere\n{text}");
    assert!(text.contains("The link works once"), "{text}");
    let id = param(&link, "auth_request_id");
    assert_eq!(started["auth_request_id"], id.as_str());
    (started, id, param(&link, "auth_validation_token"))
}

async fn a_sign_in_mails_its_link_and_validates_once(app: TestApp) {
    let (token, email, user_id) = token_and_user(&app).await;
    let (started, id, secret) = start_sign_in(
        &app,
        &token,
        &email,
        json!({
            "user_id": user_id, "username": null, "auth_redirect_url": CALLBACK,
            "timeout_in_seconds": 120, "ip_address": "203.0.113.7", "user_agent": "Browser/1.0",
            "action_name": "Sign in", "short_msg": "Welcome back.", "context_data": {"cart": "42"}
        }),
    )
    .await;
    assert_eq!(started["user_id"], user_id.as_str());
    assert_eq!(started["timeout_in_seconds"], 120);
    assert!(started["timeout_utc_datetime"].is_string());
    assert!(id.starts_with("ml_"), "{id}");

    let body = json!({
        "auth_request_id": id, "auth_validation_token": secret,
        "ip_address": "203.0.113.7", "user_agent": "Browser/1.0"
    });
    let res = post(&app, &token, "/v4/auth/magiclink_email/validate", body.clone()).await;
    assert_eq!(res.headers()["cache-control"], "no-store");
    let done = json_of(res, StatusCode::OK).await;
    let details = &done["validate_auth_response_details"];
    assert_eq!(details["authorized"], true, "{done}");
    assert_eq!(details["is_replay"], false);
    assert_eq!(details["result_code"], 8);
    let profile = &details["auth_details"]["request_details"]["auth_profile_details"];
    assert_eq!((profile["user_id"].as_str(), profile["username"].as_str()), (Some(&*user_id), Some(&*email)));
    assert_eq!(done["context_data"], json!({"cart": "42"}));
    assert!(done["auth_request_status_name"].is_string() && done["auth_request_status_id"].is_number());

    let again =
        json_of(post(&app, &token, "/v4/auth/magiclink_email/validate", body).await, StatusCode::OK).await;
    let details = &again["validate_auth_response_details"];
    assert_eq!((details["is_replay"].clone(), details["authorized"].clone()), (json!(true), json!(false)));
    assert_ne!(details["result_code"], 8);

    // The audit trail saw one consumption.
    let events: Value = app.admin(Method::GET, "/v1/events?limit=100", None).await.json().await.unwrap();
    let consumed = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "challenge.consumed" && e["subject"] == id.as_str())
        .count();
    assert_eq!(consumed, 1, "{events}");
    assert_eq!(app.sink.mails().len(), 1, "one e-mail");
}

async fn sign_in_by_username_validates_through_v3_and_checks_the_client(app: TestApp) {
    let (token, email, user_id) = token_and_user(&app).await;
    let (started, id, secret) = start_sign_in(
        &app,
        &token,
        &email,
        json!({"username": email, "auth_redirect_url": CALLBACK, "ip_address": "203.0.113.7"}),
    )
    .await;
    assert_eq!(started["user_id"], user_id.as_str());
    assert_eq!(started["timeout_in_seconds"], 900, "the application's link lifetime by default");

    let mismatch =
        json!({"auth_request_id": id, "auth_validation_token": secret, "ip_address": "198.51.100.1"});
    let res = post(&app, &token, "/v4/auth/magiclink_email/validate", mismatch).await;
    error_of(res, StatusCode::FORBIDDEN, 3001).await;
    let wrong = json!({"auth_request_id": id, "auth_validation_token": "not-the-token"});
    error_of(post(&app, &token, "/v3/auth/magiclink/validate", wrong).await, StatusCode::NOT_FOUND, 4000)
        .await;

    // The v3 call as the SDK makes it: no client hints, so nothing to compare.
    let v3 = json!({"auth_validation_token": secret, "auth_request_id": id});
    let done =
        json_of(post(&app, &token, "/v3/auth/magiclink/validate", v3.clone()).await, StatusCode::OK).await;
    assert_eq!(done["validate_auth_response_details"]["authorized"], true);
    assert_eq!(done["validate_auth_response_details"]["is_replay"], false);
    let again = json_of(post(&app, &token, "/v3/auth/magiclink/validate", v3).await, StatusCode::OK).await;
    assert_eq!(again["validate_auth_response_details"]["is_replay"], true);
    assert_eq!(again["validate_auth_response_details"]["authorized"], false);
}

async fn expired_and_foreign_requests_are_refused(app: TestApp) {
    let client = autharmor_client(&app).await;
    let token = access_token(&app, &client).await;
    let email = random_email();
    registered_user(&app, &email).await;
    let body = json!({"username": email, "auth_redirect_url": CALLBACK, "timeout_in_seconds": 60});
    let (_, id, secret) = start_sign_in(&app, &token, &email, body).await;

    // Another application's credentials do not reach this request.
    let other = autharmor_client(&app).await;
    let other_token = access_token(&app, &other).await;
    let check = json!({"auth_request_id": id, "auth_validation_token": secret});
    let res = post(&app, &other_token, "/v4/auth/magiclink_email/validate", check.clone()).await;
    error_of(res, StatusCode::NOT_FOUND, 4000).await;

    app.advance(61);
    let token = access_token(&app, &client).await;
    let res = post(&app, &token, "/v4/auth/magiclink_email/validate", check).await;
    error_of(res, StatusCode::GONE, 4100).await;

    let (reg_id, reg_secret) = start_registration(&app, &token, &random_email(), json!({})).await;
    app.advance(301);
    let token = access_token(&app, &client).await;
    let path = format!("/v4/users/registrations/magiclink_email/{reg_id}/validate");
    let res = post(&app, &token, &path, json!({"registration_validation_token": reg_secret})).await;
    error_of(res, StatusCode::GONE, 4100).await;
}

async fn concurrent_validations_authorize_once(app: TestApp) {
    let (token, email, user_id) = token_and_user(&app).await;
    let body = json!({"user_id": user_id, "auth_redirect_url": CALLBACK});
    let (_, id, secret) = start_sign_in(&app, &token, &email, body).await;
    let check = json!({"auth_request_id": id, "auth_validation_token": secret});
    let paths = ["/v4/auth/magiclink_email/validate", "/v3/auth/magiclink/validate"];
    let answers = futures_util::future::join_all((0..20).map(|i| {
        let (app, token, check) = (&app, &token, check.clone());
        async move { json_of(post(app, token, paths[i % 2], check).await, StatusCode::OK).await }
    }))
    .await;
    let authorized =
        answers.iter().filter(|a| a["validate_auth_response_details"]["authorized"] == true).count();
    let replays = answers.iter().filter(|a| a["validate_auth_response_details"]["is_replay"] == true).count();
    assert_eq!((authorized, replays), (1, 19));
}

async fn too_many_starts_for_one_address_wait(app: TestApp) {
    let (token, email, user_id) = token_and_user(&app).await;
    let body = json!({"user_id": user_id, "auth_redirect_url": CALLBACK});
    for _ in 0..3 {
        json_of(post(&app, &token, "/v4/auth/magiclink_email/start", body.clone()).await, StatusCode::OK)
            .await;
    }
    let res = post(&app, &token, "/v4/auth/magiclink_email/start", body).await;
    let retry_after: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    error_of(res, StatusCode::TOO_MANY_REQUESTS, 4290).await;
    let mails = app.wait_for_mails(3).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(app.sink.mails().len(), 3, "the refused start sent nothing");
    assert!(mails.iter().all(|m| m.header("To").is_some_and(|to| to.contains(&email))));
}

async fn bad_input_on_every_route_answers_the_error_shape(app: TestApp) {
    let client = autharmor_client(&app).await;
    let token = access_token(&app, &client).await;
    let email = random_email();
    let user_id = registered_user(&app, &email).await;
    let register = "/v4/users/registrations/magiclink_email/start";
    let reg_validate = "/v4/users/registrations/magiclink_email/reg_unknown/validate";
    let sign_in = "/v4/auth/magiclink_email/start";
    let validate = ["/v4/auth/magiclink_email/validate", "/v3/auth/magiclink/validate"];
    let big = "a".repeat(100 * 1024);

    // Bodies that are not what they claim, too large, or of another media type, on every route.
    let every =
        [register, reg_validate, "/v3/users/register/magiclink/validate", sign_in, validate[0], validate[1]];
    for path in every.into_iter().chain(["/connect/token"]) {
        let req = || app.http.post(app.url(path)).bearer_auth(&token);
        let res = req()
            .header("content-type", "application/json")
            .body("{\"email_address\": ")
            .send()
            .await
            .unwrap();
        error_of(res, StatusCode::BAD_REQUEST, 1000).await;
        let res = req().header("content-type", "application/json").body("[1,2]").send().await.unwrap();
        error_of(res, StatusCode::BAD_REQUEST, 1000).await;
        let res = req()
            .header("content-type", "application/json")
            .body(format!("{{\"x\": \"{big}\"}}"))
            .send()
            .await
            .unwrap();
        error_of(res, StatusCode::PAYLOAD_TOO_LARGE, 1001).await;
        let res = req().header("content-type", "application/xml").body("<a/>").send().await.unwrap();
        error_of(res, StatusCode::UNSUPPORTED_MEDIA_TYPE, 1002).await;
    }

    // Registration start: each field checked.
    let cases = [
        (json!({"registration_redirect_url": REGISTER}), StatusCode::BAD_REQUEST, 1000),
        (
            json!({"email_address": "not an address", "registration_redirect_url": REGISTER}),
            StatusCode::BAD_REQUEST,
            1000,
        ),
        (json!({"email_address": random_email()}), StatusCode::BAD_REQUEST, 1000),
        (
            json!({"email_address": random_email(), "registration_redirect_url": CALLBACK}),
            StatusCode::BAD_REQUEST,
            3000,
        ),
        (
            json!({"email_address": random_email(), "registration_redirect_url": "::nope"}),
            StatusCode::BAD_REQUEST,
            3000,
        ),
        (
            json!({"email_address": random_email(), "registration_redirect_url": REGISTER, "timeout_in_seconds": 1}),
            StatusCode::BAD_REQUEST,
            1000,
        ),
        (
            json!({"email_address": random_email(), "registration_redirect_url": REGISTER, "timeout_in_seconds": "soon"}),
            StatusCode::BAD_REQUEST,
            1000,
        ),
        (
            json!({"email_address": random_email(), "registration_redirect_url": REGISTER, "action_name": "x".repeat(101)}),
            StatusCode::BAD_REQUEST,
            1000,
        ),
        (
            json!({"email_address": random_email(), "registration_redirect_url": REGISTER, "user_agent": "x".repeat(513)}),
            StatusCode::BAD_REQUEST,
            1000,
        ),
        (
            json!({"email_address": random_email(), "registration_redirect_url": REGISTER, "context_data": {"k": 1}}),
            StatusCode::BAD_REQUEST,
            1000,
        ),
        (
            json!({"email_address": random_email(), "registration_redirect_url": REGISTER, "context_data": {"": "v"}}),
            StatusCode::BAD_REQUEST,
            1000,
        ),
        (json!({"email_address": email, "registration_redirect_url": REGISTER}), StatusCode::CONFLICT, 4090),
    ];
    for (body, status, code) in cases {
        error_of(post(&app, &token, register, body).await, status, code).await;
    }
    // Registration validate: the token is required; an unknown one or id names nothing.
    error_of(post(&app, &token, reg_validate, json!({})).await, StatusCode::BAD_REQUEST, 1000).await;
    let res =
        post(&app, &token, reg_validate, json!({"registration_validation_token": "x".repeat(500)})).await;
    error_of(res, StatusCode::NOT_FOUND, 4000).await;
    let v3 = "/v3/users/register/magiclink/validate";
    let res = post(&app, &token, v3, json!({"registration_validation_token": "abc"})).await;
    error_of(res, StatusCode::BAD_REQUEST, 1000).await;
    let res =
        post(&app, &token, v3, json!({"registration_validation_token": "abc", "auth_request_id": "reg_x"}))
            .await;
    error_of(res, StatusCode::NOT_FOUND, 4000).await;

    // Sign-in start.
    let cases = [
        (json!({"auth_redirect_url": CALLBACK}), StatusCode::BAD_REQUEST, 1000),
        (
            json!({"user_id": user_id, "username": email, "auth_redirect_url": CALLBACK}),
            StatusCode::BAD_REQUEST,
            1000,
        ),
        (json!({"user_id": user_id}), StatusCode::BAD_REQUEST, 1000),
        (json!({"user_id": "user_nobody", "auth_redirect_url": CALLBACK}), StatusCode::NOT_FOUND, 4000),
        (json!({"username": random_email(), "auth_redirect_url": CALLBACK}), StatusCode::NOT_FOUND, 4000),
        (json!({"username": "no address", "auth_redirect_url": CALLBACK}), StatusCode::NOT_FOUND, 4000),
        (json!({"user_id": user_id, "auth_redirect_url": REGISTER}), StatusCode::BAD_REQUEST, 3000),
        (
            json!({"user_id": user_id, "auth_redirect_url": "https://evil.example/cb"}),
            StatusCode::BAD_REQUEST,
            3000,
        ),
        (
            json!({"user_id": user_id, "auth_redirect_url": CALLBACK, "timeout_in_seconds": 10_000_000}),
            StatusCode::BAD_REQUEST,
            1000,
        ),
        (
            json!({"user_id": user_id, "auth_redirect_url": CALLBACK, "short_msg": "x".repeat(501)}),
            StatusCode::BAD_REQUEST,
            1000,
        ),
        (
            json!({"user_id": user_id, "auth_redirect_url": CALLBACK, "ip_address": 7}),
            StatusCode::BAD_REQUEST,
            1000,
        ),
        (
            json!({"user_id": user_id, "auth_redirect_url": CALLBACK, "context_data": "text"}),
            StatusCode::BAD_REQUEST,
            1000,
        ),
    ];
    for (body, status, code) in cases {
        error_of(post(&app, &token, sign_in, body).await, status, code).await;
    }
    // Sign-in validate, v4 and v3.
    for path in validate {
        let cases = [
            (json!({}), StatusCode::BAD_REQUEST, 1000),
            (json!({"auth_request_id": "ml_x"}), StatusCode::BAD_REQUEST, 1000),
            (json!({"auth_validation_token": "abc"}), StatusCode::BAD_REQUEST, 1000),
            (json!({"auth_request_id": "ml_x", "auth_validation_token": "abc"}), StatusCode::NOT_FOUND, 4000),
            (
                json!({"auth_request_id": "ml_x", "auth_validation_token": "x".repeat(1000)}),
                StatusCode::NOT_FOUND,
                4000,
            ),
            (json!({"auth_request_id": 5, "auth_validation_token": "abc"}), StatusCode::BAD_REQUEST, 1000),
        ];
        for (body, status, code) in cases {
            error_of(post(&app, &token, path, body).await, status, code).await;
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(app.sink.mails().is_empty(), "no refused request sent anything");
}

async fn unknown_paths_and_methods_answer_the_error_shape(app: TestApp) {
    let client = autharmor_client(&app).await;
    let token = access_token(&app, &client).await;
    for path in [
        "/v4/nope",
        "/v3/auth/webauthn/validate",
        "/v3/users/user_x/validate",
        "/connect/authorize",
        "/v4/",
        "/v3/x/y/z",
    ] {
        for method in [Method::GET, Method::POST, Method::DELETE] {
            let res =
                app.http.request(method.clone(), app.url(path)).bearer_auth(&token).send().await.unwrap();
            error_of(res, StatusCode::NOT_FOUND, 4001).await;
        }
    }
    for (method, path) in [
        (Method::GET, "/v4/auth/magiclink_email/start"),
        (Method::DELETE, "/v4/auth/magiclink_email/validate"),
        (Method::PUT, "/v3/auth/magiclink/validate"),
        (Method::GET, "/v4/users/registrations/magiclink_email/start"),
        (Method::PATCH, "/v4/users/registrations/magiclink_email/reg_x/validate"),
        (Method::GET, "/v3/users/register/magiclink/validate"),
        (Method::PUT, "/connect/token"),
    ] {
        let res = app.http.request(method, app.url(path)).bearer_auth(&token).send().await.unwrap();
        error_of(res, StatusCode::METHOD_NOT_ALLOWED, 4002).await;
    }
}
