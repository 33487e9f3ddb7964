//! `epitome loadtest`: a bounded load generator for a local `epitome serve`.
//!
//! It only targets loopback addresses, stops after a fixed number of requests or seconds,
//! and reports latency percentiles and throughput.

use crate::data::Pair;
use crate::serve::client::request;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the requests ask for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    /// `POST /v1/score`, one pair per request.
    #[default]
    Score,
    /// `POST /v1/suggest`, one pair per request.
    Suggest,
}

impl Route {
    fn path(self) -> &'static str {
        match self {
            Route::Score => "/v1/score",
            Route::Suggest => "/v1/suggest",
        }
    }

    fn body(self, p: &Pair) -> Vec<u8> {
        match self {
            Route::Score => serde_json::json!({"id": p.id, "seeker_post": p.seeker_post, "response_post": p.response_post}),
            Route::Suggest => serde_json::json!({"seeker_post": p.seeker_post, "response_post": p.response_post}),
        }
        .to_string()
        .into_bytes()
    }
}

#[derive(Clone, Debug)]
pub struct LoadTest {
    pub addr: SocketAddr,
    pub route: Route,
    pub requests: usize,
    pub concurrency: usize,
    pub max_duration: Duration,
    pub token: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct LoadReport {
    pub route: Route,
    pub concurrency: usize,
    pub requests_sent: usize,
    pub ok: usize,
    /// Answers other than 200.
    pub failed: usize,
    /// Requests with no answer (connection or read error, timeout).
    pub lost: usize,
    pub seconds: f64,
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Why a load test cannot start.
#[derive(Debug, thiserror::Error)]
pub enum LoadTestError {
    #[error("{0} is not a loopback address: the load test only targets this machine")]
    NotLoopback(std::net::SocketAddr),
    #[error("no pairs to send")]
    NoPairs,
}

/// Sends single-pair requests to `test.route`, cycling through `pairs`, from `concurrency`
/// threads.
pub fn run(test: &LoadTest, pairs: &[Pair]) -> Result<LoadReport, LoadTestError> {
    if !test.addr.ip().is_loopback() {
        return Err(LoadTestError::NotLoopback(test.addr));
    }
    if pairs.is_empty() {
        return Err(LoadTestError::NoPairs);
    }
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(pairs.iter().map(|p| test.route.body(p)).collect());
    let path = test.route.path();
    let next = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(test.requests)));
    let counts = Arc::new(Mutex::new((0usize, 0usize, 0usize)));
    let started = Instant::now();
    let auth = test.token.as_ref().map(|t| format!("Bearer {t}"));
    let workers: Vec<_> = (0..test.concurrency.max(1))
        .map(|_| {
            let (bodies, next, latencies, counts, auth) = (
                bodies.clone(),
                next.clone(),
                latencies.clone(),
                counts.clone(),
                auth.clone(),
            );
            let (addr, total, deadline) = (test.addr, test.requests, started + test.max_duration);
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total || Instant::now() >= deadline {
                    break;
                }
                let body = &bodies[i % bodies.len()];
                let mut headers = vec![("Content-Type", "application/json")];
                if let Some(a) = &auth {
                    headers.push(("Authorization", a.as_str()));
                }
                let t = Instant::now();
                let reply = request(addr, "POST", path, &headers, body, Duration::from_secs(120));
                let ms = t.elapsed().as_secs_f64() * 1e3;
                let mut c = counts.lock().unwrap_or_else(|e| e.into_inner());
                match reply {
                    Ok(r) if r.status == 200 => {
                        c.0 += 1;
                        latencies.lock().unwrap_or_else(|e| e.into_inner()).push(ms);
                    }
                    Ok(_) => c.1 += 1,
                    Err(_) => c.2 += 1,
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut lat = latencies.lock().unwrap_or_else(|e| e.into_inner()).clone();
    lat.sort_by(f64::total_cmp);
    let (ok, failed, lost) = *counts.lock().unwrap_or_else(|e| e.into_inner());
    Ok(LoadReport {
        route: test.route,
        concurrency: test.concurrency,
        requests_sent: ok + failed + lost,
        ok,
        failed,
        lost,
        seconds,
        requests_per_s: ok as f64 / seconds.max(1e-9),
        p50_ms: percentile(&lat, 0.50),
        p90_ms: percentile(&lat, 0.90),
        p99_ms: percentile(&lat, 0.99),
        max_ms: lat.last().copied().unwrap_or(0.0),
    })
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_by_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
    }
}
