//! The scenarios: whole flows against the API, driven by `concurrency` workers for a while.
//!
//! Each worker runs one flow after another on a keep-alive connection and records each step's
//! latency in its own histograms; they are merged at the end, so recording takes no lock.

use crate::http::{Answer, Body, Http, form_encode, path_of, query_param};
use crate::stats::Recorder;
use hyper::header::HeaderValue;
use hyper::{Method, StatusCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// (a) Complete sign-in by link: create (no e-mail), press the landing page's button, exchange.
    LinkSignIn,
    /// (b) Complete sign-in by code: create (no e-mail), the e-mail OTP grant.
    CodeSignIn,
    /// (c) Link creation with the e-mail queued in the outbox and delivered to the SMTP sink.
    LinkWithMail,
    /// (d) The token endpoint alone, on codes made before the timed window.
    Token,
    /// (e) The key set.
    Jwks,
    /// (e) The discovery document.
    Discovery,
    /// (f) Views of landing pages: a link created without e-mail, then its page fetched
    /// `VIEWS_PER_LINK` times, as mail scanners and people do (each view is recorded).
    LandingViews,
}

/// How many times scenario (f) fetches each link's page.
const VIEWS_PER_LINK: usize = 5;

impl Scenario {
    /// `a,b,c,d,e` (and `e-jwks`, `e-discovery` for one half of e) to scenarios, in order given.
    pub fn parse_list(text: &str) -> Result<Vec<Scenario>, String> {
        let mut out = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let more: &[Scenario] = match part.to_ascii_lowercase().as_str() {
                "a" | "link" => &[Self::LinkSignIn],
                "b" | "code" => &[Self::CodeSignIn],
                "c" | "mail" => &[Self::LinkWithMail],
                "d" | "token" => &[Self::Token],
                "e" => &[Self::Jwks, Self::Discovery],
                "e-jwks" | "jwks" => &[Self::Jwks],
                "e-discovery" | "discovery" => &[Self::Discovery],
                "f" | "views" => &[Self::LandingViews],
                other => return Err(format!("unknown scenario {other:?} (use a, b, c, d, e, f)")),
            };
            for s in more {
                if !out.contains(s) {
                    out.push(*s);
                }
            }
        }
        if out.is_empty() {
            return Err("no scenario given".into());
        }
        Ok(out)
    }

    pub fn id(self) -> &'static str {
        match self {
            Self::LinkSignIn => "a",
            Self::CodeSignIn => "b",
            Self::LinkWithMail => "c",
            Self::Token => "d",
            Self::Jwks => "e-jwks",
            Self::Discovery => "e-discovery",
            Self::LandingViews => "f",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Self::LinkSignIn => "sign-in by link (create, landing POST, token)",
            Self::CodeSignIn => "sign-in by code (create, e-mail OTP grant)",
            Self::LinkWithMail => "link creation with e-mail through the outbox",
            Self::Token => "token endpoint alone (authorization_code)",
            Self::Jwks => "GET /oauth/jwks",
            Self::Discovery => "GET /.well-known/openid-configuration",
            Self::LandingViews => "landing page views (create without e-mail, then 5 GETs of its page)",
        }
    }

    pub fn steps(self) -> &'static [&'static str] {
        match self {
            Self::LinkSignIn => &["create", "landing", "token"],
            Self::CodeSignIn => &["create", "otp_token"],
            Self::LinkWithMail => &["create_send"],
            Self::Token => &["token"],
            Self::Jwks => &["jwks"],
            Self::Discovery => &["discovery"],
            Self::LandingViews => &["create", "view"],
        }
    }

    /// Whether a short untimed warm-up run is harmless (it must not use up or queue anything
    /// that the timed window counts).
    pub fn warms_up(self) -> bool {
        matches!(
            self,
            Self::LinkSignIn | Self::CodeSignIn | Self::Jwks | Self::Discovery | Self::LandingViews
        )
    }
}

/// What the workers share: the client, the application's credentials, the codes of (d).
pub struct Context {
    pub http: Http,
    pub client_auth: HeaderValue,
    /// Makes e-mail addresses unique across runs against one database.
    pub tag: String,
    /// Authorization codes made before scenario (d)'s timed window.
    pub codes: Mutex<Vec<String>>,
    /// Set when scenario (b) learns that the server lacks the e-mail OTP grant.
    pub otp_unsupported: AtomicBool,
    /// Scenario (c) tells the SMTP sink when each message's request started.
    pub mail: Option<crate::sink::Expectations>,
}

const OTP_GRANT: &str = "urn:latchkey:params:oauth:grant-type:email-otp";

/// How one flow ended.
enum Flow {
    Done,
    Failed,
    /// Nothing left to do (scenario (d) ran out of codes).
    Exhausted,
}

/// The measurements of one run.
pub struct LoadResult {
    pub recorder: Recorder,
    pub elapsed: Duration,
}

