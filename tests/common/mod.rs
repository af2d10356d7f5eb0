//! Shared test helpers: a simulated rollout driven tick by tick with fake time.
#![allow(dead_code)]

use std::collections::HashMap;
use std::time::Duration;

use canaryd::engine::evidence::counts::Snapshot;
use canaryd::engine::{
    Command, CountsQueries, CountsReading, Decision, DecisionRecord, Effect, GateRef, Inconclusive,
    Input, Measurement, Observation, Reading, Rejected, RolloutState, Timestamp, TrackCounts,
    counts_needed, decide, reading_gates,
};
use canaryd::spec::decode::decode;
use canaryd::spec::model::DeploySpec;
use canaryd::spec::policy::PolicySet;
use canaryd::spec::units::Weight;
use statrs::distribution::{ContinuousCDF, Normal};

/// The seed strategy of the brief inside a full deploy file, with `{analysis}`
/// replaced by an optional analysis block.
pub const SEED_FILE: &str = include_str!("../../deploy/checkout.yaml");

/// Decodes a deploy file or panics with its diagnostics.
pub fn spec(text: &str) -> DeploySpec {
    let decoded = decode("test.yaml", text, &PolicySet::builtin());
    match decoded.spec {
        Some(s) => s,
        None => panic!("invalid test spec: {:#?}", decoded.diagnostics),
    }
}

/// The seed file with extra `deploy.analysis` settings (YAML lines, 4-space indented).
pub fn seed_with_analysis(lines: &str) -> DeploySpec {
    let text = SEED_FILE.replace(
        "  rollback:\n",
        &format!("  analysis:\n{lines}\n  rollback:\n"),
    );
    spec(&text)
}

/// Latency histogram bounds (seconds), as the sample app exports them.
pub const BUCKETS: [f64; 19] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0,
    10.0, 30.0,
];

/// What each track serves per tick, as Prometheus would count it: requests,
/// an error rate and a log-normal latency (p50 = p99 / 3). Counts are exact
/// expectations (no sampling noise), so scenarios are deterministic.
#[derive(Clone, Debug)]
pub struct World {
    /// The canary's error rate.
    pub error_rate: f64,
    /// The canary's p99 latency, in seconds.
    pub latency_p99: f64,
    /// The stable version's error rate.
    pub stable_error_rate: f64,
    /// The stable version's p99 latency.
    pub stable_latency_p99: f64,
    /// Requests the canary serves per tick while it has a weight.
    pub canary_requests: f64,
    /// Requests the stable version serves per tick.
    pub stable_requests: f64,
    pub ready: bool,
    /// Why the counters cannot be read, if they cannot.
    pub counts: Result<(), Inconclusive>,
    /// Readings of gates judged on single readings (custom queries), by metric.
    pub values: HashMap<String, Result<f64, Inconclusive>>,
    /// The request count sent with each reading.
    pub requests: Option<f64>,
}

impl World {
    /// 0.5% errors, 120 ms p99, 1,000 canary requests a tick.
    pub fn healthy() -> World {
        World {
            error_rate: 0.005,
            latency_p99: 0.120,
            stable_error_rate: 0.005,
            stable_latency_p99: 0.120,
            canary_requests: 1000.0,
            stable_requests: 10_000.0,
            ready: true,
            counts: Ok(()),
            values: HashMap::new(),
            requests: Some(1000.0),
        }
    }

    /// Sets the canary's `error_rate` or `latency_p99` (seconds); any other
    /// metric is a reading for gates with their own query.
    pub fn with(mut self, metric: &str, value: f64) -> World {
        match metric {
            "error_rate" => self.error_rate = value,
            "latency_p99" => self.latency_p99 = value,
            _ => {
                self.values.insert(metric.into(), Ok(value));
            }
        }
        self
    }

    /// The stable version's error rate.
    pub fn stable_errors(mut self, rate: f64) -> World {
        self.stable_error_rate = rate;
        self
    }

    /// The canary serves no requests (its series stay flat or absent).
    pub fn without_data(mut self) -> World {
        self.canary_requests = 0.0;
        for v in self.values.values_mut() {
            *v = Err(Inconclusive::NoData);
        }
        self
    }

    /// Reading the counters fails with `why` (for a reading gate's `metric`,
    /// its reading does).
    pub fn inconclusive(mut self, metric: &str, why: Inconclusive) -> World {
        match metric {
            "error_rate" | "latency_p99" | "counts" => self.counts = Err(why),
            _ => {
                self.values.insert(metric.into(), Err(why));
            }
        }
        self
    }

    /// The canary's requests per tick.
    pub fn requests(mut self, n: f64) -> World {
        self.canary_requests = n;
        self.requests = Some(n);
        self
    }

    pub fn unready(mut self) -> World {
        self.ready = false;
        self
    }
}

/// Cumulative counters of one track, as Prometheus holds them.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub requests: f64,
    pub errors: f64,
    pub buckets: Vec<(f64, f64)>,
}

impl Counters {
    /// Adds `n` requests at `error_rate` with a log-normal latency of `p99`.
    pub fn serve(&mut self, n: f64, error_rate: f64, p99: f64) {
        if self.buckets.is_empty() {
            self.buckets = BUCKETS
                .iter()
                .copied()
                .chain([f64::INFINITY])
                .map(|b| (b, 0.0))
                .collect();
        }
        self.requests += n;
        self.errors += n * error_rate;
        let sigma = 3f64.ln() / 2.326_347_874;
        let median = p99 / 3.0;
        let normal = Normal::new(0.0, 1.0).expect("normal");
        for (le, count) in &mut self.buckets {
            let within = if le.is_infinite() {
                1.0
            } else {
                normal.cdf((le.ln() - median.ln()) / sigma)
            };
            *count += n * within;
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            requests: self.requests,
            errors: Some(self.errors),
            buckets: self.buckets.clone(),
        }
    }
}

