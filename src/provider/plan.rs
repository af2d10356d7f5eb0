//! The query plan of a tick (pure): renders each active gate's PromQL for the
//! canary and the stable track, plus each track's request count, into one
//! [`Batch`] shared by every rollout (identical queries are asked once), and
//! turns the batch's answers back into the engine's [`Measurement`]s.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use super::group::{Key, Shape, Ungroupable, Var, shape};
use super::{Answer, InstantQuery, QueryValue};
use crate::engine::observation::{GateRef, Inconclusive, Measurement, Reading};
use crate::spec::model::{DeploySpec, Track};
use crate::spec::policy::{PolicySet, QueryTemplate, TemplateVars};

/// Where a query's answer is, once the batch is answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Slot {
    /// The answer to the batch's own query number `i`.
    Own(usize),
    /// A member's part of a grouped query's answer.
    Member {
        /// The group.
        group: usize,
        /// The member's values of the grouping labels.
        key: Key,
    },
}

/// A grouped query and its members.
#[derive(Debug)]
struct Group {
    server: String,
    shape: Arc<Shape>,
    members: HashSet<Key>,
}

/// What a template's grouped form depends on besides the rollout: the
/// template, the window, the track and its selector. Texts by address and
/// length: they are borrowed from the specs and policies for the whole of a
/// tick's planning, so equal addresses are the same text (and no key is
/// ever dereferenced), and a tick's tens of thousands of lookups copy nothing.
type ShapeKey = ((usize, usize), Duration, (usize, usize), (usize, usize));

fn text_id(text: &str) -> (usize, usize) {
    (text.as_ptr() as usize, text.len())
}

/// The queries of one tick, without duplicates; in a grouped batch
/// ([`Batch::grouped`]) one query per template answers every rollout
/// (see [`super::group`]).
#[derive(Debug, Default)]
pub struct Batch {
    queries: Vec<InstantQuery>,
    index: HashMap<InstantQuery, usize>,
    grouping: bool,
    shapes: HashMap<ShapeKey, Option<Arc<Shape>>>,
    groups: Vec<Group>,
    group_index: HashMap<(String, String), usize>,
}

impl Batch {
    /// An empty batch asking each rollout's own queries (`check`, `backtest`:
    /// the PromQL shown is the PromQL asked).
    pub fn new() -> Batch {
        Batch::default()
    }

    /// An empty batch that groups every template it can: the daemon's ticks.
    pub fn grouped() -> Batch {
        Batch {
            grouping: true,
            ..Batch::default()
        }
    }

    /// The queries to ask, in answer order: the own queries, then one per group.
    pub fn queries(&self) -> Vec<InstantQuery> {
        let mut out = self.queries.clone();
        out.extend(self.groups.iter().map(|g| InstantQuery {
            server: g.server.clone(),
            promql: g.shape.render(&g.members),
        }));
        out
    }

    /// Forgets the grouped forms cached by text address. Call it whenever
    /// the specs and policies planned from may have changed since (between
    /// turns of the control loop): an address freed and reused for another
    /// text must not find the old text's shape.
    pub fn forget_texts(&mut self) {
        self.shapes.clear();
    }

    /// True when there is nothing to ask.
    pub fn is_empty(&self) -> bool {
        self.queries.is_empty() && self.groups.is_empty()
    }

    fn intern(&mut self, query: InstantQuery) -> usize {
        if let Some(&i) = self.index.get(&query) {
            return i;
        }
        let i = self.queries.len();
        self.index.insert(query.clone(), i);
        self.queries.push(query);
        i
    }

    /// Adds `template` for one rollout's track: where its answer will be,
    /// and the rollout's own PromQL (what records and people are shown).
    pub fn ask(
        &mut self,
        server: &str,
        template: &QueryTemplate,
        vars: &TemplateVars<'_>,
    ) -> (Slot, String) {
        let promql = template.render(vars);
        if let Some(shape) = self.cached_shape(template, vars) {
            let key = shape.key(|var| {
                match var {
                    Var::Service => vars.service,
                    Var::Namespace => vars.namespace,
                    Var::Version => vars.version,
                }
                .to_string()
            });
            let id = (server.to_string(), shape.template().to_string());
            let group = match self.group_index.get(&id) {
                Some(&g) => g,
                None => {
                    self.groups.push(Group {
                        server: server.to_string(),
                        shape,
                        members: HashSet::new(),
                    });
                    self.group_index.insert(id, self.groups.len() - 1);
                    self.groups.len() - 1
                }
            };
            self.groups[group].members.insert(key.clone());
            return (Slot::Member { group, key }, promql);
        }
        let i = self.intern(InstantQuery {
            server: server.to_string(),
            promql: promql.clone(),
        });
        (Slot::Own(i), promql)
    }

