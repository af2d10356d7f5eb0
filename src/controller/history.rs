//! Recent gate values per rollout, for the dashboard's charts: each tick's
//! canary and stable value of every gate judged, against its threshold. Kept
//! in memory, in a fixed size per gate; the decision log is the durable record.
//!
//! **Layout and size.** A gate keeps its last [`RECENT`] ticks at full
//! resolution. Older ticks are folded into [`BUCKETS`] buckets of
//! [`BUCKET_TICKS`] ticks each (the last [`KEPT`] ticks in all, an hour at
//! a 4 s interval); the oldest bucket falls off. A bucket keeps its *worst*
//! reading: a `fail` before an `inconclusive`, `undecided` or `pass`, and
//! among equal verdicts the value farthest on the failing side of the
//! threshold, so a breach is never lost to downsampling and is charted at its
//! extreme value. A reading is 20 bytes (the time as a `u32` offset in ms from
//! the series' start, three `f32` values with NaN for none, a one-byte
//! verdict), so a gate's points take `(RECENT + BUCKETS + 1) × 20` = 3,620
//! bytes and a gate in all at most [`GATE_BYTES`] (4 KiB) plus its name and
//! threshold text. A rollout keeps at most [`MAX_GATES`] gates (the least
//! recently judged one gives way), so it holds at most
//! `SERIES_BYTES + MAX_GATES × GATE_BYTES` plus those texts; a usual rollout
//! with three gates about 12 KiB (120 MB for 10,000 of them).
//!
//! A new canary version starts afresh, and so does a version watched for more
//! than 49 days (the `u32` offsets run out). `GET …/series` serves the points
//! expanded (`t` in ms since the epoch, values as numbers or `null`).

use std::collections::{BTreeMap, VecDeque};
use std::mem::size_of;

use serde::Serialize;
use serde::ser::{SerializeStruct, Serializer};

use crate::engine::evidence::{Counted, Method};
use crate::engine::{GateRef, GateResult, Timestamp, Verdict};
use crate::spec::model::{Comparison, DeploySpec};
use crate::spec::policy::Unit;

/// Ticks kept at full resolution per gate: 20 min at a 10 s interval.
pub const RECENT: usize = 120;
/// Downsampled buckets kept per gate, older than the recent ticks.
pub const BUCKETS: usize = 60;
/// Ticks folded into one bucket.
pub const BUCKET_TICKS: u16 = 13;
/// Ticks a gate's chart spans: the recent ones and the buckets'.
pub const KEPT: usize = RECENT + BUCKETS * BUCKET_TICKS as usize;
/// Gates kept per rollout (a spec edited many times under one canary version
/// cannot grow it further).
pub const MAX_GATES: usize = 16;
/// Bytes one gate holds at most, its name and threshold text aside.
pub const GATE_BYTES: usize = 4_096;
/// Bytes a rollout's charts hold besides their gates (and the version text).
pub const SERIES_BYTES: usize = 64;

/// A gate's verdict at a tick, as charted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChartVerdict {
    /// The gate held.
    Pass,
    /// Not enough evidence yet.
    Undecided,
    /// No judgement possible (no data, too few requests).
    Inconclusive,
    /// A breach or a failed gate.
    Fail,
}

impl ChartVerdict {
    /// Which reading a bucket keeps: the higher.
    fn severity(self) -> u8 {
        match self {
            ChartVerdict::Pass => 0,
            ChartVerdict::Undecided => 1,
            ChartVerdict::Inconclusive => 2,
            ChartVerdict::Fail => 3,
        }
    }
}

impl From<&Verdict> for ChartVerdict {
    fn from(v: &Verdict) -> ChartVerdict {
        match v {
            Verdict::Pass => ChartVerdict::Pass,
            Verdict::Fail => ChartVerdict::Fail,
            Verdict::Undecided => ChartVerdict::Undecided,
            Verdict::Inconclusive { .. } => ChartVerdict::Inconclusive,
        }
    }
}

/// An abort condition (watched every tick) or a promotion gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GateKind {
    /// Rolls back when breached.
    Abort,
    /// Must pass for the step to advance.
    Promotion,
}

