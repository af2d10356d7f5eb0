//! One controller tick: measure every due rollout in one batch, decide,
//! cut weights, commit, apply the rest; and manual commands on the same path.

use std::time::Instant;

use super::rollout::interval;
use super::view::{Event, LastDecision};
use super::{CommandError, CommandRequest, Controller, now};
use crate::engine::{
    Decision, Effect, Input, Observation, Timestamp, counts_needed, decide, reading_gates,
};
use crate::notify;
use crate::provider::{Batch, MetricsSource, plan_counts, plan_rollout};
use crate::spec::model::RolloutId;
use crate::store::Change;

impl Controller {
    /// Ticks every rollout whose time has come.
    pub(super) async fn tick_due(&mut self, now: Timestamp) {
        let due: Vec<RolloutId> = self
            .rollouts
            .iter()
            .filter(|(_, m)| m.next_tick <= now)
            .map(|(id, _)| id.clone())
            .collect();
        if due.is_empty() {
            return;
        }
        let started = Instant::now();
        let mut batch = Batch::new();
        let mut plans = Vec::with_capacity(due.len());
        let server = self.settings.default_prometheus.as_deref();
        for id in &due {
            let m = &self.rollouts[id];
            let gates = reading_gates(&m.spec, &m.state);
            let plan = plan_rollout(&mut batch, &m.spec, &self.policies, server, &gates);
            let counts = counts_needed(&m.spec, &m.state)
                .map(|needed| plan_counts(&mut batch, &m.spec, &self.policies, server, needed));
            if let Some(e) = plan
                .as_ref()
                .err()
                .or(counts.as_ref().and_then(|c| c.as_ref().err()))
            {
                tracing::warn!(rollout = %id, error = %e, "cannot measure; its gates are inconclusive");
            }
            plans.push((plan, counts));
        }
        let answers = if batch.queries().is_empty() {
            Vec::new()
        } else {
            let asked = Instant::now();
            let answers = self.source.query_batch(batch.queries(), now).await;
            self.metrics
                .query_duration
                .observe(asked.elapsed().as_secs_f64());
            answers
        };
        let mut decisions = Vec::with_capacity(due.len());
        for (id, (plan, counts)) in due.into_iter().zip(plans) {
            let Some(m) = self.rollouts.get_mut(&id) else {
                continue;
            };
            m.health = m.router.health().await;
            let measurements = plan
                .map(|p| p.measurements(&batch, &answers))
                .unwrap_or_default();
            let obs = Observation {
                canary_ready: m.health.canary,
                measurements,
                counts: counts.and_then(Result::ok).map(|c| c.reading(&answers)),
            };
            match decide(&m.spec, &m.state, &Input::Tick(obs), now) {
                Ok(d) => {
                    // The view and charts show the verdicts the engine reached.
                    m.gates = d.gates.clone();
                    self.view.sample(
                        &id,
                        &m.spec,
                        d.state.canary_version.as_deref(),
                        now,
                        &m.gates,
                    );
                    decisions.push((id, d));
                }
                Err(e) => tracing::error!(rollout = %id, error = %e, "a tick was refused (a bug)"),
            }
        }
        // A failed commit is logged inside and retried next tick.
        let _ = self.apply(decisions, now).await;
        self.metrics
            .tick_duration
            .observe(started.elapsed().as_secs_f64());
    }

