use base64::Engine as _;
use latchkey::Config;
use latchkey::run::{Running, StartOptions, start};
use latchkey_core::{ManualClock, OpaqueToken};
use latchkey_mail::WorkerConfig;
use latchkey_mail::sink::{ReceivedMail, SmtpSink};
use latchkey_postgres::testing::TestDatabase;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
pub const CALLBACK: &str = "https://app.example/callback";

/// Declares each test once per backend: `sqlite::name`, and `postgres::name`, which is ignored
/// by a plain `cargo test` and, run with `--include-ignored`, fails when the PostgreSQL URL is
/// not set.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = $crate::helpers::TestApp::spawn($crate::helpers::Backend::Sqlite).await;
                    super::$name(app).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs LATCHKEY_TEST_DATABASE_URL (PostgreSQL)"]
                async fn $name() {
                    let app = $crate::helpers::TestApp::spawn($crate::helpers::Backend::Postgres).await;
                    super::$name(app).await;
                }
            )*
        }
    };
}

/// A test that measures time (the crash test) runs with no other server of the suite beside
/// it: every [`TestApp`] holds a shared guard for its life, and such a test takes this lock
/// exclusively (it waits for the servers running, and new ones wait for it).
pub static ALONE: std::sync::LazyLock<tokio::sync::RwLock<()>> =
    std::sync::LazyLock::new(|| tokio::sync::RwLock::new(()));

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where a test's data lives; held for its `Drop`, which removes it after the test.
#[allow(dead_code)]
pub enum Data {
    Sqlite(tempfile::TempDir),
    Postgres(TestDatabase),
}

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub sink: SmtpSink,
    pub clock: Arc<ManualClock>,
    pub server: Option<Running>,
    pub config: Config,
    _data: Data,
    _beside_others: tokio::sync::RwLockReadGuard<'static, ()>,
}

pub struct Client {
    pub id: String,
    pub secret: String,
}

/// Who a request is made as.
#[derive(Clone, Copy)]
enum Caller<'a> {
    /// An application, by HTTP Basic with its client id and secret.
    App(&'a Client),
    /// The operator, by the admin token.
    Admin,
}

/// Authenticated requests: `app.as_app(&client).post("/v1/magic-links")`,
/// `app.as_admin().get("/v1/users")`. A path is taken relative to the server; a whole URL (another
/// instance's) as it is. [`As::on`] sends the same requests through another server and client.
#[derive(Clone, Copy)]
pub struct As<'a> {
    http: &'a reqwest::Client,
    base: &'a str,
    caller: Caller<'a>,
}

/// An HTTP client for callers not yet pointed at a server (see [`As::on`]).
static NO_CLIENT: std::sync::LazyLock<reqwest::Client> = std::sync::LazyLock::new(reqwest::Client::new);

impl<'a> As<'a> {
    /// The application of `client`, for a server of the test's own making: give it with [`As::on`].
    pub fn app(client: &'a Client) -> Self {
        Self { http: &NO_CLIENT, base: "", caller: Caller::App(client) }
    }

    /// The operator, for a server of the test's own making: give it with [`As::on`].
    pub fn admin() -> Self {
        Self { http: &NO_CLIENT, base: "", caller: Caller::Admin }
    }

    /// The same caller, on the server at `base` through `http` (a child process, another instance).
    pub fn on(self, http: &'a reqwest::Client, base: &'a str) -> Self {
        Self { http, base, ..self }
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let url = if path.starts_with("http") { path.to_owned() } else { format!("{}{path}", self.base) };
        let req = self.http.request(method, url);
        match self.caller {
            Caller::App(client) => req.basic_auth(&client.id, Some(&client.secret)),
            Caller::Admin => req.bearer_auth(ADMIN_TOKEN),
        }
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::GET, path)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::POST, path)
    }

    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::DELETE, path)
    }
}

