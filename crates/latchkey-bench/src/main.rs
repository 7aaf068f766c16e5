//! `latchkey-bench`: starts the real server (or targets a running one), creates an
//! application, drives whole flows with a chosen concurrency for a chosen time, and reports
//! flows per second, per-step latency percentiles, errors, and the server's CPU time and
//! memory, as a table and as JSON. See docs/benchmarks.md.

mod http;
mod report;
mod scenarios;
mod seed;
mod server;
mod sink;
mod stats;

use anyhow::{Context as _, bail};
use clap::Parser;
use hyper::{Method, StatusCode};
use report::{Delivery, LabelledStart, RunReport, ScenarioReport, ServerUse};
use scenarios::{Context, Scenario};
use server::{Database, Machine, ServerConfig, ServerProcess, Start};
use sink::CountingSink;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Benchmark Latchkey: whole sign-in flows against a real server, with its CPU and memory.
///
/// By default it starts `latchkey serve` (the release binary beside this one; build both
/// with `cargo build --release -p latchkey -p latchkey-bench`) on a fresh SQLite file, with an
/// SMTP sink of its own, and runs every scenario for 10 s at concurrency 64.
#[derive(Parser)]
#[command(name = "latchkey-bench", version)]
struct Args {
    /// Scenarios, comma-separated: a (sign-in by link), b (by code), c (link with e-mail
    /// through the outbox), d (token endpoint alone), e (JWKS and discovery; or e-jwks,
    /// e-discovery).
    #[arg(long, default_value = "a,b,c,d,e")]
    scenarios: String,
    /// Concurrent flows; a comma-separated list runs each scenario at each.
    #[arg(long, value_delimiter = ',', default_value = "64")]
    concurrency: Vec<usize>,
    /// The timed window of each run (`10s`, `500ms`, `1m`).
    #[arg(long, default_value = "10s", value_parser = stats::parse_duration)]
    duration: Duration,
    /// An untimed run before each timed one (not for c and d, which would skew their counts).
    #[arg(long, default_value = "1s", value_parser = stats::parse_duration)]
    warmup: Duration,
    /// Runs of each scenario at each concurrency.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// `postgres://…` for a fresh database on that server (created and dropped), or
    /// `sqlite://PATH`; default: a SQLite file in a temporary folder.
    #[arg(long)]
    database_url: Option<String>,
    /// The server binary; default: `latchkey` beside this program.
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Fill the database with this many old challenges before measuring (`1M`, `10M`); a
    /// comma-separated list grows the table step by step and measures at each size.
    #[arg(long, value_delimiter = ',', default_value = "0", value_parser = parse_count)]
    seed_challenges: Vec<u64>,
    /// Authorization codes made before scenario (d)'s window; it ends early if they run out.
    #[arg(long, default_value_t = 40_000)]
    token_codes: usize,
    /// How long scenario (c) waits for the outbox to deliver everything.
    #[arg(long, default_value = "120s", value_parser = stats::parse_duration)]
    mail_timeout: Duration,
    /// Target a running server instead of starting one (its CPU and memory are read only
    /// with --pid). Scenario (c) then needs that server to deliver to --smtp-sink-port.
    #[arg(long, requires = "admin_token")]
    url: Option<String>,
    /// The process id of the server given with --url, to read its CPU time and memory.
    #[arg(long, requires = "url")]
    pid: Option<u32>,
    /// The admin token of the server given with --url.
    #[arg(long)]
    admin_token: Option<String>,
    /// Port of the bench's SMTP sink (default: any free port); for --url, point the server's
    /// LATCHKEY_SMTP_URL at smtp+plain://127.0.0.1:PORT.
    #[arg(long)]
    smtp_sink_port: Option<u16>,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Keep the database (and the server's log) instead of removing them.
    #[arg(long)]
    keep: bool,
}

/// `1000`, `10k`, `1M`, `1_000_000`.
fn parse_count(text: &str) -> Result<u64, String> {
    let clean: String = text.trim().chars().filter(|c| *c != '_').collect();
    let (number, factor) = match clean.chars().last() {
        Some('k' | 'K') => (&clean[..clean.len() - 1], 1_000.0),
        Some('m' | 'M') => (&clean[..clean.len() - 1], 1_000_000.0),
        _ => (clean.as_str(), 1.0),
    };
    let value: f64 = number.parse().map_err(|_| format!("not a count: {text:?}"))?;
    if !(value.is_finite() && value >= 0.0) {
        return Err(format!("not a count: {text:?}"));
    }
    Ok((value * factor).round() as u64)
}

/// The server under test: one the bench started, or one it was pointed at.
struct Target {
    own: Option<OwnServer>,
    base_url: String,
    pid: Option<u32>,
    admin_token: String,
    engine: String,
    description: String,
}

struct OwnServer {
    database: Database,
    config: ServerConfig,
    process: Option<ServerProcess>,
}

impl Target {
    async fn start(
        args: &Args,
        sink: &CountingSink,
        starts: &mut Vec<LabelledStart>,
    ) -> anyhow::Result<Self> {
        if let Some(url) = &args.url {
            let admin_token = args.admin_token.clone().context("--url needs --admin-token")?;
            return Ok(Self {
                own: None,
                base_url: url.trim_end_matches('/').to_owned(),
                pid: args.pid,
                admin_token,
                engine: "unknown (--url)".into(),
                description: url.clone(),
            });
        }
        let binary = match &args.server_bin {
            Some(path) => path.clone(),
            None => std::env::current_exe()?.parent().context("no folder for this program")?.join("latchkey"),
        };
        let database = Database::prepare(args.database_url.as_deref(), args.keep).await?;
        let log = match &database {
            Database::Sqlite { path, .. } => path.with_extension("log"),
            Database::Postgres { name, .. } => std::env::temp_dir().join(format!("{name}.log")),
        };
        eprintln!(
            "server: {} on {}; its log: {}",
            binary.display(),
            server::redact(&database.url()),
            log.display()
        );
        let config = ServerConfig {
            binary: binary.clone(),
            database_url: database.url(),
            smtp_url: sink.url(),
            admin_token: format!("bench-admin-{}", std::process::id()),
            secret_key: "latchkey-bench-master-secret-0123456789abcdef".into(),
            log,
        };
        let engine = database.engine().to_owned();
        let mut target = Self {
            own: Some(OwnServer { database, config, process: None }),
            base_url: String::new(),
            pid: None,
            admin_token: String::new(),
            engine,
            description: binary.display().to_string(),
        };
        target.admin_token = target.own.as_ref().map(|o| o.config.admin_token.clone()).unwrap_or_default();
        starts.push(target.spawn("fresh database", 0).await?);
        Ok(target)
    }

