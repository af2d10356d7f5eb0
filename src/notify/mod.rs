//! Chat alerts: what a decision's alert says ([`message`]), how each service
//! wants it ([`format`]), which sinks receive it ([`sink`]) and its delivery
//! from the outbox ([`deliver`]).
//!
//! Exactly once: an alert's message and one delivery row per sink are stored
//! in the same transaction as the decision that raised it, keyed by rollout,
//! decision and sink, so a decision taken again after a crash queues nothing
//! twice. A delivery is marked done as soon as the receiver accepts it; only a
//! crash in the instant between the receiver's answer and that write sends it
//! again (generic webhooks carry an `Idempotency-Key` for exactly this).

pub mod deliver;
pub mod format;
pub mod message;
pub mod retry;
pub mod sink;

pub use deliver::Notifier;
pub use message::{AlertMessage, GateSummary};
pub use retry::RetryPolicy;
pub use sink::{SinkConfig, sink_key, sinks_for};

use crate::engine::{Decision, RolloutState};
use crate::ports::Outgoing;
use crate::spec::model::{AlertSink, DeploySpec};

/// Why an alert could not be sent. Messages never contain a URL or secret.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// A URL or secret could not be read.
    #[error("{what} from {source_name} {problem}")]
    Secret {
        /// `webhook URL` or `signing secret`.
        what: &'static str,
        /// `env:NAME` or `file:PATH`.
        source_name: String,
        /// `is not set`.
        problem: String,
    },
    /// The HTTP client failed before a request was made.
    #[error("{0}")]
    Transport(String),
}

/// Where a rollout's alerts go and how its dashboard is reached.
#[derive(Clone, Debug, Default)]
pub struct Routing {
    /// Sinks every rollout's alerts go to, besides its file's own.
    pub defaults: Vec<AlertSink>,
    /// The daemon's public base URL for dashboard links.
    pub dashboard_base: Option<String>,
}

/// The deliveries a decision queues: each alert, to each sink that wants it.
/// `before` is the rollout's state before the decision.
pub fn outgoing(
    routing: &Routing,
    spec: &DeploySpec,
    before: &RolloutState,
    decision: &Decision,
) -> Vec<Outgoing> {
    let mut out = Vec::new();
    for alert in decision.alerts() {
        let Some(record) = decision.records().find(|r| r.seq == alert.seq) else {
            continue;
        };
        let sinks = sinks_for(&spec.alerts, &routing.defaults, alert.severity);
        if sinks.is_empty() {
            continue;
        }
        let m = message::build(
            spec,
            before,
            record,
            alert,
            routing.dashboard_base.as_deref(),
        );
        for s in sinks {
            out.push(Outgoing {
                seq: alert.seq,
                event: alert.event,
                sink: s.clone(),
                message: m.clone(),
            });
        }
    }
    out
}
