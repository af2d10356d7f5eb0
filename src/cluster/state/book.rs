//! The leader's book of Rollouts: each object as this replica last read or
//! wrote it, and the one path by which it writes a status.
//!
//! Every write is a read-modify-write of the whole status, a PUT carrying
//! the resourceVersion of the object it was computed from
//! ([`crate::cluster::leader::write_status`]), one at a time. A 409 means the
//! object moved since: when only its spec or metadata moved (someone edited
//! the Rollout), the write is recomputed on the fresh object; when its
//! status moved, another writer (a replica that also believes it leads, a
//! hand edit) got there first, and this replica must not overwrite it: the
//! book forgets the object, refuses the write and raises the fence, on which
//! the wiring restarts its controller from what is stored. Writes are
//! refused outright while this replica does not lead.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use tokio::sync::Notify;

use crate::cluster::ClusterError;
use crate::cluster::crd::{Rollout, RolloutStatus};
use crate::cluster::leader::write_status;
use crate::ports::{Leadership, StoreError};
use crate::spec::model::RolloutId;

/// Attempts of one write when only the spec moved in between.
const WRITE_ATTEMPTS: usize = 3;

/// A Rollout's id.
pub fn id_of(rollout: &Rollout) -> RolloutId {
    RolloutId {
        namespace: rollout.namespace().unwrap_or_else(|| "default".into()),
        name: rollout.name_any(),
    }
}

/// The Rollouts as this replica last read or wrote them.
pub struct StatusBook {
    client: Client,
    objects: Mutex<BTreeMap<RolloutId, Rollout>>,
    writing: tokio::sync::Mutex<()>,
    leadership: Arc<dyn Leadership>,
    fence: Notify,
}

impl StatusBook {
    /// An empty book writing through `client` while `leadership` allows.
    pub fn new(client: Client, leadership: Arc<dyn Leadership>) -> StatusBook {
        StatusBook {
            client,
            objects: Mutex::new(BTreeMap::new()),
            writing: tokio::sync::Mutex::new(()),
            leadership,
            fence: Notify::new(),
        }
    }

    fn objects(&self) -> MutexGuard<'_, BTreeMap<RolloutId, Rollout>> {
        self.objects.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn api(&self, id: &RolloutId) -> Api<Rollout> {
        Api::namespaced(self.client.clone(), &id.namespace)
    }

    /// Reads every Rollout afresh (not from a cache), replacing the book.
    pub async fn load(&self) -> Result<Vec<Rollout>, StoreError> {
        let list = Api::<Rollout>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .map_err(|e| backend(ClusterError::api("list Rollouts", e)))?;
        let mut objects = self.objects();
        objects.clear();
        for r in &list.items {
            objects.insert(id_of(r), r.clone());
        }
        Ok(list.items)
    }

    /// Forgets everything (leadership ended: the next term reads afresh).
    pub fn clear(&self) {
        self.objects().clear();
    }

    /// The Rollout as last read or written.
    pub fn get(&self, id: &RolloutId) -> Option<Rollout> {
        self.objects().get(id).cloned()
    }

    /// Every Rollout in the book.
    pub fn all(&self) -> Vec<(RolloutId, Rollout)> {
        self.objects()
            .iter()
            .map(|(id, r)| (id.clone(), r.clone()))
            .collect()
    }

    /// Raises the fence: the controller's picture can no longer be trusted.
    pub fn raise_fence(&self) {
        self.fence.notify_one();
    }

    /// Waits until the fence is raised.
    pub async fn fenced(&self) {
        self.fence.notified().await;
    }

    async fn fetch(&self, id: &RolloutId) -> Result<Option<Rollout>, StoreError> {
        let fresh = self
            .api(id)
            .get_opt(&id.name)
            .await
            .map_err(|e| backend(ClusterError::api(format!("get Rollout {id}"), e)))?;
        let mut objects = self.objects();
        match &fresh {
            Some(r) => objects.insert(id.clone(), r.clone()),
            None => objects.remove(id),
        };
        Ok(fresh)
    }

    /// Changes a Rollout's status with `mutate` (which says whether it
    /// changed anything) and writes it, fenced. `Ok(None)` when the Rollout
    /// no longer exists (its status went with it).
    pub async fn update<F>(
        &self,
        id: &RolloutId,
        mut mutate: F,
    ) -> Result<Option<Rollout>, StoreError>
    where
        F: FnMut(&mut RolloutStatus) -> Result<bool, StoreError>,
    {
        let _one_at_a_time = self.writing.lock().await;
        if !self.leadership.may_act() {
            return Err(StoreError::Backend(
                "not the leader: another replica writes".into(),
            ));
        }
        let mut base = match self.get(id) {
            Some(r) => r,
            None => match self.fetch(id).await? {
                Some(r) => r,
                None => return Ok(None),
            },
        };
        for _ in 0..WRITE_ATTEMPTS {
            let mut status = base.status.clone().unwrap_or_default();
            if !mutate(&mut status)? {
                return Ok(Some(base));
            }
            match write_status(&self.api(id), &base, status).await {
                Ok(written) => {
                    self.objects().insert(id.clone(), written.clone());
                    return Ok(Some(written));
                }
                Err(ClusterError::Stale { .. }) => {
                    let Some(fresh) = self.fetch(id).await? else {
                        return Ok(None);
                    };
                    if fresh.status != base.status {
                        self.objects().remove(id);
                        self.raise_fence();
                        return Err(StoreError::Backend(format!(
                            "Rollout {id}: its status was written by another writer since this replica read it; reloading the state from the API server"
                        )));
                    }
                    base = fresh; // only the spec or metadata moved
                }
                Err(e) if e.code() == Some(404) => {
                    self.objects().remove(id);
                    return Ok(None);
                }
                Err(e) => return Err(backend(e)),
            }
        }
        Err(StoreError::Backend(format!(
            "Rollout {id}: the object kept changing; the write is retried next tick"
        )))
    }
}

/// A cluster error as the store port reports it.
pub fn backend(e: ClusterError) -> StoreError {
    StoreError::Backend(e.to_string())
}
