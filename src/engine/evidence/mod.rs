//! Evidence gates: verdicts users can trust at any traffic level.
//!
//! Gates on a policy's counted metrics (error rate, latency quantiles) are
//! judged on **counts**, not on a ratio re-read every tick: the tracks'
//! cumulative counters are read at each tick and the differences accumulate
//! (`counts`), so no stretch of time is judged twice and few requests weigh
//! as little as they should. The counts feed anytime-valid tests (`stats`):
//!
//! * a **promotion gate** passes only on positive evidence that the canary is
//!   within its limit (a sequential test on everything since the step began),
//!   and fails on conclusive evidence that it is not; until then it is
//!   *undecided*, which is never a pass;
//! * an **abort condition** is a change detector restarted at every
//!   interval, so a fault that starts late is caught as fast as one present
//!   from the start;
//! * the false-rollback budget α (`1 − confidence`) is shared by every gate
//!   (Bonferroni), so a healthy canary is rolled back with probability at
//!   most α over its whole rollout, however often it is looked at.
//!
//! Gates on single readings (custom `query:` gates) are judged as before, by
//! [`super::verdict::judge_reading`].

pub mod counts;
mod gate;
pub mod stats;
mod summary;

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use gate::{Budget, Count, GateEvidence, Side, Standing, Test};
pub use summary::{Bound, BoundSide, Counted, EvidenceSummary, Method, confidence, count, percent};

use super::observation::{GateRef, Inconclusive, Observation};
use super::time::Timestamp;
use super::verdict::{GateResult, TrackKind, Verdict, judge_reading};
use crate::spec::model::{DeploySpec, Gate, Judged};
use counts::{Snapshot, Tally};
use gate::Interval;

/// What a rollout's evidence remembers between ticks (persisted with its state).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The canary's counters at the last read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_read: Option<Snapshot>,
    /// The stable version's counters at the last read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_read: Option<Snapshot>,
    /// The canary's counts since the step began.
    #[serde(default)]
    pub step_canary: Tally,
    /// The stable version's counts since the step began.
    #[serde(default)]
    pub step_stable: Tally,
    /// The canary's requests per interval over the last window: `(end, requests)`.
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    pub recent: VecDeque<(u64, f64)>,
    /// Since when the canary has been given traffic without a break.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_since: Option<Timestamp>,
    /// When its counters first showed requests since then (Prometheus had
    /// scraped it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_data: Option<Timestamp>,
    /// Each active evidence gate's tests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<GateEvidence>,
}

/// The tick being judged.
pub struct TickContext {
    /// Now.
    pub now: Timestamp,
    /// When the interval began (the previous tick, or now on the first).
    pub since: Timestamp,
    /// Whether the canary held a weight above 0 during the interval.
    pub had_traffic: bool,
}

impl Evidence {
    /// A new step: its promotion gates and tallies start afresh; the abort
    /// conditions' detectors go on.
    pub fn new_step(&mut self) {
        self.step_canary = Tally::default();
        self.step_stable = Tally::default();
        self.gates.retain(|g| matches!(g.gate, GateRef::Abort(_)));
    }

    /// Takes this tick's counter reads as the baseline of a rollout that
    /// starts now (nothing before them counts).
    pub fn baseline(&mut self, obs: &Observation) {
        if let Some(c) = &obs.counts {
            self.canary_read = c.canary.snapshot.as_ref().ok().cloned();
            self.stable_read = c.stable.snapshot.as_ref().ok().cloned();
        }
    }

    /// Whether the warm-up is over: a whole `window` since the canary's
    /// counters first showed requests, or two windows since it was given
    /// traffic if they never did. Before that, missing data is not judged (a
    /// fresh canary Prometheus has not scraped yet is not "no data"), and no
    /// step completes.
    pub fn warm(&self, now: Timestamp, window: Duration) -> bool {
        let data = self.first_data.is_some_and(|t| now.since(t) >= window);
        let bounded = self
            .warm_since
            .is_some_and(|since| now.since(since) >= window * 2);
        self.warm_since.is_some() && (data || bounded)
    }

    /// Whether a promotion gate of the current step has passed.
    pub fn passed(&self, gate: GateRef) -> bool {
        self.gates
            .iter()
            .any(|g| g.gate == gate && g.passed_at.is_some())
    }
}

