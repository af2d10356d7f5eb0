//! The rollouts the controller manages, and what spec changes do to them:
//! a new spec gets a router (or the one it released) and its stored state;
//! a changed spec applies from a tick taken at once; a rejected spec leaves
//! the previous one running; a removed spec aborts an in-flight canary and
//! keeps its router serving stable traffic.

use std::sync::Arc;

use super::view::{Event, LastDecision, RolloutView};
use super::{Controller, ControllerError};
use crate::engine::{GateResult, Input, RolloutState, Timestamp, decide};
use crate::ports::{Health, SpecEvent, TrafficRouter};
use crate::spec::model::{DeployMode, DeploySpec, RolloutId};
use crate::spec::units::Weight;

/// A rollout the controller drives.
pub(super) struct Managed {
    /// Where its spec came from (a file), for people.
    pub origin: String,
    pub spec: DeploySpec,
    /// The state now (in memory).
    pub state: RolloutState,
    /// The state as last committed, and when: what a write compares with.
    pub committed: Option<RolloutState>,
    pub committed_at: Timestamp,
    pub router: Arc<dyn TrafficRouter>,
    /// The weight the router is known to hold (set or read back).
    pub applied: Option<Weight>,
    /// When to measure and decide next (`None`: not in flight).
    pub next_tick: Option<Timestamp>,
    /// When to reconcile the router of a rollout not in flight.
    pub next_reconcile: Timestamp,
    /// A measurement is running for it.
    pub measuring: bool,
    /// The router's weight as the last measurement read it.
    pub read_back: Option<super::tick::ReadBack>,
    /// Its spec moved the canary's (or stable's) upstream: retarget the
    /// router once the engine has cut the canary's weight.
    pub retarget: bool,
    pub last_decision: Option<LastDecision>,
    pub gates: Vec<GateResult>,
    pub spec_error: Option<String>,
    pub health: Health,
}

/// True when canaryd must not touch the traffic of a rollout in `state`
/// under `spec` (see [`Managed::shadow`]).
pub(super) fn hands_off(state: &RolloutState, spec: &DeploySpec) -> bool {
    state.shadow() || (!state.phase.in_flight() && spec.strategy.mode == DeployMode::Shadow)
}

impl Managed {
    /// True when canaryd must not touch this rollout's traffic: its release
    /// in flight is shadowed; or, between releases, the last one was, or the
    /// spec says shadow (an active mode applies from the next release).
    pub fn shadow(&self) -> bool {
        hands_off(&self.state, &self.spec)
    }

    pub fn view(&self) -> RolloutView {
        let mut v = RolloutView::of(&self.spec, &self.state, &self.origin);
        if let Some(w) = self.applied {
            v.canary_weight = w.percent();
        }
        v.last_decision = self.last_decision.clone();
        v.gates = self.gates.clone();
        v.file_error = self.spec_error.clone();
        v.health = self.health;
        v.mode = if self.shadow() {
            DeployMode::Shadow
        } else {
            DeployMode::Active
        };
        v
    }
}

impl Controller {
    /// Looks for spec changes now and applies them (at start).
    pub(super) async fn reload(&mut self, now: Timestamp) -> Result<(), ControllerError> {
        let events = self.specs.changes_now().await?;
        self.apply_spec_changes(events, now).await;
        Ok(())
    }

    /// Applies what changed among the specs.
    pub(super) async fn apply_spec_changes(&mut self, events: Vec<SpecEvent>, now: Timestamp) {
        for event in events {
            match event {
                SpecEvent::Changed {
                    mut spec,
                    origin,
                    warnings,
                } => {
                    if self.settings.shadow {
                        spec.strategy.mode = DeployMode::Shadow;
                    }
                    for w in warnings {
                        tracing::warn!(file = %origin, "{w}");
                    }
                    self.spec_changed(*spec, origin, now).await;
                }
                SpecEvent::Rejected { id, origin, report } => {
                    self.spec_rejected(id.as_ref(), &origin, report);
                }
                SpecEvent::Removed { id, origin } => self.spec_removed(&id, &origin, now).await,
            }
        }
    }