    /// Executes decisions: weight cuts, one commit, then the other effects.
    /// Returns whether the commit succeeded.
    async fn apply(
        &mut self,
        decisions: Vec<(RolloutId, Decision)>,
        now: Timestamp,
    ) -> Result<(), String> {
        // 1. Cut traffic first: a lower canary weight is always safe to apply.
        for (id, d) in &decisions {
            let Some(m) = self.rollouts.get(id) else {
                continue;
            };
            for e in &d.effects {
                if let Effect::SetWeight { weight } = e
                    && *weight < m.state.weight
                    && let Err(err) = m.router.set_weight(*weight).await
                {
                    tracing::error!(rollout = %id, %weight, error = %err, "cannot cut the canary's weight; retrying next tick");
                }
            }
        }
        // 2. Commit the tick: state, records and alerts together.
        let changes: Vec<Change> = decisions
            .iter()
            .map(|(id, d)| {
                let change = Change::of(id, d);
                match self.rollouts.get(id) {
                    Some(m) => {
                        change.with_deliveries(notify::outgoing(&self.alerts, &m.spec, &m.state, d))
                    }
                    None => change,
                }
            })
            .collect();
        let queued = changes.iter().any(|c| !c.deliveries.is_empty());
        let store = self.store.clone();
        let committed = tokio::task::spawn_blocking(move || store.commit(&changes, now))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        if let Err(e) = &committed {
            tracing::error!(error = %e, "cannot commit the tick's decisions; nothing changed, retrying next tick");
            for (id, _) in &decisions {
                if let Some(m) = self.rollouts.get_mut(id) {
                    m.next_tick = now.plus(interval(&m.spec));
                }
            }
            return Err(e.clone());
        }
        if queued {
            self.alerts_queued.notify_one();
        }
        // 3. The rest, in order; then the picture everyone sees.
        for (id, d) in decisions {
            let Some(m) = self.rollouts.get_mut(&id) else {
                continue;
            };
            let records: Vec<_> = d.records().cloned().collect();
            for e in &d.effects {
                match e {
                    Effect::SetWeight { weight } => {
                        if let Err(err) = m.router.set_weight(*weight).await {
                            tracing::error!(rollout = %id, %weight, error = %err, "cannot set the canary's weight; reconciled next tick");
                        }
                    }
                    Effect::Finalize { version } => {
                        tracing::info!(rollout = %id, %version, "promoted: {version} is the stable version");
                    }
                    Effect::Record(r) => {
                        tracing::info!(rollout = %id, seq = r.seq, action = %r.action, from = ?r.from, to = ?r.to, "{}", r.reason);
                        self.metrics.count_decision(&id, r);
                        m.last_decision = Some(LastDecision {
                            at: r.at,
                            action: r.action.to_string(),
                            reason: r.reason.clone(),
                        });
                    }
                    Effect::Notify(_) => {}
                }
            }
            m.state = d.state;
            m.next_tick = d
                .next_tick
                .unwrap_or_else(|| now.plus(interval(&m.spec)))
                .min(now.plus(interval(&m.spec)));
            // Reconcile: the router holds the committed weight, whatever happened to it.
            match m.router.weight().await {
                Ok(w) if !m.router.same_weight(w, m.state.weight) => {
                    tracing::warn!(rollout = %id, router = %w, desired = %m.state.weight, "router weight drifted; setting it back");
                    if let Err(err) = m.router.set_weight(m.state.weight).await {
                        tracing::error!(rollout = %id, error = %err, "cannot reconcile the router");
                    }
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(rollout = %id, error = %err, "cannot read the router's weight")
                }
            }
            self.metrics.observe_state(&id, &m.state, &m.gates);
            let view = m.view();
            self.view.put(view.clone());
            if records.is_empty() {
                self.view.publish(Event::State {
                    rollout: Box::new(view.clone()),
                });
            }
            for r in records {
                self.view.publish(Event::Decision {
                    rollout: Box::new(view.clone()),
                    decision: Box::new(r),
                });
            }
        }
        Ok(())
    }

    /// Carries out a person's command on the same path as a tick.
    pub(super) async fn command(&mut self, request: CommandRequest) {
        let CommandRequest { id, command, reply } = request;
        let Some(m) = self.rollouts.get(&id) else {
            let _ = reply.send(Err(CommandError::NotFound(id.to_string())));
            return;
        };
        let now = now();
        let outcome = match decide(&m.spec, &m.state, &Input::Command(command), now) {
            Err(rejected) => Err(CommandError::Rejected(rejected.to_string())),
            Ok(d) => match self.apply(vec![(id.clone(), d)], now).await {
                Ok(()) => self
                    .rollouts
                    .get(&id)
                    .map(|m| m.view())
                    .ok_or_else(|| CommandError::NotFound(id.to_string())),
                Err(e) => Err(CommandError::Store(format!(
                    "{e}; the decision was not stored (a weight cut may already be applied) and the next tick decides again"
                ))),
            },
        };
        let _ = reply.send(outcome);
    }
}