    /// Starts the bench's own server and measures the start.
    async fn spawn(&mut self, label: &str, seeded: u64) -> anyhow::Result<LabelledStart> {
        let own = self.own.as_mut().context("not the bench's own server")?;
        let (process, took) = ServerProcess::spawn(&own.config).await?;
        self.base_url = process.base_url.clone();
        self.pid = Some(process.pid());
        let pid = process.pid();
        own.process = Some(process);
        // Let start-up work (migrations, key loading, the worker's first poll) settle.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let idle_rss_mb = server::sample(pid).map(|s| s.rss_mb).unwrap_or(0.0);
        let start = Start {
            start_to_healthy_ms: took.as_secs_f64() * 1000.0,
            idle_rss_mb,
            seeded_challenges: seeded,
            database_bytes: own.database.size_bytes().await,
            database_cached_bytes: own.database.cached_bytes(),
        };
        eprintln!(
            "server started ({label}): healthy after {:.1} ms, idle RSS {:.1} MB",
            start.start_to_healthy_ms, start.idle_rss_mb
        );
        Ok(LabelledStart { label: label.to_owned(), start })
    }

    fn stop(&mut self) {
        if let Some(own) = self.own.as_mut()
            && let Some(mut process) = own.process.take()
        {
            process.stop();
        }
    }
}

/// The bench's application.
struct Application {
    id: String,
    client_id: String,
    client_secret: String,
}

async fn create_application(http: &http::Http, admin_token: &str) -> anyhow::Result<Application> {
    let body =
        serde_json::json!({ "name": "bench", "redirect_uris": ["https://bench.example/cb"] }).to_string();
    let auth = http::bearer(admin_token)?;
    let answer = http.send(Method::POST, "/v1/applications", Some(&auth), http::Body::Json(body)).await?;
    if answer.status != StatusCode::CREATED && answer.status != StatusCode::OK {
        bail!("creating the application failed: {}", answer.describe());
    }
    let json = answer.json().context("the application answer is not JSON")?;
    let field = |name: &str| -> anyhow::Result<String> {
        json.get(name)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .with_context(|| format!("no {name} in the application answer: {json}"))
    };
    Ok(Application {
        id: field("id")?,
        client_id: field("client_id")?,
        client_secret: field("client_secret")?,
    })
}

fn unix_now() -> Duration {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default()
}

struct Bench {
    args: Args,
    http: http::Http,
    client_auth: hyper::header::HeaderValue,
    tag: String,
    runs: usize,
    mail: sink::Expectations,
}

impl Bench {
    fn context(&mut self) -> Arc<Context> {
        self.runs += 1;
        Arc::new(Context {
            http: self.http.clone(),
            client_auth: self.client_auth.clone(),
            tag: format!("{}-{}", self.tag, self.runs),
            codes: Default::default(),
            otp_unsupported: AtomicBool::new(false),
            mail: Some(self.mail.clone()),
        })
    }

