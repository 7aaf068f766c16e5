//! The hosted sign-in (issue 16, spec §2.7) over HTTP, as browsers drive it: each "browser" is
//! an HTTP client with its own cookie jar; a second one stands for another device.

use crate::backend_tests;
use crate::helpers::{CALLBACK, Client, TestApp, claims, eventually, query_param, random_email};
use futures_util::future::join_all;
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const LOGGED_OUT: &str = "https://app.example/logged-out";

backend_tests!(
    authorize_refuses_unknown_clients_with_a_page_and_the_rest_by_redirect,
    discovery_advertises_the_hosted_sign_in,
    same_browser_link_signs_in_and_opens_a_session,
    typed_code_signs_in_with_otp_amr,
    another_device_approves_by_number_matching,
    a_wrong_pick_cancels_and_a_decline_declines,
    scanners_and_cross_site_posts_change_nothing,
    session_prompt_max_age_and_logout,
    admin_lists_and_revokes_browser_sessions,
    fifty_concurrent_approvals_or_codes_give_one_success,
    sign_in_rate_limits_are_the_ordinary_ones,
    pages_speak_the_chosen_language,
    an_application_sets_its_own_pages,
    a_hosted_challenge_used_by_the_back_end_ends_the_wait,
);

/// A browser: its own cookie jar, no redirects followed.
struct Browser {
    http: reqwest::Client,
    base: String,
    /// What its form posts say of where they come from: the public URL's origin.
    origin: String,
}

impl Browser {
    fn new(app: &TestApp) -> Self {
        Self::at(&app.base)
    }

    fn at(base: &str) -> Self {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36")
            .build()
            .unwrap();
        Self { http, base: base.to_owned(), origin: base.to_owned() }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") { path.to_owned() } else { format!("{}{path}", self.base) }
    }

    async fn get(&self, path: &str) -> Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    /// A form post from a page of the server itself.
    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Response {
        self.http
            .post(self.url(path))
            .header("origin", &self.origin)
            .header("sec-fetch-site", "same-origin")
            .form(form)
            .send()
            .await
            .unwrap()
    }
}

fn location(res: &Response) -> String {
    res.headers().get("location").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

fn authorize_query(client: &Client, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut q: Vec<(String, String)> = [
        ("response_type", "code"),
        ("client_id", client.id.as_str()),
        ("redirect_uri", CALLBACK),
        ("scope", "openid email"),
        ("state", "st-123"),
        ("nonce", "n-456"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    for (k, v) in extra {
        q.retain(|(name, _)| name != k);
        if !v.is_empty() {
            q.push(((*k).to_owned(), (*v).to_owned()));
        }
    }
    q
}

fn authorize_path(client: &Client, extra: &[(&str, &str)]) -> String {
    let q = authorize_query(client, extra);
    format!(
        "/oauth/authorize?{}",
        url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&q).finish()
    )
}

async fn hosted_client(app: &TestApp) -> Client {
    app.create_client(json!({
        "name": "Acme",
        "redirect_uris": [CALLBACK],
        "post_logout_redirect_uris": [LOGGED_OUT],
    }))
    .await
}

/// Starts a sign-in in `browser` for `email`; the waiting page's path.
async fn start(browser: &Browser, client: &Client, email: &str) -> String {
    let page = browser.get(&authorize_path(client, &[])).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("type=\"email\""), "{html}");
    start_with_form(browser, client, email).await
}

/// The link and code of the newest e-mail to `email`.
async fn mail_for(app: &TestApp, email: &str) -> (String, String) {
    let mails = eventually(
        Duration::from_secs(10),
        || async { app.sink.mails() },
        |mails| mails.iter().any(|m| m.rcpt_to.iter().any(|r| r == email)),
    )
    .await;
    let mail = mails.iter().rev().find(|m| m.rcpt_to.iter().any(|r| r == email)).expect("the sign-in e-mail");
    (app.link_in(mail), app.otp_in(mail))
}

fn number_on(html: &str) -> String {
    let start = html.find("class=\"match\"").expect("the number to match");
    let after = &html[start..];
    let open = after.find('>').unwrap() + 1;
    let close = after.find("</p>").unwrap();
    after[open..close].trim().to_owned()
}

async fn exchange(app: &TestApp, client: &Client, location: &str) -> Value {
    let code = query_param(location, "code").expect("a code");
    let res = app
        .as_app(client)
        .post("/oauth/token")
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CALLBACK),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

fn assert_success(app: &TestApp, location: &str) {
    assert!(location.starts_with(CALLBACK), "{location}");
    assert_eq!(query_param(location, "state").as_deref(), Some("st-123"));
    assert_eq!(query_param(location, "iss").as_deref(), Some(app.base.as_str()));
}

fn assert_page_headers(res: &Response) {
    let h = res.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        !csp.contains("unsafe-inline'")
            || !csp.split(';').any(|d| d.trim().starts_with("script-src") && d.contains("unsafe-inline"))
    );
    assert!(csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("form-action"), "form-action would block the 303 to the application");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["cache-control"], "no-store");
}

