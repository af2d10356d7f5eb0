//! The query plan of a tick, without Prometheus: which queries are asked, how
//! often, and how answers become the engine's readings.

mod common;

use canaryd::engine::{GateRef, Inconclusive};
use canaryd::provider::{Answer, Answers, Batch, QueryValue, Series, every_gate, plan_rollout};
use canaryd::spec::policy::PolicySet;
use common::{SEED_FILE, spec};

fn one(value: f64) -> Answer {
    Ok(QueryValue::Vector(vec![Series {
        labels: Default::default(),
        value,
    }]))
}

#[test]
fn a_query_shared_by_a_gate_and_an_abort_condition_is_asked_once_per_track() {
    let seed = spec(SEED_FILE);
    let mut batch = Batch::new();
    plan_rollout(
        &mut batch,
        &seed,
        &PolicySet::builtin(),
        None,
        &every_gate(&seed),
    )
    .expect("plan");
    // error_rate and latency_p99 (each in a step and in rollback.on) plus the
    // request count, on two tracks.
    assert_eq!(batch.queries().len(), 6, "{:#?}", batch.queries());
    assert!(
        batch
            .queries()
            .iter()
            .all(|q| q.server == "http://127.0.0.1:9090")
    );
}

#[test]
fn rollouts_in_one_batch_keep_their_own_answers() {
    let a = spec(SEED_FILE);
    let mut b = a.clone();
    b.id.name = "payments".into();
    let policies = PolicySet::builtin();
    let gates = every_gate(&a);
    let mut batch = Batch::new();
    let plan_a = plan_rollout(&mut batch, &a, &policies, None, &gates).expect("plan");
    let plan_b = plan_rollout(&mut batch, &b, &policies, None, &gates).expect("plan");
    let answers: Vec<Answer> = batch
        .queries()
        .iter()
        .map(|q| {
            let base = if q.promql.contains("payments") {
                1000.0
            } else {
                0.0
            };
            one(base
                + if q.promql.contains("increase") {
                    500.0
                } else {
                    0.01
                })
        })
        .collect();
    for m in plan_a.measurements(&Answers::new(&batch, answers.clone())) {
        assert_eq!(m.canary.value, Ok(0.01));
        assert_eq!(m.canary.requests, Some(500.0));
        assert!(m.canary.query.contains(r#"service="checkout""#));
    }
    for m in plan_b.measurements(&Answers::new(&batch, answers)) {
        assert_eq!(m.canary.value, Ok(1000.01));
        assert!(m.canary.query.contains(r#"service="payments""#));
    }
}

#[test]
fn no_requests_is_no_data_and_a_failed_request_count_is_never_a_pass() {
    let seed = spec(SEED_FILE);
    let gate = [GateRef::Abort(0)];
    let mut batch = Batch::new();
    let plan = plan_rollout(&mut batch, &seed, &PolicySet::builtin(), None, &gate).expect("plan");
    let requests_query = |q: &str| q.contains("increase");

    // 0/0 with zero requests: no data (not "NaN").
    let answers: Vec<Answer> = batch
        .queries()
        .iter()
        .map(|q| {
            if requests_query(&q.promql) {
                Ok(QueryValue::Vector(vec![]))
            } else {
                one(f64::NAN)
            }
        })
        .collect();
    let m = &plan.measurements(&Answers::new(&batch, answers))[0];
    assert_eq!(m.canary.value, Err(Inconclusive::NoData));

    // A value, but the request count failed: inconclusive with that reason.
    let answers: Vec<Answer> = batch
        .queries()
        .iter()
        .map(|q| {
            if requests_query(&q.promql) {
                Err(Inconclusive::Timeout)
            } else {
                one(0.001)
            }
        })
        .collect();
    let m = &plan.measurements(&Answers::new(&batch, answers))[0];
    assert_eq!(m.canary.value, Err(Inconclusive::Timeout));

    // Answers missing altogether: not measured.
    let m = &plan.measurements(&Answers::new(&batch, Vec::new()))[0];
    assert_eq!(m.canary.value, Err(Inconclusive::NotMeasured));
    assert!(
        m.stable
            .as_ref()
            .is_some_and(|s| s.value == Err(Inconclusive::NotMeasured))
    );
}

#[test]
fn a_rollout_without_a_prometheus_cannot_be_planned() {
    let mut seed = spec(SEED_FILE);
    seed.prometheus = None;
    let mut batch = Batch::new();
    let err = plan_rollout(
        &mut batch,
        &seed,
        &PolicySet::builtin(),
        None,
        &every_gate(&seed),
    );
    assert!(err.is_err());
    let ok = plan_rollout(
        &mut batch,
        &seed,
        &PolicySet::builtin(),
        Some("http://prom:9090"),
        &every_gate(&seed),
    );
    assert!(ok.is_ok());
    assert!(
        batch
            .queries()
            .iter()
            .all(|q| q.server == "http://prom:9090")
    );
}
