//! A listener's open connections, oldest first, so that on a full listener
//! a new connection can take the place of the oldest one that has sent no
//! request yet.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::Activity;

/// A listener's open connections, oldest first, so a new one can take the
/// place of the oldest that has sent nothing.
#[derive(Default)]
pub(super) struct OpenConnections {
    state: Mutex<(u64, BTreeMap<u64, Arc<Activity>>)>,
}

impl OpenConnections {
    fn lock(&self) -> MutexGuard<'_, (u64, BTreeMap<u64, Arc<Activity>>)> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn insert(&self, activity: Arc<Activity>) -> u64 {
        let mut s = self.lock();
        s.0 += 1;
        let id = s.0;
        s.1.insert(id, activity);
        id
    }

    pub(super) fn remove(&self, id: u64) {
        self.lock().1.remove(&id);
    }

    /// Marks the oldest connection that has not sent a request for eviction;
    /// false when every connection has.
    pub(super) fn evict_oldest_unused(&self) -> bool {
        let s = self.lock();
        s.1.values().any(|a| a.evict_if_unused())
    }
}