async fn authorize_refuses_unknown_clients_with_a_page_and_the_rest_by_redirect(app: TestApp) {
    let client = hosted_client(&app).await;
    let browser = Browser::new(&app);
    for path in [
        authorize_path(&client, &[("client_id", "app_unknown")]),
        authorize_path(&client, &[("client_id", "")]),
        authorize_path(&client, &[("redirect_uri", "https://evil.example/cb")]),
        authorize_path(&client, &[("redirect_uri", "https://app.example/callback/")]),
    ] {
        let res = browser.get(&path).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{path}");
        assert!(res.headers().get("location").is_none(), "never a redirect: {path}");
        assert_page_headers(&res);
    }
    for (extra, error) in [
        (&[("response_type", "token")][..], "unsupported_response_type"),
        (&[("scope", "email")][..], "invalid_scope"),
        (&[("code_challenge_method", "plain")][..], "invalid_request"),
        (&[("max_age", "soon")][..], "invalid_request"),
        (&[("prompt", "none")][..], "login_required"),
    ] {
        let res = browser.get(&authorize_path(&client, extra)).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{extra:?}");
        let to = location(&res);
        assert!(to.starts_with(CALLBACK), "{to}");
        assert_eq!(query_param(&to, "error").as_deref(), Some(error), "{extra:?}");
        assert!(query_param(&to, "error_description").is_some());
        assert_eq!(query_param(&to, "state").as_deref(), Some("st-123"));
        assert_eq!(query_param(&to, "iss").as_deref(), Some(app.base.as_str()));
    }
    // A public application must use PKCE.
    let spa = app.create_client(json!({"name": "SPA", "redirect_uris": [CALLBACK], "public": true})).await;
    let res =
        browser.get(&authorize_path(&spa, &[("code_challenge", ""), ("code_challenge_method", "")])).await;
    assert_eq!(query_param(&location(&res), "error").as_deref(), Some("invalid_request"));
    // The form POST of an authorization request is answered as the GET.
    let form = authorize_query(&client, &[]);
    let res = browser.http.post(app.url("/oauth/authorize")).form(&form).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_page_headers(&res);
}

async fn discovery_advertises_the_hosted_sign_in(app: TestApp) {
    let doc: Value = app
        .http
        .get(app.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["authorization_endpoint"], app.url("/oauth/authorize"));
    assert_eq!(doc["end_session_endpoint"], app.url("/oauth/logout"));
    assert_eq!(doc["response_types_supported"], json!(["code"]));
    assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(doc["authorization_response_iss_parameter_supported"], json!(true));
    assert_eq!(doc["ui_locales_supported"], json!(["en", "fr", "de", "es"]));
    assert_eq!(doc["prompt_values_supported"], json!(["none", "login"]));
}

