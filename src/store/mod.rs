//! Durable state of standalone mode: each rollout's engine state, the
//! append-only decision log and the alert outbox, in one SQLite file.
//!
//! A tick's decisions are committed in one transaction: state, records and
//! alerts together or not at all. Records and alerts are keyed by the
//! rollout and the decision's sequence number, so committing the same
//! decision again (after a crash between deciding and committing, the engine
//! decides the same thing from the same state) stores it once.

mod sqlite;

pub use sqlite::SqliteStore;

use serde::Serialize;

use crate::engine::{Alert, Decision, DecisionRecord, RolloutState, Timestamp};
use crate::spec::model::RolloutId;

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
    /// Alerts to queue for delivery (each once).
    pub alerts: Vec<Alert>,
}

impl Change {
    /// What `decision` of rollout `id` stores.
    pub fn of(id: &RolloutId, decision: &Decision) -> Change {
        Change {
            id: id.clone(),
            state: decision.state.clone(),
            records: decision.records().cloned().collect(),
            alerts: decision.alerts().cloned().collect(),
        }
    }
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

/// An alert waiting in the outbox.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PendingAlert {
    /// The outbox row.
    pub id: i64,
    /// The rollout it is about.
    pub rollout: RolloutId,
    /// The alert.
    pub alert: Alert,
    /// Delivery attempts so far.
    pub attempts: u32,
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
