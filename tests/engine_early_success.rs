//! Early success (`min_duration`, opt-in per step) tick by tick in simulated
//! time: a step whose promotion gates have passed on conclusive evidence
//! advances once its minimum has elapsed, never before it, never on a failing
//! or undecided gate, never on inconclusive data, and nothing else restarts.
//!
//! Counts are exact expectations (tests/common), so every run is the same.

mod common;

use std::time::Duration;

use canaryd::engine::evidence::Test;
use canaryd::engine::{Action, GateRef, Phase, Reason};
use common::{SEED_FILE, Sim, World, spec};

const MIN: Duration = Duration::from_secs(60);

/// The seed file with `step1` (YAML lines, 6-space indented) added to step 1
/// after its `duration: 10m`.
fn seed_with_step1(step1: &str) -> Sim {
    let text = SEED_FILE.replacen(
        "      duration: 10m\n",
        &format!("      duration: 10m\n{step1}"),
        1,
    );
    assert_ne!(text, SEED_FILE, "step 1 edited");
    Sim::new(spec(&text))
}

/// Whether both of step 1's promotion gates have passed on evidence.
fn step1_gates_passed(sim: &Sim) -> bool {
    (0..2).all(|index| {
        sim.state
            .evidence
            .passed(GateRef::Promotion { step: 0, index })
    })
}

/// Ticks one interval at a time until the rollout leaves step 1 (or
/// `max` ticks); returns the watched time of step 1 when its gates had
/// both passed, if they did before it left.
fn run_step1(sim: &mut Sim, world: &World, max: usize) -> Option<Duration> {
    let mut passed_at = None;
    for _ in 0..max {
        let before = sim.state.step_elapsed;
        sim.tick(world);
        if sim.state.step != 0 || !sim.state.phase.in_flight() {
            return passed_at.or(Some(before + sim.interval()));
        }
        if passed_at.is_none() && step1_gates_passed(sim) {
            passed_at = Some(sim.state.step_elapsed);
        }
    }
    passed_at
}

fn advance_record(sim: &Sim) -> &canaryd::engine::DecisionRecord {
    sim.log
        .iter()
        .find(|r| r.action == Action::Advance)
        .expect("step 1 advanced")
}

#[test]
fn a_healthy_canary_conclusive_before_its_minimum_advances_exactly_at_the_minimum() {
    // 1,000 canary requests a tick at 0.5% errors and a 120ms p99: both
    // gates pass within the first minute, well before `min_duration: 2m`.
    let mut sim = seed_with_step1("      min_duration: 2m\n");
    let healthy = World::healthy();
    sim.tick_now(&healthy);
    sim.tick_until(&healthy, 100, step1_gates_passed);
    assert!(
        sim.state.step_elapsed < 2 * MIN,
        "conclusive after {:?}",
        sim.state.step_elapsed
    );
    // Not before the minimum, however conclusive.
    while sim.state.step_elapsed + sim.interval() < 2 * MIN {
        sim.tick(&healthy);
        assert_eq!(sim.state.step, 0, "at {:?}", sim.state.step_elapsed);
    }
    // The tick that reaches 2m of watched time advances.
    sim.tick(&healthy);
    assert_eq!((sim.state.phase, sim.state.step), (Phase::Progressing, 1));
    let record = advance_record(&sim);
    assert_eq!(
        record.reason,
        "step 1 passed early: its gates passed after 2m of its 10m"
    );
    assert_eq!(
        record.detail,
        Reason::StepPassedEarly {
            step: 1,
            watched_seconds: 120,
            duration_seconds: 600
        }
    );
    assert_eq!(
        sim.elapsed(),
        2 * MIN,
        "the step's clock runs from the start tick"
    );
}