async fn same_browser_link_signs_in_and_opens_a_session(app: TestApp) {
    let client = hosted_client(&app).await;
    let browser = Browser::new(&app);
    let email = random_email();
    // login_hint pre-fills the e-mail page.
    let page = browser.get(&authorize_path(&client, &[("login_hint", &email)])).await;
    assert!(page.text().await.unwrap().contains(&format!("value=\"{email}\"")));

    let mut form: Vec<(String, String)> = authorize_query(&client, &[]);
    form.push(("email".into(), email.clone()));
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let res = browser.post("/oauth/authorize", &pairs).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("latchkey_browser="), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
    let wait = location(&res);

    let waiting = browser.get(&wait).await;
    assert_eq!(waiting.status(), StatusCode::OK);
    assert_page_headers(&waiting);
    let csp = waiting.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let html = waiting.text().await.unwrap();
    assert!(html.contains("name=\"code\"") && html.contains("/assets/hosted.js"));
    assert!(!html.contains("<script>"), "no inline script");
    let script = browser.get("/assets/hosted.js").await;
    assert_eq!(script.status(), StatusCode::OK);

    // The status answers only the browser holding the request's cookie.
    let status: Value = browser.get(&format!("{wait}/status")).await.json().await.unwrap();
    assert_eq!(status["status"], "waiting");
    let stranger = Browser::new(&app);
    assert_eq!(stranger.get(&format!("{wait}/status")).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(stranger.get(&wait).await.status(), StatusCode::NOT_FOUND);

    let (link, _) = mail_for(&app, &email).await;
    let landing = browser.get(&link).await;
    assert_eq!(landing.status(), StatusCode::OK);
    assert!(landing.text().await.unwrap().contains(&email));
    let res = browser.post(&link, &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let done = location(&res);
    assert_success(&app, &done);
    let session_cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(session_cookie.starts_with("latchkey_session="), "{session_cookie}");
    assert!(
        session_cookie.contains(&format!("Max-Age={}", 7 * 24 * 3600)),
        "7 days by default: {session_cookie}"
    );

    let tokens = exchange(&app, &client, &done).await;
    let id = claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["nonce"], "n-456");
    assert_eq!(id["amr"], json!(["email"]));
    assert_eq!(id["email"], email.as_str());
    let auth_time = id["auth_time"].as_i64().unwrap();

    // The link is spent, and the waiting page says so.
    assert_eq!(browser.get(&link).await.status(), StatusCode::GONE);
    assert_eq!(browser.get(&wait).await.status(), StatusCode::GONE);

    // Another application of the deployment signs this browser in without an e-mail.
    let other = app.create_client(json!({"name": "Other", "redirect_uris": [CALLBACK]})).await;
    app.advance(30);
    let res = browser.get(&authorize_path(&other, &[("nonce", "second")])).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let to = location(&res);
    assert_success(&app, &to);
    let tokens = exchange(&app, &other, &to).await;
    let id = claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["auth_time"].as_i64().unwrap(), auth_time, "auth_time is the e-mail sign-in's");
    assert_eq!(id["nonce"], "second");
    assert_eq!(id["aud"], other.id.as_str());
}

async fn typed_code_signs_in_with_otp_amr(app: TestApp) {
    let client = hosted_client(&app).await;
    let browser = Browser::new(&app);
    let email = random_email();
    let wait = start(&browser, &client, &email).await;
    let (_, otp) = mail_for(&app, &email).await;
    let wrong = if otp == "000000" { "111111" } else { "000000" };
    let res = browser.post(&wait, &[("code", wrong)]).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await.unwrap().contains("role=\"alert\""));
    let res = browser.post(&wait, &[("code", &otp)]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let done = location(&res);
    assert_success(&app, &done);
    let id = claims(exchange(&app, &client, &done).await["id_token"].as_str().unwrap());
    assert_eq!(id["amr"], json!(["otp"]));
    assert_eq!(id["nonce"], "n-456");
    // Link and code are one credential.
    let (link, _) = mail_for(&app, &email).await;
    assert_eq!(browser.get(&link).await.status(), StatusCode::GONE);
    assert_eq!(browser.post(&wait, &[("code", &otp)]).await.status(), StatusCode::GONE);
}

