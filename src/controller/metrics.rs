//! canaryd's own metrics (BRIEF §7), in the Prometheus text format on `/metrics`.
//!
//! Per-rollout series stay O(rollouts × a small constant): six phase series
//! (the current one 1, the others 0), one weight, one value per gate being
//! judged (a gate no longer judged, e.g. after the spec's gates changed or the
//! step moved on, is removed), and a counter per action and rollback reason
//! seen. Every label set a rollout was given is remembered, and all are
//! removed when the rollout goes away.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::engine::{DecisionRecord, GateResult, Phase, RolloutState};
use crate::spec::model::RolloutId;

/// `{rollout}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RolloutLabel {
    /// `namespace/name`.
    pub rollout: String,
}

/// `{rollout, phase}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    /// `namespace/name`.
    pub rollout: String,
    /// The phase.
    pub phase: PhaseValue,
}

/// A phase as a label value (the engine's names: `RolledBack`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum PhaseValue {
    /// [`Phase::Idle`].
    Idle,
    /// [`Phase::Progressing`].
    Progressing,
    /// [`Phase::Paused`].
    Paused,
    /// [`Phase::Promoted`].
    Promoted,
    /// [`Phase::RolledBack`].
    RolledBack,
    /// [`Phase::Aborted`].
    Aborted,
}

impl From<Phase> for PhaseValue {
    fn from(p: Phase) -> PhaseValue {
        match p {
            Phase::Idle => PhaseValue::Idle,
            Phase::Progressing => PhaseValue::Progressing,
            Phase::Paused => PhaseValue::Paused,
            Phase::Promoted => PhaseValue::Promoted,
            Phase::RolledBack => PhaseValue::RolledBack,
            Phase::Aborted => PhaseValue::Aborted,
        }
    }
}

/// `{rollout, gate}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GateLabels {
    /// `namespace/name`.
    pub rollout: String,
    /// `error_rate < 1%`.
    pub gate: String,
}

/// `{rollout, action}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    /// `namespace/name`.
    pub rollout: String,
    /// The decision's action.
    pub action: String,
}

/// `{rollout, reason}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// `namespace/name`.
    pub rollout: String,
    /// `abort_condition`, `promotion_gate`, `inconclusive`…
    pub reason: String,
}

/// `{kind}`: a low-cardinality error category.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `store`, `router_io`, `spec_source`…
    pub kind: String,
}

/// `{work}`: what a turn of the control loop did.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkLabel {
    /// The work.
    pub work: LoopWork,
}

/// What a turn of the control loop did (commands wait for the turn in progress).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum LoopWork {
    /// A person's command, carried out.
    Command,
    /// Due rollouts planned and their measurement started.
    Tick,
    /// A chunk of measured rollouts decided and carried out.
    Decide,
    /// The end of a tick: its deferred state writes.
    TickEnd,
    /// The specs read again.
    Reload,
}

/// `{sink, result}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabels {
    /// The sink kind.
    pub sink: String,
    /// `delivered`, `retry`, `gave_up`.
    pub result: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Handles on the own metrics.
#[derive(Clone)]
pub struct Metrics {
    phase: Family<PhaseLabels, Gauge>,
    weight: Family<RolloutLabel, FloatGauge>,
    gate_value: Family<GateLabels, FloatGauge>,
    decisions: Family<ActionLabels, Counter>,
    rollbacks: Family<ReasonLabels, Counter>,
    /// Time per batch of Prometheus queries.
    pub query_duration: Histogram,
    /// Time per controller tick (measure, decide, commit, apply).
    pub tick_duration: Histogram,
    /// Alert deliveries by sink and result.
    pub alerts: Family<AlertLabels, Counter>,
    /// Time per turn of the control loop, by its work.
    loop_turn: Family<WorkLabel, Histogram, fn() -> Histogram>,
    errors: Family<KindLabel, Counter>,
    /// The label values each rollout (`namespace/name`) was given.
    known: Arc<Mutex<HashMap<String, Known>>>,
}

/// A rollout's label values beyond its name, to remove them all with it.
#[derive(Debug, Default)]
struct Known {
    /// Gates with a value.
    gates: BTreeSet<String>,
    /// Actions counted.
    actions: BTreeSet<String>,
    /// Rollback reasons counted.
    reasons: BTreeSet<String>,
    /// The phase and weight last set (set again only when they change: at
    /// 10,000 rollouts, seven label lookups each per tick add up).
    shown: Option<(PhaseValue, f64)>,
}

/// 0.5 ms to about 4 s.
fn loop_turn_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 14))
}

const PHASES: [PhaseValue; 6] = [
    PhaseValue::Idle,
    PhaseValue::Progressing,
    PhaseValue::Paused,
    PhaseValue::Promoted,
    PhaseValue::RolledBack,
    PhaseValue::Aborted,
];

