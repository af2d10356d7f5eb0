//! The durable side of the controller: each rollout's state, the decision
//! log and the alert outbox, and the values that cross these ports.
//!
//! A tick's decisions are committed in one call: states, records and
//! alerts together or not at all. Records and alerts are keyed by the
//! rollout and the decision's sequence number, so committing the same
//! decision again (after a crash between deciding and committing, the engine
//! decides the same thing from the same state) stores it once.

use async_trait::async_trait;
use serde::Serialize;

use crate::engine::{Alert, AlertEvent, Decision, DecisionRecord, RolloutState, Timestamp};
use crate::notify::AlertMessage;
use crate::spec::model::{AlertSink, RolloutId};

/// Each rollout's state, committed with the tick's records and alerts.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// Every rollout's last committed state.
    async fn load(&self) -> Result<Vec<StoredRollout>, StoreError>;

    /// Commits a tick's changes atomically; each record and alert once.
    async fn commit(&self, changes: Vec<Change>, now: Timestamp) -> Result<(), StoreError>;

    /// Checkpoints the watched time of rollouts whose state was not written
    /// since it was decided (cheap: a crash then loses at most one interval
    /// of it). Written at the end of a tick, for all of its rollouts at once.
    async fn checkpoint(&self, marks: Vec<Checkpoint>) -> Result<(), StoreError>;
}

/// A rollout's watched time in its step, as of its last tick.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// Which rollout.
    pub id: RolloutId,
    /// Watched time in the current step.
    pub step_elapsed: std::time::Duration,
    /// When it was measured.
    pub last_tick: Timestamp,
}

/// Reading the decision log.
#[async_trait]
pub trait DecisionLog: Send + Sync {
    /// The latest `limit` decisions of a rollout, oldest first.
    async fn decisions(
        &self,
        id: &RolloutId,
        limit: usize,
    ) -> Result<Vec<DecisionRecord>, StoreError>;

    /// A rollout's last decision.
    async fn last_decision(&self, id: &RolloutId) -> Result<Option<DecisionRecord>, StoreError>;
}

/// Reading the decision log over a period, for delivery metrics.
///
/// Synchronous: the `/metrics` collector that uses it encodes synchronously;
/// async callers run it with `spawn_blocking`.
pub trait PeriodLog: Send + Sync {
    /// The records of `[since, until)`, plus those of each attempt in flight
    /// at `since` from its start (or retry); by rollout, then in order.
    fn decisions_between(
        &self,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<(RolloutId, DecisionRecord)>, StoreError>;
}

/// Alerts waiting for delivery, one per alert and sink.
#[async_trait]
pub trait AlertOutbox: Send + Sync {
    /// Each sink's oldest undelivered alert that is due by `now` (order per
    /// sink is kept: a later alert never overtakes an earlier one).
    async fn due_deliveries(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<PendingDelivery>, StoreError>;

    /// Records how a delivery attempt ended.
    async fn record_delivery(
        &self,
        id: i64,
        outcome: Delivery,
        at: Timestamp,
    ) -> Result<(), StoreError>;

    /// The latest `limit` deliveries of a rollout, oldest first (no secrets).
    async fn deliveries(
        &self,
        id: &RolloutId,
        limit: usize,
    ) -> Result<Vec<DeliveryStatus>, StoreError>;
}

/// Remembers the last accepted text of each spec, so one broken while
/// canaryd was down still runs its last good version after a restart.
#[async_trait]
pub trait SpecMemory: Send + Sync {
    /// Remembers `text` as the last accepted version of `key`.
    async fn remember(&self, key: &str, text: &str, now: Timestamp) -> Result<(), StoreError>;

    /// The last accepted version of `key`.
    async fn recall(&self, key: &str) -> Result<Option<String>, StoreError>;
}

/// The store cannot do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (disk full, locked, unreachable…).
    #[error("state store: {0}")]
    Backend(String),
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

impl StoreError {
    /// A low-cardinality name for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Backend(_) => "store",
            StoreError::Corrupt { .. } => "store_corrupt",
            StoreError::TooNew { .. } => "store_too_new",
        }
    }
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

    /// A state written as it is, with nothing to record.
    pub fn state_only(id: &RolloutId, state: RolloutState) -> Change {
        Change {
            id: id.clone(),
            state,
            records: Vec::new(),
            alerts: Vec::new(),
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