    async fn run(
        &mut self,
        target: &Target,
        sink: &CountingSink,
        scenario: Scenario,
        concurrency: usize,
        seeded: u64,
        repeat: usize,
    ) -> ScenarioReport {
        let duration = self.args.duration;
        let mut note = None;
        let mut report = ScenarioReport {
            scenario: scenario.id(),
            title: scenario.title(),
            engine: target.engine.clone(),
            concurrency,
            seeded_challenges: seeded,
            repeat,
            status: "ok",
            note: None,
            elapsed_seconds: 0.0,
            flows: 0,
            failed_flows: 0,
            flows_per_second: 0.0,
            errors: 0,
            steps: Vec::new(),
            server: None,
            bench_cpu_seconds: 0.0,
            other_load_cores: None,
            interrupt_cores: None,
            delivery: None,
        };

        if scenario == Scenario::CodeSignIn {
            let probe = self.context();
            let recorder = scenarios::run_once(&probe, scenario).await;
            if probe.otp_unsupported.load(Ordering::Relaxed) {
                report.status = "unavailable";
                let answer = recorder.steps[1].error_samples.first().cloned().unwrap_or_default();
                report.note =
                    Some(format!("the server does not support the e-mail OTP grant yet ({answer})"));
                return report;
            }
        }
        let ctx = self.context();
        if scenario.warms_up() && !self.args.warmup.is_zero() {
            scenarios::run_load(ctx.clone(), scenario, concurrency, self.args.warmup).await;
        }
        if scenario == Scenario::Token {
            let want = self.args.token_codes;
            let took =
                scenarios::prepare_codes(ctx.clone(), concurrency.max(8), want, Duration::from_secs(90))
                    .await;
            let made = ctx.codes.lock().expect("codes lock").len();
            eprintln!("  prepared {made} authorization codes in {:.1} s", took.as_secs_f64());
            if made == 0 {
                report.status = "failed";
                report.note = Some("no authorization code could be made (see scenario a)".into());
                return report;
            }
        }

        let server_before = target.pid.and_then(server::sample);
        let bench_before = server::sample(std::process::id());
        let machine_before = server::machine_sample();
        let sink_before = sink.received();
        let _ = sink.take_request_to_accept();
        let window_start = Instant::now();
        let result = scenarios::run_load(ctx.clone(), scenario, concurrency, duration).await;
        let window_end = Instant::now();

        if scenario == Scenario::LinkWithMail {
            let queued = result.recorder.steps[0].summary(result.elapsed).count;
            let delivered_in_window = sink.received() - sink_before;
            let backlog = queue_at(&self.http, &target.admin_token).await;
            let total = sink.wait_for(sink_before + queued, self.args.mail_timeout).await;
            let delivered = total - sink_before;
            let last = sink.last_arrival().max(window_end);
            let span = last.duration_since(window_start).as_secs_f64().max(1e-9);
            report.delivery = Some(Delivery {
                queued,
                delivered,
                delivered_in_window,
                drain_seconds: last.duration_since(window_end).as_secs_f64(),
                per_second: delivered as f64 / span,
                per_second_in_window: delivered_in_window as f64
                    / window_end.duration_since(window_start).as_secs_f64().max(1e-9),
                queue_depth_at_window_end: backlog.map(|b| b.0),
                queue_oldest_seconds_at_window_end: backlog.map(|b| b.1),
                request_to_accept: latency_summary(&sink.take_request_to_accept()),
            });
            if delivered < queued {
                note = Some(format!(
                    "only {delivered} of {queued} e-mails arrived within {:?}",
                    self.args.mail_timeout
                ));
            } else {
                note = Some("server CPU includes delivering the queued e-mails after the window".into());
            }
        }

        let elapsed = result.elapsed;
        let server_after = target.pid.and_then(server::sample);
        let bench_after = server::sample(std::process::id());
        let machine_after = server::machine_sample();
        let window = window_start.elapsed().as_secs_f64().max(1e-9);
        let recorder = result.recorder;
        report.elapsed_seconds = elapsed.as_secs_f64();
        report.flows = recorder.flows;
        report.failed_flows = recorder.failed_flows;
        report.flows_per_second = recorder.flows as f64 / elapsed.as_secs_f64().max(1e-9);
        report.errors = recorder.errors();
        report.steps = recorder.steps.iter().map(|s| s.summary(elapsed)).collect();
        if let (Some(b), Some(a)) = (server_before, server_after) {
            let cpu = a.cpu_seconds - b.cpu_seconds;
            let per_flow = |seconds: f64| {
                if recorder.flows > 0 { seconds * 1000.0 / recorder.flows as f64 } else { 0.0 }
            };
            report.server = Some(ServerUse {
                cpu_seconds: cpu,
                cpu_cores: cpu / window,
                cpu_ms_per_flow: per_flow(cpu),
                store_thread_ms_per_flow: per_flow(a.store_thread_seconds - b.store_thread_seconds),
                rss_mb: a.rss_mb,
                peak_rss_mb: a.peak_rss_mb,
            });
        }
        if let (Some(b), Some(a)) = (bench_before, bench_after) {
            report.bench_cpu_seconds = a.cpu_seconds - b.cpu_seconds;
        }
        if let (Some(b), Some(a), Some(server)) = (machine_before, machine_after, &report.server) {
            // Over the whole measured span (for c, until the outbox drained).
            let others =
                (a.process_seconds - b.process_seconds) - server.cpu_seconds - report.bench_cpu_seconds;
            report.other_load_cores = Some((others / window).max(0.0));
            report.interrupt_cores = Some((a.interrupt_seconds - b.interrupt_seconds) / window);
        }
        if scenario == Scenario::Token && elapsed < duration.mul_f64(0.95) {
            note = Some(format!(
                "the {} prepared codes ran out after {:.1} s (raise --token-codes)",
                recorder.flows + recorder.failed_flows,
                elapsed.as_secs_f64()
            ));
        }
        report.note = note;
        report
    }
}

/// The outbox's depth and its oldest message's age, from the server's `/metrics` (which reads
/// them from the database when scraped).
async fn queue_at(http: &http::Http, admin_token: &str) -> Option<(u64, f64)> {
    let auth = http::bearer(admin_token).ok()?;
    let answer = http.send(hyper::Method::GET, "/metrics", Some(&auth), http::Body::Empty).await.ok()?;
    let text = String::from_utf8_lossy(&answer.body);
    let gauge = |name: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name).filter(|rest| rest.starts_with(' ')))
            .and_then(|rest| rest.trim().parse().ok())
    };
    Some((gauge("latchkey_mail_queue_depth")? as u64, gauge("latchkey_mail_queue_oldest_age_seconds")?))
}

