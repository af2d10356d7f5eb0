//! What the engine is told on a tick: the canary's readiness and one
//! measurement per active gate, already fetched by the controller.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::evidence::counts::Snapshot;
use super::state::RolloutState;
use crate::spec::model::{DeploySpec, Gate, Judged};

/// Which gate of the spec a measurement belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateRef {
    /// `rollback.on[i]`: watched on every tick.
    Abort(usize),
    /// `steps[step].metrics[index]`: must pass for that step to advance.
    Promotion {
        /// 0-based step.
        step: usize,
        /// 0-based gate of the step.
        index: usize,
    },
}

impl GateRef {
    /// The gate in `spec`, if the reference is valid for it.
    pub fn resolve(self, spec: &DeploySpec) -> Option<&Gate> {
        match self {
            GateRef::Abort(i) => spec.strategy.rollback.on.get(i),
            GateRef::Promotion { step, index } => spec.strategy.steps.get(step)?.gates.get(index),
        }
    }
}

/// Why a measurement cannot be judged. Never a pass.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Inconclusive {
    /// The query returned no series (an empty vector).
    NoData,
    /// The value was NaN or infinite (e.g. 0/0 with no traffic).
    NotFinite {
        /// The value as text (`NaN`, `+Inf`).
        value: String,
    },
    /// Several series where one was expected.
    AmbiguousSeries {
        /// How many came back.
        series: usize,
    },
    /// The canary served fewer requests in the window than `min_requests`.
    TooFewRequests {
        /// Requests seen.
        seen: u64,
        /// Requests needed.
        needed: u64,
    },
    /// Prometheus answered with an error.
    ProviderError {
        /// What it said (no secrets).
        message: String,
    },
    /// Prometheus did not answer in time.
    Timeout,
    /// The canary is not ready, so it gets no traffic to judge.
    CanaryNotReady,
    /// The controller did not measure this gate.
    NotMeasured,
    /// The test cannot start yet (no histogram bound at or beyond the
    /// threshold; no stable baseline).
    Waiting {
        /// What it waits for.
        what: String,
    },
}

impl Inconclusive {
    /// The reason for a NaN or infinite value, named `NaN`, `+Inf` or `-Inf`.
    pub fn not_finite(value: f64) -> Inconclusive {
        let text = if value.is_nan() {
            "NaN"
        } else if value > 0.0 {
            "+Inf"
        } else {
            "-Inf"
        };
        Inconclusive::NotFinite {
            value: text.to_string(),
        }
    }
}

impl fmt::Display for Inconclusive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Inconclusive::NoData => f.write_str("no data"),
            Inconclusive::NotFinite { value } => write!(f, "value is {value}"),
            Inconclusive::AmbiguousSeries { series } => {
                write!(f, "{series} series where one was expected")
            }
            Inconclusive::TooFewRequests { seen, needed } => {
                write!(f, "{seen} requests in the window, {needed} needed")
            }
            Inconclusive::ProviderError { message } => write!(f, "Prometheus error: {message}"),
            Inconclusive::Timeout => f.write_str("Prometheus timed out"),
            Inconclusive::CanaryNotReady => f.write_str("canary not ready"),
            Inconclusive::NotMeasured => f.write_str("not measured"),
            Inconclusive::Waiting { what } => f.write_str(what),
        }
    }
}

/// One gate measured on one track.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// The rendered PromQL.
    pub query: String,
    /// The value, or why there is none.
    pub value: Result<f64, Inconclusive>,
    /// Requests the track served in the window, when known (for `min_requests`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<f64>,
}

impl Reading {
    /// A reading with a value.
    pub fn value(query: impl Into<String>, value: f64, requests: Option<f64>) -> Reading {
        Reading {
            query: query.into(),
            value: Ok(value),
            requests,
        }
    }

    /// A reading without a value.
    pub fn inconclusive(query: impl Into<String>, why: Inconclusive) -> Reading {
        Reading {
            query: query.into(),
            value: Err(why),
            requests: None,
        }
    }
}