/// One tick's reading of a gate, as served.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Point {
    /// When (ms since the epoch).
    pub t: u64,
    /// The canary's value, if measured.
    pub canary: Option<f64>,
    /// The stable version's value, if measured.
    pub stable: Option<f64>,
    /// The verdict.
    pub verdict: ChartVerdict,
    /// For a ratio gate judged on counts: the confidence bound that decides
    /// (lower when leaning to fail, upper when leaning to pass).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bound: Option<f64>,
}

/// A reading as kept: 20 bytes, NaN for a value not measured.
#[derive(Clone, Copy, Debug)]
struct Packed {
    /// ms since the series' start.
    dt: u32,
    canary: f32,
    stable: f32,
    bound: f32,
    verdict: ChartVerdict,
}

fn pack(v: Option<f64>) -> f32 {
    // An f64 beyond f32's range becomes infinite, and is then shown as none.
    v.map_or(f32::NAN, |v| v as f32)
}

fn unpack(v: f32) -> Option<f64> {
    v.is_finite().then_some(f64::from(v))
}

/// A gate's recent values.
#[derive(Clone, Debug)]
pub struct GateSeries {
    /// `error_rate < 1%`.
    pub name: String,
    /// An abort condition or a promotion gate.
    pub kind: GateKind,
    /// The unit of the values.
    pub unit: Unit,
    /// `<` or `>`: which side of the threshold passes.
    pub comparison: Comparison,
    /// The threshold as written.
    pub threshold: String,
    /// The threshold in the values' unit (`0.01` for `1%`); none when it is
    /// relative to the stable version.
    pub threshold_value: Option<f64>,
    /// Full-resolution readings, oldest first.
    recent: VecDeque<Packed>,
    /// One reading per full bucket, oldest first.
    buckets: VecDeque<Packed>,
    /// The bucket being filled from readings leaving `recent`, and how many.
    filling: Option<(Packed, u16)>,
}

impl GateSeries {
    /// An empty series of a gate.
    pub fn new(
        name: String,
        kind: GateKind,
        unit: Unit,
        comparison: Comparison,
        threshold: String,
        threshold_value: Option<f64>,
    ) -> GateSeries {
        GateSeries {
            name,
            kind,
            unit,
            comparison,
            threshold,
            threshold_value,
            recent: VecDeque::with_capacity(RECENT),
            buckets: VecDeque::with_capacity(BUCKETS),
            filling: None,
        }
    }

    /// Adds a reading `dt` ms after the series' start.
    fn push(&mut self, reading: Packed) {
        if self.recent.len() == RECENT
            && let Some(old) = self.recent.pop_front()
        {
            self.fold(old);
        }
        self.recent.push_back(reading);
    }

    /// Folds a reading leaving full resolution into the bucket being filled.
    fn fold(&mut self, old: Packed) {
        let (kept, n) = match self.filling.take() {
            None => (old, 1),
            Some((kept, n)) => (self.worse(kept, old), n + 1),
        };
        if n < BUCKET_TICKS {
            self.filling = Some((kept, n));
            return;
        }
        if self.buckets.len() == BUCKETS {
            self.buckets.pop_front();
        }
        self.buckets.push_back(kept);
    }

    /// The reading a bucket keeps: the more severe verdict, then the value
    /// farther on the failing side; the later one on a tie.
    fn worse(&self, a: Packed, b: Packed) -> Packed {
        let (sa, sb) = (a.verdict.severity(), b.verdict.severity());
        if sa != sb {
            return if sa > sb { a } else { b };
        }
        match (a.canary.is_nan(), b.canary.is_nan()) {
            (false, true) => return a,
            (true, false) | (true, true) => return b,
            (false, false) => {}
        }
        let a_worse = match self.comparison {
            Comparison::LessThan => a.canary > b.canary,
            Comparison::GreaterThan => a.canary < b.canary,
        };
        if a_worse { a } else { b }
    }

    /// How many points are served.
    pub fn len(&self) -> usize {
        self.buckets.len() + usize::from(self.filling.is_some()) + self.recent.len()
    }

