//! Invariants of the engine over random observation sequences (proptest).

mod common;

use std::time::Duration;

use canaryd::engine::{
    Action, Command, Effect, GateRef, Inconclusive, Input, Observation, Phase, RolloutState,
    Timestamp, Verdict, counts_needed, decide,
};
use canaryd::spec::model::DeploySpec;
use canaryd::spec::units::Weight;
use common::{Counters, World, counts_reading, spec};
use proptest::prelude::*;

/// The seed shape with short steps so random runs reach every phase.
fn short_seed() -> DeploySpec {
    spec(
        "service: checkout
router: { kind: builtin, listen: 127.0.0.1:8080 }
stable: { version: v1, address: 127.0.0.1:9001 }
canary: { version: v2, address: 127.0.0.1:9002 }
deploy:
  strategy: canary
  steps:
    - deploy: 5%
      duration: 3s
      metrics:
        - error_rate_less_than: 1%
        - latency_p99_less_than: 200ms
    - deploy: 50%
      duration: 2s
      metrics:
        - error_rate_less_than: 1%
    - deploy: 100%
      metrics:
        - latency_p99_less_than: 200ms
  analysis:
    interval: 1s
    inconclusive_limit: 3
    failure_limit: 3
    consecutive_breaches: 2
  rollback:
    on:
      - error_rate_greater_than: 5%
      - latency_p99_greater_than: 500ms
",
    )
}

/// What the canary serves in one interval, or a failed read.
#[derive(Clone, Debug)]
enum Sample {
    /// Requests, error rate and p99 (seconds).
    Traffic(f64, f64, f64),
    /// Prometheus cannot be read.
    Error,
}

fn sample() -> impl Strategy<Value = Sample> {
    prop_oneof![
        6 => (0.0f64..2000.0, 0.0f64..0.8, 0.01f64..1.0).prop_map(|(n, e, l)| Sample::Traffic(n, e, l)),
        6 => (0.0f64..2000.0, 0.0f64..0.02, 0.01f64..0.3).prop_map(|(n, e, l)| Sample::Traffic(n, e, l)),
        1 => (0.0f64..5.0).prop_map(|n| Sample::Traffic(n, 0.0, 0.05)),
        1 => Just(Sample::Error),
    ]
}

/// A canary within every gate of `short_seed` by a margin.
fn healthy_sample() -> impl Strategy<Value = Sample> {
    prop_oneof![
        8 => (0.0f64..2000.0, 0.0f64..0.004, 0.01f64..0.12).prop_map(|(n, e, l)| Sample::Traffic(n, e, l)),
        1 => Just(Sample::Error),
    ]
}

/// One event: a tick (with a time gap, readiness and traffic) or a command.
#[derive(Clone, Debug)]
enum Event {
    Tick {
        gap_ms: u64,
        ready: bool,
        sample: Sample,
    },
    Command(Command),
}