    /// The grouped form of `template` for these constants (parsed once per
    /// batch), or `None`: not grouping, or not groupable.
    fn cached_shape(
        &mut self,
        template: &QueryTemplate,
        vars: &TemplateVars<'_>,
    ) -> Option<Arc<Shape>> {
        if !self.grouping {
            return None;
        }
        let id: ShapeKey = (
            text_id(template.as_str()),
            vars.window,
            text_id(vars.track),
            text_id(vars.track_selector),
        );
        self.shapes
            .entry(id)
            .or_insert_with(|| match shape_of(template, vars) {
                Ok(s) => Some(Arc::new(s)),
                Err(why) => {
                    tracing::debug!(template = template.as_str(), %why, "asked per rollout");
                    None
                }
            })
            .clone()
    }
}

/// Whether the daemon can ask `template` once for every rollout (see
/// [`super::group`]), or why it asks it per rollout.
pub fn groupable(template: &QueryTemplate, vars: &TemplateVars<'_>) -> Result<(), Ungroupable> {
    shape_of(template, vars).map(|_| ())
}

/// The grouped form of `template` with these constants: rendered with each
/// rollout placeholder's sentinel, then shaped.
fn shape_of(template: &QueryTemplate, vars: &TemplateVars<'_>) -> Result<Shape, Ungroupable> {
    shape(&template.render(&TemplateVars {
        service: Var::Service.sentinel(),
        namespace: Var::Namespace.sentinel(),
        version: Var::Version.sentinel(),
        ..*vars
    }))
}

/// A batch's answers, grouped answers split by member (once, moving the
/// series: reading an answer copies nothing).
#[derive(Debug, Default)]
pub struct Answers {
    own: Vec<Answer>,
    /// Each group's answers by member, or the one failed answer of all.
    groups: Vec<Result<HashMap<Key, Answer>, Answer>>,
}

/// What a member missing from its group's answer reads: an empty vector, as
/// its own query would have had.
static NO_SERIES: Answer = Ok(QueryValue::Vector(Vec::new()));

/// What a query that was not asked or answered reads.
static NOT_MEASURED: Answer = Err(Inconclusive::NotMeasured);

impl Answers {
    /// `answers` in the order of `batch.queries()` (missing ones are "not measured").
    pub fn new(batch: &Batch, mut answers: Vec<Answer>) -> Answers {
        let n = batch.queries.len();
        let grouped = if answers.len() > n {
            answers.split_off(n)
        } else {
            Vec::new()
        };
        let mut grouped = grouped.into_iter();
        let groups = batch
            .groups
            .iter()
            .map(|g| match grouped.next() {
                Some(answer) => g.shape.split(answer).map_err(Err),
                None => Err(Err(Inconclusive::NotMeasured)),
            })
            .collect();
        Answers {
            own: answers,
            groups,
        }
    }

    /// The answer in `slot`.
    pub fn get(&self, slot: &Slot) -> &Answer {
        match slot {
            Slot::Own(i) => self.own.get(*i).unwrap_or(&NOT_MEASURED),
            Slot::Member { group, key } => match self.groups.get(*group) {
                None => &NOT_MEASURED,
                Some(Err(failed)) => failed,
                Some(Ok(split)) => split.get(key).unwrap_or(&NO_SERIES),
            },
        }
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

#[derive(Clone, Debug, PartialEq, Eq)]
struct TrackPlan {
    value: Slot,
    requests: Option<Slot>,
    /// The track's own PromQL of the value.
    query: String,
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
            let (value, query) = batch.ask(server, template, &vars);
            let (requests, _) = batch.ask(server, &policy.requests, &vars);
            TrackPlan {
                value,
                requests: Some(requests),
                query,
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
    /// (a missing answer is "not measured").
    pub fn measurements(&self, answers: &Answers) -> Vec<Measurement> {
        let reading = |t: &TrackPlan| {
            let query = t.query.clone();
            let value = single_value(answers.get(&t.value));
            let requests = t
                .requests
                .as_ref()
                .map(|slot| request_count(answers.get(slot)))
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
                canary: reading(&g.canary),
                stable: Some(reading(&g.stable)),
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
