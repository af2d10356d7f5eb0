//! An open-loop load generator: sends requests at a fixed rate whatever the
//! latency (as real users do), so a slow canary does not slow its own load.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// What to send.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// URL every request goes to.
    pub target: String,
    /// Requests per second.
    pub rps: f64,
    /// Requests allowed in flight at once; beyond it, requests are dropped (and counted).
    pub max_in_flight: usize,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl LoadConfig {
    /// `rps` requests per second to `target`, with sensible limits.
    pub fn new(target: impl Into<String>, rps: f64) -> LoadConfig {
        LoadConfig {
            target: target.into(),
            rps,
            max_in_flight: 2_000,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Counts so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LoadReport {
    /// Requests sent.
    pub sent: u64,
    /// Answered 2xx–4xx.
    pub ok: u64,
    /// Answered 5xx.
    pub server_errors: u64,
    /// No answer (connection refused, reset, timeout).
    pub failed: u64,
    /// Not sent: too many in flight.
    pub dropped: u64,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    ok: AtomicU64,
    server_errors: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

impl Counters {
    fn report(&self) -> LoadReport {
        LoadReport {
            sent: self.sent.load(Ordering::Relaxed),
            ok: self.ok.load(Ordering::Relaxed),
            server_errors: self.server_errors.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// Load being sent in the background.
pub struct LoadHandle {
    counters: Arc<Counters>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

/// Starts sending load; stop it with [`LoadHandle::stop`].
pub fn spawn(config: LoadConfig) -> Result<LoadHandle, reqwest::Error> {
    let client = reqwest::Client::builder()
        .timeout(config.timeout)
        .pool_max_idle_per_host(config.max_in_flight)
        .build()?;
    let counters = Arc::new(Counters::default());
    let (stop, mut stopped) = oneshot::channel::<()>();
    // Clamped: `interval` needs a period above zero.
    let rps = if config.rps.is_finite() {
        config.rps.clamp(0.001, 1e6)
    } else {
        1.0
    };
    let period = Duration::from_secs_f64(1.0 / rps);
    let permits = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
    let c = counters.clone();
    let task = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                _ = ticks.tick() => {}
            }
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                c.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            c.sent.fetch_add(1, Ordering::Relaxed);
            let (client, c, target) = (client.clone(), c.clone(), config.target.clone());
            tokio::spawn(async move {
                let counter = match client.get(&target).send().await {
                    Ok(r) => {
                        let server_error = r.status().is_server_error();
                        // Read the body so the connection goes back to the pool.
                        let _ = r.bytes().await;
                        if server_error {
                            &c.server_errors
                        } else {
                            &c.ok
                        }
                    }
                    Err(_) => &c.failed,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                drop(permit);
            });
        }
    });
    Ok(LoadHandle {
        counters,
        stop: Some(stop),
        task,
    })
}

impl LoadHandle {
    /// The counts so far.
    pub fn report(&self) -> LoadReport {
        self.counters.report()
    }

    /// Stops sending and returns the counts (requests still in flight finish on their own).
    pub async fn stop(mut self) -> LoadReport {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
        self.counters.report()
    }
}

impl Drop for LoadHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}
