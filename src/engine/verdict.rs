//! Judging one measurement against its gate: pass, fail or inconclusive.

use serde::{Deserialize, Serialize};

use super::observation::{GateRef, Inconclusive, Measurement, Observation};
use crate::spec::model::{Analysis, DeploySpec, Gate};

/// The outcome of one gate on one tick.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Promotion gate satisfied, or abort condition not breached.
    Pass,
    /// Promotion gate not satisfied, or abort condition breached.
    Fail,
    /// No judgement possible; never a pass.
    Inconclusive {
        /// Why.
        reason: Inconclusive,
    },
}

/// Which track a value was measured on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackKind {
    /// The new version.
    Canary,
    /// The current version.
    Stable,
}

/// A judged gate, as recorded in the decision log (BRIEF §5 `gates[]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    /// Which gate.
    pub gate: GateRef,
    /// `error_rate < 1%`.
    pub name: String,
    /// The track judged (the canary; the stable value is alongside).
    pub track: TrackKind,
    /// The rendered PromQL.
    pub query: String,
    /// The canary's value, if any.
    pub value: Option<f64>,
    /// The value in the gate's unit (`1.2%`), or `-`.
    pub shown: String,
    /// The stable version's value over the same window, if measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_value: Option<f64>,
    /// The threshold as written (`1%`).
    pub threshold: String,
    /// The verdict.
    #[serde(flatten)]
    pub verdict: Verdict,
}

impl GateResult {
    /// True when the verdict is a failure (or, for an abort condition, a breach).
    pub fn failed(&self) -> bool {
        self.verdict == Verdict::Fail
    }

    /// The reason it is inconclusive, if it is.
    pub fn inconclusive(&self) -> Option<&Inconclusive> {
        match &self.verdict {
            Verdict::Inconclusive { reason } => Some(reason),
            _ => None,
        }
    }
}

/// Judges every gate in `gates` against the observation.
pub fn judge_all(spec: &DeploySpec, obs: &Observation, gates: &[GateRef]) -> Vec<GateResult> {
    gates
        .iter()
        .filter_map(|g| {
            Some(judge(
                *g,
                g.resolve(spec)?,
                obs.get(*g),
                &spec.strategy.analysis,
                obs.canary_ready,
            ))
        })
        .collect()
}

/// Judges one gate. For an abort condition, the comparison holding is a breach
/// (`Fail`); for a promotion gate it is a `Pass`.
pub fn judge(
    r: GateRef,
    gate: &Gate,
    m: Option<&Measurement>,
    a: &Analysis,
    canary_ready: bool,
) -> GateResult {
    let query = m.map(|m| m.canary.query.clone()).unwrap_or_default();
    let stable_value = m
        .and_then(|m| m.stable.as_ref())
        .and_then(|s| s.value.as_ref().ok().copied());
    let value = m.and_then(|m| m.canary.value.as_ref().ok().copied());
    let verdict = match m {
        _ if !canary_ready => Verdict::Inconclusive {
            reason: Inconclusive::CanaryNotReady,
        },
        None => Verdict::Inconclusive {
            reason: Inconclusive::NotMeasured,
        },
        Some(m) => classify(r, gate, m, a),
    };
    GateResult {
        gate: r,
        name: gate.to_string(),
        track: TrackKind::Canary,
        query,
        shown: value.map_or_else(|| "-".to_string(), |v| gate.format_value(v)),
        value,
        stable_value,
        threshold: gate.threshold.to_string(),
        verdict,
    }
}

fn classify(r: GateRef, gate: &Gate, m: &Measurement, a: &Analysis) -> Verdict {
    let value = match &m.canary.value {
        Err(reason) => {
            return Verdict::Inconclusive {
                reason: reason.clone(),
            };
        }
        Ok(v) => *v,
    };
    if !value.is_finite() {
        return Verdict::Inconclusive {
            reason: Inconclusive::not_finite(value),
        };
    }
    if let Some(requests) = m.canary.requests {
        let seen = if requests.is_finite() && requests > 0.0 {
            requests.round() as u64
        } else {
            0
        };
        if seen < a.min_requests {
            return Verdict::Inconclusive {
                reason: Inconclusive::TooFewRequests {
                    seen,
                    needed: a.min_requests,
                },
            };
        }
    }
    let holds = gate.holds(value);
    let pass = match r {
        GateRef::Abort(_) => !holds,
        GateRef::Promotion { .. } => holds,
    };
    if pass { Verdict::Pass } else { Verdict::Fail }
}