/// A gate measured on both tracks over the same window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// Which gate.
    pub gate: GateRef,
    /// The canary's reading: what the gate judges.
    pub canary: Reading,
    /// The stable version's reading, shown next to it (and used by baseline gates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<Reading>,
}

/// Everything measured on one tick.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// Whether the canary passes its health checks (never route to it otherwise).
    pub canary_ready: bool,
    /// One measurement per active gate judged on readings; missing ones
    /// count as not measured.
    pub measurements: Vec<Measurement>,
    /// Both tracks' cumulative counters, for the gates judged on evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<CountsReading>,
}

/// Both tracks' counters, read at the same instant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CountsReading {
    /// The canary's.
    pub canary: TrackCounts,
    /// The stable version's.
    pub stable: TrackCounts,
}

/// One track's counters, or why they could not be read, and the PromQL read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrackCounts {
    /// The counters.
    pub snapshot: Result<Snapshot, Inconclusive>,
    /// The PromQL behind them, for the record.
    pub queries: CountsQueries,
}

/// The rendered count queries of one track.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CountsQueries {
    /// Requests.
    pub requests: String,
    /// Errors, when an error gate needs them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<String>,
    /// The latency histogram, when a latency gate needs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_buckets: Option<String>,
}

/// Which counters a spec's evidence gates need read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CountsNeeded {
    /// Errors (an error-rate gate).
    pub errors: bool,
    /// The latency histogram (a latency gate).
    pub latency_buckets: bool,
}

/// The counters `spec`'s evidence gates need while `state` is in flight or
/// about to start
/// (every gate of every step, so the reads stay comparable across steps);
/// `None` when nothing is to be counted.
pub fn counts_needed(spec: &DeploySpec, state: &RolloutState) -> Option<CountsNeeded> {
    // Also on the tick that starts a rollout: its reads are the baseline.
    let starting = !state.phase.in_flight()
        && super::tick::wanted_version(spec, state).is_some_and(|v| {
            !matches!(
                state.phase,
                super::state::Phase::RolledBack | super::state::Phase::Aborted
            ) || state.canary_version.as_deref() != Some(v.as_str())
        });
    if !state.phase.in_flight() && !starting {
        return None;
    }
    counts_needed_by(spec)
}

/// The counters `spec`'s evidence gates read (every gate of every step);
/// `None` when it has none.
pub fn counts_needed_by(spec: &DeploySpec) -> Option<CountsNeeded> {
    let gates = spec
        .strategy
        .rollback
        .on
        .iter()
        .chain(spec.strategy.steps.iter().flat_map(|s| &s.gates));
    let mut needed = None;
    for g in gates {
        match g.judged {
            Judged::Errors => needed.get_or_insert(CountsNeeded::default()).errors = true,
            Judged::Quantile { .. } => {
                needed
                    .get_or_insert(CountsNeeded::default())
                    .latency_buckets = true
            }
            Judged::Reading => {}
        }
    }
    needed
}

/// The active gates judged on single readings: what the controller must
/// query besides the counters.
pub fn reading_gates(spec: &DeploySpec, state: &RolloutState) -> Vec<GateRef> {
    active_gates(spec, state)
        .into_iter()
        .filter(|g| g.resolve(spec).is_some_and(|g| !g.judged.on_evidence()))
        .collect()
}

impl Observation {
    /// The measurement of `gate`, if taken.
    pub fn get(&self, gate: GateRef) -> Option<&Measurement> {
        self.measurements.iter().find(|m| m.gate == gate)
    }
}

/// The gates the controller should measure for the next tick: every abort
/// condition, plus the current step's promotion gates while in flight.
pub fn active_gates(spec: &DeploySpec, state: &RolloutState) -> Vec<GateRef> {
    if !state.phase.in_flight() {
        return Vec::new();
    }
    let mut gates: Vec<GateRef> = (0..spec.strategy.rollback.on.len())
        .map(GateRef::Abort)
        .collect();
    let step = state.step.min(spec.strategy.steps.len().saturating_sub(1));
    if let Some(s) = spec.strategy.steps.get(step) {
        gates.extend((0..s.gates.len()).map(|index| GateRef::Promotion { step, index }));
    }
    gates
}
