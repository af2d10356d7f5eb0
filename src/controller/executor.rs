//! Carrying out decisions: the one place that writes weights and state, in
//! the order BRIEF §3 fixes.
//!
//! 1. **Cut**: every weight that goes down is applied first (a rollback takes
//!    traffic off the canary before anything else); then a moved upstream is
//!    retargeted.
//! 2. **Commit**: the tick's changed states, records and alerts, in one call.
//!    A state is written only when it changed materially (or has records);
//!    at the end of the tick, the states due their periodic write (the
//!    evidence counts) are written in one transaction, and the watched time
//!    of the others is checkpointed (one small row each, in one more).
//! 3. **Raise**: the remaining weights; a raise the router refuses leaves
//!    the in-memory state at the weight the router holds, so the next tick
//!    raises again.
//! 4. **Reconcile**: the router is read back and set to the committed weight
//!    if it drifted (someone edited it by hand).
//!
//! A shadowed rollout (see [`Managed::shadow`](super::rollout::Managed))
//! gets no router call but reads: its decisions carry no weight or finalize
//! effect (the engine emits none in shadow), it is never retargeted, and
//! step 4 only reads the router's weight (the team's split) for the view.
//!
//! Every write first asks [`Leadership`](crate::ports::Leadership) whether
//! this process may act.

use super::view::{Event, LastDecision};
use super::{Controller, ControllerError};
use crate::engine::{Decision, Effect, RolloutState, Timestamp};
use crate::notify;
use crate::ports::{Change, Checkpoint};
use crate::spec::model::RolloutId;

/// A state with the fields that change every tick cleared: what a write
/// compares (the rest is checkpointed).
fn material(state: &RolloutState) -> RolloutState {
    let mut s = state.clone();
    s.last_tick = None;
    s.step_elapsed = std::time::Duration::ZERO;
    s.evidence = Default::default();
    s
}

impl Controller {
    /// Carries out `decisions`, taken at `now`, and writes what waits for
    /// the end of a tick unless a tick is under way (its end writes them: a
    /// command does not wait for a tick's thousands of deferred writes).
    pub(super) async fn execute(
        &mut self,
        decisions: Vec<(RolloutId, Decision)>,
        now: Timestamp,
    ) -> Result<(), ControllerError> {
        let done = self.execute_part(decisions, now).await;
        if !self.tick_under_way() {
            self.write_deferred().await;
        }
        done
    }