impl Metrics {
    /// Creates and registers every own metric.
    pub fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            phase: Family::default(),
            weight: Family::default(),
            gate_value: Family::default(),
            decisions: Family::default(),
            rollbacks: Family::default(),
            query_duration: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            tick_duration: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            alerts: Family::default(),
            loop_turn: Family::new_with_constructor(loop_turn_histogram),
            errors: Family::default(),
            known: Arc::default(),
        };
        registry.register(
            "canaryd_rollout_phase",
            "1 for the rollout's current phase, 0 for the others",
            m.phase.clone(),
        );
        registry.register(
            "canaryd_canary_weight",
            "Canary traffic weight, percent",
            m.weight.clone(),
        );
        registry.register(
            "canaryd_gate_value",
            "Last measured canary value of each gate",
            m.gate_value.clone(),
        );
        registry.register(
            "canaryd_decisions",
            "Decisions taken, by action",
            m.decisions.clone(),
        );
        registry.register(
            "canaryd_rollbacks",
            "Automatic rollbacks, by reason",
            m.rollbacks.clone(),
        );
        registry.register(
            "canaryd_prometheus_query_duration_seconds",
            "Time to answer one tick's batch of Prometheus queries",
            m.query_duration.clone(),
        );
        registry.register(
            "canaryd_tick_duration_seconds",
            "Time of one controller tick",
            m.tick_duration.clone(),
        );
        registry.register(
            "canaryd_alerts",
            "Alert deliveries, by sink and result",
            m.alerts.clone(),
        );
        registry.register(
            "canaryd_control_loop_turn_seconds",
            "Time of one turn of the control loop, by its work (a command waits for the turn in progress)",
            m.loop_turn.clone(),
        );
        registry.register(
            "canaryd_errors",
            "Errors of the controller's systems, by kind (store, router, spec source, …)",
            m.errors.clone(),
        );
        m
    }

    /// Observes one turn of the control loop.
    pub fn observe_turn(&self, work: LoopWork, seconds: f64) {
        self.loop_turn
            .get_or_create(&WorkLabel { work })
            .observe(seconds);
    }

    /// Counts an error of `kind`.
    pub fn count_error(&self, kind: &str) {
        self.errors
            .get_or_create(&KindLabel {
                kind: kind.to_string(),
            })
            .inc();
    }

    /// The label values known per rollout (a poisoned lock still holds
    /// whole entries: each update is a set insert or remove).
    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<String, Known>> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops every per-rollout series of a rollout no longer managed: its
    /// phases, weight, gate values (those of `gates` and any it was given
    /// before), decision and rollback counters.
    pub fn forget(&self, id: &RolloutId, gates: &[GateResult]) {
        let rollout = id.to_string();
        let known = self.known().remove(&rollout).unwrap_or_default();
        for phase in PHASES {
            self.phase.remove(&PhaseLabels {
                rollout: rollout.clone(),
                phase,
            });
        }
        self.weight.remove(&RolloutLabel {
            rollout: rollout.clone(),
        });
        let names = gates.iter().map(|g| &g.name).chain(known.gates.iter());
        for gate in names {
            self.gate_value.remove(&GateLabels {
                rollout: rollout.clone(),
                gate: gate.clone(),
            });
        }
        for action in known.actions {
            self.decisions.remove(&ActionLabels {
                rollout: rollout.clone(),
                action,
            });
        }
        for reason in known.reasons {
            self.rollbacks.remove(&ReasonLabels {
                rollout: rollout.clone(),
                reason,
            });
        }
    }

    /// Updates the gauges of one rollout: `gates` are the ones it is judged
    /// on now (or last was); another gate's value is removed.
    pub fn observe_state(&self, id: &RolloutId, state: &RolloutState, gates: &[GateResult]) {
        let rollout = id.to_string();
        let current = PhaseValue::from(state.phase);
        let weight = state.weight.percent();
        let mut known = self.known();
        let known = known.entry(rollout.clone()).or_default();
        if known.shown != Some((current, weight)) {
            for phase in PHASES {
                let labels = PhaseLabels {
                    rollout: rollout.clone(),
                    phase,
                };
                self.phase
                    .get_or_create(&labels)
                    .set(i64::from(phase == current));
            }
            self.weight
                .get_or_create(&RolloutLabel {
                    rollout: rollout.clone(),
                })
                .set(weight);
            known.shown = Some((current, weight));
        }
        // A gate kept but not measured this time keeps its last value.
        let gone: Vec<String> = known
            .gates
            .iter()
            .filter(|k| !gates.iter().any(|g| &g.name == *k))
            .cloned()
            .collect();
        for gate in gone {
            known.gates.remove(&gate);
            self.gate_value.remove(&GateLabels {
                rollout: rollout.clone(),
                gate,
            });
        }
        for g in gates {
            if let Some(v) = g.value {
                let labels = GateLabels {
                    rollout: rollout.clone(),
                    gate: g.name.clone(),
                };
                self.gate_value.get_or_create(&labels).set(v);
                if !known.gates.contains(&g.name) {
                    known.gates.insert(g.name.clone());
                }
            }
        }
    }

    /// Counts a recorded decision (and a rollback by its reason).
    pub fn count_decision(&self, id: &RolloutId, record: &DecisionRecord) {
        let rollout = id.to_string();
        let action = record.action.to_string();
        self.decisions
            .get_or_create(&ActionLabels {
                rollout: rollout.clone(),
                action: action.clone(),
            })
            .inc();
        let mut known = self.known();
        let known = known.entry(rollout.clone()).or_default();
        known.actions.insert(action);
        if record.action == crate::engine::Action::Rollback {
            let reason = serde_json::to_value(&record.detail)
                .ok()
                .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_string))
                .unwrap_or_else(|| "unknown".to_string());
            known.reasons.insert(reason.clone());
            self.rollbacks
                .get_or_create(&ReasonLabels { rollout, reason })
                .inc();
        }
    }
}

#[cfg(test)]
mod tests;
