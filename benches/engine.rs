//! Cost of the pure core: decoding a deploy file, one engine decision, and
//! planning a tick's Prometheus queries.
//!
//! `cargo bench --bench engine`

use std::hint::black_box;
use std::time::Duration;

use canaryd::engine::evidence::counts::Snapshot;
use canaryd::engine::{
    CountsQueries, CountsReading, Input, Observation, RolloutState, Timestamp, TrackCounts,
    counts_needed, decide,
};
use canaryd::provider::{Answer, Answers, Batch, QueryValue, Series, plan_counts};
use canaryd::spec::decode::decode;
use canaryd::spec::model::DeploySpec;
use canaryd::spec::policy::PolicySet;
use criterion::{Criterion, criterion_group, criterion_main};

const SEED_FILE: &str = include_str!("../deploy/checkout.yaml");

/// Both tracks' counters after `n` intervals of healthy traffic (900 canary
/// and 9,000 stable requests each, 0.4% errors, a fast histogram).
fn counts(n: f64) -> CountsReading {
    let track = |requests: f64| {
        let total = requests * n;
        TrackCounts {
            snapshot: Ok(Snapshot {
                requests: total,
                errors: Some(total * 0.004),
                buckets: vec![
                    (0.05, total * 0.6),
                    (0.1, total * 0.9),
                    (0.2, total * 0.995),
                    (0.5, total * 0.9999),
                    (f64::INFINITY, total),
                ],
            }),
            queries: CountsQueries::default(),
        }
    };
    CountsReading {
        canary: track(900.0),
        stable: track(9000.0),
    }
}

fn healthy(n: f64) -> Observation {
    Observation {
        canary_ready: true,
        measurements: Vec::new(),
        counts: Some(counts(n)),
    }
}

fn benches(c: &mut Criterion) {
    let policies = PolicySet::builtin();
    c.bench_function("decode the seed deploy file", |b| {
        b.iter(|| decode("checkout.yaml", black_box(SEED_FILE), &policies));
    });

    let spec = decode("checkout.yaml", SEED_FILE, &policies)
        .spec
        .expect("valid");
    let t0 = Timestamp::from_millis(1_800_000_000_000);
    // A rollout started on a baseline read and ticked once, then the next tick.
    let started = decide(
        &spec,
        &RolloutState::new(&spec, t0),
        &Input::Tick(healthy(1.0)),
        t0,
    )
    .expect("tick")
    .state;
    let t1 = t0.plus(Duration::from_secs(10));
    let started = decide(&spec, &started, &Input::Tick(healthy(2.0)), t1)
        .expect("tick")
        .state;
    let input = Input::Tick(healthy(3.0));
    let now = t1.plus(Duration::from_secs(10));
    c.bench_function("decide: one healthy tick (4 evidence gates)", |b| {
        b.iter(|| {
            decide(
                black_box(&spec),
                black_box(&started),
                black_box(&input),
                now,
            )
        });
    });

    // 10,000 rollouts in one daemon: the engine's share of a tick.
    let states: Vec<RolloutState> = (0..10_000).map(|_| started.clone()).collect();
    let mut group = c.benchmark_group("scale");
    group.sample_size(10);
    group.bench_function("decide: 10,000 rollouts, one tick each", |b| {
        b.iter(|| {
            for s in &states {
                black_box(decide(&spec, s, &input, now).expect("tick"));
            }
        });
    });
    group.finish();

    // Planning one tick's queries for 10,000 distinct rollouts (the seed's
    // counters on both tracks), and turning the answers back into reads.
    let specs: Vec<DeploySpec> = (0..10_000)
        .map(|i| {
            let mut s = spec.clone();
            s.id.name = format!("svc-{i}");
            s
        })
        .collect();
    let needed = counts_needed(&spec, &started).expect("evidence gates");
    let mut group = c.benchmark_group("scale");
    group.sample_size(10);
    let plan_all = |mut batch: Batch| {
        let plans: Vec<_> = specs
            .iter()
            .map(|s| plan_counts(&mut batch, s, &policies, None, needed).expect("plan"))
            .collect();
        (batch, plans)
    };
    group.bench_function("plan: 10,000 rollouts' counters, a query each", |b| {
        b.iter(|| black_box(plan_all(Batch::new()).0.queries()));
    });
    group.bench_function("plan: 10,000 rollouts' counters, grouped", |b| {
        b.iter(|| black_box(plan_all(Batch::grouped()).0.queries()));
    });
    // The grouped answers Prometheus gives: one series per (service,
    // version), and per `le` for the histogram.
    let (batch, plans) = plan_all(Batch::grouped());
    let queries = batch.queries();
    let answers: Vec<Answer> = queries
        .iter()
        .map(|q| {
            let les: &[(&str, f64)] = if q.promql.starts_with("sum by (le,") {
                &[("0.1", 900.0), ("0.2", 990.0), ("+Inf", 1000.0)]
            } else {
                &[("", 1000.0)]
            };
            let mut series = Vec::new();
            for s in &specs {
                for version in [&s.stable.version, &s.canary.version] {
                    for (le, v) in les {
                        let mut labels: std::collections::BTreeMap<String, String> = [
                            ("service".to_string(), s.id.name.clone()),
                            ("version".to_string(), version.clone()),
                        ]
                        .into_iter()
                        .collect();
                        if !le.is_empty() {
                            labels.insert("le".into(), le.to_string());
                        }
                        series.push(Series {
                            labels: labels.into_iter().collect(),
                            value: *v,
                        });
                    }
                }
            }
            Ok(QueryValue::Vector(series))
        })
        .collect();
    group.bench_function(
        "reads: 10,000 rollouts' counters from grouped answers",
        |b| {
            b.iter(|| {
                let answers = Answers::new(&batch, answers.clone());
                for p in &plans {
                    black_box(p.reading(&answers));
                }
            });
        },
    );
    group.finish();
    eprintln!(
        "queries in one tick for 10,000 rollouts: {} a query each, {} grouped",
        plan_all(Batch::new()).0.queries().len(),
        queries.len()
    );
}

criterion_group!(engine, benches);
criterion_main!(engine);
