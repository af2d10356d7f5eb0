//! Cost of the pure core: decoding a deploy file, one engine decision, and
//! planning a tick's Prometheus queries.
//!
//! `cargo bench --bench engine`

use std::hint::black_box;
use std::time::Duration;

use canaryd::engine::{
    Input, Measurement, Observation, Reading, RolloutState, Timestamp, active_gates, decide,
};
use canaryd::provider::{Answer, Batch, QueryValue, Series, plan_rollout};
use canaryd::spec::decode::decode;
use canaryd::spec::model::DeploySpec;
use canaryd::spec::policy::PolicySet;
use criterion::{Criterion, criterion_group, criterion_main};

const SEED_FILE: &str = include_str!("../deploy/checkout.yaml");

fn healthy(spec: &DeploySpec, state: &RolloutState) -> Observation {
    let measurements = active_gates(spec, state)
        .into_iter()
        .map(|gate| Measurement {
            gate,
            canary: Reading::value("sum(rate(http_requests_total[1m]))", 0.004, Some(900.0)),
            stable: Some(Reading::value(
                "sum(rate(http_requests_total[1m]))",
                0.003,
                Some(9000.0),
            )),
        })
        .collect();
    Observation {
        canary_ready: true,
        measurements,
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
    let started = decide(
        &spec,
        &RolloutState::new(&spec, t0),
        &Input::Tick(Observation::default()),
        t0,
    )
    .expect("tick")
    .state;
    let input = Input::Tick(healthy(&spec, &started));
    let now = t0.plus(Duration::from_secs(10));
    c.bench_function("decide: one healthy tick (4 gates)", |b| {
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

    // Planning one tick's queries for 10,000 distinct rollouts (4 gates each,
    // both tracks), and turning the answers back into measurements.
    let specs: Vec<DeploySpec> = (0..10_000)
        .map(|i| {
            let mut s = spec.clone();
            s.id.name = format!("svc-{i}");
            s
        })
        .collect();
    let gates = active_gates(&spec, &started);
    let mut group = c.benchmark_group("scale");
    group.sample_size(10);
    group.bench_function("plan: 10,000 rollouts' gates into one batch", |b| {
        b.iter(|| {
            let mut batch = Batch::new();
            for s in &specs {
                black_box(plan_rollout(&mut batch, s, &policies, None, &gates).expect("plan"));
            }
            batch
        });
    });
    let mut batch = Batch::new();
    let plans: Vec<_> = specs
        .iter()
        .map(|s| plan_rollout(&mut batch, s, &policies, None, &gates).expect("plan"))
        .collect();
    let answers: Vec<Answer> = batch
        .queries()
        .iter()
        .map(|_| {
            Ok(QueryValue::Vector(vec![Series {
                labels: Default::default(),
                value: 0.004,
            }]))
        })
        .collect();
    group.bench_function("measurements: 10,000 rollouts from their answers", |b| {
        b.iter(|| {
            for p in &plans {
                black_box(p.measurements(&batch, &answers));
            }
        });
    });
    group.finish();
    eprintln!(
        "queries in one tick for 10,000 rollouts: {} (after de-duplication)",
        batch.queries().len()
    );
}

criterion_group!(engine, benches);
criterion_main!(engine);
