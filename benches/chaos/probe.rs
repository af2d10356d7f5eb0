//! Traffic through a service port at a fixed pace, one record per request:
//! when it was sent, and what came back (the track the built-in router names
//! in `x-canaryd-track`, a 5xx, a refused connection, another failure).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;

/// What one request got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answered below 500 by the stable version.
    Stable,
    /// Answered below 500 by the canary.
    Canary,
    /// Answered below 500 with no track header (not the built-in router).
    Answered,
    /// Answered 5xx (`canary` when the router named the canary).
    ServerError { canary: bool },
    /// Connection refused: nothing listened on the port.
    Refused,
    /// No answer otherwise (reset, timeout).
    Failed,
}

impl Outcome {
    /// A request the service answered (below 500).
    pub fn ok(self) -> bool {
        matches!(self, Outcome::Stable | Outcome::Canary | Outcome::Answered)
    }
}

/// One request.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// When it was sent.
    pub sent: SystemTime,
    /// What came back.
    pub outcome: Outcome,
}

/// Requests being sent in the background; stops when dropped.
pub struct Probe {
    samples: Arc<Mutex<Vec<Sample>>>,
    task: JoinHandle<()>,
}

impl Probe {
    /// `rps` requests per second to `url`, each on a pooled keep-alive
    /// connection with a 2 s timeout (open loop: a slow answer does not slow
    /// the pace; at most 256 in flight, beyond that a tick is skipped).
    pub fn start(url: &str, rps: f64) -> Probe {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("HTTP client");
        let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
        let (url, store) = (url.to_string(), samples.clone());
        let in_flight = Arc::new(tokio::sync::Semaphore::new(256));
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rps));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                ticks.tick().await;
                let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                    continue;
                };
                let (client, url, store) = (client.clone(), url.clone(), store.clone());
                tokio::spawn(async move {
                    let sent = SystemTime::now();
                    let outcome = request(&client, &url).await;
                    store
                        .lock()
                        .expect("samples")
                        .push(Sample { sent, outcome });
                    drop(permit);
                });
            }
        });
        Probe { samples, task }
    }

    /// Every request answered or failed so far, in the order they finished.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().expect("samples").clone()
    }

    /// Requests sent in `[from, to)`.
    pub fn between(&self, from: SystemTime, to: SystemTime) -> Vec<Sample> {
        self.samples()
            .into_iter()
            .filter(|s| s.sent >= from && s.sent < to)
            .collect()
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn request(client: &reqwest::Client, url: &str) -> Outcome {
    match client.get(url).send().await {
        Ok(r) => {
            let canary = r
                .headers()
                .get("x-canaryd-track")
                .and_then(|v| v.to_str().ok())
                .map(|t| t == "canary");
            let status = r.status();
            let _ = r.bytes().await;
            match (status.is_server_error(), canary) {
                (true, c) => Outcome::ServerError {
                    canary: c.unwrap_or(false),
                },
                (false, Some(true)) => Outcome::Canary,
                (false, Some(false)) => Outcome::Stable,
                (false, None) => Outcome::Answered,
            }
        }
        Err(e) if e.is_connect() && refused(&e) => Outcome::Refused,
        Err(_) => Outcome::Failed,
    }
}

/// True when the error chain says the connection was refused.
fn refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        source = err.source();
    }
    false
}

/// Counts of outcomes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    pub total: usize,
    pub ok: usize,
    pub canary: usize,
    pub refused: usize,
    pub failed: usize,
    pub server_errors: usize,
}

/// Counts `samples` by outcome.
pub fn count(samples: &[Sample]) -> Counts {
    let mut c = Counts {
        total: samples.len(),
        ..Counts::default()
    };
    for s in samples {
        match s.outcome {
            o if o.ok() => {
                c.ok += 1;
                c.canary += usize::from(o == Outcome::Canary);
            }
            Outcome::Refused => c.refused += 1,
            Outcome::ServerError { .. } => c.server_errors += 1,
            _ => c.failed += 1,
        }
    }
    c
}