async fn another_device_approves_by_number_matching(app: TestApp) {
    let client = hosted_client(&app).await;
    let laptop = Browser::new(&app);
    let phone = Browser::new(&app);
    let email = random_email();
    let wait = start(&laptop, &client, &email).await;
    let number = number_on(&laptop.get(&wait).await.text().await.unwrap());
    assert_eq!(number.len(), 2);
    let (link, _) = mail_for(&app, &email).await;

    let page = phone.get(&link).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("Chrome on Linux") && html.contains("127.0.0.1"), "names the requesting browser");
    let offered: Vec<&str> =
        html.match_indices("name=\"choice\" value=\"").map(|(i, _)| &html[i + 21..i + 23]).collect();
    assert_eq!(offered.len(), 3, "{html}");
    assert!(offered.contains(&number.as_str()), "{offered:?} has {number}");
    // A post that picks nothing changes nothing.
    assert_eq!(phone.post(&link, &[]).await.status(), StatusCode::OK);
    assert_eq!(
        laptop.get(&format!("{wait}/status")).await.json::<Value>().await.unwrap()["status"],
        "waiting"
    );

    let res = phone.post(&link, &[("choice", &number)]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get("set-cookie").is_none(), "the approving device gets no session");
    assert!(res.headers().get("location").is_none(), "and no code");
    assert_eq!(
        laptop.get(&format!("{wait}/status")).await.json::<Value>().await.unwrap()["status"],
        "approved"
    );
    // Approved once: the link is spent.
    assert_eq!(phone.post(&link, &[("choice", &number)]).await.status(), StatusCode::GONE);
    assert_eq!(phone.get(&link).await.status(), StatusCode::GONE);

    // A HEAD of the waiting page only looks: the page is there (a GET goes on), nothing moves.
    let head = laptop.http.head(app.url(&wait)).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert!(head.headers().get("location").is_none());
    assert_eq!(
        laptop.get(&format!("{wait}/status")).await.json::<Value>().await.unwrap()["status"],
        "approved"
    );
    let res = laptop.get(&wait).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let done = location(&res);
    assert_success(&app, &done);
    let id = claims(exchange(&app, &client, &done).await["id_token"].as_str().unwrap());
    assert_eq!(id["amr"], json!(["email"]));
    // Continued once.
    assert_eq!(laptop.get(&wait).await.status(), StatusCode::GONE);
    // The phone has no session: it is asked for an e-mail.
    assert_eq!(phone.get(&authorize_path(&client, &[])).await.status(), StatusCode::OK);
    // The laptop has one.
    assert_eq!(laptop.get(&authorize_path(&client, &[])).await.status(), StatusCode::SEE_OTHER);
}

async fn a_wrong_pick_cancels_and_a_decline_declines(app: TestApp) {
    let client = hosted_client(&app).await;
    for declining in [false, true] {
        let laptop = Browser::new(&app);
        let phone = Browser::new(&app);
        let email = random_email();
        let wait = start(&laptop, &client, &email).await;
        let number: u8 = number_on(&laptop.get(&wait).await.text().await.unwrap()).parse().unwrap();
        let (link, otp) = mail_for(&app, &email).await;
        let html = phone.get(&link).await.text().await.unwrap();
        let wrong = html
            .match_indices("name=\"choice\" value=\"")
            .map(|(i, _)| html[i + 21..i + 23].parse::<u8>().unwrap())
            .find(|n| *n != number)
            .unwrap();
        let res = if declining {
            phone.post(&link, &[("decline", "1")]).await
        } else {
            phone.post(&link, &[("choice", &wrong.to_string())]).await
        };
        assert_eq!(res.status(), StatusCode::OK);
        let (word, status) = if declining { ("declined", "declined") } else { ("cancelled", "cancelled") };
        assert!(res.text().await.unwrap().to_lowercase().contains(word));
        assert_eq!(
            laptop.get(&format!("{wait}/status")).await.json::<Value>().await.unwrap()["status"],
            status
        );
        let page = laptop.get(&wait).await;
        assert_eq!(page.status(), StatusCode::GONE, "the waiting page stays at Latchkey");
        let html = page.text().await.unwrap();
        assert!(
            html.contains("oauth&#x2f;authorize?") && html.contains("Start again"),
            "with a way to start again: {html}"
        );
        // Nothing can approve it now, nor the code finish it.
        assert_eq!(phone.post(&link, &[("choice", &number.to_string())]).await.status(), StatusCode::GONE);
        assert_eq!(laptop.post(&wait, &[("code", &otp)]).await.status(), StatusCode::GONE);
        assert_eq!(laptop.get(&link).await.status(), StatusCode::GONE);
    }
}

