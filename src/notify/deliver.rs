//! Delivery from the outbox: a background task that posts each pending alert
//! to its sink, in order per sink, and records how each attempt went (the
//! retry policy is in [`super::retry`]). It only reads and updates the
//! outbox, so the control loop never waits for a chat service.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use rand::RngExt;
use sha2::Sha256;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::NotifyError;
use super::format::body;
use super::retry::{Attempt, RetryPolicy, next_step, parse_retry_after};
use super::sink::{kind_name, read_secret};
use crate::controller::metrics::AlertLabels;
use crate::engine::Timestamp;
use crate::ports::{AlertOutbox, Delivery, PendingDelivery};
use crate::spec::model::{AlertSink, SinkKind};

/// The HMAC-SHA256 signature of a generic webhook: hex over `"{timestamp}.{body}"`.
pub fn signature(secret: &str, timestamp: u64, body: &[u8]) -> String {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// How an attempt ended, and whether the store has it.
struct Outcome {
    id: i64,
    sink_key: String,
    step: Delivery,
    at: Timestamp,
    saved: bool,
}

/// The delivery task.
pub struct Notifier {
    store: Arc<dyn AlertOutbox>,
    client: reqwest::Client,
    policy: RetryPolicy,
    wake: Arc<Notify>,
    metrics: Family<AlertLabels, Counter>,
}

impl Notifier {
    /// A notifier over `store`; `wake` is signalled after each commit.
    pub fn new(
        store: Arc<dyn AlertOutbox>,
        policy: RetryPolicy,
        wake: Arc<Notify>,
        metrics: Family<AlertLabels, Counter>,
    ) -> Result<Notifier, NotifyError> {
        let client = reqwest::Client::builder()
            .timeout(policy.timeout)
            .connect_timeout(policy.timeout)
            .user_agent(concat!("canaryd/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| NotifyError::Transport(e.without_url().to_string()))?;
        Ok(Notifier {
            store,
            client,
            policy,
            wake,
            metrics,
        })
    }

    /// Delivers until `stop`. Attempts in flight then are finished (within the
    /// request timeout) and recorded, so a restart does not send them again.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        let this = Arc::new(self);
        // Sinks with an attempt in flight or an outcome not yet saved.
        let mut busy: HashSet<String> = HashSet::new();
        let mut tasks: JoinSet<Outcome> = JoinSet::new();
        let mut keys: HashMap<tokio::task::Id, String> = HashMap::new();
        // Outcomes the store could not save: never posted again, saved later.
        let mut unsaved: Vec<Outcome> = Vec::new();
        tokio::pin!(stop);
        loop {
            unsaved = this.save(unsaved, &mut busy).await;
            let now = Timestamp::from_system(SystemTime::now());
            match this.store.due_deliveries(now, 64).await {
                Ok(due) => {
                    for d in due {
                        if busy.insert(d.sink_key.clone()) {
                            let me = this.clone();
                            let key = d.sink_key.clone();
                            let handle = tasks.spawn(async move { me.deliver(d).await });
                            keys.insert(handle.id(), key);
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot read the alert outbox"),
            }
            tokio::select! {
                () = &mut stop => break,
                Some(done) = tasks.join_next_with_id() => {
                    let (id, outcome) = match done {
                        Ok((id, outcome)) => (id, Some(outcome)),
                        Err(e) => (e.id(), None),
                    };
                    if let Some(key) = keys.remove(&id) {
                        match outcome {
                            Some(o) if !o.saved => unsaved.push(o),
                            _ => { busy.remove(&key); }
                        }
                    }
                }
                () = this.wake.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
        // Let attempts in flight finish and be recorded: a receiver that
        // accepted a message must not get it again after the restart.
        let deadline = this.policy.timeout + Duration::from_secs(1);
        let drained = tokio::time::timeout(deadline, async {
            while let Some(done) = tasks.join_next().await {
                if let Ok(o) = done
                    && !o.saved
                {
                    unsaved.push(o);
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "alert deliveries still in flight at shutdown are sent again after the restart"
            );
        }
        let _ = this.save(unsaved, &mut busy).await;
    }

    /// Saves outcomes the store refused before; returns those still unsaved.
    async fn save(&self, unsaved: Vec<Outcome>, busy: &mut HashSet<String>) -> Vec<Outcome> {
        let mut still = Vec::new();
        for o in unsaved {
            let saved = self.store.record_delivery(o.id, o.step.clone(), o.at).await;
            if saved.is_ok() {
                busy.remove(&o.sink_key);
            } else {
                still.push(o);
            }
        }
        still
    }

    async fn deliver(&self, d: PendingDelivery) -> Outcome {
        let attempt = self.attempt(&d).await;
        let now = Timestamp::from_system(SystemTime::now());
        let jitter = rand::rng().random_range(0.0..1.0);
        let step = next_step(&self.policy, d.attempts, attempt, now, jitter);
        let kind = kind_name(d.sink.kind);
        let result = match &step {
            Delivery::Delivered => {
                tracing::info!(sink = %d.sink_key, alert = %d.message.id, "alert delivered");
                "delivered"
            }
            Delivery::Retry { retry_at, error } => {
                tracing::warn!(sink = %d.sink_key, alert = %d.message.id, attempt = d.attempts + 1, retry_at = %retry_at, %error, "alert not delivered; will retry");
                "retry"
            }
            Delivery::GaveUp { error } => {
                tracing::error!(sink = %d.sink_key, alert = %d.message.id, attempts = d.attempts + 1, %error, "alert given up");
                "gave_up"
            }
        };
        self.metrics
            .get_or_create(&AlertLabels {
                sink: kind.to_string(),
                result: result.to_string(),
            })
            .inc();
        let id = d.id;
        let saved = self
            .store
            .record_delivery(id, step.clone(), now)
            .await
            .is_ok();
        if !saved {
            // Kept in memory and saved later; the sink waits, nothing is posted twice.
            tracing::error!(sink = %d.sink_key, alert = %d.message.id, "cannot record the delivery outcome; retrying the write");
        }
        Outcome {
            id,
            sink_key: d.sink_key,
            step,
            at: now,
            saved,
        }
    }

    async fn attempt(&self, d: &PendingDelivery) -> Attempt {
        match self.post(&d.sink, d).await {
            Ok(a) => a,
            Err(e) => Attempt::Transient {
                error: e.to_string(),
                retry_after: None,
            },
        }
    }

    async fn post(&self, sink: &AlertSink, d: &PendingDelivery) -> Result<Attempt, NotifyError> {
        let url = read_secret_off_runtime("webhook URL", &sink.webhook).await?;
        let payload = serde_json::to_vec(&body(sink.kind, &d.message))
            .map_err(|e| NotifyError::Transport(e.to_string()))?;
        let mut req = self
            .client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if sink.kind == SinkKind::Webhook {
            let ts = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            req = req
                .header("Idempotency-Key", &d.message.id)
                .header("X-Canaryd-Event", d.message.event.name())
                .header("X-Canaryd-Timestamp", ts.to_string());
            if let Some(secret) = &sink.secret {
                let secret = read_secret_off_runtime("signing secret", secret).await?;
                req = req.header(
                    "X-Canaryd-Signature",
                    format!("v1={}", signature(&secret, ts, &payload)),
                );
            }
        }
        let scrub = |text: String| text.replace(&url, "<webhook URL>");
        let response = match req.body(payload).send().await {
            Ok(r) => r,
            Err(e) => {
                let what = if e.is_timeout() {
                    "timed out"
                } else {
                    "failed"
                };
                return Ok(Attempt::Transient {
                    error: scrub(format!("request {what}: {}", chain(&e.without_url()))),
                    retry_after: None,
                });
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        if status.is_success() {
            return Ok(Attempt::Accepted);
        }
        // The receiver's explanation (`invalid_payload`), its first bytes only.
        let mut response = response;
        let mut head = Vec::new();
        while head.len() < 512 {
            match response.chunk().await {
                Ok(Some(chunk)) => head.extend_from_slice(&chunk),
                _ => break,
            }
        }
        let text: String = String::from_utf8_lossy(&head).chars().take(200).collect();
        let error = scrub(format!("HTTP {}: {}", status.as_u16(), text.trim()));
        Ok(
            if status.is_server_error()
                || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                || status == reqwest::StatusCode::REQUEST_TIMEOUT
            {
                Attempt::Transient { error, retry_after }
            } else {
                Attempt::Permanent { error }
            },
        )
    }
}

/// Reads a secret on the blocking pool (a file read must not stall the runtime).
async fn read_secret_off_runtime(
    what: &'static str,
    r: &crate::spec::model::SecretRef,
) -> Result<String, NotifyError> {
    let r = r.clone();
    tokio::task::spawn_blocking(move || read_secret(what, &r))
        .await
        .map_err(|e| NotifyError::Transport(e.to_string()))?
}

/// An error and its causes, one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}