    /// Whether no point is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The points oldest first, times relative to `start` (ms since the
    /// epoch): each full bucket's kept reading, the filling bucket's, then
    /// the recent ones.
    pub fn points(&self, start: u64) -> impl Iterator<Item = Point> + '_ {
        self.buckets
            .iter()
            .chain(self.filling.as_ref().map(|(p, _)| p))
            .chain(self.recent.iter())
            .map(move |p| Point {
                t: start + u64::from(p.dt),
                canary: unpack(p.canary),
                stable: unpack(p.stable),
                verdict: p.verdict,
                bound: unpack(p.bound),
            })
    }

    /// The latest reading's offset, for choosing which gate gives way.
    fn last_dt(&self) -> u32 {
        self.recent.back().map_or(0, |p| p.dt)
    }

    /// Bytes held, from the capacities (the struct, its points, its texts).
    pub fn bytes(&self) -> usize {
        size_of::<GateSeries>()
            + (self.recent.capacity() + self.buckets.capacity()) * size_of::<Packed>()
            + self.name.capacity()
            + self.threshold.capacity()
    }
}

/// The charts of one rollout.
#[derive(Clone, Debug, Default)]
pub struct Series {
    /// The canary version the points are about (a new version starts afresh).
    pub version: Option<String>,
    /// When the first point was taken (ms since the epoch).
    pub start: u64,
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
        let dt = at.millis().checked_sub(self.start).map(u32::try_from);
        let dt = match dt {
            Some(Ok(dt)) if self.version.as_deref() == version && !self.gates.is_empty() => dt,
            // A new version, the first point, or offsets run out (or the
            // clock went back past the start): afresh.
            _ => {
                *self = Series {
                    version: version.map(str::to_string),
                    start: at.millis(),
                    gates: Vec::new(),
                };
                0
            }
        };
        for r in results {
            let Some(gate) = r.gate.resolve(spec) else {
                continue;
            };
            let i = match self.gates.iter().position(|g| g.name == r.name) {
                Some(i) => i,
                None => {
                    self.make_room();
                    self.gates.push(GateSeries::new(
                        r.name.clone(),
                        match r.gate {
                            GateRef::Abort(_) => GateKind::Abort,
                            GateRef::Promotion { .. } => GateKind::Promotion,
                        },
                        gate.unit,
                        gate.comparison,
                        r.threshold.clone(),
                        gate.limit.fixed(),
                    ));
                    self.gates.len() - 1
                }
            };
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
            self.gates[i].push(Packed {
                dt,
                canary: pack(r.value),
                stable: pack(r.stable_value),
                bound: pack(bound),
                verdict: ChartVerdict::from(&r.verdict),
            });
        }
    }

    /// Drops the least recently judged gate when [`MAX_GATES`] are kept.
    fn make_room(&mut self) {
        if self.gates.len() < MAX_GATES {
            return;
        }
        if let Some(i) = (0..self.gates.len()).min_by_key(|&i| self.gates[i].last_dt()) {
            self.gates.remove(i);
        }
    }

    /// Bytes held, from the capacities: the charts, their gates, their texts.
    pub fn bytes(&self) -> usize {
        size_of::<Series>()
            + self.version.as_ref().map_or(0, String::capacity)
            + (self.gates.capacity() - self.gates.len()) * size_of::<GateSeries>()
            + self.gates.iter().map(GateSeries::bytes).sum::<usize>()
    }
}

// === serialization: the points expanded, as `GET …/series` always served ===

impl Serialize for Series {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let gates: Vec<_> = self.gates.iter().map(|g| Gate(g, self.start)).collect();
        let mut out = s.serialize_struct("Series", 2)?;
        out.serialize_field("version", &self.version)?;
        out.serialize_field("gates", &gates)?;
        out.end()
    }
}

/// A gate with the series' start, to serialize its points' times.
struct Gate<'a>(&'a GateSeries, u64);

impl Serialize for Gate<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Gate(g, start) = *self;
        let mut out = s.serialize_struct("GateSeries", 7)?;
        out.serialize_field("name", &g.name)?;
        out.serialize_field("kind", &g.kind)?;
        out.serialize_field("unit", &g.unit)?;
        out.serialize_field("comparison", &g.comparison)?;
        out.serialize_field("threshold", &g.threshold)?;
        out.serialize_field("threshold_value", &g.threshold_value)?;
        out.serialize_field("points", &Points(g, start))?;
        out.end()
    }
}

struct Points<'a>(&'a GateSeries, u64);

impl Serialize for Points<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.points(self.1))
    }
}

/// Every rollout's charts.
pub type Histories = BTreeMap<crate::spec::model::RolloutId, Series>;

#[cfg(test)]
mod tests;
