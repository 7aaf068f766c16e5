//! The hosted sign-in in a real browser: Chromium driven over WebDriver (Debian's `chromium`
//! and `chromium-driver`, which `.ci/run` installs), two browser profiles standing for two
//! devices. Each page is photographed at 1280 and 375 px wide into `docs/hosted-sign-in/`,
//! which the guide shows, audited with axe-core (WCAG 2.1 A and AA rules), and checked to fit a
//! 320 px wide screen. Ignored by a plain `cargo test`; with `--include-ignored` it fails,
//! saying how to install them, when the browser is missing.

use crate::helpers::{Backend, TestApp, eventually, query_param, random_email};
use base64::Engine as _;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver of the test's own, on a free port, ended with the test.
struct Driver {
    _child: tokio::process::Child,
    base: String,
    http: reqwest::Client,
}

impl Driver {
    async fn start() -> Self {
        for program in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(program).exists(),
                "{program} is missing: install Debian's packages with `apt-get install chromium chromium-driver`"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let ready = eventually(
            Duration::from_secs(20),
            || async {
                http.get(format!("{base}/status")).send().await.ok().map(|r| r.status().is_success())
            },
            |ok| *ok == Some(true),
        )
        .await;
        assert_eq!(ready, Some(true), "chromedriver answers");
        Self { _child: child, base, http }
    }

    /// A new browser profile (its own cookies): one device.
    async fn browser(&self) -> Session {
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--hide-scrollbars", "--window-size=1280,900", "--lang=en-US"],
            },
        }}});
        let res: Value = self
            .http
            .post(format!("{}/session", self.base))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = res["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {res}")).to_owned();
        Session { http: self.http.clone(), url: format!("{}/session/{id}", self.base) }
    }
}

struct Session {
    http: reqwest::Client,
    url: String,
}

impl Session {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res: Value = req.send().await.unwrap().json().await.unwrap();
        assert!(res["value"].get("error").is_none(), "{path}: {res}");
        res["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await;
    }

    async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None).await.as_str().unwrap().to_owned()
    }

    async fn find_all(&self, css: &str) -> Vec<String> {
        let found = self
            .call(reqwest::Method::POST, "/elements", Some(json!({"using": "css selector", "value": css})))
            .await;
        found.as_array().unwrap().iter().map(|e| e[ELEMENT].as_str().unwrap().to_owned()).collect()
    }

    async fn find(&self, css: &str) -> String {
        self.find_all(css).await.into_iter().next().unwrap_or_else(|| panic!("no {css} on {}", self.url))
    }

    async fn text(&self, element: &str) -> String {
        let v = self.call(reqwest::Method::GET, &format!("/element/{element}/text"), None).await;
        v.as_str().unwrap().trim().to_owned()
    }

    async fn click(&self, element: &str) {
        self.call(reqwest::Method::POST, &format!("/element/{element}/click"), Some(json!({}))).await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.call(reqwest::Method::POST, &format!("/element/{element}/value"), Some(json!({"text": text})))
            .await;
    }

    /// The page's title (each hosted page's title is its heading): read without holding an
    /// element, which a page that reloads itself would make stale.
    async fn heading(&self) -> String {
        self.call(reqwest::Method::GET, "/title", None).await.as_str().unwrap_or_default().to_owned()
    }

    async fn resize(&self, width: u32, height: u32) {
        self.call(reqwest::Method::POST, "/window/rect", Some(json!({"width": width, "height": height})))
            .await;
    }

    async fn execute(&self, script: &str, asynchronous: bool) -> Value {
        let path = if asynchronous { "/execute/async" } else { "/execute/sync" };
        self.call(reqwest::Method::POST, path, Some(json!({"script": script, "args": []}))).await
    }

    /// The page at 1280 and at 375 px wide, into the guide's folder; audited for accessibility
    /// on the way, and checked to fit a 320 px wide screen.
    async fn photograph(&self, name: &str) {
        self.audit(name).await;
        for (width, height) in [(1280, 900), (375, 812)] {
            self.resize(width, height).await;
            let png = self.call(reqwest::Method::GET, "/screenshot", None).await;
            let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
            std::fs::write(shots().join(format!("{name}-{width}.png")), bytes).unwrap();
        }
        self.resize(320, 640).await;
        let fit =
            self.execute("return [window.innerWidth, document.documentElement.scrollWidth];", false).await;
        assert_eq!(fit[0], 320, "{name}: the window is 320 px wide ({fit})");
        assert_eq!(fit[1], 320, "{name}: nothing is wider than a 320 px screen ({fit})");
        self.resize(1280, 900).await;
    }

    /// axe-core's WCAG 2.1 A and AA rules, run in the page: no violation.
    async fn audit(&self, name: &str) {
        static AXE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/sdk/axe-core/node_modules/axe-core/axe.min.js");
            std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!(
                    "{}: {e}; install it with `bash crates/latchkey/tests/sdk/axe-core/install.sh`",
                    path.display()
                )
            })
        });
        let loaded = self.execute(&format!("{}\n;return typeof window.axe;", *AXE), false).await;
        assert_eq!(loaded, "object", "{name}: axe-core loaded");
        let violations = self
            .execute(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})
                   .then(r => done({passes: r.passes.length, violations: r.violations.map(v =>
                     ({rule: v.id, impact: v.impact, where: v.nodes.map(n => n.target.join(' '))}))}))
                   .catch(e => done({error: String(e)}));",
                true,
            )
            .await;
        assert!(violations["passes"].as_u64().unwrap_or(0) > 0, "{name}: axe ran ({violations})");
        assert_eq!(violations["violations"], json!([]), "{name}: accessibility violations");
    }

    async fn wait_for_url(&self, prefix: &str) -> String {
        let url = eventually(Duration::from_secs(10), || self.url(), |u| u.starts_with(prefix)).await;
        if !url.starts_with(prefix) {
            let source = self.call(reqwest::Method::GET, "/source", None).await;
            panic!("expected {prefix}…, at {url}: {source}");
        }
        url
    }

    async fn quit(self) {
        let _ = self.http.delete(&self.url).send().await;
    }
}