/// Runs `scenario` with `concurrency` workers until `duration` has passed (or, for (d), the
/// codes ran out). A flow in flight at the deadline is finished and counted.
pub async fn run_load(
    ctx: Arc<Context>,
    scenario: Scenario,
    concurrency: usize,
    duration: Duration,
) -> LoadResult {
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = Vec::with_capacity(concurrency);
    for worker in 0..concurrency {
        let ctx = ctx.clone();
        workers.push(tokio::spawn(async move {
            let mut recorder = Recorder::new(scenario.steps());
            let mut seq = 0u64;
            while Instant::now() < deadline {
                seq += 1;
                match flow(&ctx, scenario, worker, seq, &mut recorder).await {
                    Flow::Done => recorder.flows += 1,
                    Flow::Failed => recorder.failed_flows += 1,
                    Flow::Exhausted => break,
                }
            }
            recorder
        }));
    }
    let mut total = Recorder::new(scenario.steps());
    for worker in workers {
        if let Ok(recorder) = worker.await {
            total.merge(&recorder);
        }
    }
    LoadResult { recorder: total, elapsed: started.elapsed() }
}

/// Runs a single flow (to learn whether the server supports a scenario at all).
pub async fn run_once(ctx: &Context, scenario: Scenario) -> Recorder {
    let mut recorder = Recorder::new(scenario.steps());
    match flow(ctx, scenario, usize::MAX, 0, &mut recorder).await {
        Flow::Done => recorder.flows += 1,
        Flow::Failed | Flow::Exhausted => recorder.failed_flows += 1,
    }
    recorder
}

/// Runs one timed request as step `step` of the recorder; returns its answer if it had the
/// expected status, else records an error.
async fn step(
    recorder: &mut Recorder,
    index: usize,
    expected: StatusCode,
    request: impl Future<Output = anyhow::Result<Answer>>,
) -> Option<Answer> {
    let started = Instant::now();
    let result = request.await;
    let latency = started.elapsed();
    let stats = &mut recorder.steps[index];
    match result {
        Ok(answer) if answer.status == expected => {
            stats.record(latency);
            Some(answer)
        }
        Ok(answer) => {
            stats.error(answer.describe());
            None
        }
        Err(e) => {
            stats.error(format!("{e:#}"));
            None
        }
    }
}

fn email(ctx: &Context, worker: usize, seq: u64) -> String {
    format!("{}-{worker}-{seq}@bench.example", ctx.tag)
}

async fn create_link(
    ctx: &Context,
    recorder: &mut Recorder,
    index: usize,
    address: &str,
    send_email: bool,
) -> Option<serde_json::Value> {
    let body = serde_json::json!({ "email": address, "send_email": send_email }).to_string();
    let request = ctx.http.send(Method::POST, "/v1/magic-links", Some(&ctx.client_auth), Body::Json(body));
    let answer = step(recorder, index, StatusCode::CREATED, request).await?;
    let json = answer.json();
    if json.is_none() {
        recorder.steps[index].error(format!("not JSON: {}", answer.describe()));
    }
    json
}

/// Presses the landing page's button; returns the authorization code from the redirect.
async fn press_link(ctx: &Context, recorder: &mut Recorder, index: usize, link: &str) -> Option<String> {
    let request = ctx.http.send(Method::POST, path_of(link), None, Body::Empty);
    let answer = step(recorder, index, StatusCode::SEE_OTHER, request).await?;
    let code = answer.location.as_deref().and_then(|l| query_param(l, "code")).map(str::to_owned);
    if code.is_none() {
        recorder.steps[index].error(format!("no code in the redirect {:?}", answer.location));
    }
    code
}

async fn exchange(ctx: &Context, recorder: &mut Recorder, index: usize, code: &str) -> bool {
    let form = format!("grant_type=authorization_code&code={}", form_encode(code));
    let request = ctx.http.send(Method::POST, "/oauth/token", Some(&ctx.client_auth), Body::Form(form));
    step(recorder, index, StatusCode::OK, request).await.is_some()
}

/// Makes one authorization code: a link created without e-mail, and its button pressed.
/// Used to prepare scenario (d); its timings go to a recorder of its own.
pub async fn make_code(ctx: &Context, recorder: &mut Recorder, worker: usize, seq: u64) -> Option<String> {
    let address = email(ctx, worker, seq);
    let created = create_link(ctx, recorder, 0, &address, false).await?;
    let link = created.get("link").and_then(|l| l.as_str())?.to_owned();
    press_link(ctx, recorder, 1, &link).await
}

