//! One evidence gate's tests between ticks: the side that fails it (a
//! sequential test for a promotion gate, a change detector for an abort
//! condition) and, for a promotion gate, the side that passes it.

use serde::{Deserialize, Serialize};

use super::counts::{self, Snapshot, Tally};
use super::stats::{self, Detector, Direction, Mixture};
use super::summary::{Bound, BoundSide, Counted, EvidenceSummary, Method};
use crate::engine::observation::GateRef;
use crate::engine::time::Timestamp;
use crate::spec::model::{Comparison, Gate, Judged, Limit};

/// Events among trials.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Count {
    /// Events (errors, slow requests).
    pub x: f64,
    /// Trials (requests).
    pub n: f64,
}

impl Count {
    fn add(&mut self, x: f64, n: f64) {
        self.x += x;
        self.n += n;
    }
}

/// A test's running state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Test {
    /// Everything since the evidence began.
    Sequential(Mixture),
    /// The data since a change.
    Detector(Detector),
}

/// One side of a gate: evidence that the canary is above (or below) the limit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Side {
    /// Which way this side's evidence points.
    pub direction: Direction,
    /// Its test.
    pub test: Test,
    /// For latency gates: the histogram bound judged, in seconds (fixed once chosen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub le: Option<f64>,
    /// The canary's events and requests counted on this side.
    pub canary: Count,
    /// The stable version's, over the same intervals.
    pub stable: Count,
}

/// The evidence of one gate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateEvidence {
    /// Which gate.
    pub gate: GateRef,
    /// The gate as written when its evidence began: an edited gate starts afresh.
    pub text: String,
    /// When its evidence began.
    pub since: Timestamp,
    /// Evidence that the gate fails (a promotion gate) or breaches (an abort condition).
    pub against: Side,
    /// Evidence that a promotion gate passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<Side>,
    /// When a promotion gate passed (it stays passed for the step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passed_at: Option<Timestamp>,
    /// For latency gates relative to the stable version: the stable
    /// version's quantile the bound was derived from (seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
}

/// The false-alarm budgets and horizon a rollout's gates share.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Each gate's share of the false-rollback budget (α / gates).
    pub against: f64,
    /// Each promotion gate's false-pass budget (α).
    pub within: f64,
    /// The nominal number of intervals of the rollout (the detector's horizon).
    pub horizon: u64,
}

/// What a tick brings a gate.
pub struct Interval<'a> {
    /// When the interval began.
    pub start: Timestamp,
    /// The canary's counts over it (`None`: unread, or a counter reset).
    pub canary: Option<&'a Tally>,
    /// The stable version's.
    pub stable: Option<&'a Tally>,
    /// The canary's latest counters (for choosing histogram bounds).
    pub canary_read: Option<&'a Snapshot>,
    /// The stable version's latest counters (its quantile, for relative latency gates).
    pub stable_read: Option<&'a Snapshot>,
}

/// Where a gate's test stands after a tick.
#[derive(Clone, Debug, PartialEq)]
pub enum Standing {
    /// The gate fails (or breaches).
    Fails,
    /// The gate passes.
    Passes,
    /// Neither yet.
    Open,
    /// The test cannot run yet (no histogram bound, no stable baseline): why.
    Waiting(&'static str),
    /// A latency gate with no histogram read for the canary yet.
    NoHistogram,
}

/// The null value of an events-among-requests test on `gate`.
fn fixed_p0(gate: &Gate) -> Option<f64> {
    match gate.judged {
        Judged::Errors => gate.limit.fixed(),
        Judged::Quantile { quantile } => Some(1.0 - quantile),
        Judged::Reading => None,
    }
}

/// The direction in which a gate *fails*: a `less_than` gate fails when the
/// rate is above its limit.
fn failing_direction(comparison: Comparison) -> Direction {
    match comparison {
        Comparison::LessThan => Direction::Above,
        Comparison::GreaterThan => Direction::Below,
    }
}

impl GateEvidence {
    /// Fresh evidence for `gate`: a detector for an abort condition, two
    /// sequential tests for a promotion gate.
    pub fn new(r: GateRef, gate: &Gate, now: Timestamp) -> GateEvidence {
        let breaks = failing_direction(gate.comparison);
        let side = |direction: Direction, detector: bool| Side {
            direction,
            test: if detector {
                Test::Detector(Detector::default())
            } else {
                Test::Sequential(Mixture::new(direction))
            },
            le: None,
            canary: Count::default(),
            stable: Count::default(),
        };
        let (against, within) = match r {
            // An abort condition breaches in the direction its comparison holds.
            GateRef::Abort(_) => (side(breaks.flip(), true), None),
            GateRef::Promotion { .. } => (side(breaks, false), Some(side(breaks.flip(), false))),
        };
        GateEvidence {
            gate: r,
            text: gate.to_string(),
            since: now,
            against,
            within,
            passed_at: None,
            baseline: None,
        }
    }

