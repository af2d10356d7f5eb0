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
    for i in 0..3 {
        let world = if i == 2 { &failing } else { &World::healthy() };
        let d = sim.tick(world).clone();
        let gates: Vec<_> = d.records().flat_map(|r| r.gates.clone()).collect();
        let results = if gates.is_empty() {
            sim_gates(&sim, world)
        } else {
            gates
        };
        series.record(
            &sim.spec,
            sim.state.canary_version.as_deref(),
            sim.now,
            &results,
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
    assert!((errors.threshold_value - 0.02).abs() < 1e-12);
    assert_eq!(errors.points.len(), 3);
    assert_eq!(errors.points[2].verdict, "fail");
    assert_eq!(errors.points[2].canary, Some(0.5));
    assert!(errors.points.iter().all(|p| p.t > 0));
}

/// The gates the engine judges on a tick that records nothing.
fn sim_gates(sim: &Sim, world: &World) -> Vec<canaryd::engine::GateResult> {
    let obs = world.observe(&sim.spec, &sim.state);
    let refs = canaryd::engine::active_gates(&sim.spec, &sim.state);
    canaryd::engine::verdict::judge_all(&sim.spec, &obs, &refs)
}

#[test]
fn a_new_canary_version_starts_its_charts_afresh_and_old_points_fall_off() {
    let mut sim = Sim::new(spec(SEED_FILE));
    let world = World::healthy();
    sim.tick(&world); // started: its gates are active
    let results = sim_gates(&sim, &world);
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