async fn scanners_and_cross_site_posts_change_nothing(app: TestApp) {
    let client = hosted_client(&app).await;
    let laptop = Browser::new(&app);
    let email = random_email();
    let wait = start(&laptop, &client, &email).await;
    let (link, _) = mail_for(&app, &email).await;
    let scanner = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    for _ in 0..3 {
        assert_eq!(scanner.get(&link).send().await.unwrap().status(), StatusCode::OK);
        assert_eq!(scanner.head(&link).send().await.unwrap().status(), StatusCode::OK);
    }
    for origin in ["https://evil.example", "null"] {
        let res =
            scanner.post(&link).header("origin", origin).form(&[("decline", "1")]).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
    }
    let res = laptop
        .http
        .post(app.url(&wait))
        .header("origin", "https://evil.example")
        .form(&[("code", "123456")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // A cross-site post of the e-mail form starts nothing: the e-mail page is shown again.
    let mut form = authorize_query(&client, &[]);
    form.push(("email".into(), random_email()));
    let res = laptop
        .http
        .post(app.url("/oauth/authorize"))
        .header("origin", "https://evil.example")
        .header("sec-fetch-site", "cross-site")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        laptop.get(&format!("{wait}/status")).await.json::<Value>().await.unwrap()["status"],
        "waiting"
    );
    // The link still works in its browser.
    let res = laptop.post(&link, &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_success(&app, &location(&res));
}

/// Signs `browser` in through the link; the code's redirect.
async fn signed_in(app: &TestApp, browser: &Browser, client: &Client) -> String {
    let email = random_email();
    start(browser, client, &email).await;
    let (link, _) = mail_for(app, &email).await;
    let res = browser.post(&link, &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    location(&res)
}

async fn session_prompt_max_age_and_logout(app: TestApp) {
    let client = hosted_client(&app).await;
    let browser = Browser::new(&app);
    let done = signed_in(&app, &browser, &client).await;
    let id_token = exchange(&app, &client, &done).await["id_token"].as_str().unwrap().to_owned();

    let res = browser.get(&authorize_path(&client, &[("prompt", "none")])).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(query_param(&location(&res), "code").is_some());
    // prompt=login and max_age=0 ask for a fresh sign-in.
    assert_eq!(browser.get(&authorize_path(&client, &[("prompt", "login")])).await.status(), StatusCode::OK);
    assert_eq!(browser.get(&authorize_path(&client, &[("max_age", "0")])).await.status(), StatusCode::OK);
    app.advance(120);
    assert_eq!(browser.get(&authorize_path(&client, &[("max_age", "60")])).await.status(), StatusCode::OK);
    let res = browser.get(&authorize_path(&client, &[("max_age", "60"), ("prompt", "none")])).await;
    assert_eq!(query_param(&location(&res), "error").as_deref(), Some("login_required"));
    let res = browser.get(&authorize_path(&client, &[("max_age", "600")])).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);

    // A logout to an address the application did not register is refused, and ends nothing.
    let res = browser
        .get(&format!(
            "/oauth/logout?client_id={}&post_logout_redirect_uri=https%3A%2F%2Fevil.example%2F",
            client.id
        ))
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        browser.get(&authorize_path(&client, &[("prompt", "none")])).await.status(),
        StatusCode::SEE_OTHER
    );

    let path = format!(
        "/oauth/logout?id_token_hint={id_token}&post_logout_redirect_uri={}&state=bye",
        url::form_urlencoded::byte_serialize(LOGGED_OUT.as_bytes()).collect::<String>()
    );
    let res = browser.get(&path).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), format!("{LOGGED_OUT}?state=bye"));
    let res = browser.get(&authorize_path(&client, &[("prompt", "none")])).await;
    assert_eq!(query_param(&location(&res), "error").as_deref(), Some("login_required"));

    // A session expires after its lifetime.
    signed_in(&app, &browser, &client).await;
    app.advance(7 * 24 * 3600 + 1);
    let res = browser.get(&authorize_path(&client, &[("prompt", "none")])).await;
    assert_eq!(query_param(&location(&res), "error").as_deref(), Some("login_required"));

    // Without a redirect, a page says so.
    let res = browser.get("/oauth/logout").await;
    assert_eq!(res.status(), StatusCode::OK);
}

