//! Ticks: which rollouts are due, their measurement off the control loop (a
//! slow Prometheus never holds up a command or a reload), and deciding on
//! the answers; people's commands take the same path to the executor.

use std::sync::Arc;
use std::time::Instant;

use super::{CommandError, CommandRequest, Controller};
use crate::engine::{
    Decision, Input, Observation, Timestamp, counts_needed, decide, reading_gates,
};
use crate::ports::{Answer, Health, TrafficRouter};
use crate::provider::{Batch, CountsPlan, RolloutPlan, plan_counts, plan_rollout};
use crate::spec::model::RolloutId;

/// One rollout in a measurement.
pub(super) struct Item {
    id: RolloutId,
    plan: Option<RolloutPlan>,
    counts: Option<CountsPlan>,
    router: Arc<dyn TrafficRouter>,
    health: Health,
}

/// A measurement's results, sent back to the loop.
pub(super) struct Measured {
    at: Timestamp,
    started: Instant,
    batch: Batch,
    answers: Vec<Answer>,
    items: Vec<Item>,
}

impl Controller {
    /// Starts measuring every rollout whose time has come (in one batch of
    /// queries, on its own task), and reconciles idle routers that are due.
    pub(super) async fn tick_due(&mut self, now: Timestamp) {
        let idle: Vec<RolloutId> = self
            .rollouts
            .iter()
            .filter(|(_, m)| m.next_tick.is_none() && m.next_reconcile <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in idle {
            self.reconcile(&id, now).await;
        }
        let due: Vec<RolloutId> = self
            .rollouts
            .iter()
            .filter(|(_, m)| !m.measuring && m.next_tick.is_some_and(|t| t <= now))
            .map(|(id, _)| id.clone())
            .collect();
        if due.is_empty() {
            return;
        }
        let started = Instant::now();
        let mut batch = Batch::new();
        let mut items = Vec::with_capacity(due.len());
        let server = self.settings.default_prometheus.as_deref();
        for id in due {
            let Some(m) = self.rollouts.get_mut(&id) else {
                continue;
            };
            m.measuring = true;
            let gates = reading_gates(&m.spec, &m.state);
            let plan = plan_rollout(&mut batch, &m.spec, &self.policies, server, &gates);
            let counts = counts_needed(&m.spec, &m.state)
                .map(|needed| plan_counts(&mut batch, &m.spec, &self.policies, server, needed))
                .transpose();
            if let Some(e) = plan.as_ref().err().or(counts.as_ref().err()) {
                tracing::warn!(rollout = %id, error = %e, "cannot measure; its gates are inconclusive");
            }
            items.push(Item {
                id,
                plan: plan.ok(),
                counts: counts.ok().flatten(),
                router: m.router.clone(),
                health: Health::default(),
            });
        }
        let source = self.source.clone();
        let done = self.measured_tx.clone();
        let query_duration = self.metrics.query_duration.clone();
        tokio::spawn(async move {
            let answers = if batch.queries().is_empty() {
                Vec::new()
            } else {
                let asked = Instant::now();
                let answers = source.query_batch(batch.queries(), now).await;
                query_duration.observe(asked.elapsed().as_secs_f64());
                answers
            };
            for item in &mut items {
                item.health = item.router.health().await;
            }
            let _ = done
                .send(Measured {
                    at: now,
                    started,
                    batch,
                    answers,
                    items,
                })
                .await;
        });
    }

    /// Decides on a measurement's answers, each rollout from its state now
    /// (a command may have changed it meanwhile), and carries it out.
    pub(super) async fn decide_measured(&mut self, measured: Measured) {
        let Measured {
            at,
            started,
            batch,
            answers,
            items,
        } = measured;
        let mut decisions: Vec<(RolloutId, Decision)> = Vec::with_capacity(items.len());
        for item in items {
            let Some(m) = self.rollouts.get_mut(&item.id) else {
                continue;
            };
            m.measuring = false;
            m.health = item.health;
            let obs = Observation {
                // A canary whose upstream is being moved is not ready yet.
                canary_ready: item.health.canary && !m.retarget,
                measurements: item
                    .plan
                    .map(|p| p.measurements(&batch, &answers))
                    .unwrap_or_default(),
                counts: item.counts.map(|c| c.reading(&answers)),
            };
            match decide(&m.spec, &m.state, &Input::Tick(obs), at) {
                Ok(d) => decisions.push((item.id, d)),
                Err(e) => {
                    tracing::error!(rollout = %item.id, error = %e, "a tick was refused (a bug)")
                }
            }
        }
        if let Err(e) = self.execute(decisions, at).await {
            self.error(
                "cannot carry out the tick's decisions; retried next tick",
                &e,
            );
        }
        self.metrics
            .tick_duration
            .observe(started.elapsed().as_secs_f64());
    }

    /// Carries out a person's command on the same path as a tick, at once.
    pub(super) async fn command(&mut self, request: CommandRequest) {
        let CommandRequest {
            id,
            command,
            by,
            reply,
        } = request;
        let Some(m) = self.rollouts.get(&id) else {
            let _ = reply.send(Err(CommandError::NotFound(id)));
            return;
        };
        let now = self.now();
        let outcome = match decide(&m.spec, &m.state, &Input::Command(command, by), now) {
            Err(rejected) => Err(CommandError::Rejected(rejected)),
            Ok(d) => match self.execute(vec![(id.clone(), d)], now).await {
                Ok(()) => self
                    .rollouts
                    .get(&id)
                    .map(|m| m.view())
                    .ok_or(CommandError::NotFound(id)),
                Err(e) => {
                    self.metrics.count_error(e.kind());
                    Err(CommandError::Failed(e))
                }
            },
        };
        let _ = reply.send(outcome);
    }
}
