//! Counters for `GET /metrics`, in the Prometheus text format. Only counts and timings: no text.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    total: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            total: AtomicU64::new(0),
        }
    }

    fn observe(&self, value: f64) {
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            if value <= *b {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum_micros
            .fetch_add((value * 1e6) as u64, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{b}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let total = self.total.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {total}");
    }
}

pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Histogram,
    batch_pairs: Histogram,
    queue_depth: AtomicI64,
    pairs_scored: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Mutex::new(BTreeMap::new()),
            latency: Histogram::new(&[
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            batch_pairs: Histogram::new(&[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
            queue_depth: AtomicI64::new(0),
            pairs_scored: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    pub fn request(&self, route: &str, status: u16, seconds: f64) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((route.to_owned(), status))
            .or_insert(0) += 1;
        if route == "/v1/score" {
            self.latency.observe(seconds);
        }
    }

    pub fn batch(&self, pairs: usize) {
        self.batch_pairs.observe(pairs as f64);
        self.pairs_scored.fetch_add(pairs as u64, Ordering::Relaxed);
    }

    pub fn queue_add(&self, delta: i64) {
        self.queue_depth.fetch_add(delta, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP epitome_requests_total HTTP requests by route and status.\n# TYPE epitome_requests_total counter\n");
        for ((route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "epitome_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        self.latency.render(
            &mut out,
            "epitome_request_duration_seconds",
            "Latency of POST /v1/score.",
        );
        self.batch_pairs
            .render(&mut out, "epitome_batch_pairs", "Pairs per model batch.");
        let _ = writeln!(
            out,
            "# HELP epitome_queue_depth Requests waiting for the model.\n# TYPE epitome_queue_depth gauge\nepitome_queue_depth {}",
            self.queue_depth.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP epitome_pairs_scored_total Pairs scored.\n# TYPE epitome_pairs_scored_total counter\nepitome_pairs_scored_total {}",
            self.pairs_scored.load(Ordering::Relaxed)
        );
        out
    }
}