/// How often [`eventually`] looks again.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// Calls `probe` until `done` holds for what it answered or `timeout` has passed, and returns
/// the last answer either way: the caller asserts on it, so a timeout fails with what was seen.
pub async fn eventually<T, F>(timeout: Duration, mut probe: impl FnMut() -> F, done: impl Fn(&T) -> bool) -> T
where
    F: std::future::Future<Output = T>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let value = probe().await;
        if done(&value) || tokio::time::Instant::now() >= deadline {
            return value;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

impl TestApp {
    /// A server on a fresh database; on PostgreSQL, panics when the test database URL is not set.
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Self {
        let (data, database_url) = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let url = format!("sqlite://{}", dir.path().join("latchkey.db").display());
                (Data::Sqlite(dir), url)
            }
            Backend::Postgres => {
                let db = TestDatabase::from_env().await;
                let url = db.url.clone();
                (Data::Postgres(db), url)
            }
        };
        let sink = SmtpSink::start().await.expect("SMTP sink");
        let mut config = Config {
            listen: "127.0.0.1:0".into(),
            database_url,
            smtp_url: Some(sink.url()),
            admin_token: Some(ADMIN_TOKEN.into()),
            secret_key: Some("integration-test-master-secret-0123456789".into()),
            ..Config::default()
        };
        adjust(&mut config);
        // Whole seconds keep stored times equal to the clock's.
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).expect("valid");
        let clock = Arc::new(ManualClock::new(now));
        let mut app = Self {
            base: String::new(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("HTTP client"),
            sink,
            clock,
            server: None,
            config,
            _data: data,
            _beside_others: ALONE.read().await,
        };
        app.start(false).await;
        app
    }

    pub fn options(&self, dev: bool) -> StartOptions {
        StartOptions {
            dev,
            print_mail: false,
            clock: self.clock.clone(),
            worker: WorkerConfig { poll_interval: Duration::from_millis(50), ..WorkerConfig::default() },
            maintenance_interval: Duration::from_millis(200),
        }
    }

    /// Starts (or restarts) the server on the same database.
    pub async fn start(&mut self, dev: bool) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
        let running = start(self.config.clone(), self.options(dev)).await.expect("server starts");
        self.base = running.public_url.trim_end_matches('/').to_owned();
        self.server = Some(running);
    }

    /// Shuts the server down (gracefully); the database stays.
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn advance(&self, seconds: i64) {
        self.clock.advance(time::Duration::seconds(seconds));
    }

    /// Requests made as the application of `client`.
    pub fn as_app<'a>(&'a self, client: &'a Client) -> As<'a> {
        As { http: &self.http, base: &self.base, caller: Caller::App(client) }
    }

    /// Requests made as the operator, with the admin token.
    pub fn as_admin(&self) -> As<'_> {
        As { http: &self.http, base: &self.base, caller: Caller::Admin }
    }

    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Response {
        let mut req = self.as_admin().request(method, path);
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await.expect("request")
    }

    pub async fn create_client(&self, body: Value) -> Client {
        let res = self.admin(reqwest::Method::POST, "/v1/applications", Some(body)).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let body: Value = res.json().await.unwrap();
        Client {
            id: body["client_id"].as_str().unwrap().to_owned(),
            secret: body["client_secret"].as_str().unwrap_or_default().to_owned(),
        }
    }

    /// A confidential application whose only redirect URI is [`CALLBACK`].
    pub async fn client(&self) -> Client {
        self.create_client(json!({ "name": "Acme", "redirect_uris": [CALLBACK] })).await
    }

    pub async fn request_link(&self, client: &Client, body: Value) -> Response {
        self.as_app(client).post("/v1/magic-links").json(&body).send().await.expect("request")
    }

    /// Asks for a link without e-mail and returns `(id, link, otp)`.
    pub async fn link_without_mail(&self, client: &Client, email: &str) -> (String, String, String) {
        let res =
            self.request_link(client, json!({ "email": email, "send_email": false, "state": "xyz" })).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let body: Value = res.json().await.unwrap();
        let s = |k: &str| body[k].as_str().unwrap().to_owned();
        (s("id"), s("link"), s("otp"))
    }

    pub async fn wait_for_mails(&self, count: usize) -> Vec<ReceivedMail> {
        let mails = self.sink.wait_for(count, Duration::from_secs(10)).await;
        assert!(mails.len() >= count, "expected {count} e-mails, got {}", mails.len());
        mails
    }

    /// The sign-in link of a message, checked to point at this server.
    pub fn link_in(&self, mail: &ReceivedMail) -> String {
        let text = mail.text();
        let link = text
            .split_whitespace()
            .find(|w| w.starts_with("http") && w.contains("/l/"))
            .unwrap_or_else(|| panic!("no link in {text}"))
            .to_owned();
        assert!(link.starts_with(&self.url("/l/")), "link {link} is not on this server");
        assert!(mail.html().contains(&link), "the HTML part carries the same link");
        link
    }

    pub fn otp_in(&self, mail: &ReceivedMail) -> String {
        let text = mail.text();
        let code = text
            .split_whitespace()
            .find(|w| w.len() == 6 && w.bytes().all(|b| b.is_ascii_digit()))
            .unwrap_or_else(|| panic!("no code in {text}"))
            .to_owned();
        assert!(mail.html().contains(&code));
        code
    }

    /// Presses the landing page's button; returns the status and the redirect target.
    pub async fn press(&self, link: &str) -> (StatusCode, Option<String>) {
        let res = self.http.post(link).send().await.expect("request");
        let location = res.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
        (res.status(), location)
    }

    /// Opens a link and presses its button as a browser does (a GET, then a same-origin POST);
    /// the redirect target.
    pub async fn click(&self, link: &str) -> String {
        let page = self.http.get(link).send().await.expect("request");
        assert_eq!(page.status(), StatusCode::OK, "the landing page shows and spends nothing");
        let res = self.http.post(link).header("origin", &self.base).header("sec-fetch-site", "same-origin");
        let res = res.send().await.expect("request");
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        res.headers()["location"].to_str().unwrap().to_owned()
    }

    /// Presses the button and returns the authorization code from the redirect.
    pub async fn code_from(&self, link: &str) -> String {
        let (status, location) = self.press(link).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        query_param(&location.unwrap(), "code").expect("code in redirect")
    }

    pub async fn exchange(&self, client: &Client, code: &str) -> Response {
        self.as_app(client)
            .post("/oauth/token")
            .form(&[("grant_type", "authorization_code"), ("code", code), ("redirect_uri", CALLBACK)])
            .send()
            .await
            .expect("request")
    }

    /// A whole sign-in by link for a new address; the token response.
    pub async fn sign_in(&self, client: &Client) -> Value {
        let (_, link, _) = self.link_without_mail(client, &random_email()).await;
        let code = self.code_from(&link).await;
        let res = self.exchange(client, &code).await;
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.unwrap()
    }

    pub async fn magic_link(&self, client: &Client, id: &str) -> Value {
        let res = self.as_app(client).get(&format!("/v1/magic-links/{id}")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.unwrap()
    }

    /// Reads a magic link until `done` holds for its state, for `timeout` at most; the last state.
    pub async fn magic_link_when(
        &self,
        client: &Client,
        id: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        eventually(timeout, || self.magic_link(client, id), done).await
    }
}

pub fn query_param(url: &str, name: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// The claims of a JWT, unverified, for assertions after verification elsewhere.
pub fn claims(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

pub fn header(jwt: &str) -> Value {
    let part = jwt.split('.').next().expect("a JWT");
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

pub fn random_email() -> String {
    format!(
        "user-{}@example.com",
        &OpaqueToken::generate().expose()[..10].to_lowercase().replace(['-', '_'], "x")
    )
}
