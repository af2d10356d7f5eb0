//! Recent gate values per rollout, for the dashboard's charts: each tick's
//! canary and stable value of every gate judged, against its threshold. Kept
//! in memory (bounded); the decision log is the durable record.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use crate::engine::evidence::{Counted, Method};
use crate::engine::{GateRef, GateResult, Timestamp, Verdict};
use crate::spec::model::{Comparison, DeploySpec};
use crate::spec::policy::Unit;

/// Points kept per gate: an hour at the usual 5 s interval, 15 min at 1 s.
pub const KEPT: usize = 900;

/// One tick's reading of a gate.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Point {
    /// When (ms since the epoch).
    pub t: u64,
    /// The canary's value, if measured.
    pub canary: Option<f64>,
    /// The stable version's value, if measured.
    pub stable: Option<f64>,
    /// `pass`, `fail` (a breach or failed gate), `undecided` or `inconclusive`.
    pub verdict: &'static str,
    /// For a ratio gate judged on counts: the confidence bound that decides
    /// (lower when leaning to fail, upper when leaning to pass).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bound: Option<f64>,
}

/// A gate's recent values.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GateSeries {
    /// `error_rate < 1%`.
    pub name: String,
    /// An abort condition (watched every tick) or a promotion gate.
    pub kind: &'static str,
    /// The unit of the values.
    pub unit: Unit,
    /// `<` or `>`: which side of the threshold passes.
    pub comparison: Comparison,
    /// The threshold as written.
    pub threshold: String,
    /// The threshold in the values' unit (`0.01` for `1%`); none when it is
    /// relative to the stable version.
    pub threshold_value: Option<f64>,
    /// Oldest first.
    pub points: VecDeque<Point>,
}

/// The charts of one rollout.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Series {
    /// The canary version the points are about (a new version starts afresh).
    pub version: Option<String>,
    /// One series per gate, in the order first judged.
    pub gates: Vec<GateSeries>,
}

impl Series {
    /// Adds a tick's `results` for canary `version` at `at`.
    pub fn record(
        &mut self,
        spec: &DeploySpec,
        version: Option<&str>,
        at: Timestamp,
        results: &[GateResult],
    ) {
        if self.version.as_deref() != version {
            *self = Series {
                version: version.map(str::to_string),
                gates: Vec::new(),
            };
        }
        for r in results {
            let Some(gate) = r.gate.resolve(spec) else {
                continue;
            };
            let series = match self.gates.iter().position(|g| g.name == r.name) {
                Some(i) => &mut self.gates[i],
                None => {
                    self.gates.push(GateSeries {
                        name: r.name.clone(),
                        kind: match r.gate {
                            GateRef::Abort(_) => "abort",
                            GateRef::Promotion { .. } => "promotion",
                        },
                        unit: gate.unit,
                        comparison: gate.comparison,
                        threshold: r.threshold.clone(),
                        threshold_value: gate.limit.fixed(),
                        points: VecDeque::new(),
                    });
                    let last = self.gates.len() - 1;
                    &mut self.gates[last]
                }
            };
            if series.points.len() == KEPT {
                series.points.pop_front();
            }
            // The chart draws the step's rate; the bound that goes with it is a
            // promotion gate's (an abort condition's is about the stretch
            // since a change, in its decision record). A latency gate's bound
            // is on the share of slow requests, not in seconds.
            let bound = r
                .evidence
                .as_ref()
                .filter(|e| matches!(e.counted, Counted::Errors) && e.method == Method::Sequential)
                .and_then(|e| e.bound)
                .map(|b| b.value);
            series.points.push_back(Point {
                t: at.millis(),
                canary: r.value.filter(|v| v.is_finite()),
                stable: r.stable_value.filter(|v| v.is_finite()),
                bound,
                verdict: match r.verdict {
                    Verdict::Pass => "pass",
                    Verdict::Fail => "fail",
                    Verdict::Undecided => "undecided",
                    Verdict::Inconclusive { .. } => "inconclusive",
                },
            });
        }
    }
}

/// Every rollout's charts.
pub type Histories = BTreeMap<crate::spec::model::RolloutId, Series>;