/// The budgets every evidence gate of `spec` shares.
pub fn budget(spec: &DeploySpec) -> Budget {
    let s = &spec.strategy;
    let gates = s
        .rollback
        .on
        .iter()
        .chain(s.steps.iter().flat_map(|st| &st.gates))
        .filter(|g| g.judged.on_evidence())
        .count()
        .max(1);
    let alpha = s.analysis.alpha();
    let watched: Duration = s.steps.iter().filter_map(|st| st.duration).sum();
    let interval = s.analysis.interval.max(Duration::from_millis(1));
    let horizon = (watched.as_millis() / interval.as_millis()) as u64 + s.steps.len() as u64;
    Budget {
        against: alpha / gates as f64,
        within: alpha,
        horizon: horizon.max(1),
    }
}

/// Judges the active `gates`: evidence gates on the counts, the others on
/// their readings. Updates the evidence with this tick's counts.
pub fn judge_all(
    ev: &mut Evidence,
    spec: &DeploySpec,
    gates: &[GateRef],
    obs: &Observation,
    tick: &TickContext,
) -> Vec<GateResult> {
    let analysis = &spec.strategy.analysis;
    let (canary_delta, stable_delta, problem, stable_problem) = read_counts(ev, obs);
    if let Some(t) = &canary_delta {
        ev.step_canary.add(t);
        ev.recent.push_back((tick.now.millis(), t.requests));
    }
    if let Some(t) = &stable_delta {
        ev.step_stable.add(t);
    }
    let window_start = tick
        .now
        .millis()
        .saturating_sub(analysis.window.as_millis() as u64);
    while ev
        .recent
        .front()
        .is_some_and(|(end, _)| *end <= window_start)
    {
        ev.recent.pop_front();
    }
    if tick.had_traffic && obs.canary_ready {
        ev.warm_since.get_or_insert(tick.since);
        if canary_delta.as_ref().is_some_and(|t| t.requests > 0.0) {
            ev.first_data.get_or_insert(tick.since);
        }
    } else {
        ev.warm_since = None;
        ev.first_data = None;
    }
    let warm = ev.warm(tick.now, analysis.window);
    let problem = problem.or_else(|| too_few_requests(ev, spec, tick));
    let budget = budget(spec);
    ev.gates.retain(|g| gates.contains(&g.gate));
    let interval = Interval {
        start: tick.since,
        canary: canary_delta.as_ref(),
        stable: stable_delta.as_ref(),
        canary_read: ev.canary_read.as_ref(),
        stable_read: ev.stable_read.as_ref(),
    };
    let mut results = Vec::with_capacity(gates.len());
    for &r in gates {
        let Some(gate) = r.resolve(spec) else {
            continue;
        };
        if !gate.judged.on_evidence() {
            results.push(judge_reading(
                r,
                gate,
                obs.get(r),
                analysis,
                obs.canary_ready,
            ));
            continue;
        }
        let text = gate.to_string();
        let idx = match ev.gates.iter().position(|g| g.gate == r && g.text == text) {
            Some(i) => i,
            None => {
                ev.gates.retain(|g| g.gate != r);
                ev.gates.push(GateEvidence::new(r, gate, tick.now));
                ev.gates.len() - 1
            }
        };
        let g = &mut ev.gates[idx];
        g.add(gate, &interval, &budget);
        let histogram = ev
            .canary_read
            .as_ref()
            .is_some_and(|c| !c.buckets.is_empty());
        let standing = if histogram || !matches!(gate.judged, Judged::Quantile { .. }) {
            g.standing(gate, &budget, analysis.min_requests as f64, tick.now)
        } else {
            Standing::NoHistogram
        };
        let needs_stable = gate.limit.is_relative();
        let problem = problem
            .clone()
            .or_else(|| stable_problem.clone().filter(|_| needs_stable));
        let verdict = match (&standing, problem) {
            (Standing::Fails, _) => Verdict::Fail,
            (_, Some(reason)) => Verdict::Inconclusive { reason },
            (Standing::Passes, None) => Verdict::Pass,
            // Still warming up: no histogram is no data yet.
            (Standing::NoHistogram, None) if !warm => open(r),
            (Standing::Open, None) => open(r),
            (Standing::NoHistogram, None) => Verdict::Inconclusive {
                reason: Inconclusive::Waiting {
                    what: "no latency histogram for the canary".to_string(),
                },
            },
            (Standing::Waiting(why), None) => Verdict::Inconclusive {
                reason: Inconclusive::Waiting {
                    what: (*why).to_string(),
                },
            },
        };
        let summary = g.summary(gate, &budget, &standing);
        results.push(result(r, gate, text, obs, ev, verdict, summary));
    }
    results
}

