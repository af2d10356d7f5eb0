//! Judging one measurement against its gate: pass, fail or inconclusive.

use serde::{Deserialize, Serialize};

use super::evidence::EvidenceSummary;
use super::observation::{GateRef, Inconclusive, Measurement};
use crate::spec::model::{Analysis, Gate};

/// The outcome of one gate on one tick.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Promotion gate satisfied, or abort condition not breached.
    Pass,
    /// Promotion gate not satisfied, or abort condition breached.
    Fail,
    /// Data is coming in but does not yet show either way (evidence gates);
    /// never a pass.
    Undecided,
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
    /// For gates judged on counts: what the verdict rests on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Box<EvidenceSummary>>,
}

impl GateResult {
    /// True when the verdict is a failure (or, for an abort condition, a breach).
    pub fn failed(&self) -> bool {
        self.verdict == Verdict::Fail
    }

    /// True when the gate does not yet show either way.
    pub fn undecided(&self) -> bool {
        self.verdict == Verdict::Undecided
    }

    /// The measured value with its evidence, for reasons and alerts:
    /// `3.1% (3.1% errors over 1,240 requests since 12:03:10 (99.75% lower bound 2.4%))`.
    pub fn value_with_evidence(&self) -> String {
        match &self.evidence {
            Some(e) => e.to_string(),
            None => self.shown.clone(),
        }
    }

    /// The reason it is inconclusive, if it is.
    pub fn inconclusive(&self) -> Option<&Inconclusive> {
        match &self.verdict {
            Verdict::Inconclusive { reason } => Some(reason),
            _ => None,
        }
    }
}

/// Judges a gate on a single reading (custom `query:` gates, and metrics a
/// policy defines without counts). For an abort condition, the comparison
/// holding is a breach (`Fail`); for a promotion gate it is a `Pass`.
pub fn judge_reading(
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
        threshold: gate.limit.to_string(),
        verdict,
        evidence: None,
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
    let stable = m
        .stable
        .as_ref()
        .and_then(|s| s.value.as_ref().ok().copied());
    let Some(limit) = gate.limit.against(stable) else {
        let reason = m
            .stable
            .as_ref()
            .and_then(|s| s.value.as_ref().err().cloned())
            .unwrap_or(Inconclusive::NotMeasured);
        return Verdict::Inconclusive { reason };
    };
    let holds = gate.holds_against(value, limit);
    let pass = match r {
        GateRef::Abort(_) => !holds,
        GateRef::Promotion { .. } => holds,
    };
    if pass { Verdict::Pass } else { Verdict::Fail }
}
