//! Real components for integration tests: a Prometheus server, sample apps
//! with load, and bounded waiting on conditions (never fixed sleeps).
#![allow(dead_code, unused_imports)]

pub mod api;
pub mod browser;
pub mod daemon;
pub mod haproxy;
pub mod prometheus;
pub mod receiver;

use std::future::Future;
use std::time::{Duration, Instant};

pub use prometheus::Prometheus;

use canaryd::sample::{Behaviour, SampleApp, SampleAppConfig, load};

/// Polls `probe` every 100 ms until it returns `Some`, or panics after `limit`
/// saying what was awaited and the last state seen.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        let last = match probe().await {
            Ok(value) => return value,
            Err(state) => state,
        };
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}; last state: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A loopback port free right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A sample app behaviour without added latency (tests that send thousands
/// of requests one by one).
pub fn instant() -> Behaviour {
    Behaviour {
        latency_p50: Duration::ZERO,
        latency_p99: Duration::ZERO,
        ..Behaviour::default()
    }
}

/// A sample app on a free loopback port.
pub async fn sample_app(service: &str, version: &str, behaviour: Behaviour) -> SampleApp {
    SampleApp::start(SampleAppConfig {
        service: service.to_string(),
        version: version.to_string(),
        listen: "127.0.0.1:0".parse().expect("loopback address"),
        behaviour,
    })
    .await
    .expect("sample app starts")
}

/// Open-loop load at `rps` to `url`.
pub fn load_on_url(url: &str, rps: f64) -> load::LoadHandle {
    load::spawn(load::LoadConfig::new(url, rps)).expect("load generator starts")
}

/// Open-loop load at `rps` to `app`.
pub fn load_on(app: &SampleApp, rps: f64) -> load::LoadHandle {
    load::spawn(load::LoadConfig::new(
        format!("http://{}/", app.addr()),
        rps,
    ))
    .expect("load generator starts")
}

/// The gate of `canaryd demo` that rolled its faulty v3 back, as named in
/// `reason`: v3's injected errors breach the `error_rate > 2%` abort
/// condition, or first fail the `error_rate < 1%` promotion gate once its
/// lower bound clears 1%; on a machine loaded enough to slow the sample apps,
/// a latency gate may come first. All four are correct verdicts.
pub fn demo_rollback_gate(reason: &str) -> Option<&'static str> {
    [
        ("abort condition", "error_rate > 2%", "breached"),
        ("promotion gate", "error_rate < 1%", "failed"),
        ("abort condition", "latency_p99 > 500ms", "breached"),
        ("promotion gate", "latency_p99 < 200ms", "failed"),
    ]
    .into_iter()
    .find(|(kind, gate, outcome)| reason.contains(&format!("{kind} {gate} {outcome}: ")))
    .map(|(_, gate, _)| gate)
}
