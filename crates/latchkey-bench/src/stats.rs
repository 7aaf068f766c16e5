//! Latency histograms per step, error counts, and their summaries.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::time::Duration;

/// Latencies are recorded in microseconds, from 1 µs to 60 s, at 3 significant digits.
const HIGHEST_US: u64 = 60_000_000;

/// How many distinct error descriptions a step keeps, to show what went wrong.
const MAX_ERROR_SAMPLES: usize = 5;

/// One step's measurements, kept by one worker and merged at the end.
#[derive(Clone)]
pub struct StepStats {
    pub name: &'static str,
    histogram: Histogram<u64>,
    pub errors: u64,
    pub error_samples: Vec<String>,
}

impl StepStats {
    pub fn new(name: &'static str) -> Self {
        let histogram = Histogram::new_with_bounds(1, HIGHEST_US, 3).expect("valid histogram bounds");
        Self { name, histogram, errors: 0, error_samples: Vec::new() }
    }

    pub fn record(&mut self, latency: Duration) {
        let us = (latency.as_micros() as u64).clamp(1, HIGHEST_US);
        self.histogram.saturating_record(us);
    }

    pub fn error(&mut self, description: String) {
        self.errors += 1;
        if self.error_samples.len() < MAX_ERROR_SAMPLES && !self.error_samples.contains(&description) {
            self.error_samples.push(description);
        }
    }

    pub fn merge(&mut self, other: &StepStats) {
        self.histogram.add(&other.histogram).expect("histograms with equal bounds");
        self.errors += other.errors;
        for sample in &other.error_samples {
            if self.error_samples.len() < MAX_ERROR_SAMPLES && !self.error_samples.contains(sample) {
                self.error_samples.push(sample.clone());
            }
        }
    }

    pub fn summary(&self, elapsed: Duration) -> StepSummary {
        let h = &self.histogram;
        let ms = |us: u64| us as f64 / 1000.0;
        let count = h.len();
        let (p50, p90, p99, max, mean) = if count == 0 {
            (0.0, 0.0, 0.0, 0.0, 0.0)
        } else {
            (
                ms(h.value_at_quantile(0.50)),
                ms(h.value_at_quantile(0.90)),
                ms(h.value_at_quantile(0.99)),
                ms(h.max()),
                h.mean() / 1000.0,
            )
        };
        let secs = elapsed.as_secs_f64();
        StepSummary {
            step: self.name,
            count,
            per_second: if secs > 0.0 { count as f64 / secs } else { 0.0 },
            errors: self.errors,
            p50_ms: p50,
            p90_ms: p90,
            p99_ms: p99,
            max_ms: max,
            mean_ms: mean,
            error_samples: self.error_samples.clone(),
        }
    }
}

/// What one worker measured: one `StepStats` per step of the scenario, and its whole flows.
#[derive(Clone)]
pub struct Recorder {
    pub steps: Vec<StepStats>,
    pub flows: u64,
    pub failed_flows: u64,
}

impl Recorder {
    pub fn new(steps: &[&'static str]) -> Self {
        Self { steps: steps.iter().map(|s| StepStats::new(s)).collect(), flows: 0, failed_flows: 0 }
    }

    pub fn merge(&mut self, other: &Recorder) {
        for (mine, theirs) in self.steps.iter_mut().zip(&other.steps) {
            mine.merge(theirs);
        }
        self.flows += other.flows;
        self.failed_flows += other.failed_flows;
    }

    pub fn errors(&self) -> u64 {
        self.steps.iter().map(|s| s.errors).sum()
    }
}

/// A step's figures, as printed and written to JSON. Latencies in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct StepSummary {
    pub step: &'static str,
    /// Successful requests of this step.
    pub count: u64,
    pub per_second: f64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub error_samples: Vec<String>,
}

/// Parses `10s`, `500ms`, `2m` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: f64 = number.trim().parse().map_err(|_| format!("not a duration: {text:?}"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" | "min" => value * 60.0,
        _ => return Err(format!("unknown unit in {text:?} (use ms, s or m)")),
    };
    if !(seconds.is_finite() && seconds >= 0.0) {
        return Err(format!("not a duration: {text:?}"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut a = StepStats::new("create");
        let mut b = StepStats::new("create");
        // 1..=1000 ms, split over two workers.
        for ms in 1..=1000u64 {
            let target = if ms % 2 == 0 { &mut a } else { &mut b };
            target.record(Duration::from_millis(ms));
        }
        a.error("500 boom".into());
        b.error("500 boom".into());
        b.error("timeout".into());
        a.merge(&b);
        let s = a.summary(Duration::from_secs(2));
        assert_eq!(s.count, 1000);
        assert_eq!(s.errors, 3);
        assert_eq!(s.error_samples, vec!["500 boom".to_owned(), "timeout".to_owned()]);
        assert!((s.per_second - 500.0).abs() < 1e-9);
        // Three significant digits: within 0.1 % of the exact quantile.
        assert!((s.p50_ms - 500.0).abs() <= 0.5, "{}", s.p50_ms);
        assert!((s.p90_ms - 900.0).abs() <= 1.0, "{}", s.p90_ms);
        assert!((s.p99_ms - 990.0).abs() <= 1.0, "{}", s.p99_ms);
        assert!((s.max_ms - 1000.0).abs() <= 1.0, "{}", s.max_ms);
        assert!((s.mean_ms - 500.5).abs() <= 1.0, "{}", s.mean_ms);
    }

    #[test]
    fn empty_step_summarises_to_zeros() {
        let s = StepStats::new("token").summary(Duration::ZERO);
        assert_eq!((s.count, s.p99_ms, s.per_second), (0, 0.0, 0.0));
    }

    #[test]
    fn recorder_merges_flows_and_steps() {
        let mut a = Recorder::new(&["x", "y"]);
        let mut b = Recorder::new(&["x", "y"]);
        a.flows = 2;
        b.flows = 3;
        b.failed_flows = 1;
        b.steps[1].error("e".into());
        a.merge(&b);
        assert_eq!((a.flows, a.failed_flows, a.errors()), (5, 1, 1));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("3h").is_err());
        assert!(parse_duration("fast").is_err());
    }
}