#[test]
fn a_healthy_canary_conclusive_after_its_minimum_advances_on_the_tick_its_evidence_completes() {
    // 100 canary requests a tick: proving 0.5% < 1% takes minutes.
    let mut sim = seed_with_step1("      min_duration: 1m\n");
    let slower = World::healthy().requests(100.0);
    sim.tick_now(&slower);
    let mut ticks = 0;
    while sim.state.step == 0 {
        let passed_before = step1_gates_passed(&sim);
        sim.tick(&slower);
        ticks += 1;
        assert!(ticks < 60, "still at step 1 after 10m");
        if sim.state.step == 0 {
            assert!(
                !step1_gates_passed(&sim),
                "gates passed at {:?} and the step did not advance",
                sim.state.step_elapsed
            );
        } else {
            assert!(!passed_before, "advanced one tick late");
        }
    }
    let record = advance_record(&sim);
    let Reason::StepPassedEarly {
        watched_seconds, ..
    } = record.detail
    else {
        panic!("not an early success: {}", record.reason);
    };
    assert!(
        watched_seconds > 60 && watched_seconds < 600,
        "advanced after {watched_seconds}s"
    );
    assert!(
        record
            .gates
            .iter()
            .all(|g| g.verdict == canaryd::engine::Verdict::Pass),
        "{:#?}",
        record.gates
    );
}

#[test]
fn without_min_duration_a_conclusive_step_still_runs_its_whole_duration() {
    let mut sim = Sim::new(spec(SEED_FILE));
    let healthy = World::healthy();
    sim.tick_now(&healthy);
    let passed = run_step1(&mut sim, &healthy, 200).expect("gates passed");
    assert!(passed < 2 * MIN, "conclusive after {passed:?}");
    let record = advance_record(&sim);
    assert_eq!(record.detail, Reason::StepPassed { step: 1 });
    assert_eq!(sim.elapsed(), 10 * MIN);
}

#[test]
fn a_min_duration_equal_to_the_duration_decides_exactly_as_none() {
    let healthy = World::healthy();
    let mut plain = Sim::new(spec(SEED_FILE));
    let mut same = seed_with_step1("      min_duration: 10m\n");
    plain.tick_now(&healthy);
    same.tick_now(&healthy);
    for _ in 0..200 {
        plain.tick(&healthy);
        same.tick(&healthy);
    }
    assert_eq!(plain.state.phase, Phase::Promoted);
    assert_eq!(plain.log, same.log);
}

#[test]
fn a_canary_failing_a_promotion_gate_is_rolled_back_never_advanced_early() {
    // 1.5% errors fails `error_rate < 1%` and stays under the 2% abort.
    let mut sim = seed_with_step1("      min_duration: 1m\n");
    let failing = World::healthy().with("error_rate", 0.015);
    sim.tick_now(&failing);
    sim.tick_until(&failing, 200, |s| !s.state.phase.in_flight());
    assert_eq!(sim.state.phase, Phase::RolledBack);
    assert!(!sim.log.iter().any(|r| r.action == Action::Advance));
}

#[test]
fn one_gate_passed_and_another_undecided_keep_the_step_to_its_duration() {
    // The error rate is proven within a minute; a p99 of 195ms against a
    // 200ms gate is not proven in ten.
    let mut sim = seed_with_step1("      min_duration: 1m\n");
    let close = World::healthy().with("latency_p99", 0.195);
    sim.tick_now(&close);
    sim.tick_until(&close, 100, |s| {
        s.state
            .evidence
            .passed(GateRef::Promotion { step: 0, index: 0 })
    });
    sim.tick_until(&close, 100, |s| s.state.step_elapsed >= 10 * MIN);
    assert_eq!((sim.state.phase, sim.state.step), (Phase::Progressing, 0));
    assert!(
        !sim.state
            .evidence
            .passed(GateRef::Promotion { step: 0, index: 1 })
    );
    assert!(!sim.log.iter().any(|r| r.action == Action::Advance));
}

#[test]
fn inconclusive_data_blocks_early_success_even_once_the_gates_have_passed() {
    let mut sim = seed_with_step1("      min_duration: 2m\n");
    let healthy = World::healthy();
    sim.tick_now(&healthy);
    sim.tick_until(&healthy, 100, step1_gates_passed);
    // Prometheus fails from here on: the passes stay locked, the data does not.
    let down = healthy.clone().inconclusive(
        "counts",
        canaryd::engine::Inconclusive::ProviderError {
            message: "connection refused".into(),
        },
    );
    // One healthy tick short of the 2m minimum, then three failed reads
    // (under `inconclusive_limit`: the step holds, and a tick whose data
    // cannot be read is not watched time).
    sim.tick_until(&healthy, 100, |s| {
        s.state.step_elapsed + s.interval() >= 2 * MIN
    });
    let watched = sim.state.step_elapsed;
    sim.ticks(3, &down);
    assert_eq!(sim.state.step_elapsed, watched);
    assert_eq!((sim.state.phase, sim.state.step), (Phase::Progressing, 0));
    assert!(step1_gates_passed(&sim), "passes are locked for the step");
    assert!(!sim.log.iter().any(|r| r.action == Action::Advance));
    // Data back: the next tick advances.
    sim.tick(&healthy);
    assert_eq!(sim.state.step, 1);
    assert!(matches!(
        advance_record(&sim).detail,
        Reason::StepPassedEarly { .. }
    ));
}