async fn flow(ctx: &Context, scenario: Scenario, worker: usize, seq: u64, recorder: &mut Recorder) -> Flow {
    let ok = match scenario {
        Scenario::LinkSignIn => async {
            let address = email(ctx, worker, seq);
            let created = create_link(ctx, recorder, 0, &address, false).await?;
            let Some(link) = created.get("link").and_then(|l| l.as_str()) else {
                recorder.steps[0].error("no link in the answer".into());
                return None;
            };
            let code = press_link(ctx, recorder, 1, link).await?;
            exchange(ctx, recorder, 2, &code).await.then_some(())
        }
        .await
        .is_some(),
        Scenario::CodeSignIn => async {
            let address = email(ctx, worker, seq);
            let created = create_link(ctx, recorder, 0, &address, false).await?;
            let Some(otp) = created.get("otp").and_then(|l| l.as_str()) else {
                recorder.steps[0].error("no otp in the answer".into());
                return None;
            };
            let form = format!(
                "grant_type={}&email={}&otp={}",
                form_encode(OTP_GRANT),
                form_encode(&address),
                form_encode(otp)
            );
            let request =
                ctx.http.send(Method::POST, "/oauth/token", Some(&ctx.client_auth), Body::Form(form));
            let started = Instant::now();
            let result = request.await;
            let latency = started.elapsed();
            match result {
                Ok(a) if a.status == StatusCode::OK => {
                    recorder.steps[1].record(latency);
                    Some(())
                }
                Ok(a) if String::from_utf8_lossy(&a.body).contains("unsupported_grant_type") => {
                    ctx.otp_unsupported.store(true, Ordering::Relaxed);
                    recorder.steps[1].error(a.describe());
                    None
                }
                Ok(a) => {
                    recorder.steps[1].error(a.describe());
                    None
                }
                Err(e) => {
                    recorder.steps[1].error(format!("{e:#}"));
                    None
                }
            }
        }
        .await
        .is_some(),
        Scenario::LinkWithMail => {
            let address = email(ctx, worker, seq);
            if let Some(mail) = &ctx.mail {
                mail.expect(&address, Instant::now());
            }
            create_link(ctx, recorder, 0, &address, true).await.is_some()
        }
        Scenario::Token => {
            let code = ctx.codes.lock().expect("codes lock").pop();
            let Some(code) = code else { return Flow::Exhausted };
            exchange(ctx, recorder, 0, &code).await
        }
        Scenario::LandingViews => async {
            let address = email(ctx, worker, seq);
            let created = create_link(ctx, recorder, 0, &address, false).await?;
            let Some(link) = created.get("link").and_then(|l| l.as_str()) else {
                recorder.steps[0].error("no link in the answer".into());
                return None;
            };
            let path = path_of(link).to_owned();
            for _ in 0..VIEWS_PER_LINK {
                step(recorder, 1, StatusCode::OK, ctx.http.get(&path)).await?;
            }
            Some(())
        }
        .await
        .is_some(),
        Scenario::Jwks => step(recorder, 0, StatusCode::OK, ctx.http.get("/oauth/jwks")).await.is_some(),
        Scenario::Discovery => {
            step(recorder, 0, StatusCode::OK, ctx.http.get("/.well-known/openid-configuration"))
                .await
                .is_some()
        }
    };
    if ok { Flow::Done } else { Flow::Failed }
}

/// Prepares scenario (d): makes up to `count` codes with `concurrency` workers, for at most
/// `limit` (codes live five minutes, so they must be used soon). Returns how long it took.
pub async fn prepare_codes(ctx: Arc<Context>, concurrency: usize, count: usize, limit: Duration) -> Duration {
    let started = Instant::now();
    let deadline = started + limit;
    let made = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for worker in 0..concurrency {
        let ctx = ctx.clone();
        let made = made.clone();
        workers.push(tokio::spawn(async move {
            let mut recorder = Recorder::new(&["create", "landing"]);
            let mut seq = 0u64;
            let mut failures = 0u32;
            // Worker numbers past the timed runs' keep the addresses apart.
            let worker = worker + 1_000_000;
            while Instant::now() < deadline && made.fetch_add(1, Ordering::Relaxed) < count {
                seq += 1;
                match make_code(&ctx, &mut recorder, worker, seq).await {
                    Some(code) => ctx.codes.lock().expect("codes lock").push(code),
                    None => {
                        made.fetch_sub(1, Ordering::Relaxed);
                        failures += 1;
                        if failures > 100 {
                            return;
                        }
                    }
                }
            }
        }));
    }
    for worker in workers {
        let _ = worker.await;
    }
    started.elapsed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_lists() {
        let all = Scenario::parse_list("a,b,c,d,e").unwrap();
        assert_eq!(all.len(), 6);
        assert_eq!(all[5], Scenario::Discovery);
        assert_eq!(Scenario::parse_list("e-jwks, a, a").unwrap(), vec![Scenario::Jwks, Scenario::LinkSignIn]);
        assert!(Scenario::parse_list("z").is_err());
        assert!(Scenario::parse_list("").is_err());
    }
}