/// An open test: an abort condition is not breached (watching); a
/// promotion gate is undecided.
fn open(r: GateRef) -> Verdict {
    match r {
        GateRef::Abort(_) => Verdict::Pass,
        GateRef::Promotion { .. } => Verdict::Undecided,
    }
}

/// Reads this tick's counters into the evidence: the increments since the
/// last read (none on a reset or a failed read), and why the canary's (or
/// the stable version's) could not be read.
fn read_counts(
    ev: &mut Evidence,
    obs: &Observation,
) -> (
    Option<Tally>,
    Option<Tally>,
    Option<Inconclusive>,
    Option<Inconclusive>,
) {
    let Some(counts) = &obs.counts else {
        return (None, None, Some(Inconclusive::NotMeasured), None);
    };
    let delta = |read: &mut Option<Snapshot>, now: &Result<Snapshot, Inconclusive>| match now {
        Ok(snap) => {
            let d = read.as_ref().and_then(|before| snap.since(before));
            *read = Some(snap.clone());
            (d, None)
        }
        Err(why) => (None, Some(why.clone())),
    };
    let (c, cp) = delta(&mut ev.canary_read, &counts.canary.snapshot);
    let (s, sp) = delta(&mut ev.stable_read, &counts.stable.snapshot);
    let problem = if obs.canary_ready {
        cp
    } else {
        Some(Inconclusive::CanaryNotReady)
    };
    (c, s, problem, sp)
}

/// Once the canary has taken traffic for a whole window (a warm-up, so a
/// fresh canary Prometheus has not scraped yet is not judged), fewer than
/// `min_requests` in the last window is inconclusive.
fn too_few_requests(ev: &Evidence, spec: &DeploySpec, tick: &TickContext) -> Option<Inconclusive> {
    let a = &spec.strategy.analysis;
    if !ev.warm(tick.now, a.window) {
        // A fresh canary Prometheus has not scraped yet is not "no data".
        return None;
    }
    let seen: f64 = ev.recent.iter().map(|(_, n)| n).sum();
    let seen = seen.max(0.0).round() as u64;
    if seen == 0 {
        Some(Inconclusive::NoData)
    } else if seen < a.min_requests {
        Some(Inconclusive::TooFewRequests {
            seen,
            needed: a.min_requests,
        })
    } else {
        None
    }
}

/// The gate's result: its value and the stable version's over the step,
/// its verdict, the queries behind it and the evidence summary.
/// `text` is the gate as written (`gate.to_string()`, made once per tick).
fn result(
    r: GateRef,
    gate: &Gate,
    text: String,
    obs: &Observation,
    ev: &Evidence,
    verdict: Verdict,
    summary: EvidenceSummary,
) -> GateResult {
    let value_of = |t: &Tally| match gate.judged {
        Judged::Errors => (t.requests > 0.0).then(|| t.errors / t.requests),
        Judged::Quantile { quantile } => t.quantile(quantile),
        Judged::Reading => None,
    };
    let value = value_of(&ev.step_canary);
    let query = obs.counts.as_ref().map_or_else(String::new, |c| {
        let q = &c.canary.queries;
        match gate.judged {
            Judged::Errors => format!("{} / {}", q.errors.as_deref().unwrap_or("0"), q.requests),
            _ => q.latency_buckets.clone().unwrap_or_default(),
        }
    });
    GateResult {
        gate: r,
        name: text,
        track: TrackKind::Canary,
        query,
        shown: value.map_or_else(|| "-".to_string(), |v| gate.format_value(v)),
        value,
        stable_value: value_of(&ev.step_stable),
        threshold: gate.limit.to_string(),
        verdict,
        evidence: Some(Box::new(summary)),
    }
}
