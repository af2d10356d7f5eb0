//! Durable state of standalone mode: each rollout's engine state, the
//! append-only decision log and the alert outbox, in one SQLite file.
//!
//! A tick's decisions are committed in one transaction: state, records and
//! alerts together or not at all. Records and alerts are keyed by the
//! rollout and the decision's sequence number, so committing the same
//! decision again (after a crash between deciding and committing, the engine
//! decides the same thing from the same state) stores it once.

mod outbox;
mod period;
mod sqlite;

pub use sqlite::SqliteStore;

use serde::Serialize;

use crate::engine::{Alert, AlertEvent, Decision, DecisionRecord, RolloutState, Timestamp};
use crate::notify::AlertMessage;
use crate::spec::model::{AlertSink, RolloutId};

/// The store cannot do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed (disk full, locked, corrupt file…).
    #[error("state store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored row does not decode (written by an incompatible version).
    #[error("state store: stored {what} does not decode: {message}")]
    Corrupt {
        /// What was being read.
        what: &'static str,
        /// The decoder's message.
        message: String,
    },
    /// The file was written by a newer canaryd.
    #[error("state store: schema version {found} is newer than this canaryd understands ({known})")]
    TooNew {
        /// The file's schema version.
        found: i64,
        /// The newest this build knows.
        known: i64,
    },
}

/// What one decision of one rollout changes, committed atomically with the
/// other changes of the same tick.
#[derive(Clone, Debug)]
pub struct Change {
    /// Which rollout.
    pub id: RolloutId,
    /// Its new state.
    pub state: RolloutState,
    /// Decision records to append (each once).
    pub records: Vec<DecisionRecord>,
    /// Alerts raised (each once).
    pub alerts: Vec<Alert>,
    /// Their deliveries, one per alert and sink (each once).
    pub deliveries: Vec<Outgoing>,
}

impl Change {
    /// What `decision` of rollout `id` stores.
    pub fn of(id: &RolloutId, decision: &Decision) -> Change {
        Change {
            id: id.clone(),
            state: decision.state.clone(),
            records: decision.records().cloned().collect(),
            alerts: decision.alerts().cloned().collect(),
            deliveries: Vec::new(),
        }
    }

    /// The same change, queueing `deliveries`.
    pub fn with_deliveries(mut self, deliveries: Vec<Outgoing>) -> Change {
        self.deliveries = deliveries;
        self
    }
}

/// An alert to deliver to one sink.
#[derive(Clone, Debug, PartialEq)]
pub struct Outgoing {
    /// The decision that raised it.
    pub seq: u64,
    /// The event.
    pub event: AlertEvent,
    /// Where it goes (references to secrets, never their values).
    pub sink: AlertSink,
    /// What it says.
    pub message: AlertMessage,
}

/// A rollout as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredRollout {
    /// Which rollout.
    pub id: RolloutId,
    /// Its last committed state.
    pub state: RolloutState,
    /// When it was committed.
    pub updated_at: Timestamp,
}

/// A delivery due now: the oldest undelivered one of its sink.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingDelivery {
    /// The outbox row.
    pub id: i64,
    /// The sink's key (`slack:env:SLACK_WEBHOOK_URL`).
    pub sink_key: String,
    /// The sink.
    pub sink: AlertSink,
    /// The message.
    pub message: AlertMessage,
    /// Attempts so far.
    pub attempts: u32,
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not yet accepted; will be tried (again).
    Pending,
    /// Accepted by the receiver.
    Delivered,
    /// Given up.
    GaveUp,
}

/// One alert to one sink, as the API shows it (no secrets).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeliveryStatus {
    /// The decision that raised it.
    pub seq: u64,
    /// The event.
    pub event: AlertEvent,
    /// The sink's key.
    pub sink: String,
    /// The alert's one-line title.
    pub title: String,
    /// Where it stands.
    pub state: DeliveryState,
    /// Attempts made.
    pub attempts: u32,
    /// When it was queued.
    pub queued_at: Timestamp,
    /// When it was accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<Timestamp>,
    /// The last failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// How a delivery ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Accepted by the receiver.
    Delivered,
    /// Failed for now; try again at `retry_at`.
    Retry {
        /// When to try again.
        retry_at: Timestamp,
        /// What went wrong (no secrets).
        error: String,
    },
    /// Given up after too many attempts.
    GaveUp {
        /// The last error (no secrets).
        error: String,
    },
}
