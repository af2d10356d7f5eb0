//! The SQLite adapter of the store ports (standalone mode): each rollout's
//! engine state, the append-only decision log and the alert outbox, in one
//! SQLite file.
//!
//! A tick's decisions are committed in one transaction: state, records and
//! alerts together or not at all. Records and alerts are keyed by the
//! rollout and the decision's sequence number, so committing the same
//! decision again (after a crash between deciding and committing, the engine
//! decides the same thing from the same state) stores it once.

mod outbox;
mod period;
mod ports;
mod sqlite;

pub use crate::ports::store::{
    Change, Checkpoint, Delivery, DeliveryState, DeliveryStatus, Outgoing, PendingDelivery,
    PeriodLog, StoreError, StoredRollout,
};
pub use sqlite::SqliteStore;