async fn admin_lists_and_revokes_browser_sessions(app: TestApp) {
    let client = hosted_client(&app).await;
    let browser = Browser::new(&app);
    let email = random_email();
    start(&browser, &client, &email).await;
    let (link, _) = mail_for(&app, &email).await;
    let done = location(&browser.post(&link, &[]).await);
    let tokens = exchange(&app, &client, &done).await;
    let user = claims(tokens["id_token"].as_str().unwrap())["sub"].as_str().unwrap().to_owned();

    let list: Value =
        app.as_admin().get(&format!("/v1/users/{user}/sessions")).send().await.unwrap().json().await.unwrap();
    let kinds: Vec<&str> =
        list["data"].as_array().unwrap().iter().map(|s| s["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"browser") && kinds.contains(&"refresh_token"), "{list}");
    let res = app.as_admin().delete(&format!("/v1/users/{user}/sessions")).send().await.unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["revoked"], 2);
    let res = browser.get(&authorize_path(&client, &[("prompt", "none")])).await;
    assert_eq!(query_param(&location(&res), "error").as_deref(), Some("login_required"));
}

async fn fifty_concurrent_approvals_or_codes_give_one_success(app: TestApp) {
    let client = hosted_client(&app).await;
    // Approvals from another device.
    let laptop = Browser::new(&app);
    let phone = Browser::new(&app);
    let email = random_email();
    let wait = start(&laptop, &client, &email).await;
    let number = number_on(&laptop.get(&wait).await.text().await.unwrap());
    let (link, _) = mail_for(&app, &email).await;
    let pick = [("choice", number.as_str())];
    let statuses = join_all((0..50).map(|_| phone.post(&link, &pick))).await;
    let ok = statuses.iter().filter(|r| r.status() == StatusCode::OK).count();
    assert_eq!(ok, 1, "{:?}", statuses.iter().map(Response::status).collect::<Vec<_>>());
    assert!(statuses.iter().all(|r| r.status() == StatusCode::OK || r.status() == StatusCode::GONE));
    let continued = join_all((0..50).map(|_| laptop.get(&wait))).await;
    assert_eq!(continued.iter().filter(|r| r.status() == StatusCode::SEE_OTHER).count(), 1);

    // Codes typed in a waiting browser.
    let laptop = Browser::new(&app);
    let email = random_email();
    let wait = start(&laptop, &client, &email).await;
    let (_, otp) = mail_for(&app, &email).await;
    let typed = [("code", otp.as_str())];
    let statuses = join_all((0..50).map(|_| laptop.post(&wait, &typed))).await;
    let redirected = statuses.iter().filter(|r| r.status() == StatusCode::SEE_OTHER).count();
    assert_eq!(redirected, 1, "{:?}", statuses.iter().map(Response::status).collect::<Vec<_>>());
}

async fn sign_in_rate_limits_are_the_ordinary_ones(app: TestApp) {
    let client = hosted_client(&app).await;
    let browser = Browser::new(&app);
    let email = random_email();
    // The default per-address limit is 3 a minute: the fourth is refused with Retry-After.
    for _ in 0..3 {
        start(&browser, &client, &email).await;
    }
    let mut form = authorize_query(&client, &[]);
    form.push(("email".into(), email.clone()));
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let res = browser.post("/oauth/authorize", &pairs).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().get("retry-after").is_some());
    // An address with no account gets the same answer as a known one, and its e-mail.
    let fresh = random_email();
    start(&browser, &client, &fresh).await;
    mail_for(&app, &fresh).await;
}

async fn pages_speak_the_chosen_language(app: TestApp) {
    let client = app
        .create_client(json!({"name": "Acme", "redirect_uris": [CALLBACK], "default_locale": "de",
            "branding": {"product_name": "Acme Cloud", "primary_color": "#0b6e4f"}}))
        .await;
    let browser = Browser::new(&app);
    let page = |extra: Vec<(&'static str, &'static str)>, accept: &'static str| {
        let path = authorize_path(&client, &extra);
        let http = browser.http.clone();
        let url = browser.url(&path);
        async move {
            let mut req = http.get(url);
            if !accept.is_empty() {
                req = req.header("accept-language", accept);
            }
            req.send().await.unwrap().text().await.unwrap()
        }
    };
    let html = page(vec![("ui_locales", "es fr")], "fr").await;
    assert!(html.contains("lang=\"es\"") && html.contains("Iniciar sesión en Acme Cloud"), "{html}");
    let html = page(vec![], "it, fr;q=0.8").await;
    assert!(html.contains("lang=\"fr\"") && html.contains("Connexion à Acme Cloud"));
    let html = page(vec![], "").await;
    assert!(html.contains("lang=\"de\"") && html.contains("Bei Acme Cloud anmelden"));
    assert!(html.contains("#0b6e4f"), "the application's colour");
    assert!(html.contains("<label for=\"email\">"), "the field has a label");
}