fn latency_summary(h: &hdrhistogram::Histogram<u64>) -> Option<report::Latency> {
    (!h.is_empty()).then(|| report::Latency {
        count: h.len(),
        p50_ms: h.value_at_quantile(0.50) as f64 / 1000.0,
        p90_ms: h.value_at_quantile(0.90) as f64 / 1000.0,
        p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
        max_ms: h.max() as f64 / 1000.0,
    })
}

fn write_json(path: &std::path::Path, report: &RunReport) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let scenarios = Scenario::parse_list(&args.scenarios).map_err(anyhow::Error::msg)?;
    if args.concurrency.contains(&0) {
        bail!("--concurrency must be at least 1");
    }
    let mut levels = args.seed_challenges.clone();
    levels.sort_unstable();
    levels.dedup();
    if args.url.is_some() && levels.iter().any(|&n| n > 0) {
        bail!(
            "--seed-challenges needs the bench's own server (not --url): it writes to the database directly"
        );
    }

    // Ctrl-C: stop the server we started rather than leave it running.
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            let pid = server::CURRENT_PID.load(Ordering::SeqCst);
            if pid != 0 {
                server::terminate(pid);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            if let Some(dir) = server::TEMPORARY_DIR.lock().expect("lock").take() {
                let _ = std::fs::remove_dir_all(dir);
            }
            eprintln!("interrupted");
            std::process::exit(130);
        }
    });

    let sink = match args.smtp_sink_port {
        Some(port) => CountingSink::start_on(port).await?,
        None => CountingSink::start().await?,
    };
    let mut starts = Vec::new();
    let mut target = Target::start(&args, &sink, &mut starts).await?;
    let max_concurrency = args.concurrency.iter().copied().max().unwrap_or(1);
    let http = http::Http::new(&target.base_url, max_concurrency);
    let app = create_application(&http, &target.admin_token).await?;
    let now = unix_now();
    let mut report = RunReport {
        tool: "latchkey-bench",
        version: env!("CARGO_PKG_VERSION"),
        started_at: now.as_secs(),
        machine: Machine::describe(),
        engine: target.engine.clone(),
        target: target.description.clone(),
        command_line: std::env::args().collect::<Vec<_>>().join(" "),
        duration_seconds: args.duration.as_secs_f64(),
        starts: Vec::new(),
        results: Vec::new(),
    };
    let mut bench = Bench {
        http,
        client_auth: http::basic(&app.client_id, &app.client_secret),
        tag: format!("b{}x{}", now.as_secs(), std::process::id()),
        runs: 0,
        mail: sink.expectations(),
        args,
    };

    // Start again on the database that now holds the application: the usual restart.
    if target.own.is_some() {
        target.stop();
        starts.push(target.spawn("existing database", 0).await?);
        bench.http = http::Http::new(&target.base_url, max_concurrency);
    }
    report.starts = starts.clone();

    let origin_ms = seed::origin_ms(now.as_millis() as i64, levels.iter().copied().max().unwrap_or(0));
    let mut seeded = 0u64;
    let outcome: anyhow::Result<()> = async {
        for &level in &levels {
            if level > seeded {
                let own = target.own.as_ref().context("seeding needs the bench's own server")?;
                eprintln!("seeding challenges {seeded}..{level} into {}", own.database.engine());
                target.stop();
                let took = seed::seed(
                    &target.own.as_ref().expect("own").database,
                    &app.id,
                    origin_ms,
                    seeded,
                    level,
                )
                .await?;
                eprintln!("seeded {} challenges in {:.1} s", level - seeded, took.as_secs_f64());
                seeded = level;
                let start =
                    target.spawn(&format!("existing database, {seeded} seeded challenges"), seeded).await?;
                report.starts.push(start);
                bench.http = http::Http::new(&target.base_url, max_concurrency);
            }
            for &concurrency in &bench.args.concurrency.clone() {
                for &scenario in &scenarios {
                    for repeat in 1..=bench.args.repeat {
                        let result = bench.run(&target, &sink, scenario, concurrency, seeded, repeat).await;
                        report::print_scenario(&result);
                        report.results.push(result);
                        if let Some(path) = &bench.args.json {
                            write_json(path, &report)?;
                        }
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                }
            }
        }
        Ok(())
    }
    .await;

    report::print_summary(&report);
    if let Some(path) = &bench.args.json {
        write_json(path, &report)?;
        eprintln!("JSON written to {}", path.display());
    }
    target.stop();
    if let Some(own) = target.own.take() {
        let keep = bench.args.keep;
        if !keep && let Database::Postgres { .. } = own.database {
            let _ = std::fs::remove_file(&own.config.log);
        }
        if let Err(e) = own.database.remove(keep).await {
            eprintln!("warning: could not remove the database: {e:#}");
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        assert_eq!(parse_count("1M"), Ok(1_000_000));
        assert_eq!(parse_count("2.5k"), Ok(2_500));
        assert_eq!(parse_count("10_000_000"), Ok(10_000_000));
        assert_eq!(parse_count("0"), Ok(0));
        assert!(parse_count("lots").is_err());
    }

    #[test]
    fn arguments_parse() {
        let args = Args::try_parse_from([
            "latchkey-bench",
            "--scenarios",
            "a",
            "--concurrency",
            "1,8,64,256",
            "--seed-challenges",
            "0,1M",
            "--duration",
            "5s",
        ])
        .unwrap();
        assert_eq!(args.concurrency, vec![1, 8, 64, 256]);
        assert_eq!(args.seed_challenges, vec![0, 1_000_000]);
        assert_eq!(args.duration, Duration::from_secs(5));
    }
}
