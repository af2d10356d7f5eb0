//! The chart history's bounds, downsampling and JSON.
use super::*;

fn gate(comparison: Comparison) -> GateSeries {
    GateSeries::new(
        "error_rate < 1%".into(),
        GateKind::Promotion,
        Unit::Ratio,
        comparison,
        "1%".into(),
        Some(0.01),
    )
}

fn reading(dt: u32, canary: f64, verdict: ChartVerdict) -> Packed {
    Packed {
        dt,
        canary: pack(Some(canary)),
        stable: pack(Some(0.001)),
        bound: f32::NAN,
        verdict,
    }
}

#[test]
fn a_breach_survives_downsampling_at_its_extreme_value() {
    let mut g = gate(Comparison::LessThan);
    for i in 0..KEPT as u32 {
        let breach = i == 5 || i == 7;
        let (v, verdict) = match (breach, i) {
            (true, 5) => (0.05, ChartVerdict::Fail),
            (true, _) => (0.03, ChartVerdict::Fail),
            // Passing readings, some above the breach: a fail still wins.
            (false, _) => (if i % 2 == 0 { 0.2 } else { 0.001 }, ChartVerdict::Pass),
        };
        g.push(reading(i * 1000, v, verdict));
    }
    let points: Vec<Point> = g.points(1_000_000).collect();
    assert_eq!(points.len(), BUCKETS + RECENT);
    let first = &points[0];
    assert_eq!(first.verdict, ChartVerdict::Fail, "{first:?}");
    assert_eq!(first.t, 1_000_000 + 5_000, "the breach's own time");
    assert!(first.canary.is_some_and(|v| (v - 0.05).abs() < 1e-6));
    assert_eq!(
        points
            .iter()
            .filter(|p| p.verdict == ChartVerdict::Fail)
            .count(),
        1
    );
}

#[test]
fn a_passing_bucket_keeps_the_reading_nearest_to_failing() {
    for (comparison, worst) in [(Comparison::LessThan, 0.9), (Comparison::GreaterThan, 0.1)] {
        let mut g = gate(comparison);
        let n = RECENT as u32 + u32::from(BUCKET_TICKS);
        for i in 0..n {
            let v = if i == 3 { worst } else { 0.5 };
            g.push(reading(i, v, ChartVerdict::Pass));
        }
        let first = g.points(0).next().expect("a bucket");
        assert!(
            first.canary.is_some_and(|v| (v - worst).abs() < 1e-6),
            "{comparison:?}: {first:?}"
        );
        assert_eq!(first.t, 3);
    }
}

#[test]
fn the_oldest_bucket_falls_off_and_the_span_stays_kept_ticks() {
    let mut g = gate(Comparison::LessThan);
    let ticks = KEPT as u32 * 3 + 5;
    for i in 0..ticks {
        g.push(reading(i, 0.001, ChartVerdict::Pass));
    }
    let points: Vec<Point> = g.points(0).collect();
    assert_eq!(
        points.len(),
        BUCKETS + 1 + RECENT,
        "full buckets, a filling one, the recent"
    );
    assert_eq!(points.last().map(|p| p.t), Some(u64::from(ticks - 1)));
    let span = points[points.len() - 1].t - points[0].t;
    assert!(span < (KEPT + usize::from(BUCKET_TICKS)) as u64, "{span}");
    assert!(points.windows(2).all(|w| w[0].t < w[1].t), "oldest first");
}

#[test]
fn an_unmeasured_value_is_served_as_none() {
    let mut g = gate(Comparison::LessThan);
    g.push(Packed {
        dt: 0,
        canary: pack(None),
        stable: pack(Some(f64::MAX)),
        bound: pack(Some(0.02)),
        verdict: ChartVerdict::Inconclusive,
    });
    let p = g.points(7).next().expect("a point");
    assert_eq!((p.t, p.canary, p.stable), (7, None, None));
    assert!(p.bound.is_some_and(|b| (b - 0.02).abs() < 1e-6));
    let json = serde_json::to_value(&p).expect("serializes");
    assert_eq!(json["verdict"], "inconclusive");
}

#[test]
fn past_the_gate_limit_the_least_recently_judged_gate_gives_way() {
    let mut series = Series::default();
    for i in 0..MAX_GATES as u32 {
        let mut g = gate(Comparison::LessThan);
        g.name = format!("gate {i}");
        // Gate 3 was judged longest ago.
        g.push(reading(
            if i == 3 { 0 } else { 100 + i },
            0.001,
            ChartVerdict::Pass,
        ));
        series.gates.push(g);
    }
    series.make_room();
    assert_eq!(series.gates.len(), MAX_GATES - 1);
    assert!(series.gates.iter().all(|g| g.name != "gate 3"));
}
