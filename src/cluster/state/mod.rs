//! Cluster mode's store: each rollout's state, its decision log and its
//! alert outbox live in its Rollout's `status`, written only by the leader.
//!
//! Why the status, and all three there: a decision's state, records and
//! alerts must be committed together or not at all (a crash must neither
//! lose an alert nor queue one twice), and the API server writes one object
//! atomically, never two. So one status write per rollout, carrying the
//! resourceVersion it was computed from, commits the decision ([`book`]).
//! A new leader reads the statuses afresh and resumes every rollout at the
//! same step with its watched time, and delivers what is still pending.
//!
//! * The record is bounded ([`record`]): the latest 50 decisions, every
//!   undelivered alert and the latest 50 delivered ones, at most 512 KiB.
//! * A change decided from a state older than the stored one (the answer to
//!   an earlier write was lost, or a tick's commit of several rollouts
//!   stopped half-way) is refused and raises the fence, so the controller
//!   restarts from what is stored instead of numbering a decision twice.
//! * Reads (the API's decision and alert logs) come from the leader's book,
//!   or, on a standby, from the watch cache.
//! * Each committed decision record also becomes a Kubernetes Event.

pub mod book;
pub mod period;
pub mod record;

use std::sync::Arc;

use async_trait::async_trait;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::cluster::crd::{Rollout, RolloutStatus};
use crate::cluster::events::{EventSink, decision_event};
use crate::engine::{DecisionRecord, Timestamp};
use crate::ports::{
    AlertOutbox, Change, Checkpoint, DecisionLog, Delivery, DeliveryStatus, PendingDelivery,
    StateStore, StoreError, StoredRollout,
};
use crate::spec::model::RolloutId;

pub use book::{StatusBook, id_of};

/// The store ports over Rollout statuses.
#[derive(Clone)]
pub struct ClusterStore {
    book: Arc<StatusBook>,
    cache: Store<Rollout>,
    events: EventSink,
}

impl ClusterStore {
    /// A store writing through `book`, reading from it or from `cache`
    /// (a standby's book is empty), publishing decision Events to `events`.
    pub fn new(book: Arc<StatusBook>, cache: Store<Rollout>, events: EventSink) -> ClusterStore {
        ClusterStore {
            book,
            cache,
            events,
        }
    }

    /// A rollout's status: the leader's own copy, else the watch cache's.
    fn status(&self, id: &RolloutId) -> Option<RolloutStatus> {
        self.book
            .get(id)
            .or_else(|| {
                let key = ObjectRef::new(&id.name).within(&id.namespace);
                self.cache.get(&key).map(|r| (*r).clone())
            })
            .and_then(|r| r.status)
    }
}

fn latest<T>(mut items: Vec<T>, limit: usize) -> Vec<T> {
    let excess = items.len().saturating_sub(limit);
    items.drain(..excess);
    items
}

#[async_trait]
impl StateStore for ClusterStore {
    async fn load(&self) -> Result<Vec<StoredRollout>, StoreError> {
        let mut out = Vec::new();
        for r in self.book.load().await? {
            let id = id_of(&r);
            let status = r.status.unwrap_or_default();
            match record::engine_state(&status) {
                Ok(Some(state)) => out.push(StoredRollout {
                    updated_at: state.last_tick.unwrap_or(state.since),
                    id,
                    state,
                }),
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(rollout = %id, error = %e, "cannot read the stored state; the rollout starts afresh")
                }
            }
        }
        Ok(out)
    }

    async fn commit(&self, changes: Vec<Change>, now: Timestamp) -> Result<(), StoreError> {
        let mut written = 0;
        for change in &changes {
            let mut stale = false;
            let outcome = self
                .book
                .update(&change.id, |status| {
                    let stored = record::engine_state(status)?;
                    if record::is_stale(stored.as_ref(), change) {
                        stale = true;
                        return Err(StoreError::Backend(format!(
                            "Rollout {}: the stored state is newer than the controller's (decision {} is stored); reloading",
                            change.id,
                            stored.map_or(0, |s| s.decisions)
                        )));
                    }
                    record::apply_change(status, change, now)?;
                    Ok(true)
                })
                .await;
            match outcome {
                Ok(Some(rollout)) => {
                    written += 1;
                    for r in &change.records {
                        self.events.publish(&rollout, &decision_event(r)).await;
                    }
                }
                Ok(None) => {
                    tracing::warn!(rollout = %change.id, "the Rollout was deleted; its decision is not stored");
                }
                Err(e) => {
                    // Some of the tick is stored and some not, or the
                    // controller is behind: it restarts from what is stored.
                    if stale || written > 0 {
                        self.book.raise_fence();
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    async fn checkpoint(&self, marks: Vec<Checkpoint>) -> Result<(), StoreError> {
        for mark in &marks {
            self.book
                .update(&mark.id, |status| record::apply_checkpoint(status, mark))
                .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl DecisionLog for ClusterStore {
    async fn decisions(
        &self,
        id: &RolloutId,
        limit: usize,
    ) -> Result<Vec<DecisionRecord>, StoreError> {
        let records = self
            .status(id)
            .map(|s| record::records(&s))
            .unwrap_or_default();
        Ok(latest(records, limit))
    }

    async fn last_decision(&self, id: &RolloutId) -> Result<Option<DecisionRecord>, StoreError> {
        Ok(self.status(id).and_then(|s| record::records(&s).pop()))
    }
}

#[async_trait]
impl AlertOutbox for ClusterStore {
    async fn due_deliveries(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<PendingDelivery>, StoreError> {
        let all = self.book.all();
        let statuses: Vec<(RolloutId, RolloutStatus)> = all
            .into_iter()
            .filter_map(|(id, r)| r.status.map(|s| (id, s)))
            .collect();
        Ok(record::due(
            statuses.iter().map(|(id, s)| (id.clone(), s)),
            now,
            limit,
        ))
    }

    async fn record_delivery(
        &self,
        id: i64,
        outcome: Delivery,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let holder = self.book.all().into_iter().find_map(|(rid, r)| {
            let status = r.status?;
            record::outbox(&status)
                .iter()
                .any(|e| e.handle(&rid) == id)
                .then_some(rid)
        });
        let Some(rollout) = holder else {
            return Ok(()); // its Rollout was deleted with its outbox
        };
        self.book
            .update(&rollout, |status| {
                record::apply_delivery(status, &rollout, id, &outcome, at)
            })
            .await?;
        Ok(())
    }

    async fn deliveries(
        &self,
        id: &RolloutId,
        limit: usize,
    ) -> Result<Vec<DeliveryStatus>, StoreError> {
        let entries = self
            .status(id)
            .map(|s| record::outbox(&s))
            .unwrap_or_default();
        Ok(latest(
            entries.iter().map(record::OutboxEntry::status).collect(),
            limit,
        ))
    }
}
