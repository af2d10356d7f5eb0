//! The query plan of a tick (pure): renders each active gate's PromQL for the
//! canary and the stable track, plus each track's request count, into one
//! [`Batch`] shared by every rollout (identical queries are asked once), and
//! turns the batch's answers back into the engine's [`Measurement`]s.

use std::collections::HashMap;

use super::{Answer, InstantQuery, QueryValue};
use crate::engine::observation::{GateRef, Inconclusive, Measurement, Reading};
use crate::spec::model::{DeploySpec, Track};
use crate::spec::policy::{PolicySet, QueryTemplate, TemplateVars};

/// The queries of one tick, without duplicates.
#[derive(Debug, Default)]
pub struct Batch {
    queries: Vec<InstantQuery>,
    index: HashMap<InstantQuery, usize>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// The queries to ask, in answer order.
    pub fn queries(&self) -> &[InstantQuery] {
        &self.queries
    }

    pub(super) fn intern(&mut self, query: InstantQuery) -> usize {
        if let Some(&i) = self.index.get(&query) {
            return i;
        }
        let i = self.queries.len();
        self.index.insert(query.clone(), i);
        self.queries.push(query);
        i
    }
}

/// A plan cannot be made for a spec (the decoder rules these out for files it
/// accepted; the controller reports them rather than measuring nothing).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Neither the file nor the daemon names a Prometheus server.
    #[error("no Prometheus server: set `prometheus:` in the deploy file or pass --prometheus")]
    NoServer,
    /// The file's policy is not loaded.
    #[error("policy `{0}` is not loaded")]
    UnknownPolicy(String),
    /// A gate's metric is not in the policy and the gate has no `query:`.
    #[error("metric `{metric}` is not defined by policy `{policy}`")]
    UnknownMetric {
        /// The policy.
        policy: String,
        /// The metric.
        metric: String,
    },
    /// A gate reference that is not in the spec.
    #[error("gate {0:?} is not in the deploy file")]
    UnknownGate(GateRef),
    /// Evidence gates on a policy without `counts`.
    #[error("policy `{0}` defines no `counts` to judge evidence gates on")]
    NoCounts(String),
}

/// The Prometheus a rollout is measured on.
pub(super) fn server_for<'a>(
    spec: &'a DeploySpec,
    default_server: Option<&'a str>,
) -> Result<&'a str, PlanError> {
    spec.prometheus
        .as_deref()
        .or(default_server)
        .ok_or(PlanError::NoServer)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TrackPlan {
    value: usize,
    requests: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct GatePlan {
    gate: GateRef,
    canary: TrackPlan,
    stable: TrackPlan,
}

/// Where each gate of one rollout finds its answers in the batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RolloutPlan {
    gates: Vec<GatePlan>,
}

/// Every gate of a spec: the abort conditions, then each step's promotion gates.
pub fn every_gate(spec: &DeploySpec) -> Vec<GateRef> {
    let mut gates: Vec<GateRef> = (0..spec.strategy.rollback.on.len())
        .map(GateRef::Abort)
        .collect();
    for (step, s) in spec.strategy.steps.iter().enumerate() {
        gates.extend((0..s.gates.len()).map(|index| GateRef::Promotion { step, index }));
    }
    gates
}

/// Adds the queries measuring `gates` of `spec` on both tracks to `batch`.
/// `default_server` is the daemon-wide Prometheus, used when the file names none.
pub fn plan_rollout(
    batch: &mut Batch,
    spec: &DeploySpec,
    policies: &PolicySet,
    default_server: Option<&str>,
    gates: &[GateRef],
) -> Result<RolloutPlan, PlanError> {
    let server = server_for(spec, default_server)?;
    let policy = policies
        .get(&spec.policy)
        .ok_or_else(|| PlanError::UnknownPolicy(spec.policy.clone()))?;
    let window = spec.strategy.analysis.window;
    let mut plan = RolloutPlan::default();
    for &gate_ref in gates {
        let gate = gate_ref
            .resolve(spec)
            .ok_or(PlanError::UnknownGate(gate_ref))?;
        // Every gate comes with the track's request count from the policy,
        // custom `query:` gates too: without traffic nothing can pass.
        let template: &QueryTemplate =
            match &gate.query {
                Some(custom) => custom,
                None => {
                    let def = policy.metrics.get(&gate.metric).ok_or_else(|| {
                        PlanError::UnknownMetric {
                            policy: policy.name.clone(),
                            metric: gate.metric.clone(),
                        }
                    })?;
                    &def.query
                }
            };
        let mut track = |track: &Track, name: &str| {
            let vars = TemplateVars {
                service: &spec.id.name,
                namespace: &spec.id.namespace,
                version: &track.version,
                track: name,
                window,
                track_selector: policy.track_selectors.of(name),
            };
            let mut ask = |t: &QueryTemplate| {
                batch.intern(InstantQuery {
                    server: server.to_string(),
                    promql: t.render(&vars),
                })
            };
            TrackPlan {
                value: ask(template),
                requests: Some(ask(&policy.requests)),
            }
        };
        plan.gates.push(GatePlan {
            gate: gate_ref,
            canary: track(&spec.canary, "canary"),
            stable: track(&spec.stable, "stable"),
        });
    }
    Ok(plan)
}

impl RolloutPlan {
    /// The measurements of this rollout's gates from the batch's answers
    /// (in the order of `batch.queries()`; a missing answer is "not measured").
    pub fn measurements(&self, batch: &Batch, answers: &[Answer]) -> Vec<Measurement> {
        let reading = |t: TrackPlan| {
            let query = batch
                .queries
                .get(t.value)
                .map(|q| q.promql.clone())
                .unwrap_or_default();
            let answer = |i: usize| answers.get(i).ok_or(Inconclusive::NotMeasured);
            let value = answer(t.value).and_then(single_value);
            let requests = t
                .requests
                .map(|i| answer(i).and_then(request_count))
                .transpose();
            match (value, requests) {
                (Ok(v), Ok(requests)) => Reading::value(query, v, requests),
                // A track without a single request has no data, whatever
                // shape the query's emptiness takes (0/0 is NaN).
                (Err(Inconclusive::NotFinite { .. }), Ok(Some(n))) if n <= 0.0 => {
                    Reading::inconclusive(query, Inconclusive::NoData)
                }
                (Err(why), _) | (Ok(_), Err(why)) => Reading::inconclusive(query, why),
            }
        };
        self.gates
            .iter()
            .map(|g| Measurement {
                gate: g.gate,
                canary: reading(g.canary),
                stable: Some(reading(g.stable)),
            })
            .collect()
    }
}

/// The one value a gate query must return: an empty vector is no data,
/// several series are ambiguous, NaN and ±Inf are not finite. Never a pass.
pub fn single_value(answer: &Answer) -> Result<f64, Inconclusive> {
    let value = match answer {
        Err(why) => return Err(why.clone()),
        Ok(QueryValue::Scalar(v)) => *v,
        Ok(QueryValue::Vector(series)) => match series.as_slice() {
            [] => return Err(Inconclusive::NoData),
            [one] => one.value,
            many => return Err(Inconclusive::AmbiguousSeries { series: many.len() }),
        },
    };
    if value.is_finite() {
        Ok(value)
    } else {
        Err(Inconclusive::not_finite(value))
    }
}

/// A track's request count: no series means no requests (a counter that never
/// moved has no series), so `min_requests` holds the gate back.
fn request_count(answer: &Answer) -> Result<f64, Inconclusive> {
    match single_value(answer) {
        Err(Inconclusive::NoData) => Ok(0.0),
        other => other,
    }
}
