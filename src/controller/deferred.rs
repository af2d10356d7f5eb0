//! What a tick writes at its end rather than chunk by chunk: the states due
//! only their periodic write (the evidence counts) and the watched time of
//! the rollouts not written, in transactions of up to [`WRITE_CHUNK`] rows,
//! one per turn of the loop (a command waits for one, not for 10,000 rows). Each waits with the
//! instant it was decided at and is dropped if a commit wrote its rollout
//! since (a command between two chunks), so it never overwrites a newer state.

use std::collections::BTreeMap;

use super::Controller;
use crate::engine::{RolloutState, Timestamp};
use crate::ports::{Change, Checkpoint};
use crate::spec::model::RolloutId;

/// Rows written per turn of the loop at the end of a tick.
pub(super) const WRITE_CHUNK: usize = 1024;

/// Writes waiting for the end of the tick, the latest per rollout.
#[derive(Default)]
pub(super) struct Deferred {
    /// States due their periodic write, with when they were decided.
    periodic: BTreeMap<RolloutId, (Timestamp, RolloutState)>,
    /// Watched time of rollouts not written, with when it was decided.
    marks: BTreeMap<RolloutId, (Timestamp, Checkpoint)>,
    /// A tick ended: what waits is written, a part per turn of the loop.
    pub due: bool,
}

impl Deferred {
    /// `state` of `id`, decided at `at`, is due its periodic write.
    pub fn periodic(&mut self, id: &RolloutId, at: Timestamp, state: RolloutState) {
        if self.periodic.get(id).is_none_or(|(t, _)| *t <= at) {
            self.periodic.insert(id.clone(), (at, state));
        }
    }

    /// The watched time `mark` decided at `at`.
    pub fn mark(&mut self, at: Timestamp, mark: Checkpoint) {
        if self.marks.get(&mark.id).is_none_or(|(t, _)| *t <= at) {
            self.marks.insert(mark.id.clone(), (at, mark));
        }
    }
}

impl Controller {
    /// Writes everything that waits for the end of a tick (at shutdown, and
    /// after a command or spec change outside a tick).
    pub(super) async fn write_deferred(&mut self) {
        while self.write_deferred_part(usize::MAX).await {}
        self.deferred.due = false;
    }

    /// Writes up to `limit` of what waits for the end of a tick: the states
    /// due their periodic write, then the watched-time checkpoints; each
    /// only for a rollout no commit wrote since it was decided, and only
    /// while this process may act. True while more is waiting.
    pub(super) async fn write_deferred_part(&mut self, limit: usize) -> bool {
        if self.deferred.periodic.is_empty() && self.deferred.marks.is_empty() {
            return false;
        }
        if !self.leadership.may_act() {
            self.deferred = Deferred::default();
            return false;
        }
        let periodic = take_unwritten(&mut self.deferred.periodic, &self.rollouts, limit);
        let mut failed = None;
        let mut wrote = false;
        if let Some(at) = periodic.iter().map(|p| p.1).max() {
            let changes = periodic
                .iter()
                .map(|(id, _, state)| Change::state_only(id, state.clone()))
                .collect();
            match self.store.commit(changes, at).await {
                Ok(()) => {
                    wrote = true;
                    for (id, at, state) in periodic {
                        if let Some(m) = self.rollouts.get_mut(&id) {
                            m.committed = Some(state);
                            m.committed_at = at;
                        }
                    }
                }
                Err(e) => {
                    // Due again at the next tick.
                    self.metrics.count_error(e.kind());
                    tracing::warn!(error = %e, "cannot write the periodic states; retried next tick");
                    failed = Some(e.to_string());
                }
            }
        }
        // The marks once every periodic state is written (a state just
        // written holds its watched time already).
        let marks: Vec<Checkpoint> = if self.deferred.periodic.is_empty() {
            take_unwritten(&mut self.deferred.marks, &self.rollouts, limit)
                .into_iter()
                .map(|(_, _, mark)| mark)
                .collect()
        } else {
            Vec::new()
        };
        if !marks.is_empty() {
            match self.store.checkpoint(marks).await {
                Ok(()) => wrote = true,
                Err(e) => {
                    self.metrics.count_error(e.kind());
                    tracing::warn!(error = %e, "cannot checkpoint watched time; a crash now would lose some");
                    failed = Some(e.to_string());
                }
            }
        }
        // A failing write is a failing store too (a full disk during a quiet
        // step): shown in /readyz and the API like a commit's, until a
        // write succeeds with none failing.
        if wrote || failed.is_some() {
            self.view.set_store_error(failed);
        }
        !(self.deferred.periodic.is_empty() && self.deferred.marks.is_empty())
    }

    /// Whether a tick is planned, measured, decided or being written now.
    pub(super) fn tick_under_way(&self) -> bool {
        self.ticks_in_flight > 0 || self.deferred.due
    }
}

/// Takes up to `limit` entries from `waiting`, the first by rollout, keeping
/// only those of rollouts no commit wrote since they were decided.
fn take_unwritten<T>(
    waiting: &mut BTreeMap<RolloutId, (Timestamp, T)>,
    rollouts: &BTreeMap<RolloutId, super::rollout::Managed>,
    limit: usize,
) -> Vec<(RolloutId, Timestamp, T)> {
    let mut taken = Vec::new();
    while taken.len() < limit {
        let Some((id, (at, value))) = waiting.pop_first() else {
            break;
        };
        if rollouts.get(&id).is_some_and(|m| m.committed_at < at) {
            taken.push((id, at, value));
        }
    }
    taken
}
