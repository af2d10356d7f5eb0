//! The store ports, implemented by the SQLite adapter: each call runs its
//! blocking SQLite work on tokio's blocking pool, never on the control loop.

use async_trait::async_trait;

use super::SqliteStore;
use crate::engine::{DecisionRecord, Timestamp};
use crate::ports::store::{
    AlertOutbox, Change, Checkpoint, DecisionLog, Delivery, DeliveryStatus, PendingDelivery,
    SpecMemory, StateStore, StoreError, StoredRollout,
};
use crate::spec::model::RolloutId;

/// Runs `work` on a clone of the store, off the async runtime.
async fn blocking<T: Send + 'static>(
    store: &SqliteStore,
    work: impl FnOnce(&SqliteStore) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || work(&store))
        .await
        .map_err(|e| StoreError::Backend(format!("store task: {e}")))?
}

#[async_trait]
impl StateStore for SqliteStore {
    async fn load(&self) -> Result<Vec<StoredRollout>, StoreError> {
        blocking(self, |s| s.load()).await
    }

    async fn commit(&self, changes: Vec<Change>, now: Timestamp) -> Result<(), StoreError> {
        blocking(self, move |s| s.commit(&changes, now)).await
    }

    async fn checkpoint(&self, marks: Vec<Checkpoint>) -> Result<(), StoreError> {
        blocking(self, move |s| s.checkpoint(&marks)).await
    }
}

#[async_trait]
impl DecisionLog for SqliteStore {
    async fn decisions(
        &self,
        id: &RolloutId,
        limit: usize,
    ) -> Result<Vec<DecisionRecord>, StoreError> {
        let id = id.clone();
        blocking(self, move |s| s.decisions(&id, limit)).await
    }

    async fn last_decision(&self, id: &RolloutId) -> Result<Option<DecisionRecord>, StoreError> {
        let id = id.clone();
        blocking(self, move |s| s.last_decision(&id)).await
    }
}

#[async_trait]
impl AlertOutbox for SqliteStore {
    async fn due_deliveries(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<PendingDelivery>, StoreError> {
        blocking(self, move |s| s.due_deliveries(now, limit)).await
    }

    async fn record_delivery(
        &self,
        id: i64,
        outcome: Delivery,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        blocking(self, move |s| s.record_delivery(id, &outcome, at)).await
    }

    async fn deliveries(
        &self,
        id: &RolloutId,
        limit: usize,
    ) -> Result<Vec<DeliveryStatus>, StoreError> {
        let id = id.clone();
        blocking(self, move |s| s.deliveries(&id, limit)).await
    }
}

#[async_trait]
impl SpecMemory for SqliteStore {
    async fn remember(&self, key: &str, text: &str, now: Timestamp) -> Result<(), StoreError> {
        let (key, text) = (key.to_string(), text.to_string());
        blocking(self, move |s| s.save_accepted_file(&key, &text, now)).await
    }

    async fn recall(&self, key: &str) -> Result<Option<String>, StoreError> {
        let key = key.to_string();
        blocking(self, move |s| s.accepted_file(&key)).await
    }
}
