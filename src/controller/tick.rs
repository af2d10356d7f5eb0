//! Ticks: which rollouts are due (from the timer queue), their measurement
//! off the control loop (one grouped batch of queries, then each router's
//! health and weight read with bounded concurrency), and deciding on the
//! answers in chunks, so a command or a reload waits for at most one chunk,
//! never a whole tick. People's commands take the same path to the executor.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;

use super::{CommandError, CommandRequest, Controller};
use crate::engine::{
    Decision, Input, Observation, Timestamp, counts_needed, decide, reading_gates,
};
use crate::ports::{Health, RouterError, TrafficRouter};
use crate::provider::{Answers, Batch, CountsPlan, RolloutPlan, plan_counts, plan_rollout};
use crate::spec::model::RolloutId;
use crate::spec::units::Weight;

/// Routers read at once by a measurement.
const ROUTER_READS: usize = 64;

/// Rollouts decided per turn of the loop.
const CHUNK: usize = 64;

/// Idle routers reconciled per turn of the loop (a router read each: at
/// 2,000 idle rollouts, all due in the same minute, one turn took 2–4 s).
const RECONCILE_CHUNK: usize = 32;

/// Rollouts planned per turn of the loop.
pub(super) const PLAN_CHUNK: usize = 1024;

/// One rollout in a measurement.
pub(super) struct Item {
    id: RolloutId,
    plan: Option<RolloutPlan>,
    counts: Option<CountsPlan>,
    router: Arc<dyn TrafficRouter>,
    health: Health,
    /// The router's weight read with its health (the executor's read-back).
    weight: Option<Result<Weight, RouterError>>,
}

/// Part of a measurement's results, sent back to the loop.
pub(super) struct Measured {
    at: Timestamp,
    started: Instant,
    answers: Arc<Answers>,
    items: Vec<Item>,
    /// The tick's last part (its duration is observed then).
    last: bool,
}

/// A router's weight as read by a measurement, for the executor's
/// read-back (used only if the router was not changed or set since).
pub(super) struct ReadBack {
    pub router: Arc<dyn TrafficRouter>,
    pub weight: Result<Weight, RouterError>,
}

/// A tick being planned, a chunk of rollouts per turn of the loop (at
/// 10,000 rollouts planning takes over 100 ms; a command waits for one chunk).
pub(super) struct Planning {
    at: Timestamp,
    started: Instant,
    batch: Batch,
    items: Vec<Item>,
    due: std::vec::IntoIter<RolloutId>,
}

impl Controller {
    /// Reconciles up to a chunk of the idle routers that are due (the rest
    /// on the next turns), and starts planning the tick of
    /// every rollout whose tick is due (a tick still being planned is
    /// finished first).
    pub(super) async fn tick_due(&mut self, now: Timestamp) {
        for id in self.timers.due_reconciles(now, RECONCILE_CHUNK) {
            let due = self
                .rollouts
                .get(&id)
                .is_some_and(|m| m.next_tick.is_none() && m.next_reconcile <= now);
            if due {
                self.reconcile(&id, now).await;
            }
        }
        // A tick still being planned (an interval shorter than its planning)
        // is planned in full and measured first.
        self.plan_more(usize::MAX);
        let due: Vec<RolloutId> = self
            .timers
            .due_ticks(now)
            .into_iter()
            .filter(|id| {
                self.rollouts
                    .get(id)
                    .is_some_and(|m| !m.measuring && m.next_tick.is_some_and(|t| t <= now))
            })
            .collect();
        if due.is_empty() {
            return;
        }
        self.ticks_in_flight += 1;
        self.planning = Some(Planning {
            at: now,
            started: Instant::now(),
            batch: Batch::grouped(),
            items: Vec::with_capacity(due.len()),
            due: due.into_iter(),
        });
        self.plan_more(PLAN_CHUNK);
    }