    /// Adds an interval's counts to both sides.
    pub fn add(&mut self, gate: &Gate, i: &Interval<'_>, budget: &Budget) {
        if let (Judged::Quantile { quantile }, true, Some(stable)) =
            (gate.judged, gate.limit.is_relative(), i.stable_read)
            && self.baseline.is_none()
        {
            self.baseline = baseline_quantile(stable, quantile);
        }
        let target = match gate.judged {
            Judged::Quantile { .. } => gate.limit.against(self.baseline),
            _ => None,
        };
        feed(&mut self.against, gate, i, target, budget.against);
        if let Some(w) = &mut self.within {
            feed(w, gate, i, target, budget.within);
        }
    }

    /// Where the gate stands, given the promotion gate's `min_requests`.
    pub fn standing(
        &mut self,
        gate: &Gate,
        budget: &Budget,
        min_requests: f64,
        now: Timestamp,
    ) -> Standing {
        let latency = matches!(gate.judged, Judged::Quantile { .. });
        if latency && self.against.le.is_none() {
            return Standing::Waiting(if gate.limit.is_relative() && self.baseline.is_none() {
                "waiting for the stable version's latency"
            } else {
                "no histogram bound at or beyond the threshold"
            });
        }
        if log_e(&self.against) >= log_needed(&self.against, gate, budget.against, budget) {
            return Standing::Fails;
        }
        let Some(within) = &self.within else {
            return Standing::Open;
        };
        if self.passed_at.is_some() {
            return Standing::Passes;
        }
        if latency && within.le.is_none() {
            return Standing::Waiting("no histogram bound on the passing side of the threshold");
        }
        let enough = within.canary.n >= min_requests;
        if enough && log_e(within) >= log_needed(within, gate, budget.within, budget) {
            self.passed_at = Some(now);
            return Standing::Passes;
        }
        Standing::Open
    }