    /// Carries out `decisions` as part of a tick: periodic writes and the
    /// watched time of the rollouts not written wait for
    /// [`Self::write_deferred`] at the end of the tick (one small
    /// transaction per tick, not one per part).
    pub(super) async fn execute_part(
        &mut self,
        decisions: Vec<(RolloutId, Decision)>,
        now: Timestamp,
    ) -> Result<(), ControllerError> {
        if decisions.is_empty() {
            return Ok(());
        }
        if !self.leadership.may_act() {
            return Err(ControllerError::NotLeader);
        }
        // 1. Cut first: a lower canary weight is always safe to apply.
        for (id, d) in &decisions {
            let Some(m) = self.rollouts.get_mut(id) else {
                continue;
            };
            let held = m.applied.unwrap_or(m.state.weight);
            for e in &d.effects {
                if let Effect::SetWeight { weight } = e
                    && *weight < held
                {
                    match m.router.set_weight(*weight).await {
                        Ok(()) => m.applied = Some(*weight),
                        Err(e) => {
                            self.metrics.count_error(e.kind());
                            tracing::error!(rollout = %id, %weight, error = %e, "cannot cut the canary's weight; retried every tick");
                        }
                    }
                }
            }
            if m.retarget && super::rollout::hands_off(&d.state, &m.spec) {
                // canaryd does not touch a shadowed rollout's router.
                m.retarget = false;
            }
            if m.retarget {
                match m.router.retarget(&m.spec).await {
                    Ok(()) => m.retarget = false,
                    Err(e) => {
                        self.metrics.count_error(e.kind());
                        tracing::error!(rollout = %id, error = %e, "cannot point the router at the spec's upstreams; retried next tick");
                    }
                }
            }
        }
        // 2. Commit what changed: states, records and alerts together. A
        // state only due its periodic write waits for the end of the tick.
        let checkpoint = self.settings.checkpoint_every;
        let mut periodic = Vec::new();
        let changes: Vec<Change> = decisions
            .iter()
            .filter_map(|(id, d)| {
                let m = self.rollouts.get(id)?;
                let changed = m
                    .committed
                    .as_ref()
                    .is_none_or(|c| material(c) != material(&d.state));
                let due = now.since(m.committed_at) >= checkpoint;
                let writes = changed || d.records().next().is_some();
                if due && !writes {
                    periodic.push((id.clone(), d.state.clone()));
                }
                writes.then(|| {
                    Change::of(id, d).with_deliveries(notify::outgoing(
                        &self.alerts,
                        &m.spec,
                        &m.state,
                        d,
                    ))
                })
            })
            .collect();
        if !changes.is_empty() {
            let queued = changes.iter().any(|c| !c.deliveries.is_empty());
            let written: std::collections::HashSet<RolloutId> =
                changes.iter().map(|c| c.id.clone()).collect();
            if let Err(e) = self.store.commit(changes, now).await {
                self.view.set_store_error(Some(e.to_string()));
                // Retried at the next tick on the grid, with the others.
                for (id, _) in &decisions {
                    if let Some(m) = self.rollouts.get_mut(id) {
                        let next = self
                            .timers
                            .next_on_grid(now, m.spec.strategy.analysis.interval);
                        m.next_tick = Some(next);
                        self.timers.tick_at(id, next);
                    }
                }
                return Err(e.into());
            }
            self.view.set_store_error(None);
            for (id, d) in &decisions {
                if written.contains(id)
                    && let Some(m) = self.rollouts.get_mut(id)
                {
                    m.committed = Some(d.state.clone());
                    m.committed_at = now;
                }
            }
            if queued {
                self.alerts_queued.notify_one();
            }
        }
        // Watched time of the rollouts whose state was not written: a tiny
        // checkpoint each tick, so a crash loses at most one interval of it.
        for (id, d) in &decisions {
            let written = self.rollouts.get(id).is_none_or(|m| m.committed_at == now);
            if let Some(last_tick) = d.state.last_tick
                && d.state.phase.in_flight()
                && !written
            {
                let mark = Checkpoint {
                    id: id.clone(),
                    step_elapsed: d.state.step_elapsed,
                    last_tick,
                };
                self.deferred.mark(now, mark);
            }
        }
        for (id, state) in periodic {
            self.deferred.periodic(&id, now, state);
        }
        // 3. The rest, in order; then the picture everyone sees.
        for (id, d) in decisions {
            self.apply_rest(&id, d, now).await;
        }
        Ok(())
    }

    /// Raises, finalization and records of one committed decision; then the
    /// router is reconciled and the view, metrics and events updated.
    async fn apply_rest(&mut self, id: &RolloutId, d: Decision, now: Timestamp) {
        let Some(m) = self.rollouts.get_mut(id) else {
            return;
        };
        let records: Vec<_> = d.records().cloned().collect();
        let mut state = d.state;
        for e in &d.effects {
            match e {
                Effect::SetWeight { weight } if Some(*weight) != m.applied => {
                    match m.router.set_weight(*weight).await {
                        Ok(()) => m.applied = Some(*weight),
                        Err(err) => {
                            self.metrics.count_error(err.kind());
                            tracing::error!(rollout = %id, %weight, error = %err, "cannot set the canary's weight; raised again next tick");
                            // The state holds what the router holds; the
                            // committed state keeps the decision.
                            if let Some(held) = m.applied
                                && *weight > held
                            {
                                state.weight = held;
                            }
                        }
                    }
                }
                Effect::SetWeight { .. } => {}
                Effect::Finalize { version } => {
                    tracing::info!(rollout = %id, %version, "promoted: {version} is the stable version");
                }
                Effect::Record(r) => {
                    tracing::info!(rollout = %id, seq = r.seq, action = %r.action, from = ?r.from, to = ?r.to, "{}", r.reason);
                    self.metrics.count_decision(id, r);
                    m.last_decision = Some(LastDecision {
                        at: r.at,
                        action: r.action.to_string(),
                        reason: r.reason.clone(),
                        by: r.by.clone(),
                    });
                }
                Effect::Notify(_) => {}
            }
        }
        if !d.gates.is_empty() {
            m.gates = d.gates;
            self.view
                .sample(id, &m.spec, state.canary_version.as_deref(), now, &m.gates);
        }
        let interval = m.spec.strategy.analysis.interval;
        // A router may act on what was committed (a cluster router brings
        // its Deployments in step when read): after a change it is read
        // again, not trusted from the measurement's read before the commit.
        let moved = m.state.phase != state.phase
            || m.state.step != state.step
            || m.state.weight != state.weight
            || m.state.canary_version != state.canary_version;
        if moved {
            m.read_back = None;
        }
        m.state = state;
        let wall = self.clock.now();
        m.next_tick = d
            .next_tick
            .map(|_| self.timers.next_tick(now, wall, interval));
        if let Some(next) = m.next_tick {
            self.timers.tick_at(id, next);
        }
        self.reconcile(id, now).await;
        let Some(m) = self.rollouts.get(id) else {
            return;
        };
        match m.applied.filter(|_| m.shadow()) {
            // Shadow: the weight the router holds (the team's), not canaryd's plan.
            Some(held) => {
                let mut shown = m.state.clone();
                shown.weight = held;
                self.metrics.observe_state(id, &shown, &m.gates);
            }
            None => self.metrics.observe_state(id, &m.state, &m.gates),
        }
        // The list's entry and the events share one copy of the view.
        let view = self.view.put(m.view());
        if records.is_empty() {
            self.view.publish(Event::State { rollout: view });
        } else {
            for r in records {
                self.view.publish(Event::Decision {
                    rollout: view.clone(),
                    decision: Box::new(r),
                });
            }
        }
    }