#[test]
fn early_success_restarts_nothing_but_the_promotion_evidence() {
    let mut sim = seed_with_step1("      min_duration: 2m\n");
    let healthy = World::healthy();
    sim.tick_now(&healthy);
    sim.tick_until(&healthy, 100, |s| {
        s.state.step_elapsed + s.interval() >= 2 * MIN
    });
    let detectors = |s: &Sim| -> Vec<(GateRef, u64, u64)> {
        s.state
            .evidence
            .gates
            .iter()
            .filter_map(|g| match (&g.gate, &g.against.test) {
                (GateRef::Abort(_), Test::Detector(d)) => {
                    Some((g.gate, g.since.millis(), d.intervals))
                }
                _ => None,
            })
            .collect()
    };
    let before = detectors(&sim);
    let warm_since = sim.state.evidence.warm_since;
    assert_eq!(before.len(), 2, "both abort conditions watched");
    sim.tick(&healthy);
    assert_eq!(sim.state.step, 1, "advanced early");
    // The abort detectors go on: same start, one more interval each.
    let after = detectors(&sim);
    let expected: Vec<_> = before
        .iter()
        .map(|&(gate, since, n)| (gate, since, n + 1))
        .collect();
    assert_eq!(after, expected);
    // The warm-up is not run again, and the step's evidence starts afresh.
    assert_eq!(sim.state.evidence.warm_since, warm_since);
    assert_eq!(sim.state.step_elapsed, Duration::ZERO);
    assert!(
        !sim.state
            .evidence
            .gates
            .iter()
            .any(|g| matches!(g.gate, GateRef::Promotion { .. }))
    );
    // And a breach at step 2 still rolls back at once.
    sim.tick(&healthy.clone().with("error_rate", 0.05));
    assert_eq!(sim.state.phase, Phase::RolledBack);
}

#[test]
fn a_gate_judged_on_single_readings_keeps_its_step_to_the_duration() {
    let text = SEED_FILE.replacen(
        "      duration: 10m\n      metrics:\n",
        "      duration: 10m\n      min_duration: 1m\n      metrics:\n        - queue_depth_less_than: 100\n          query: sum(queue_depth{service=\"{{service}}\", version=\"{{version}}\"})\n",
        1,
    );
    let mut sim = Sim::new(spec(&text));
    let ok = World::healthy().with("queue_depth", 10.0);
    sim.tick_now(&ok);
    run_step1(&mut sim, &ok, 200);
    assert_eq!(advance_record(&sim).detail, Reason::StepPassed { step: 1 });
    assert_eq!(sim.elapsed(), 10 * MIN);
}

#[test]
fn a_last_step_with_a_minimum_promotes_early_on_its_evidence() {
    let text = SEED_FILE.replace(
        "    - deploy: 100%\n",
        "    - deploy: 100%\n      duration: 30m\n      min_duration: 3m\n      metrics:\n        - error_rate_less_than: 1%\n",
    );
    let mut sim = Sim::new(spec(&text));
    let healthy = World::healthy();
    sim.tick_now(&healthy);
    sim.tick_until(&healthy, 1000, |s| s.state.step == 2);
    let at_last = sim.elapsed();
    sim.tick_until(&healthy, 1000, |s| s.state.phase == Phase::Promoted);
    assert_eq!(sim.elapsed() - at_last, 3 * MIN);
    let record = sim.last_record();
    assert_eq!(record.action, Action::Promote);
    assert_eq!(
        record.reason,
        "step 3 passed early: its gates passed after 3m of its 30m"
    );
}
