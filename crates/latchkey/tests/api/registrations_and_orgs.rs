//! Registrations, verification links and organizations.

use crate::backend_tests;
use crate::helpers::{CALLBACK, Client, TestApp, claims, query_param, random_email};
use base64::Engine as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const REGISTER: &str = "https://app.example/register";

backend_tests!(
    a_registration_creates_its_user_at_validation,
    registrations_refuse_taken_addresses_foreign_urls_and_reuse,
    client_mismatch_is_refused_or_reported_as_the_application_says,
    verification_links_carry_the_callers_template_and_redeem_once,
    verification_templates_are_checked,
    organizations_are_managed_and_own_their_domains,
    sign_ins_select_their_organization_and_carry_it_in_tokens,
);

async fn registering_client(app: &TestApp, policy: &str) -> Client {
    app.create_client(json!({
        "name": "Acme", "redirect_uris": [CALLBACK], "registration_redirect_uris": [REGISTER],
        "registration_mismatch": policy, "branding": {"product_name": "Acme Cloud"}
    }))
    .await
}

async fn post(app: &TestApp, client: &Client, path: &str, body: Value) -> reqwest::Response {
    app.as_app(client).post(path).json(&body).send().await.unwrap()
}

async fn a_registration_creates_its_user_at_validation(app: TestApp) {
    let client = registering_client(&app, "refuse").await;
    let email = random_email();
    let res = post(
        &app,
        &client,
        "/v1/registrations",
        json!({
            "email": email, "redirect_uri": REGISTER, "action_name": "Create your account",
            "short_msg": "Welcome aboard.", "context_data": {"plan": "pro", "ref": "ad-42"}
        }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.unwrap();
    assert!(created["id"].as_str().unwrap().starts_with("reg_"));
    assert_eq!(created["expires_in"], 300, "five minutes by default");

    let mails = app.wait_for_mails(1).await;
    let mail = &mails[0];
    assert_eq!(mail.header("Subject").unwrap(), "Create your account at Acme Cloud");
    assert!(mail.text().contains("Welcome aboard.") && mail.html().contains("Welcome aboard."));
    let link = mail.text().split_whitespace().find(|w| w.starts_with(REGISTER)).unwrap().to_owned();
    assert_eq!(query_param(&link, "registration_id").as_deref(), created["id"].as_str());
    let token = query_param(&link, "registration_validation_token").unwrap();

    let users: Value = app.admin(Method::GET, "/v1/users", None).await.json().await.unwrap();
    assert!(users["data"].as_array().unwrap().is_empty(), "no user before validation");

    let res =
        post(&app, &client, "/v1/registrations/validate", json!({"registration_validation_token": token}))
            .await;
    assert_eq!(res.status(), StatusCode::OK);
    let done: Value = res.json().await.unwrap();
    assert_eq!(done["registration_type"], "new_user");
    assert_eq!(done["email"], email.as_str());
    assert_eq!(done["context_data"], json!({"plan": "pro", "ref": "ad-42"}));
    let user: Value = app
        .admin(Method::GET, &format!("/v1/users/{}", done["user_id"].as_str().unwrap()), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!((user["email"].clone(), user["email_verified"].clone()), (json!(email), json!(true)));

    let again =
        post(&app, &client, "/v1/registrations/validate", json!({"registration_validation_token": token}))
            .await;
    assert_eq!(again.status(), StatusCode::GONE);
}

async fn registrations_refuse_taken_addresses_foreign_urls_and_reuse(app: TestApp) {
    let client = registering_client(&app, "refuse").await;
    let taken = random_email();
    app.admin(Method::POST, "/v1/users", Some(json!({"email": taken}))).await;
    let res =
        post(&app, &client, "/v1/registrations", json!({"email": taken, "redirect_uri": REGISTER})).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    for bad in [CALLBACK, "https://evil.example/register", "nope"] {
        let res =
            post(&app, &client, "/v1/registrations", json!({"email": random_email(), "redirect_uri": bad}))
                .await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(app.sink.mails().is_empty());

    // send_email: false hands the link over; it expires with its lifetime.
    let res = post(
        &app,
        &client,
        "/v1/registrations",
        json!({"email": random_email(), "redirect_uri": REGISTER, "send_email": false, "expires_in": 120}),
    )
    .await;
    let body: Value = res.json().await.unwrap();
    let token = body["registration_validation_token"].as_str().unwrap().to_owned();
    assert!(body["link"].as_str().unwrap().contains(&token));
    app.advance(120);
    let res =
        post(&app, &client, "/v1/registrations/validate", json!({"registration_validation_token": token}))
            .await;
    assert_eq!(res.status(), StatusCode::GONE);
    let res = post(
        &app,
        &client,
        "/v1/registrations/validate",
        json!({"registration_validation_token": "unknown"}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    // Another application cannot validate this one's registration.
    let res = post(
        &app,
        &client,
        "/v1/registrations",
        json!({"email": random_email(), "redirect_uri": REGISTER, "send_email": false}),
    )
    .await;
    let token =
        res.json::<Value>().await.unwrap()["registration_validation_token"].as_str().unwrap().to_owned();
    let other = registering_client(&app, "refuse").await;
    let res =
        post(&app, &other, "/v1/registrations/validate", json!({"registration_validation_token": token}))
            .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

async fn client_mismatch_is_refused_or_reported_as_the_application_says(app: TestApp) {
    let start = |client: Client| {
        let app = &app;
        async move {
            let res = post(
                app,
                &client,
                "/v1/registrations",
                json!({
                    "email": random_email(), "redirect_uri": REGISTER, "send_email": false,
                    "client_ip": "192.0.2.1", "user_agent": "Phone/1"
                }),
            )
            .await;
            let token = res.json::<Value>().await.unwrap()["registration_validation_token"]
                .as_str()
                .unwrap()
                .to_owned();
            (client, token)
        }
    };
    let (strict, token) = start(registering_client(&app, "refuse").await).await;
    let res = post(
        &app,
        &strict,
        "/v1/registrations/validate",
        json!({"registration_validation_token": token, "client_ip": "198.51.100.7", "user_agent": "Phone/1"}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "client_mismatch");
    // Refused without being spent: the right client still validates.
    let res = post(
        &app,
        &strict,
        "/v1/registrations/validate",
        json!({"registration_validation_token": token, "client_ip": "192.0.2.1", "user_agent": "Phone/1"}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.json::<Value>().await.unwrap().get("client_mismatch").is_none());

    let (lenient, token) = start(registering_client(&app, "report").await).await;
    let res = post(
        &app,
        &lenient,
        "/v1/registrations/validate",
        json!({"registration_validation_token": token, "user_agent": "Laptop/2"}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["client_mismatch"], true);
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

async fn verification_links_carry_the_callers_template_and_redeem_once(app: TestApp) {
    let client = app.client().await;
    let email = random_email();
    let template =
        "<p>Hello! Confirm here: <a href=\"https://app.example/verify?c={{MAGICLINK}}\">verify</a></p>";
    let res = post(&app, &client, "/v1/verification-links", json!({
        "email": email, "subject": "Please verify", "template_base64": b64(template), "created_by": "admin@app.example", "expires_in": 600
    })).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.unwrap();
    assert!(created["id"].as_str().unwrap().starts_with("vl_"));
    assert!(created.get("code").is_none());

    let mails = app.wait_for_mails(1).await;
    assert_eq!(mails[0].header("Subject").unwrap(), "Please verify");
    let html = mails[0].html();
    let start = html.find("?c=").unwrap() + 3;
    let code: String = html[start..].chars().take_while(|c| *c != '"').collect();
    assert_eq!(code.len(), 43);
    assert!(!html.contains("{{MAGICLINK}}"));
    assert!(mails[0].text().contains("Confirm here"));

    let redeem = |code: String| post(&app, &client, "/v1/verification-links/redeem", json!({"code": code}));
    let res = redeem(code.clone()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        (body["status"].clone(), body["email"].clone(), body["created_by"].clone()),
        (json!("redeemed"), json!(email), json!("admin@app.example"))
    );
    assert_eq!(body["id"], created["id"]);
    assert_eq!(redeem(code).await.status(), StatusCode::GONE);
    assert_eq!(redeem("nope".into()).await.status(), StatusCode::NOT_FOUND);

    // send_email: false returns the code; the link of a verification is no sign-in link.
    let res = post(
        &app,
        &client,
        "/v1/verification-links",
        json!({"email": random_email(), "template_base64": b64("x {{MAGICLINK}}"), "send_email": false}),
    )
    .await;
    let code = res.json::<Value>().await.unwrap()["code"].as_str().unwrap().to_owned();
    assert_eq!(
        app.http.get(app.url(&format!("/l/{code}"))).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let other = app.client().await;
    let res = post(&app, &other, "/v1/verification-links/redeem", json!({"code": code})).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND, "another application's code");
    assert_eq!(redeem(code).await.status(), StatusCode::OK);
}

async fn verification_templates_are_checked(app: TestApp) {
    let client = app.client().await;
    let cases = [
        json!({"email": random_email()}),
        json!({"email": random_email(), "template_base64": b64("no placeholder")}),
        json!({"email": random_email(), "template_base64": "%%% not base64"}),
        json!({"email": random_email(), "template_base64": base64::engine::general_purpose::STANDARD.encode([0xff, 0xfe, b'{'])}),
        json!({"email": random_email(), "template_base64": b64("{{MAGICLINK}}"), "subject": "two\nlines"}),
    ];
    for body in cases {
        let res = post(&app, &client, "/v1/verification-links", body.clone()).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(app.sink.mails().is_empty());
}

async fn organizations_are_managed_and_own_their_domains(app: TestApp) {
    let res = app
        .admin(
            Method::POST,
            "/v1/organizations",
            Some(json!({"name": "Acme", "slug": "acme", "domains": ["Acme.example"]})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let acme: Value = res.json().await.unwrap();
    assert_eq!(acme["domains"], json!(["acme.example"]));
    let id = acme["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("org_"));

    let taken = app
        .admin(
            Method::POST,
            "/v1/organizations",
            Some(json!({"name": "Other", "slug": "other", "domains": ["acme.example"]})),
        )
        .await;
    assert_eq!(taken.status(), StatusCode::CONFLICT, "a domain belongs to one organization");
    let taken =
        app.admin(Method::POST, "/v1/organizations", Some(json!({"name": "Other", "slug": "acme"}))).await;
    assert_eq!(taken.status(), StatusCode::CONFLICT);
    let bad = app
        .admin(Method::POST, "/v1/organizations", Some(json!({"name": "Bad", "slug": "Not A Slug"})))
        .await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let by_slug: Value = app.admin(Method::GET, "/v1/organizations/acme", None).await.json().await.unwrap();
    assert_eq!(by_slug["id"], id.as_str());
    let res = app
        .admin(
            Method::PATCH,
            &format!("/v1/organizations/{id}"),
            Some(json!({"domains": ["acme.example", "acme.test"]})),
        )
        .await;
    assert_eq!(res.json::<Value>().await.unwrap()["domains"], json!(["acme.example", "acme.test"]));
    let list: Value = app.admin(Method::GET, "/v1/organizations", None).await.json().await.unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.admin(Method::DELETE, &format!("/v1/organizations/{id}"), None).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.admin(Method::GET, &format!("/v1/organizations/{id}"), None).await.status(),
        StatusCode::NOT_FOUND
    );
}

async fn sign_in(app: &TestApp, client: &Client, body: Value) -> Value {
    let res = app.request_link(client, body).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let link = res.json::<Value>().await.unwrap()["link"].as_str().unwrap().to_owned();
    let code = app.code_from(&link).await;
    app.exchange(client, &code).await.json().await.unwrap()
}

async fn sign_ins_select_their_organization_and_carry_it_in_tokens(app: TestApp) {
    let acme: Value = app
        .admin(
            Method::POST,
            "/v1/organizations",
            Some(json!({"name": "Acme", "slug": "acme", "domains": ["acme.example"]})),
        )
        .await
        .json()
        .await
        .unwrap();
    let globex: Value = app
        .admin(
            Method::POST,
            "/v1/organizations",
            Some(json!({"name": "Globex", "slug": "globex", "domains": ["globex.example"]})),
        )
        .await
        .json()
        .await
        .unwrap();
    let client = app.client().await;

    // By the e-mail's domain.
    let tokens = sign_in(&app, &client, json!({"email": "ada@acme.example", "send_email": false})).await;
    assert_eq!(claims(tokens["id_token"].as_str().unwrap())["org_id"], acme["id"]);
    assert_eq!(claims(tokens["access_token"].as_str().unwrap())["org_id"], acme["id"]);
    // ...and it survives a refresh.
    let refreshed: Value = app
        .as_app(&client)
        .post("/oauth/token")
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(claims(refreshed["id_token"].as_str().unwrap())["org_id"], acme["id"]);

    // By slug or id, which must own the domain.
    let tokens = sign_in(
        &app,
        &client,
        json!({"email": "bob@globex.example", "organization": "globex", "send_email": false}),
    )
    .await;
    assert_eq!(claims(tokens["id_token"].as_str().unwrap())["org_id"], globex["id"]);
    let res = app
        .request_link(
            &client,
            json!({"email": "eve@acme.example", "organization": globex["id"], "send_email": false}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = app.request_link(&client, json!({"email": "eve@acme.example", "organization": "nope"})).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // No organization: no claim.
    let tokens = sign_in(&app, &client, json!({"email": random_email(), "send_email": false})).await;
    assert!(claims(tokens["id_token"].as_str().unwrap()).get("org_id").is_none());

    // The code grant carries it too.
    let res = app.request_link(&client, json!({"email": "carol@acme.example", "send_email": false})).await;
    let otp = res.json::<Value>().await.unwrap()["otp"].as_str().unwrap().to_owned();
    let tokens: Value = app
        .as_app(&client)
        .post("/oauth/token")
        .form(&[
            ("grant_type", "urn:latchkey:params:oauth:grant-type:email-otp"),
            ("email", "carol@acme.example"),
            ("otp", otp.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(claims(tokens["id_token"].as_str().unwrap())["org_id"], acme["id"]);

    let events: Value = app.admin(Method::GET, "/v1/events?limit=100", None).await.json().await.unwrap();
    let members =
        events["data"].as_array().unwrap().iter().filter(|e| e["type"] == "membership.created").count();
    assert_eq!(members, 3, "ada, bob and carol joined");
}