fn event_of(sample: impl Strategy<Value = Sample>) -> impl Strategy<Value = Event> {
    prop_oneof![
        20 => (prop_oneof![4 => Just(1000u64), 1 => 0u64..5000], prop::bool::weighted(0.9), sample)
            .prop_map(|(gap_ms, ready, sample)| Event::Tick { gap_ms, ready, sample }),
        1 => prop::sample::select(Command::ALL.to_vec()).prop_map(Event::Command),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    event_of(sample())
}

/// Both tracks' counters; the canary serves only while it has a weight.
#[derive(Default)]
struct Prometheus {
    canary: Counters,
    stable: Counters,
}

impl Prometheus {
    fn observe(
        &mut self,
        spec: &DeploySpec,
        state: &RolloutState,
        ready: bool,
        s: &Sample,
    ) -> Observation {
        let world = match s {
            Sample::Traffic(n, e, l) => {
                if state.weight > Weight::ZERO && ready {
                    self.canary.serve(*n, *e, *l);
                }
                World::healthy()
            }
            Sample::Error => World::healthy().inconclusive(
                "counts",
                Inconclusive::ProviderError {
                    message: "boom".into(),
                },
            ),
        };
        self.stable.serve(5000.0, 0.005, 0.1);
        Observation {
            canary_ready: ready,
            measurements: Vec::new(),
            counts: counts_needed(spec, state)
                .map(|_| counts_reading(&world, &self.canary, &self.stable)),
        }
    }
}

/// Runs the events, checking `check(before, input, decision)` after each decision.
fn run(
    events: &[Event],
    mut check: impl FnMut(&DeploySpec, &RolloutState, &Input, &canaryd::engine::Decision),
) {
    let spec = short_seed();
    let mut now = Timestamp::from_millis(1_800_000_000_000);
    let mut state = RolloutState::new(&spec, now);
    let mut prometheus = Prometheus::default();
    for e in events {
        let input = match e {
            Event::Tick {
                gap_ms,
                ready,
                sample,
            } => {
                now = now.plus(Duration::from_millis(*gap_ms));
                Input::Tick(prometheus.observe(&spec, &state, *ready, sample))
            }
            Event::Command(c) => Input::Command(*c, None),
        };
        if let Ok(d) = decide(&spec, &state, &input, now) {
            check(&spec, &state, &input, &d);
            state = d.state;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_weight_never_exceeds_the_current_steps_weight(events in prop::collection::vec(event(), 1..120)) {
        run(&events, |spec, _, _, d| {
            let s = &d.state;
            let step_weight = spec.strategy.steps[s.step].weight;
            match s.phase {
                Phase::Progressing | Phase::Paused => assert!(s.weight <= step_weight, "{s:?}"),
                Phase::Promoted => assert_eq!(s.weight, Weight::FULL),
                Phase::Idle | Phase::RolledBack | Phase::Aborted => assert_eq!(s.weight, Weight::ZERO, "{s:?}"),
            }
            for e in &d.effects {
                if let Effect::SetWeight { weight } = e {
                    assert!(*weight == Weight::ZERO || *weight <= step_weight || s.phase == Phase::Promoted);
                }
            }
        });
    }

    #[test]
    fn nothing_is_promoted_unless_the_final_steps_gates_passed(events in prop::collection::vec(event(), 1..200)) {
        run(&events, |spec, before, input, d| {
            let promoted = d.effects.iter().any(|e| matches!(e, Effect::Record(r) if r.action == Action::Promote));
            if !promoted || matches!(input, Input::Command(Command::Promote, _)) {
                return;
            }
            let last = spec.strategy.steps.len() - 1;
            assert_eq!(before.step, last, "promoted from a step that is not the last");
            let Input::Tick(obs) = input else { panic!("promoted by {input:?}") };
            assert!(obs.canary_ready);
            let record = d.effects.iter().find_map(|e| match e { Effect::Record(r) => Some(r), _ => None }).expect("recorded");
            let final_gates: Vec<_> = record.gates.iter().filter(|g| matches!(g.gate, GateRef::Promotion { step, .. } if step == last)).collect();
            assert_eq!(final_gates.len(), spec.strategy.steps[last].gates.len());
            assert!(record.gates.iter().all(|g| g.verdict == Verdict::Pass), "{:?}", record.gates);
        });
    }

    #[test]
    fn a_rollback_or_abort_sets_weight_zero_before_anything_else(events in prop::collection::vec(event(), 1..200)) {
        run(&events, |_, _, _, d| {
            let stops = d.effects.iter().any(|e| matches!(e, Effect::Record(r) if matches!(r.action, Action::Rollback | Action::Abort)));
            if stops {
                assert_eq!(d.effects[0], Effect::SetWeight { weight: Weight::ZERO }, "{:?}", d.effects);
            }
        });
    }

    #[test]
    fn the_same_inputs_give_the_same_decisions(events in prop::collection::vec(event(), 1..120)) {
        // Compared as text: NaN readings make `==` on floats useless.
        let mut first = Vec::new();
        run(&events, |_, _, _, d| first.push(format!("{d:?}")));
        let mut second = Vec::new();
        run(&events, |_, _, _, d| second.push(format!("{d:?}")));
        prop_assert_eq!(first, second);
    }

    #[test]
    fn decisions_are_numbered_one_by_one(events in prop::collection::vec(event(), 1..120)) {
        run(&events, |_, before, _, d| {
            let seqs: Vec<u64> = d.effects.iter().filter_map(|e| match e { Effect::Record(r) => Some(r.seq), _ => None }).collect();
            let expected: Vec<u64> = (before.decisions + 1..=d.state.decisions).collect();
            assert_eq!(seqs, expected);
        });
    }

    #[test]
    fn a_step_advances_only_when_every_promotion_gate_of_it_passed(events in prop::collection::vec(event(), 1..200)) {
        run(&events, |spec, before, input, d| {
            let Input::Tick(_) = input else { return };
            let advanced = d.state.step > before.step || (d.state.phase == Phase::Promoted && before.phase != Phase::Promoted);
            if !advanced || !before.phase.in_flight() {
                return;
            }
            let step = before.step;
            let judged: Vec<_> = d
                .gates
                .iter()
                .filter(|g| matches!(g.gate, GateRef::Promotion { step: s, .. } if s == step))
                .collect();
            assert_eq!(judged.len(), spec.strategy.steps[step].gates.len());
            assert!(judged.iter().all(|g| g.verdict == Verdict::Pass), "advanced on {judged:#?}");
        });
    }

    #[test]
    fn a_canary_within_every_gate_is_never_rolled_back(
        events in prop::collection::vec(event_of(healthy_sample()), 1..300)
    ) {
        run(&events, |_, _, input, d| {
            if matches!(input, Input::Command(..)) {
                return;
            }
            let rolled_back = d.effects.iter().any(|e| matches!(e, Effect::Record(r) if r.action == Action::Rollback));
            assert!(!rolled_back, "{:#?}", d.effects);
        });
    }
}
