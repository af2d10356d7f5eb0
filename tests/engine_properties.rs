//! Invariants of the engine over random observation sequences (proptest).

mod common;

use std::time::Duration;

use canaryd::engine::{
    Action, Command, Effect, GateRef, Inconclusive, Input, Measurement, Observation, Phase,
    Reading, RolloutState, Timestamp, Verdict, active_gates, decide,
};
use canaryd::spec::model::DeploySpec;
use canaryd::spec::units::Weight;
use common::spec;
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

/// What one gate reads on one tick.
#[derive(Clone, Debug)]
enum Sample {
    Value(f64),
    NoData,
    NaN,
    FewRequests,
    Error,
}

fn sample() -> impl Strategy<Value = Sample> {
    prop_oneof![
        6 => (0.0f64..0.8).prop_map(Sample::Value),
        6 => (0.0f64..0.02).prop_map(Sample::Value),
        1 => Just(Sample::NoData),
        1 => Just(Sample::NaN),
        1 => Just(Sample::FewRequests),
        1 => Just(Sample::Error),
    ]
}

/// One event: a tick (with a time gap, readiness and samples per gate) or a command.
#[derive(Clone, Debug)]
enum Event {
    Tick {
        gap_ms: u64,
        ready: bool,
        samples: Vec<Sample>,
    },
    Command(Command),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        20 => (prop_oneof![4 => Just(1000u64), 1 => 0u64..5000], prop::bool::weighted(0.9), prop::collection::vec(sample(), 4))
            .prop_map(|(gap_ms, ready, samples)| Event::Tick { gap_ms, ready, samples }),
        1 => prop::sample::select(Command::ALL.to_vec()).prop_map(Event::Command),
    ]
}

fn observe(
    spec: &DeploySpec,
    state: &RolloutState,
    ready: bool,
    samples: &[Sample],
) -> Observation {
    let measurements = active_gates(spec, state)
        .into_iter()
        .enumerate()
        .map(|(i, gate)| {
            let s = &samples[i % samples.len()];
            let (value, requests) = match s {
                Sample::Value(v) => (Ok(*v), Some(500.0)),
                Sample::NoData => (Err(Inconclusive::NoData), None),
                Sample::NaN => (Ok(f64::NAN), Some(500.0)),
                Sample::FewRequests => (Ok(0.001), Some(2.0)),
                Sample::Error => (
                    Err(Inconclusive::ProviderError {
                        message: "boom".into(),
                    }),
                    None,
                ),
            };
            Measurement {
                gate,
                canary: Reading {
                    query: "q".into(),
                    value,
                    requests,
                },
                stable: None,
            }
        })
        .collect();
    Observation {
        canary_ready: ready,
        measurements,
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
    for e in events {
        let input = match e {
            Event::Tick {
                gap_ms,
                ready,
                samples,
            } => {
                now = now.plus(Duration::from_millis(*gap_ms));
                Input::Tick(observe(&spec, &state, *ready, samples))
            }
            Event::Command(c) => Input::Command(*c),
        };
        if let Ok(d) = decide(&spec, &state, &input, now) {
            check(&spec, &state, &input, &d);
            state = d.state;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

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
            if !promoted || matches!(input, Input::Command(Command::Promote)) {
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
    fn inconclusive_data_never_advances_a_step(events in prop::collection::vec(event(), 1..200)) {
        run(&events, |_, before, input, d| {
            let Input::Tick(obs) = input else { return };
            let advanced = d.state.step > before.step || (d.state.phase == Phase::Promoted && before.phase != Phase::Promoted);
            if advanced && before.phase.in_flight() {
                let all_conclusive = obs.canary_ready && obs.measurements.iter().all(|m| {
                    matches!(m.canary.value, Ok(v) if v.is_finite()) && m.canary.requests.is_some_and(|r| r >= 20.0)
                });
                assert!(all_conclusive, "advanced on inconclusive data: {obs:?}");
            }
        });
    }
}