/// The counts a tick reads: both tracks' counters after this interval.
pub fn counts_reading(world: &World, canary: &Counters, stable: &Counters) -> CountsReading {
    let read = |c: &Counters| TrackCounts {
        snapshot: world.counts.clone().map(|()| c.snapshot()),
        queries: CountsQueries {
            requests: "requests".into(),
            errors: Some("errors".into()),
            latency_buckets: Some("buckets".into()),
        },
    };
    CountsReading {
        canary: read(canary),
        stable: read(stable),
    }
}

/// A rollout under simulated time, applying effects like a perfect router would.
pub struct Sim {
    pub spec: DeploySpec,
    pub state: RolloutState,
    pub now: Timestamp,
    pub start: Timestamp,
    /// The router's weight as set by `SetWeight` effects.
    pub router: Weight,
    pub log: Vec<DecisionRecord>,
    pub effects: Vec<Effect>,
    pub last: Option<Decision>,
    /// Each track's counters as Prometheus holds them.
    pub canary_counts: Counters,
    pub stable_counts: Counters,
}

impl Sim {
    pub fn new(spec: DeploySpec) -> Sim {
        let start = Timestamp::from_millis(1_800_000_000_000);
        let state = RolloutState::new(&spec, start);
        Sim {
            spec,
            state,
            now: start,
            start,
            router: Weight::ZERO,
            log: Vec::new(),
            effects: Vec::new(),
            last: None,
            canary_counts: Counters::default(),
            stable_counts: Counters::default(),
        }
    }

    /// What the tick observes after an interval of `world`: the canary
    /// serves requests only while the router gives it a weight and it is ready.
    pub fn observe(&mut self, world: &World) -> Observation {
        if self.router > Weight::ZERO && world.ready {
            self.canary_counts
                .serve(world.canary_requests, world.error_rate, world.latency_p99);
        }
        self.stable_counts.serve(
            world.stable_requests,
            world.stable_error_rate,
            world.stable_latency_p99,
        );
        let measurements = reading_gates(&self.spec, &self.state)
            .into_iter()
            .map(|g| {
                let gate = g.resolve(&self.spec).expect("active gate exists");
                let value = world
                    .values
                    .get(&gate.metric)
                    .cloned()
                    .unwrap_or(Err(Inconclusive::NoData));
                let canary = Reading {
                    query: format!("query_for_{}", gate.metric),
                    value,
                    requests: world.requests,
                };
                Measurement {
                    gate: g,
                    canary,
                    stable: None,
                }
            })
            .collect();
        Observation {
            canary_ready: world.ready,
            measurements,
            counts: counts_needed(&self.spec, &self.state)
                .map(|_| counts_reading(world, &self.canary_counts, &self.stable_counts)),
        }
    }

    pub fn interval(&self) -> Duration {
        self.spec.strategy.analysis.interval
    }

    /// Time since the simulation started.
    pub fn elapsed(&self) -> Duration {
        self.now.since(self.start)
    }

    fn apply(&mut self, d: Decision) -> &Decision {
        for e in &d.effects {
            match e {
                Effect::SetWeight { weight } => self.router = *weight,
                Effect::Record(r) => self.log.push(r.clone()),
                _ => {}
            }
        }
        self.effects.extend(d.effects.iter().cloned());
        self.state = d.state.clone();
        self.last = Some(d);
        self.last.as_ref().expect("just set")
    }

    /// Ticks now (without moving the clock).
    pub fn tick_now(&mut self, world: &World) -> &Decision {
        let obs = self.observe(world);
        let d = decide(&self.spec, &self.state, &Input::Tick(obs), self.now)
            .expect("ticks are never rejected");
        self.apply(d)
    }

    /// Moves the clock one interval and ticks.
    pub fn tick(&mut self, world: &World) -> &Decision {
        self.now = self.now.plus(self.interval());
        self.tick_now(world)
    }

    /// Ticks `n` intervals.
    pub fn ticks(&mut self, n: usize, world: &World) {
        for _ in 0..n {
            self.tick(world);
        }
    }

    /// Ticks until `done` holds, at most `max` ticks; panics otherwise.
    pub fn tick_until(&mut self, world: &World, max: usize, done: impl Fn(&Sim) -> bool) {
        for _ in 0..max {
            if done(self) {
                return;
            }
            self.tick(world);
        }
        assert!(
            done(self),
            "condition not reached in {max} ticks; state {:#?}",
            self.state
        );
    }

    pub fn command(&mut self, c: Command) -> Result<&Decision, Rejected> {
        self.command_by(c, None)
    }

    /// A command issued with the API token named `by`.
    pub fn command_by(&mut self, c: Command, by: Option<&str>) -> Result<&Decision, Rejected> {
        let input = Input::Command(c, by.map(str::to_string));
        let d = decide(&self.spec, &self.state, &input, self.now)?;
        Ok(self.apply(d))
    }

    /// The last decision's effects.
    pub fn last_effects(&self) -> &[Effect] {
        self.last.as_ref().map_or(&[], |d| &d.effects)
    }

    pub fn last_record(&self) -> &DecisionRecord {
        self.log.last().expect("a decision was recorded")
    }
}

/// The `GateRef`s of a spec's promotion gates on `step`.
pub fn promotion_refs(spec: &DeploySpec, step: usize) -> Vec<GateRef> {
    (0..spec.strategy.steps[step].gates.len())
        .map(|index| GateRef::Promotion { step, index })
        .collect()
}

pub fn weight(percent: u16) -> Weight {
    Weight::from_basis_points(percent * 100).expect("valid weight")
}
