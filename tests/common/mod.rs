//! Shared test helpers: a simulated rollout driven tick by tick with fake time.
#![allow(dead_code)]

use std::collections::HashMap;
use std::time::Duration;

use canaryd::engine::{
    Command, Decision, DecisionRecord, Effect, GateRef, Inconclusive, Input, Measurement,
    Observation, Reading, Rejected, RolloutState, Timestamp, active_gates, decide,
};
use canaryd::spec::decode::decode;
use canaryd::spec::model::DeploySpec;
use canaryd::spec::policy::PolicySet;
use canaryd::spec::units::Weight;

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

/// What the canary looks like to Prometheus: a value per metric, or why there is none.
#[derive(Clone, Debug)]
pub struct World {
    pub values: HashMap<String, Result<f64, Inconclusive>>,
    pub requests: Option<f64>,
    pub ready: bool,
}

impl World {
    /// 0.5% errors, 120 ms p99, plenty of traffic.
    pub fn healthy() -> World {
        let mut values = HashMap::new();
        values.insert("error_rate".into(), Ok(0.005));
        values.insert("latency_p99".into(), Ok(0.120));
        World {
            values,
            requests: Some(1000.0),
            ready: true,
        }
    }

    pub fn with(mut self, metric: &str, value: f64) -> World {
        self.values.insert(metric.into(), Ok(value));
        self
    }

    pub fn without_data(mut self) -> World {
        for v in self.values.values_mut() {
            *v = Err(Inconclusive::NoData);
        }
        self
    }

    pub fn inconclusive(mut self, metric: &str, why: Inconclusive) -> World {
        self.values.insert(metric.into(), Err(why));
        self
    }

    pub fn requests(mut self, n: f64) -> World {
        self.requests = Some(n);
        self
    }

    pub fn unready(mut self) -> World {
        self.ready = false;
        self
    }

    /// Measures exactly the gates the engine asks for.
    pub fn observe(&self, spec: &DeploySpec, state: &RolloutState) -> Observation {
        let measurements = active_gates(spec, state)
            .into_iter()
            .map(|g| {
                let gate = g.resolve(spec).expect("active gate exists");
                let value = self
                    .values
                    .get(&gate.metric)
                    .cloned()
                    .unwrap_or(Err(Inconclusive::NoData));
                let query = format!("query_for_{}", gate.metric);
                let canary = Reading {
                    query,
                    value,
                    requests: self.requests,
                };
                Measurement {
                    gate: g,
                    canary,
                    stable: None,
                }
            })
            .collect();
        Observation {
            canary_ready: self.ready,
            measurements,
        }
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
        let obs = world.observe(&self.spec, &self.state);
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
        let d = decide(&self.spec, &self.state, &Input::Command(c), self.now)?;
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