fn shots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/hosted-sign-in");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn link_and_code(app: &TestApp, email: &str) -> (String, String) {
    let mails = eventually(
        Duration::from_secs(10),
        || async { app.sink.mails() },
        |m| m.iter().any(|m| m.rcpt_to.iter().any(|r| r == email)),
    )
    .await;
    let mail = mails.iter().rev().find(|m| m.rcpt_to.iter().any(|r| r == email)).expect("the e-mail");
    (app.link_in(mail), app.otp_in(mail))
}

/// Every hosted page in Chromium: the same-browser link, the typed code, another device
/// approving and declining, a wrong pick, prompt=none with and without a session, logout, and
/// the error and end-state pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromium-driver (apt-get install chromium chromium-driver)"]
async fn the_hosted_pages_in_chromium() {
    let driver = Driver::start().await;
    let app = TestApp::spawn(Backend::Sqlite).await;
    let callback = app.url("/app/callback");
    let logged_out = app.url("/app/logged-out");
    let client = app
        .create_client(json!({
            "name": "Acme", "redirect_uris": [callback], "post_logout_redirect_uris": [logged_out],
            "branding": {"product_name": "Acme Notes"},
        }))
        .await;
    let authorize = |extra: &str| {
        format!(
            "{}?response_type=code&client_id={}&redirect_uri={}&scope=openid%20email&state=s1&nonce=n1{extra}",
            app.url("/oauth/authorize"),
            client.id,
            url::form_urlencoded::byte_serialize(callback.as_bytes()).collect::<String>()
        )
    };

    // The error page: an unknown client.
    let laptop = driver.browser().await;
    laptop.goto(&app.url("/oauth/authorize?response_type=code&client_id=app_unknown&scope=openid")).await;
    laptop.photograph("error").await;

    // Same browser: e-mail, waiting page, the link's button.
    let email = random_email();
    laptop.goto(&authorize("")).await;
    assert!(laptop.heading().await.contains("Acme Notes"));
    laptop.photograph("email").await;
    laptop.type_into("#email", &email).await;
    laptop.click(&laptop.find("button[type=submit]").await).await;
    laptop.wait_for_url(&app.url("/oauth/authorize/wait/")).await;
    laptop.photograph("waiting").await;
    let (link, _) = link_and_code(&app, &email).await;
    laptop.goto(&link).await;
    laptop.photograph("same-browser").await;
    laptop.click(&laptop.find("button[type=submit]").await).await;
    let done = laptop.wait_for_url(&callback).await;
    assert!(query_param(&done, "code").is_some() && query_param(&done, "state").as_deref() == Some("s1"));
    laptop.goto(&link).await;
    laptop.photograph("used").await;

    // prompt=none with the session, and without one.
    laptop.goto(&authorize("&prompt=none")).await;
    assert!(query_param(&laptop.wait_for_url(&callback).await, "code").is_some());
    let fresh = driver.browser().await;
    fresh.goto(&authorize("&prompt=none")).await;
    let refused = fresh.wait_for_url(&callback).await;
    assert_eq!(query_param(&refused, "error").as_deref(), Some("login_required"));

    // Logout, back to the application, then the plain signed-out page.
    let logout = format!(
        "{}?client_id={}&post_logout_redirect_uri={}&state=bye",
        app.url("/oauth/logout"),
        client.id,
        url::form_urlencoded::byte_serialize(logged_out.as_bytes()).collect::<String>()
    );
    laptop.goto(&logout).await;
    assert_eq!(laptop.wait_for_url(&logged_out).await, format!("{logged_out}?state=bye"));
    laptop.goto(&app.url("/oauth/logout")).await;
    laptop.photograph("signed-out").await;
    laptop.goto(&authorize("&prompt=none")).await;
    assert_eq!(
        query_param(&laptop.wait_for_url(&callback).await, "error").as_deref(),
        Some("login_required")
    );

    // The typed code.
    let email = random_email();
    fresh.goto(&authorize("")).await;
    fresh.type_into("#email", &email).await;
    fresh.click(&fresh.find("button[type=submit]").await).await;
    fresh.wait_for_url(&app.url("/oauth/authorize/wait/")).await;
    let (_, code) = link_and_code(&app, &email).await;
    fresh.type_into("#code", if code == "000000" { "111111" } else { "000000" }).await;
    fresh.click(&fresh.find("form[method=post] button").await).await;
    fresh.photograph("wrong-code").await;
    fresh.type_into("#code", &code).await;
    fresh.click(&fresh.find("form[method=post] button").await).await;
    assert!(query_param(&fresh.wait_for_url(&callback).await, "code").is_some());
    fresh.quit().await;

    // Another device approves (the waiting page goes on by itself), declines, or picks wrong.
    for (outcome, photo) in [("approve", "approve"), ("decline", "declined"), ("wrong", "cancelled")] {
        let waiting = driver.browser().await;
        let phone = driver.browser().await;
        let email = random_email();
        waiting.goto(&authorize("")).await;
        waiting.type_into("#email", &email).await;
        waiting.click(&waiting.find("button[type=submit]").await).await;
        waiting.wait_for_url(&app.url("/oauth/authorize/wait/")).await;
        let number = waiting.text(&waiting.find(".match").await).await;
        let (link, _) = link_and_code(&app, &email).await;
        phone.goto(&link).await;
        if outcome == "approve" {
            phone.photograph("approve").await;
        }
        let buttons = phone.find_all("button[name=choice]").await;
        assert_eq!(buttons.len(), 3);
        let mut right = None;
        let mut wrong = None;
        for b in &buttons {
            if phone.text(b).await == number { right = Some(b.clone()) } else { wrong = Some(b.clone()) }
        }
        match outcome {
            "approve" => phone.click(&right.expect("the waiting page's number is offered")).await,
            "wrong" => phone.click(&wrong.unwrap()).await,
            _ => phone.click(&phone.find("button[name=decline]").await).await,
        }
        let expected = match outcome {
            "approve" => "approved",
            "wrong" => "cancelled",
            _ => "declined",
        };
        let heading =
            eventually(Duration::from_secs(10), || phone.heading(), |h| h.to_lowercase().contains(expected))
                .await
                .to_lowercase();
        assert!(heading.contains(expected), "{heading}");
        phone.photograph(if outcome == "approve" { "approved" } else { photo }).await;
        if outcome == "approve" {
            // The live wait takes the waiting browser on to the application within seconds.
            assert!(query_param(&waiting.wait_for_url(&callback).await, "code").is_some());
        } else {
            let heading = eventually(
                Duration::from_secs(10),
                || waiting.heading(),
                |h| h.to_lowercase().contains(expected),
            )
            .await;
            assert!(heading.to_lowercase().contains(expected), "{heading}");
            waiting.photograph(&format!("{photo}-waiting")).await;
        }
        waiting.quit().await;
        phone.quit().await;
    }
    laptop.quit().await;
}
