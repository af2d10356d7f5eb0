//! canaryd's own metrics (BRIEF §7), in the Prometheus text format on `/metrics`.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
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
    pub phase: String,
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
    errors: Family<KindLabel, Counter>,
}

const PHASES: [Phase; 6] = [
    Phase::Idle,
    Phase::Progressing,
    Phase::Paused,
    Phase::Promoted,
    Phase::RolledBack,
    Phase::Aborted,
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
            errors: Family::default(),
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
            "canaryd_errors",
            "Errors of the controller's systems, by kind (store, router, spec source, …)",
            m.errors.clone(),
        );
        m
    }

    /// Counts an error of `kind`.
    pub fn count_error(&self, kind: &str) {
        self.errors
            .get_or_create(&KindLabel {
                kind: kind.to_string(),
            })
            .inc();
    }

    /// Drops the per-rollout series of a rollout no longer managed.
    pub fn forget(&self, id: &RolloutId, gates: &[GateResult]) {
        let rollout = id.to_string();
        for p in PHASES {
            self.phase.remove(&PhaseLabels {
                rollout: rollout.clone(),
                phase: format!("{p:?}"),
            });
        }
        self.weight.remove(&RolloutLabel {
            rollout: rollout.clone(),
        });
        for g in gates {
            self.gate_value.remove(&GateLabels {
                rollout: rollout.clone(),
                gate: g.name.clone(),
            });
        }
    }

    /// Updates the gauges of one rollout.
    pub fn observe_state(&self, id: &RolloutId, state: &RolloutState, gates: &[GateResult]) {
        let rollout = id.to_string();
        for p in PHASES {
            let labels = PhaseLabels {
                rollout: rollout.clone(),
                phase: format!("{p:?}"),
            };
            self.phase
                .get_or_create(&labels)
                .set(i64::from(p == state.phase));
        }
        self.weight
            .get_or_create(&RolloutLabel {
                rollout: rollout.clone(),
            })
            .set(state.weight.percent());
        for g in gates {
            if let Some(v) = g.value {
                let labels = GateLabels {
                    rollout: rollout.clone(),
                    gate: g.name.clone(),
                };
                self.gate_value.get_or_create(&labels).set(v);
            }
        }
    }

    /// Counts a recorded decision (and a rollback by its reason).
    pub fn count_decision(&self, id: &RolloutId, record: &DecisionRecord) {
        let rollout = id.to_string();
        self.decisions
            .get_or_create(&ActionLabels {
                rollout: rollout.clone(),
                action: record.action.to_string(),
            })
            .inc();
        if record.action == crate::engine::Action::Rollback {
            let reason = serde_json::to_value(&record.detail)
                .ok()
                .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_string))
                .unwrap_or_else(|| "unknown".to_string());
            self.rollbacks
                .get_or_create(&ReasonLabels { rollout, reason })
                .inc();
        }
    }
}