/// An application replaces the frame of every page (`layout`) and the e-mail page's content;
/// the rest stays built in. Its templates run sandboxed: escaped, no inline script (CSP).
async fn an_application_sets_its_own_pages(app: TestApp) {
    let client = hosted_client(&app).await;
    let other = hosted_client(&app).await;
    let pages = format!("/v1/applications/{}/pages", client.id);
    let put = |page: &'static str, html: &str| {
        let body = json!({ "html": html });
        let path = format!("{pages}/{page}");
        let app = &app;
        async move { app.admin(Method::PUT, &path, Some(body)).await }
    };
    let layout = "<!doctype html><html lang=\"{{ lang }}\"><head><title>{{ title }}</title></head>\
        <body class=\"acme-frame\"><header>{{ product }}</header>{{ content }}\
        {% if script %}<script src=\"/assets/hosted.js\" defer></script>{% endif %}</body></html>";
    let res = put("layout", layout).await;
    assert_eq!(res.status(), StatusCode::OK);
    let set: Value = res.json().await.unwrap();
    assert_eq!((set["object"].as_str(), set["page"].as_str()), (Some("page_template"), Some("layout")));
    let email = "<h1>{{ t.email_title }}</h1><p class=\"acme-intro\">Use your work address.</p>\
        <form method=\"post\" action=\"/oauth/authorize\">\
        {% for name, value in hidden %}<input type=\"hidden\" name=\"{{ name }}\" value=\"{{ value }}\">{% endfor %}\
        <label for=\"e\">Work e-mail</label><input id=\"e\" type=\"email\" name=\"email\" value=\"{{ login_hint }}\">\
        <button>Go</button></form>";
    assert_eq!(put("email", email).await.status(), StatusCode::OK);

    // The e-mail page is the application's, in its frame, with every header a page has; the
    // hint is escaped.
    let browser = Browser::new(&app);
    let res = browser.get(&authorize_path(&client, &[("login_hint", "<b>x</b>@example.com")])).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_page_headers(&res);
    let html = res.text().await.unwrap();
    assert!(html.contains("class=\"acme-frame\"") && html.contains("acme-intro"), "{html}");
    assert!(html.contains("value=\"&lt;b&gt;x&lt;") && !html.contains("<b>x</b>"), "{html}");
    // The form still starts the sign-in; the waiting page is built in, inside the frame.
    let email_address = random_email();
    let wait = start_with_form(&browser, &client, &email_address).await;
    let html = browser.get(&wait).await.text().await.unwrap();
    assert!(html.contains("acme-frame") && html.contains("class=\"match\""), "{html}");
    assert!(html.contains("/assets/hosted.js"), "the frame keeps the waiting page's script");
    // Another application's pages are the built-in ones.
    let html = browser.get(&authorize_path(&other, &[])).await.text().await.unwrap();
    assert!(!html.contains("acme") && html.contains("<label for=\"email\">"), "{html}");

    // Listed, read back, and named in the application.
    let list: Value = app.admin(Method::GET, &pages, None).await.json().await.unwrap();
    let names: Vec<&str> =
        list["data"].as_array().unwrap().iter().map(|p| p["page"].as_str().unwrap()).collect();
    assert_eq!(names, ["email", "layout"]);
    assert!(list["pages"].as_array().unwrap().len() >= 6, "{list}");
    assert!(list["variables"]["wait"].as_array().unwrap().contains(&json!("number")), "{list}");
    let one: Value = app.admin(Method::GET, &format!("{pages}/email"), None).await.json().await.unwrap();
    assert_eq!(one["html"], email);
    let read: Value =
        app.admin(Method::GET, &format!("/v1/applications/{}", client.id), None).await.json().await.unwrap();
    assert_eq!(read["pages"], json!(["email", "layout"]));

    // Refused, saying why and where; nothing stored.
    for (page, html, says) in [
        ("email", "<p>{% set x = 1 %}</p>", "set"),
        ("email", "<p>{{ number }}</p>", "number"),
        ("wait", "<p>{{ t.wait_title }</p>", "line 1"),
        ("layout", "<p>no content</p>", "content"),
        ("nope", "<p>x</p>", "page"),
    ] {
        let res = put(page, html).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{page}: {html}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], "invalid_field", "{body}");
        assert!(body.to_string().contains(says), "{page}: {body}");
    }
    let big = format!("<p>{}</p>", "x".repeat(49 * 1024));
    assert_eq!(put("message", &big).await.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res = app.admin(Method::PUT, &format!("{pages}/email"), Some(json!({}))).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let list: Value = app.admin(Method::GET, &pages, None).await.json().await.unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    let res = app.http.get(app.url(&pages)).bearer_auth(&client.secret).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "the admin token, not the application's secret");

    // Deleted, the built-in page is back.
    assert_eq!(
        app.admin(Method::DELETE, &format!("{pages}/email"), None).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.admin(Method::DELETE, &format!("{pages}/email"), None).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.admin(Method::GET, &format!("{pages}/email"), None).await.status(), StatusCode::NOT_FOUND);
    let html = browser.get(&authorize_path(&client, &[])).await.text().await.unwrap();
    assert!(html.contains("acme-frame") && html.contains("<label for=\"email\">"), "{html}");
}

