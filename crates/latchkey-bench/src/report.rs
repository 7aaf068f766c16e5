//! What a run found, as a readable table and as JSON with the same data.

use crate::server::{Machine, Start};
use crate::stats::StepSummary;
use serde::Serialize;

/// The server's use of the machine during one timed window.
#[derive(Debug, Clone, Serialize)]
pub struct ServerUse {
    /// utime + stime spent in the window, in seconds.
    pub cpu_seconds: f64,
    /// The same divided by the window: how many cores the server kept busy.
    pub cpu_cores: f64,
    /// Server CPU per completed flow, in milliseconds.
    pub cpu_ms_per_flow: f64,
    /// Of that, the SQLite writer's and checkpointer's threads (0 on PostgreSQL).
    pub store_thread_ms_per_flow: f64,
    /// Resident memory at the end of the window.
    pub rss_mb: f64,
    /// VmHWM at the end of the window: the peak since the server started (cumulative).
    pub peak_rss_mb: f64,
}

/// Scenario (c): what reached the SMTP sink.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// Links created (each queued one e-mail).
    pub queued: u64,
    pub delivered: u64,
    /// Delivered before the creation window closed.
    pub delivered_in_window: u64,
    /// From the end of the creation window to the last delivery.
    pub drain_seconds: f64,
    /// Delivered messages per second, from the window's start to the last delivery.
    pub per_second: f64,
    /// Delivered during the window, per second of the window.
    pub per_second_in_window: f64,
    /// Messages still queued when the window closed, from the server's `/metrics`.
    pub queue_depth_at_window_end: Option<u64>,
    /// How long the oldest of them had waited, in seconds.
    pub queue_oldest_seconds_at_window_end: Option<f64>,
    /// From the start of the request that queued a message to the sink's `250` for it (the
    /// messages of the window, however late they arrived).
    pub request_to_accept: Option<Latency>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub scenario: &'static str,
    pub title: &'static str,
    pub engine: String,
    pub concurrency: usize,
    /// Challenges seeded into the database before this run (besides those of earlier runs).
    pub seeded_challenges: u64,
    /// 1-based, with `--repeat`.
    pub repeat: usize,
    /// `ok`, or `unavailable` when the server lacks what the scenario needs.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub elapsed_seconds: f64,
    pub flows: u64,
    pub failed_flows: u64,
    pub flows_per_second: f64,
    /// Requests of any step that did not get the expected answer.
    pub errors: u64,
    pub steps: Vec<StepSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerUse>,
    /// The bench's own CPU in the window (it shares the machine with the server).
    pub bench_cpu_seconds: f64,
    /// Cores that other processes (other builds and tests on the machine) kept busy during
    /// the window: all processes' CPU time less the server's and the bench's, over the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_load_cores: Option<f64>,
    /// Cores spent in interrupts and softirqs (mostly the loopback traffic itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupt_cores: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
}

impl ScenarioReport {
    /// The slowest p99 of the scenario's steps.
    pub fn worst_p99_ms(&self) -> f64 {
        self.steps.iter().map(|s| s.p99_ms).fold(0.0, f64::max)
    }
}

/// A labelled server start.
#[derive(Debug, Clone, Serialize)]
pub struct LabelledStart {
    pub label: String,
    #[serde(flatten)]
    pub start: Start,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub tool: &'static str,
    pub version: &'static str,
    /// Seconds since the Unix epoch.
    pub started_at: u64,
    pub machine: Machine,
    pub engine: String,
    /// The server binary started, or the URL given with `--url`.
    pub target: String,
    pub command_line: String,
    pub duration_seconds: f64,
    pub starts: Vec<LabelledStart>,
    pub results: Vec<ScenarioReport>,
}