    /// What the verdict rests on: the side that decided, or the one the
    /// estimate leans to.
    pub fn summary(&self, gate: &Gate, budget: &Budget, standing: &Standing) -> EvidenceSummary {
        let side = match (standing, &self.within) {
            (Standing::Fails, _) | (_, None) => &self.against,
            (Standing::Passes, Some(w)) => w,
            (_, Some(w)) => {
                let lean_within =
                    estimate(w, gate)
                        .zip(limit_scale(w, gate))
                        .is_some_and(|(e, l)| match w.direction {
                            Direction::Below => e < l,
                            Direction::Above => e > l,
                        });
                if lean_within { w } else { &self.against }
            }
        };
        let alpha = if std::ptr::eq(side, &self.against) {
            budget.against
        } else {
            budget.within
        };
        summarize(side, gate, self.since, alpha, budget)
    }
}

/// The stable version's `quantile` over its counters' lifetime, when they
/// hold enough requests to show it (ten beyond it).
fn baseline_quantile(stable: &Snapshot, quantile: f64) -> Option<f64> {
    let tally = Tally {
        requests: stable.requests,
        errors: 0.0,
        buckets: stable.buckets.clone(),
    };
    (tally.histogram_total() * (1.0 - quantile) >= 10.0)
        .then(|| tally.quantile(quantile))
        .flatten()
}

/// Adds an interval to one side.
fn feed(side: &mut Side, gate: &Gate, i: &Interval<'_>, latency_target: Option<f64>, alpha: f64) {
    if let Judged::Quantile { .. } = gate.judged
        && side.le.is_none()
    {
        let target = match gate.limit {
            Limit::Fixed(t) => Some(t.value()),
            _ => latency_target,
        };
        if let (Some(t), Some(read)) = (target, i.canary_read) {
            side.le = counts::judged_bound(
                &counts::bounds(&read.buckets),
                t,
                side.direction == Direction::Above,
            );
        }
    }
    let stream = |t: &Tally| -> Option<(f64, f64)> {
        match gate.judged {
            Judged::Errors => Some((t.errors, t.requests)),
            Judged::Quantile { .. } => t.exceeding(side.le?),
            Judged::Reading => None,
        }
    };
    let canary = i.canary.and_then(stream);
    let stable = i.stable.and_then(stream);
    if let Some((x, n)) = canary {
        side.canary.add(x, n);
    }
    if let Some((x, n)) = stable {
        side.stable.add(x, n);
    }
    let start = i.start.millis();
    let direction = side.direction;
    let (Some((x, n)), stable) = (canary, stable) else {
        return;
    };
    match (gate.judged, gate.limit) {
        (Judged::Errors, Limit::StableTimes(f)) => {
            // Two-sample, conditioned on the traffic share: each error's
            // label (canary or stable) is Bernoulli(ρf / (ρf + 1 − ρ)) when
            // the canary's rate is exactly f times the stable's.
            let Some((xs, ns)) = stable else { return };
            if n + ns <= 0.0 || x + xs <= 0.0 {
                return;
            }
            let rho = n / (n + ns);
            let p0 = rho * f / (rho * f + 1.0 - rho);
            add(&mut side.test, direction, x, xs, p0, start);
        }
        (Judged::Errors, Limit::StablePlus(delta)) => {
            // The stable version's rate is bounded with half the budget and
            // the canary is tested against that bound plus the amount.
            let Count { x: xs, n: ns } = side.stable;
            if ns <= 0.0 {
                return;
            }
            let p_stable = match direction {
                Direction::Above => stats::upper_bound(xs, ns, alpha / 2.0),
                Direction::Below => stats::lower_bound(xs, ns, alpha / 2.0),
            };
            let p0 = p_stable + delta.value();
            if p0 >= 1.0 || p0 <= 0.0 {
                return;
            }
            add(&mut side.test, direction, x, n - x, p0, start);
        }
        _ => {
            let Some(p0) = fixed_p0(gate) else { return };
            add(&mut side.test, direction, x, n - x, p0, start);
        }
    }
}

fn add(test: &mut Test, direction: Direction, x: f64, y: f64, p0: f64, start: u64) {
    match test {
        Test::Sequential(m) => m.add(direction, x, y, p0),
        Test::Detector(d) => d.add(direction, x, y, p0, start),
    }
}

fn log_e(side: &Side) -> f64 {
    match &side.test {
        Test::Sequential(m) => m.log_e(),
        Test::Detector(d) => d.log_e(),
    }
}

/// ln of the evidence a side needs: 1/α for a sequential test, the
/// detector's epoch threshold for a detector; `stable +` gates spend half
/// their budget on the stable version's bound.
fn log_needed(side: &Side, gate: &Gate, alpha: f64, budget: &Budget) -> f64 {
    let alpha = match (gate.judged, gate.limit) {
        (Judged::Errors, Limit::StablePlus(_)) => alpha / 2.0,
        _ => alpha,
    };
    match &side.test {
        Test::Sequential(_) => -alpha.ln(),
        Test::Detector(d) => stats::detector_log_threshold(d.intervals, budget.horizon, alpha),
    }
}

/// The side's estimate on its test's scale: the canary's share, or for
/// `stable *` gates the ratio of the canary's rate to the stable version's.
fn estimate(side: &Side, gate: &Gate) -> Option<f64> {
    let c = side.canary;
    let s = side.stable;
    match (gate.judged, gate.limit) {
        (Judged::Errors, Limit::StableTimes(_)) => {
            (c.n > 0.0 && s.n > 0.0 && s.x > 0.0).then(|| (c.x / c.n) / (s.x / s.n))
        }
        _ => (c.n > 0.0).then(|| c.x / c.n),
    }
}

/// The limit on the side's scale.
fn limit_scale(side: &Side, gate: &Gate) -> Option<f64> {
    match (gate.judged, gate.limit) {
        (Judged::Errors, Limit::StableTimes(f)) => Some(f),
        (Judged::Errors, Limit::StablePlus(d)) => {
            (side.stable.n > 0.0).then(|| side.stable.x / side.stable.n + d.value())
        }
        _ => fixed_p0(gate),
    }
}

fn summarize(
    side: &Side,
    gate: &Gate,
    since: Timestamp,
    alpha: f64,
    budget: &Budget,
) -> EvidenceSummary {
    let needed = log_needed(side, gate, alpha, budget);
    let two_sample = matches!(
        (gate.judged, gate.limit),
        (Judged::Errors, Limit::StableTimes(_))
    );
    let (method, since, c) = match &side.test {
        // A two-sample detector's runs count events only; show the rates
        // since its evidence began.
        Test::Detector(_) if two_sample => (Method::Detector, since, side.canary),
        Test::Sequential(_) => (Method::Sequential, since, side.canary),
        Test::Detector(d) => match d.strongest_run() {
            Some(run) if run.n > 0.0 => (
                Method::Detector,
                Timestamp::from_millis(run.since),
                Count { x: run.x, n: run.n },
            ),
            _ => (Method::Detector, since, side.canary),
        },
    };
    let counted = match gate.judged {
        _ if two_sample => Counted::ErrorRatio,
        Judged::Quantile { .. } => Counted::SlowerThan {
            seconds: side.le.unwrap_or(0.0),
        },
        _ => Counted::Errors,
    };
    // The bound at the level the decision uses, on the counts it judged.
    let level = (-needed).exp();
    let bound_side = match side.direction {
        Direction::Above => BoundSide::Lower,
        Direction::Below => BoundSide::Upper,
    };
    let (events, requests, est, bound) = if two_sample {
        // A detector's run counts canary events among both tracks' events;
        // for display, convert with the pooled request share.
        let (s, cx, cn) = (side.stable, side.canary.x, side.canary.n);
        let rho = if cn + s.n > 0.0 { cn / (cn + s.n) } else { 0.5 };
        let to_ratio = |share: f64| {
            if share >= 1.0 || rho <= 0.0 {
                f64::INFINITY
            } else {
                share * (1.0 - rho) / (rho * (1.0 - share))
            }
        };
        let share_bound = match bound_side {
            BoundSide::Lower => stats::lower_bound(cx, cx + s.x, level),
            BoundSide::Upper => stats::upper_bound(cx, cx + s.x, level),
        };
        (cx, cn, estimate(side, gate), Some(to_ratio(share_bound)))
    } else {
        let b = match bound_side {
            BoundSide::Lower => stats::lower_bound(c.x, c.n, level),
            BoundSide::Upper => stats::upper_bound(c.x, c.n, level),
        };
        (
            c.x,
            c.n,
            (c.n > 0.0).then(|| c.x / c.n),
            (c.n > 0.0).then_some(b),
        )
    };
    let log_e = match &side.test {
        Test::Sequential(m) => m.log_e(),
        Test::Detector(d) => d.log_e(),
    };
    let more = match (&side.test, est, limit_scale(side, gate)) {
        (Test::Sequential(_), Some(p), Some(p0)) if !two_sample && log_e < needed => {
            stats::trials_needed(side.direction, p, p0, needed).map(|n| (n - requests).max(0.0))
        }
        _ => None,
    };
    EvidenceSummary {
        method,
        since,
        counted,
        events,
        requests,
        stable_events: side.stable.x,
        stable_requests: side.stable.n,
        estimate: est,
        // The bound is at the level the decision uses: for a detector, the
        // threshold that spends the gate's budget over every restart, so it
        // holds with the gate's confidence simultaneously.
        bound: bound.map(|value| Bound {
            side: bound_side,
            value,
            confidence: 1.0 - alpha,
        }),
        limit: limit_scale(side, gate),
        log_e,
        log_needed: needed,
        more_requests: more,
    }
}
