//! The dashboard's chart data: each tick's gate values kept per gate, bounded,
//! and started afresh for a new canary version.

mod common;

use canaryd::controller::history::{KEPT, Series};
use canaryd::engine::{Phase, Timestamp};
use common::{SEED_FILE, Sim, World, spec};

#[test]
fn each_tick_adds_a_point_per_gate_with_the_threshold_in_the_values_unit() {
    let mut sim = Sim::new(spec(SEED_FILE));
    let mut series = Series::default();
    let failing = World::healthy().with("error_rate", 0.5);
    sim.tick_now(&World::healthy()); // the start: nothing judged yet
    for i in 0..3 {
        let world = if i == 2 { &failing } else { &World::healthy() };
        let d = sim.tick(world).clone();
        series.record(
            &sim.spec,
            sim.state.canary_version.as_deref(),
            sim.now,
            &d.gates,
        );
    }
    assert_eq!(sim.state.phase, Phase::RolledBack);
    assert_eq!(series.version.as_deref(), Some("v2"));
    let errors = series
        .gates
        .iter()
        .find(|g| g.name == "error_rate > 2%")
        .expect("the abort condition's series");
    assert_eq!(errors.kind, "abort");
    assert_eq!(errors.threshold_value, Some(0.02));
    assert_eq!(errors.points.len(), 3);
    assert_eq!(errors.points[2].verdict, "fail");
    // The step's error rate so far: two healthy minutes and a failing one.
    let expected = (5.0 + 5.0 + 500.0) / 3000.0;
    assert!(
        errors.points[2]
            .canary
            .is_some_and(|v| (v - expected).abs() < 1e-9)
    );
    let promotion = series
        .gates
        .iter()
        .find(|g| g.name == "error_rate < 1%")
        .expect("the promotion gate's series");
    assert!(
        promotion.points[2]
            .bound
            .is_some_and(|b| b > 0.01 && b < expected),
        "its lower bound, leaning to fail: {:?}",
        promotion.points[2]
    );
    assert!(errors.points.iter().all(|p| p.t > 0));
}

#[test]
fn a_new_canary_version_starts_its_charts_afresh_and_old_points_fall_off() {
    let mut sim = Sim::new(spec(SEED_FILE));
    let world = World::healthy();
    sim.tick(&world); // started: its gates are active
    let results = sim.tick(&world).gates.clone();
    assert!(!results.is_empty());
    let mut series = Series::default();
    for i in 0..(KEPT as u64 + 10) {
        series.record(
            &sim.spec,
            Some("v2"),
            Timestamp::from_millis(1_000 + i),
            &results,
        );
    }
    assert!(series.gates.iter().all(|g| g.points.len() == KEPT));
    assert_eq!(
        series.gates[0].points[0].t, 1_010,
        "the oldest dropped first"
    );
    series.record(
        &sim.spec,
        Some("v3"),
        Timestamp::from_millis(9_999),
        &results,
    );
    assert_eq!(series.version.as_deref(), Some("v3"));
    assert!(series.gates.iter().all(|g| g.points.len() == 1));
}
