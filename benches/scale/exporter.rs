//! The synthetic app fleet: one in-process HTTP server that serves the
//! `http-red` series of N services × 2 versions (`v1` stable, `v2` canary) on
//! `/metrics`, with counters that grow at a steady rate so every gate passes,
//! and answers 200 on any other path (the upstream HAProxy's servers name).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::routing::get;

/// Requests per second of each version of each service.
const RATE: f64 = 20.0;
/// The share of those answered 500.
const ERROR_SHARE: f64 = 0.002;
/// Histogram bounds and the cumulative share of requests within each: a p99
/// near 0.24 s, well under the 500 ms gate.
const BUCKETS: [(&str, f64); 6] = [
    ("0.05", 0.90),
    ("0.1", 0.97),
    ("0.25", 0.995),
    ("0.5", 0.999),
    ("1", 1.0),
    ("+Inf", 1.0),
];
/// The versions every service exports.
const VERSIONS: [&str; 2] = ["v1", "v2"];

/// The name of service `i` (also its deploy file's `service`).
pub fn service(i: usize) -> String {
    format!("svc-{i:05}")
}

/// Series per service (both versions): 2 codes and the buckets.
pub const SERIES_PER_SERVICE: usize = VERSIONS.len() * (2 + BUCKETS.len());

struct Fleet {
    services: usize,
    started: Instant,
}

/// A running exporter; stops when dropped.
pub struct Exporter {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Exporter {
    /// Serves the series of `services` services on a free loopback port.
    pub async fn start(services: usize) -> Result<Exporter, String> {
        let fleet = Arc::new(Fleet {
            services,
            started: Instant::now(),
        });
        let app = Router::new()
            .route("/metrics", get(metrics))
            .fallback(|| async { "ok\n" })
            .with_state(fleet);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("exporter bind: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("exporter address: {e}"))?;
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("exporter stopped: {e}");
            }
        });
        Ok(Exporter { addr, task })
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn metrics(State(fleet): State<Arc<Fleet>>) -> String {
    // Formatting 10,000 services (about 14 MB) is CPU work: off the runtime.
    tokio::task::spawn_blocking(move || {
        render(fleet.services, fleet.started.elapsed().as_secs_f64())
    })
    .await
    .unwrap_or_default()
}

/// The exposition text at `elapsed` seconds since start.
fn render(services: usize, elapsed: f64) -> String {
    let total = (RATE * elapsed).floor();
    let errors = (total * ERROR_SHARE).floor();
    let mut out = String::with_capacity(services * SERIES_PER_SERVICE * 100);
    out.push_str("# TYPE http_requests_total counter\n");
    for i in 0..services {
        let s = service(i);
        for v in VERSIONS {
            let _ = writeln!(
                out,
                "http_requests_total{{service=\"{s}\",version=\"{v}\",code=\"200\"}} {}",
                total - errors
            );
            let _ = writeln!(
                out,
                "http_requests_total{{service=\"{s}\",version=\"{v}\",code=\"500\"}} {errors}"
            );
        }
    }
    out.push_str("# TYPE http_request_duration_seconds histogram\n");
    for i in 0..services {
        let s = service(i);
        for v in VERSIONS {
            for (le, share) in BUCKETS {
                let _ = writeln!(
                    out,
                    "http_request_duration_seconds_bucket{{service=\"{s}\",version=\"{v}\",le=\"{le}\"}} {}",
                    (total * share).floor()
                );
            }
        }
    }
    out
}