    async fn spec_changed(&mut self, spec: DeploySpec, origin: String, now: Timestamp) {
        let id = spec.id.clone();
        let Some(m) = self.rollouts.get(&id) else {
            return self.add(spec, origin, now).await;
        };
        // Start a new router before letting go of the old one: if it cannot
        // start, the old spec and router keep running.
        let new_router = if self.routers.needs_new_router(&m.spec, &spec) {
            match self.routers.router(&spec).await {
                Ok(r) => Some(r),
                Err(e) => {
                    self.specs.retry(&id);
                    self.error(
                        "cannot start the new router; the previous spec keeps running",
                        &e.into(),
                    );
                    return;
                }
            }
        } else {
            None
        };
        let Some(m) = self.rollouts.get_mut(&id) else {
            return;
        };
        tracing::info!(rollout = %id, file = %origin, "spec changed; applies from a tick taken now");
        let moved = m.spec.canary != spec.canary || m.spec.stable.address != spec.stable.address;
        if let Some(router) = new_router {
            m.router.stop();
            m.router = router;
            m.applied = None; // reconciled by the next tick's executor
        }
        m.retarget |= moved;
        m.spec = spec;
        m.origin = origin;
        m.spec_error = None;
        m.next_tick = Some(now);
        self.timers.tick_at(&id, now);
        self.view.put(m.view());
    }

    async fn add(&mut self, spec: DeploySpec, origin: String, now: Timestamp) {
        let id = spec.id.clone();
        let released = self.released.remove(&id);
        let router = match released {
            Some((r, old)) if !self.routers.needs_new_router(&old, &spec) => {
                // Handed back (its spec returned): retarget to this spec
                // (not in shadow: canaryd leaves that router as it is).
                let shadow = spec.strategy.mode == DeployMode::Shadow;
                if !shadow && let Err(e) = r.retarget(&spec).await {
                    self.error("cannot retarget the router", &e.into());
                }
                Ok(r)
            }
            other => {
                // A released router of another kind: stopped first, as it may
                // hold the listen address the new one needs.
                if let Some((old, _)) = other {
                    old.stop();
                }
                self.routers.router(&spec).await
            }
        };
        let router = match router {
            Ok(r) => r,
            Err(e) => {
                // Not the spec's fault (a port in use…): offered again next reload.
                self.specs.retry(&id);
                let report = e.to_string();
                self.error("cannot start the rollout's router", &e.into());
                self.view.publish(Event::FileRejected {
                    file: origin,
                    errors: report,
                });
                return;
            }
        };
        let stored = self.stored.remove(&id);
        let state = stored
            .clone()
            .unwrap_or_else(|| RolloutState::new(&spec, now));
        let last = self.log.last_decision(&id).await.ok().flatten();
        tracing::info!(rollout = %id, file = %origin, phase = ?state.phase, step = state.step + 1, weight = %state.weight, "managing rollout");
        let in_flight = state.phase.in_flight();
        let m = Managed {
            origin,
            spec,
            state,
            committed_at: now,
            committed: stored,
            router,
            applied: None,
            // A tick at once: it starts a new version, and after a restart
            // the executor sets the router back to the stored weight.
            next_tick: Some(now),
            next_reconcile: now,
            measuring: false,
            read_back: None,
            retarget: false,
            last_decision: last.map(|r| LastDecision {
                at: r.at,
                action: r.action.to_string(),
                reason: r.reason,
                by: r.by,
            }),
            gates: Vec::new(),
            spec_error: None,
            health: Health::default(),
        };
        self.view.put(m.view());
        self.rollouts.insert(id.clone(), m);
        self.timers.tick_at(&id, now);
        if in_flight {
            // Traffic goes back to the stored weight before anything else.
            self.reconcile(&id, now).await;
        }
    }

    fn spec_rejected(&mut self, id: Option<&RolloutId>, origin: &str, report: String) {
        tracing::error!(file = %origin, "deploy file rejected; the previous version keeps running:\n{report}");
        self.metrics.count_error("spec_rejected");
        if let Some(m) = id.and_then(|id| self.rollouts.get_mut(id)) {
            m.spec_error = Some(report.clone());
            self.view.put(m.view());
        }
        self.view.publish(Event::FileRejected {
            file: origin.to_string(),
            errors: report,
        });
    }

    /// A removed spec: an in-flight canary is aborted (weight 0 first,
    /// recorded and alerted), and the router keeps serving the stable version
    /// until the spec returns or canaryd stops. Its state and log are kept.
    async fn spec_removed(&mut self, id: &RolloutId, origin: &str, now: Timestamp) {
        tracing::warn!(rollout = %id, file = %origin, "deploy spec removed; no longer managing the rollout (its router keeps serving, its state and log are kept)");
        if let Some(m) = self.rollouts.get(id)
            && let Ok(d) = decide(&m.spec, &m.state, &Input::SpecRemoved, now)
            && !d.effects.is_empty()
            && let Err(e) = self.execute(vec![(id.clone(), d)], now).await
        {
            self.error("cannot abort the rollout of a removed spec", &e);
        }
        if let Some(m) = self.rollouts.remove(id) {
            self.metrics.forget(id, &m.gates);
            self.stored.insert(id.clone(), m.state);
            self.released.insert(id.clone(), (m.router, m.spec));
        }
        self.view.remove(id);
    }
}