/// Prints one scenario's figures as soon as they are known.
pub fn print_scenario(r: &ScenarioReport) {
    println!();
    println!(
        "== {} · {} · {} · concurrency {} · {} seeded challenges{}",
        r.scenario,
        r.title,
        r.engine,
        r.concurrency,
        r.seeded_challenges,
        if r.repeat > 1 { format!(" · repeat {}", r.repeat) } else { String::new() }
    );
    if r.status != "ok" {
        println!("   {}: {}", r.status.to_uppercase(), r.note.as_deref().unwrap_or(""));
        return;
    }
    println!(
        "   {} flows in {:.1} s = {:.0} flows/s; {} failed flows, {} errors",
        r.flows, r.elapsed_seconds, r.flows_per_second, r.failed_flows, r.errors
    );
    if let Some(s) = &r.server {
        println!(
            "   server: CPU {:.2} s ({:.2} cores, {:.4} ms/flow, of which SQLite writer threads {:.4}), RSS {:.1} MB, peak RSS so far {:.1} MB",
            s.cpu_seconds,
            s.cpu_cores,
            s.cpu_ms_per_flow,
            s.store_thread_ms_per_flow,
            s.rss_mb,
            s.peak_rss_mb
        );
    }
    println!(
        "   bench CPU {:.2} s; other processes kept {} cores busy; interrupts (network) {} cores",
        r.bench_cpu_seconds,
        r.other_load_cores.map(|c| format!("{c:.2}")).unwrap_or_else(|| "?".into()),
        r.interrupt_cores.map(|c| format!("{c:.2}")).unwrap_or_else(|| "?".into())
    );
    if r.server.is_none() {
        println!("   (no server CPU or memory: give --pid with --url)");
    }
    if let Some(d) = &r.delivery {
        println!(
            "   delivery: {} of {} e-mails reached the sink ({} during the window), drained {:.2} s after it, {:.0} e-mails/s",
            d.delivered, d.queued, d.delivered_in_window, d.drain_seconds, d.per_second
        );
        let share = if d.queued > 0 { 100.0 * d.delivered_in_window as f64 / d.queued as f64 } else { 0.0 };
        println!(
            "   during the window: {:.0} e-mails/s delivered ({share:.1} % of those created); queue at its end: {} messages, oldest {} s",
            d.per_second_in_window,
            d.queue_depth_at_window_end.map(|n| n.to_string()).unwrap_or_else(|| "?".into()),
            d.queue_oldest_seconds_at_window_end.map(|s| format!("{s:.2}")).unwrap_or_else(|| "?".into()),
        );
        if let Some(l) = &d.request_to_accept {
            println!(
                "   request to the SMTP 250: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} messages)",
                l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms, l.count
            );
        }
    }
    if let Some(note) = &r.note {
        println!("   note: {note}");
    }
    println!(
        "   {:<12} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7}",
        "step", "ok", "per s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors"
    );
    for s in &r.steps {
        println!(
            "   {:<12} {:>9} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>7}",
            s.step, s.count, s.per_second, s.p50_ms, s.p90_ms, s.p99_ms, s.max_ms, s.errors
        );
        for sample in &s.error_samples {
            println!("   {:<12} error: {sample}", "");
        }
    }
}

/// The closing summary: one line per run.
pub fn print_summary(report: &RunReport) {
    println!();
    println!(
        "== Summary ({}, {} cores: server and load generator share them)",
        report.engine, report.machine.cpus
    );
    for s in &report.starts {
        println!(
            "   start ({}): healthy after {:.1} ms, idle RSS {:.1} MB, {} seeded challenges{}",
            s.label,
            s.start.start_to_healthy_ms,
            s.start.idle_rss_mb,
            s.start.seeded_challenges,
            database_size(&s.start)
        );
    }
    println!(
        "   {:<12} {:>5} {:>9} {:>10} {:>9} {:>7} {:>11} {:>9} {:>6}",
        "scenario", "conc", "seeded", "flows/s", "worst p99", "errors", "CPU ms/flow", "peak RSS", "other"
    );
    for r in &report.results {
        if r.status != "ok" {
            println!("   {:<12} {:>5} {:>9} {}", r.scenario, r.concurrency, r.seeded_challenges, r.status);
            continue;
        }
        let (cpu, rss) = match &r.server {
            Some(s) => (format!("{:.4}", s.cpu_ms_per_flow), format!("{:.1} MB", s.peak_rss_mb)),
            None => ("-".into(), "-".into()),
        };
        println!(
            "   {:<12} {:>5} {:>9} {:>10.0} {:>9.2} {:>7} {:>11} {:>9} {:>6}",
            r.scenario,
            r.concurrency,
            r.seeded_challenges,
            r.flows_per_second,
            r.worst_p99_ms(),
            r.errors,
            cpu,
            rss,
            r.other_load_cores.map(|c| format!("{c:.2}")).unwrap_or_else(|| "?".into())
        );
    }
}

/// " (4792 MB)", with what of it was in the page cache when that is known.
fn database_size(start: &Start) -> String {
    let mb = |b: u64| b as f64 / 1e6;
    match (start.database_bytes, start.database_cached_bytes) {
        (Some(size), Some(cached)) => {
            format!(" ({:.0} MB, {:.0} MB of it in the page cache)", mb(size), mb(cached))
        }
        (Some(size), None) => format!(" ({:.0} MB)", mb(size)),
        (None, _) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(size: Option<u64>, cached: Option<u64>) -> Start {
        Start {
            start_to_healthy_ms: 5.0,
            idle_rss_mb: 14.0,
            seeded_challenges: 10_000_000,
            database_bytes: size,
            database_cached_bytes: cached,
        }
    }

    #[test]
    fn the_database_size_says_how_much_of_it_is_cached_when_known() {
        assert_eq!(
            database_size(&start(Some(4_792_000_000), Some(3_200_000_000))),
            " (4792 MB, 3200 MB of it in the page cache)"
        );
        assert_eq!(database_size(&start(Some(8_000_000), None)), " (8 MB)");
        assert_eq!(database_size(&start(None, None)), "");
    }
}