    /// Plans up to `chunk` more rollouts of the tick being planned, and
    /// starts its measurement (one batch of grouped queries, on its own
    /// task) once every rollout is planned.
    pub(super) fn plan_more(&mut self, chunk: usize) {
        let Some(mut p) = self.planning.take() else {
            return;
        };
        // The specs may have changed since the last turn.
        p.batch.forget_texts();
        let server = self.settings.default_prometheus.as_deref();
        for id in p.due.by_ref().take(chunk) {
            // Gone, or re-added and measured already, since the tick began.
            let Some(m) = self.rollouts.get_mut(&id).filter(|m| !m.measuring) else {
                continue;
            };
            m.measuring = true;
            let gates = reading_gates(&m.spec, &m.state);
            let plan = plan_rollout(&mut p.batch, &m.spec, &self.policies, server, &gates);
            let counts = counts_needed(&m.spec, &m.state)
                .map(|needed| plan_counts(&mut p.batch, &m.spec, &self.policies, server, needed))
                .transpose();
            if let Some(e) = plan.as_ref().err().or(counts.as_ref().err()) {
                tracing::warn!(rollout = %id, error = %e, "cannot measure; its gates are inconclusive");
            }
            p.items.push(Item {
                id,
                plan: plan.ok(),
                counts: counts.ok().flatten(),
                router: m.router.clone(),
                health: Health::default(),
                weight: None,
            });
        }
        if p.due.len() > 0 {
            self.planning = Some(p);
            return;
        }
        if p.items.is_empty() {
            self.ticks_in_flight -= 1;
            return;
        }
        self.measure(p);
    }

    /// Measures a planned tick off the loop: its queries, then each
    /// router's health and weight, sent back in chunks to be decided.
    fn measure(&self, planning: Planning) {
        let Planning {
            at: now,
            started,
            batch,
            items,
            ..
        } = planning;
        let source = self.source.clone();
        let done = self.measured_tx.clone();
        let query_duration = self.metrics.query_duration.clone();
        tokio::spawn(async move {
            let queries = batch.queries();
            let answers = if queries.is_empty() {
                Vec::new()
            } else {
                let asked = Instant::now();
                let answers = source.query_batch(&queries, now).await;
                query_duration.observe(asked.elapsed().as_secs_f64());
                answers
            };
            let answers = Arc::new(Answers::new(&batch, answers));
            let items: Vec<Item> = futures::stream::iter(items)
                .map(|mut item| async move {
                    let read = item.router.observe().await;
                    item.health = read.health;
                    item.weight = Some(read.weight);
                    item
                })
                .buffer_unordered(ROUTER_READS)
                .collect()
                .await;
            let parts = items.len().div_ceil(CHUNK);
            let mut items = items.into_iter();
            for part in 0..parts {
                let chunk: Vec<Item> = items.by_ref().take(CHUNK).collect();
                let sent = done
                    .send(Measured {
                        at: now,
                        started,
                        answers: answers.clone(),
                        items: chunk,
                        last: part + 1 == parts,
                    })
                    .await;
                if sent.is_err() {
                    return;
                }
            }
        });
    }

    /// Decides on part of a measurement, each rollout from its state now (a
    /// command may have changed it meanwhile), and carries it out. The
    /// tick's start when this was its last part (its deferred writes are due).
    pub(super) async fn decide_measured(&mut self, measured: Measured) -> Option<Instant> {
        let Measured {
            at,
            started,
            answers,
            items,
            last,
        } = measured;
        let mut decisions: Vec<(RolloutId, Decision)> = Vec::with_capacity(items.len());
        for item in items {
            let Some(m) = self.rollouts.get_mut(&item.id) else {
                continue;
            };
            m.measuring = false;
            m.health = item.health;
            m.read_back = item.weight.map(|weight| ReadBack {
                router: item.router.clone(),
                weight,
            });
            let obs = Observation {
                // A canary whose upstream is being moved is not ready yet.
                canary_ready: item.health.canary && !m.retarget,
                measurements: item
                    .plan
                    .map(|p| p.measurements(&answers))
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
        if let Err(e) = self.execute_part(decisions, at).await {
            self.error(
                "cannot carry out the tick's decisions; retried next tick",
                &e,
            );
        }
        if last {
            self.ticks_in_flight -= 1;
        }
        last.then_some(started)
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
