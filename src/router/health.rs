//! What built-in routers share per upstream address: one health checker per
//! distinct `host:port` (`GET /healthz` every interval, however many routers
//! point at it) and one HTTP client, whose pool keeps idle connections per
//! upstream, so the upstream side costs O(upstreams), not O(rollouts).
//!
//! A checker starts with its first [`Subscription`] and stops when the last
//! one is dropped; routers read the latest result through a `watch` channel.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Uri;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long an upstream has to answer its health check.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The shortest check interval (a typo must not flood upstreams).
const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// One address's running checker.
struct Checker {
    ready: watch::Receiver<Option<bool>>,
    users: usize,
    task: JoinHandle<()>,
}

type Checkers = Arc<Mutex<HashMap<String, Checker>>>;

fn lock(checkers: &Checkers) -> MutexGuard<'_, HashMap<String, Checker>> {
    // A poisoned map still holds valid entries.
    checkers.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The upstream side shared by built-in routers: health checkers and the
/// proxying client. Cheap to clone (handles).
#[derive(Clone)]
pub struct UpstreamPool {
    checkers: Checkers,
    interval: Duration,
    probe: Client<HttpConnector, Empty<Bytes>>,
    client: Client<HttpConnector, Incoming>,
}

/// One router's interest in one upstream's health; dropping it releases the
/// checker (stopped with its last subscription).
pub struct Subscription {
    addr: String,
    ready: watch::Receiver<Option<bool>>,
    checkers: Checkers,
}

impl UpstreamPool {
    /// A pool checking every `interval`, keeping at most `max_idle` idle
    /// connections per upstream.
    pub fn new(interval: Duration, max_idle: usize) -> UpstreamPool {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(max_idle)
            .build(connector.clone());
        let probe = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1)
            .build(connector);
        UpstreamPool {
            checkers: Arc::default(),
            interval: interval.max(MIN_INTERVAL),
            probe,
            client,
        }
    }

    /// The client requests are proxied with.
    pub(super) fn client(&self) -> &Client<HttpConnector, Incoming> {
        &self.client
    }

    /// Subscribes to `addr`'s health, starting its checker if none runs.
    pub fn subscribe(&self, addr: &str) -> Subscription {
        let mut checkers = lock(&self.checkers);
        let checker = checkers.entry(addr.to_string()).or_insert_with(|| {
            let (tx, ready) = watch::channel(None);
            let task = tokio::spawn(check_loop(
                self.probe.clone(),
                addr.to_string(),
                self.interval,
                tx,
            ));
            Checker {
                ready,
                users: 0,
                task,
            }
        });
        checker.users += 1;
        Subscription {
            addr: addr.to_string(),
            ready: checker.ready.clone(),
            checkers: self.checkers.clone(),
        }
    }

    /// The addresses being checked now, sorted.
    pub fn checked(&self) -> Vec<String> {
        let mut addrs: Vec<String> = lock(&self.checkers).keys().cloned().collect();
        addrs.sort();
        addrs
    }
}

impl Subscription {
    /// The last result (`false` before the first check).
    pub fn ready(&self) -> bool {
        self.ready.borrow().unwrap_or(false)
    }

    /// Waits for the first check's result (at most the probe's timeout and a
    /// margin, whatever the upstream does).
    pub async fn checked(&mut self) -> bool {
        let first = self.ready.wait_for(Option::is_some);
        match tokio::time::timeout(PROBE_TIMEOUT * 3, first).await {
            Ok(Ok(ready)) => ready.unwrap_or(false),
            _ => false,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut checkers = lock(&self.checkers);
        if let Some(checker) = checkers.get_mut(&self.addr) {
            checker.users = checker.users.saturating_sub(1);
            if checker.users == 0 {
                checker.task.abort();
                checkers.remove(&self.addr);
            }
        }
    }
}

async fn check_loop(
    probe: Client<HttpConnector, Empty<Bytes>>,
    addr: String,
    every: Duration,
    ready: watch::Sender<Option<bool>>,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let ok = check(&probe, &addr).await;
        ready.send_if_modified(|last| {
            let changed = *last != Some(ok);
            *last = Some(ok);
            changed
        });
    }
}

/// Ready: `GET /healthz` answers within a second with a status below 500
/// (an app without the endpoint answers 404, and is up).
async fn check(probe: &Client<HttpConnector, Empty<Bytes>>, upstream: &str) -> bool {
    let Ok(uri) = Uri::try_from(format!("http://{upstream}/healthz")) else {
        return false;
    };
    let request = async {
        let resp = probe.get(uri).await?;
        let ok = resp.status().as_u16() < 500;
        let _ = resp.into_body().collect().await;
        Ok::<_, hyper_util::client::legacy::Error>(ok)
    };
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, request).await,
        Ok(Ok(true))
    )
}