    /// Reads the router back and sets it to the rollout's weight if it
    /// drifted. A rollout not in flight is reconciled on a slow timer; one
    /// whose router could not be set is tried again at its interval.
    pub(super) async fn reconcile(&mut self, id: &RolloutId, now: Timestamp) {
        if !self.leadership.may_act() {
            return;
        }
        let Some(m) = self.rollouts.get_mut(id) else {
            return;
        };
        // The measurement's read of this router, if it still stands for it.
        let read_back = m
            .read_back
            .take()
            .filter(|r| std::sync::Arc::ptr_eq(&r.router, &m.router))
            .map(|r| r.weight);
        if m.shadow() {
            // Shadow: the split is the team's; it is only read.
            let read = match read_back {
                Some(read) => read,
                None => m.router.weight().await,
            };
            let settled = read.is_ok();
            m.applied = match read {
                Ok(w) => Some(w),
                Err(e) => {
                    self.metrics.count_error(e.kind());
                    tracing::warn!(rollout = %id, error = %e, "cannot read the router's weight (shadow)");
                    m.spec.strategy.shadow_weight
                }
            };
            let every = if settled {
                self.settings.idle_reconcile_every
            } else {
                m.spec.strategy.analysis.interval
            };
            m.next_reconcile = now.plus(every);
            self.timers.reconcile_at(id, m.next_reconcile);
            return;
        }
        let desired = m.state.weight;
        // A read-back that agrees needs no second read; one that does not may
        // be older than this tick's own write, so the router is read again.
        let read = match read_back {
            Some(Ok(w)) if m.router.same_weight(w, desired) => Ok(w),
            _ => m.router.weight().await,
        };
        let settled = match read {
            Ok(w) if m.router.same_weight(w, desired) => {
                m.applied = Some(w);
                true
            }
            Ok(w) => {
                tracing::warn!(rollout = %id, router = %w, desired = %desired, "router weight differs from the committed weight; setting it");
                m.applied = Some(w);
                match m.router.set_weight(desired).await {
                    Ok(()) => {
                        m.applied = Some(desired);
                        true
                    }
                    Err(e) => {
                        self.metrics.count_error(e.kind());
                        tracing::error!(rollout = %id, error = %e, "cannot reconcile the router");
                        false
                    }
                }
            }
            Err(e) => {
                self.metrics.count_error(e.kind());
                tracing::warn!(rollout = %id, error = %e, "cannot read the router's weight");
                false
            }
        };
        let every = if settled {
            self.settings.idle_reconcile_every
        } else {
            m.spec.strategy.analysis.interval
        };
        m.next_reconcile = now.plus(every);
        self.timers.reconcile_at(id, m.next_reconcile);
    }
}
