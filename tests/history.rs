//! The dashboard's chart data: each tick's gate values kept per gate, in a
//! bounded size per rollout, and started afresh for a new canary version.

mod common;

use canaryd::controller::history::{
    ChartVerdict, GATE_BYTES, GateKind, KEPT, Point, RECENT, SERIES_BYTES, Series,
};
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
    assert_eq!(errors.kind, GateKind::Abort);
    assert_eq!(errors.threshold_value, Some(0.02));
    let points: Vec<Point> = errors.points(series.start).collect();
    assert_eq!(points.len(), 3);
    assert_eq!(points[2].verdict, ChartVerdict::Fail);
    // The step's error rate so far: two healthy minutes and a failing one
    // (kept as an f32).
    let expected = (5.0 + 5.0 + 500.0) / 3000.0;
    assert!(
        points[2]
            .canary
            .is_some_and(|v| (v - expected).abs() < 1e-6 * expected)
    );
    let promotion = series
        .gates
        .iter()
        .find(|g| g.name == "error_rate < 1%")
        .expect("the promotion gate's series");
    let bound = promotion.points(series.start).nth(2).and_then(|p| p.bound);
    assert!(
        bound.is_some_and(|b| b > 0.01 && b < expected),
        "its lower bound, leaning to fail: {bound:?}"
    );
    assert!(points.iter().all(|p| p.t > 0));
    assert_eq!(points[2].t, sim.now.millis(), "times as ms since the epoch");
}

#[test]
fn a_new_canary_version_starts_its_charts_afresh_and_old_points_fall_off() {
    let mut sim = Sim::new(spec(SEED_FILE));
    let world = World::healthy();
    sim.tick(&world); // started: its gates are active
    let results = sim.tick(&world).gates.clone();
    assert!(!results.is_empty());
    let mut series = Series::default();
    let ticks = KEPT as u64 * 2;
    for i in 0..ticks {
        series.record(
            &sim.spec,
            Some("v2"),
            Timestamp::from_millis(1_000 + i),
            &results,
        );
    }
    for g in &series.gates {
        let points: Vec<Point> = g.points(series.start).collect();
        let (first, last) = (points[0].t, points[points.len() - 1].t);
        assert_eq!(last, 1_000 + ticks - 1);
        assert!(
            last - first < KEPT as u64 + 20 && last - first >= KEPT as u64 - 20,
            "about the last {KEPT} ticks: {first}..{last}"
        );
        let recent = &points[points.len() - RECENT..];
        assert!(
            recent.windows(2).all(|w| w[1].t == w[0].t + 1),
            "the recent ticks at full resolution"
        );
    }
    series.record(
        &sim.spec,
        Some("v3"),
        Timestamp::from_millis(9_999_999),
        &results,
    );
    assert_eq!(series.version.as_deref(), Some("v3"));
    assert!(series.gates.iter().all(|g| g.len() == 1));
    assert_eq!(
        series.gates[0].points(series.start).next().map(|p| p.t),
        Some(9_999_999)
    );
}

#[test]
fn a_rollouts_charts_stay_within_their_documented_size_after_100000_ticks() {
    let mut sim = Sim::new(spec(SEED_FILE));
    let world = World::healthy();
    sim.tick(&world);
    let results = sim.tick(&world).gates.clone();
    let mut series = Series::default();
    let text: usize = results
        .iter()
        .map(|r| r.name.len() + r.threshold.len())
        .sum();
    let mut after_first_hour = 0;
    for i in 0..100_000u64 {
        series.record(
            &sim.spec,
            Some("v2"),
            Timestamp::from_millis(1_700_000_000_000 + i * 10_000),
            &results,
        );
        if i == KEPT as u64 {
            after_first_hour = series.bytes();
        }
    }
    let gates = series.gates.len();
    assert_eq!(gates, results.len());
    let bound = SERIES_BYTES + "v2".len() + gates * GATE_BYTES + text;
    let held = series.bytes();
    assert!(
        held <= bound,
        "{held} bytes held for {gates} gates, over {bound}"
    );
    assert_eq!(held, after_first_hour, "flat once full");
}

#[test]
fn the_charts_serve_the_same_json_shape_as_before() {
    let mut sim = Sim::new(spec(SEED_FILE));
    let world = World::healthy();
    sim.tick(&world);
    let results = sim.tick(&world).gates.clone();
    let mut series = Series::default();
    series.record(&sim.spec, Some("v2"), sim.now, &results);
    let json = serde_json::to_value(&series).expect("serializes");
    assert_eq!(json["version"], "v2");
    let gate = &json["gates"][0];
    for field in [
        "name",
        "kind",
        "unit",
        "comparison",
        "threshold",
        "threshold_value",
    ] {
        assert!(gate.get(field).is_some(), "{field} in {gate}");
    }
    assert!(gate["kind"] == "abort" || gate["kind"] == "promotion");
    let point = &gate["points"][0];
    assert_eq!(point["t"], sim.now.millis());
    assert!(point["canary"].is_number(), "{point}");
    assert!(["pass", "undecided"].contains(&point["verdict"].as_str().unwrap_or("")));
}

#[test]
fn a_version_watched_past_the_offsets_range_starts_afresh_rather_than_misdating() {
    let mut sim = Sim::new(spec(SEED_FILE));
    let world = World::healthy();
    sim.tick(&world);
    let results = sim.tick(&world).gates.clone();
    let mut series = Series::default();
    let start = 1_700_000_000_000;
    series.record(
        &sim.spec,
        Some("v2"),
        Timestamp::from_millis(start),
        &results,
    );
    let later = start + 50 * 86_400_000;
    series.record(
        &sim.spec,
        Some("v2"),
        Timestamp::from_millis(later),
        &results,
    );
    let times: Vec<u64> = series.gates[0].points(series.start).map(|p| p.t).collect();
    assert_eq!(times, vec![later]);
}