/// Posts the e-mail page's form (its hidden fields and the address); the waiting page's path.
async fn start_with_form(browser: &Browser, client: &Client, email: &str) -> String {
    let mut form: Vec<(String, String)> = authorize_query(client, &[]);
    form.push(("email".into(), email.into()));
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let res = browser.post("/oauth/authorize", &pairs).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "{}", res.text().await.unwrap());
    let wait = location(&res);
    assert!(wait.starts_with("/oauth/authorize/wait/"), "{wait}");
    wait
}

/// The code of a hosted sign-in's e-mail is an ordinary one-time code: the application's back
/// end may exchange it (the grant of `POST /oauth/token`), and the waiting browser is then told
/// the sign-in was used, with nothing left to finish.
async fn a_hosted_challenge_used_by_the_back_end_ends_the_wait(app: TestApp) {
    let client = hosted_client(&app).await;
    let browser = Browser::new(&app);
    let email = random_email();
    let wait = start(&browser, &client, &email).await;
    let (link, otp) = mail_for(&app, &email).await;
    let res = app
        .as_app(&client)
        .post("/oauth/token")
        .form(&[
            ("grant_type", "urn:latchkey:params:oauth:grant-type:email-otp"),
            ("email", &email),
            ("otp", &otp),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{}", res.text().await.unwrap());
    let res = browser.get(&wait).await;
    assert_eq!(res.status(), StatusCode::GONE);
    assert!(res.text().await.unwrap().contains("already used"));
    assert_eq!(browser.post(&wait, &[("code", &otp)]).await.status(), StatusCode::GONE);
    assert_eq!(browser.get(&link).await.status(), StatusCode::GONE);
}

/// Instances behind one load balancer (one public URL) on one PostgreSQL database: a request
/// started on one is approved on a second and completes on a third.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs LATCHKEY_TEST_DATABASE_URL (PostgreSQL)"]
async fn a_request_started_on_one_instance_is_approved_on_another_and_completes_on_a_third() {
    use latchkey::Config;
    use latchkey::run::start as start_instance;
    let app = TestApp::spawn(crate::helpers::Backend::Postgres).await;
    let client = hosted_client(&app).await;
    let config = Config { public_url: Some(app.base.clone()), ..app.config.clone() };
    let second = start_instance(config.clone(), app.options(false)).await.expect("second instance");
    let third = start_instance(config, app.options(false)).await.expect("third instance");
    let on = |running: &latchkey::run::Running, path: &str| format!("http://{}{path}", running.addr);

    let laptop = Browser::new(&app);
    let email = random_email();
    let wait = start(&laptop, &client, &email).await;
    let number = number_on(&laptop.get(&wait).await.text().await.unwrap());
    let (link, _) = mail_for(&app, &email).await;
    let link_path = link.strip_prefix(&app.base).unwrap().to_owned();

    let mut phone = Browser::at(&on(&second, ""));
    phone.origin = app.base.clone();
    assert_eq!(phone.get(&link_path).await.status(), StatusCode::OK);
    assert_eq!(phone.post(&link_path, &[("choice", &number)]).await.status(), StatusCode::OK);

    let res = laptop.get(&on(&third, &wait)).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let done = location(&res);
    assert_success(&app, &done);
    exchange(&app, &client, &done).await;
    // Spent everywhere.
    assert_eq!(laptop.get(&wait).await.status(), StatusCode::GONE);
    assert_eq!(phone.get(&link_path).await.status(), StatusCode::GONE);
    second.shutdown().await;
    third.shutdown().await;
}
