//! The count queries of a tick (pure): each track's cumulative requests,
//! errors and latency histogram from the policy's `counts`, asked in the
//! same batch as the readings, and their answers turned into the engine's
//! [`Snapshot`]s.

use super::plan::{Answers, Batch, PlanError, Slot, server_for, single_value};
use super::{Answer, QueryValue};
use crate::engine::evidence::counts::Snapshot;
use crate::engine::observation::{
    CountsNeeded, CountsQueries, CountsReading, Inconclusive, TrackCounts,
};
use crate::spec::model::{DeploySpec, Track};
use crate::spec::policy::{PolicySet, QueryTemplate, TemplateVars};

/// Where one track's count answers are in the batch.
#[derive(Clone, Debug, PartialEq)]
struct TrackPlan {
    requests: Slot,
    errors: Option<Slot>,
    buckets: Option<Slot>,
    queries: CountsQueries,
}

/// Where a rollout's count answers are in the batch.
#[derive(Clone, Debug, PartialEq)]
pub struct CountsPlan {
    canary: TrackPlan,
    stable: TrackPlan,
    le_scale: f64,
}

/// Adds the queries of both tracks' counters to `batch`.
pub fn plan_counts(
    batch: &mut Batch,
    spec: &DeploySpec,
    policies: &PolicySet,
    default_server: Option<&str>,
    needed: CountsNeeded,
) -> Result<CountsPlan, PlanError> {
    let server = server_for(spec, default_server)?;
    let policy = policies
        .get(&spec.policy)
        .ok_or_else(|| PlanError::UnknownPolicy(spec.policy.clone()))?;
    let counts = policy
        .counts
        .as_ref()
        .ok_or_else(|| PlanError::NoCounts(policy.name.clone()))?;
    let mut track = |track: &Track, name: &str| {
        let vars = TemplateVars {
            service: &spec.id.name,
            namespace: &spec.id.namespace,
            version: &track.version,
            track: name,
            window: spec.strategy.analysis.window,
            track_selector: policy.track_selectors.of(name),
        };
        let mut ask = |t: &QueryTemplate| batch.ask(server, t, &vars);
        let (requests, requests_q) = ask(&counts.requests);
        let errors = counts
            .errors
            .as_ref()
            .filter(|_| needed.errors)
            .map(&mut ask);
        let buckets = counts
            .latency_buckets
            .as_ref()
            .filter(|_| needed.latency_buckets)
            .map(&mut ask);
        TrackPlan {
            requests,
            queries: CountsQueries {
                requests: requests_q,
                errors: errors.as_ref().map(|e| e.1.clone()),
                latency_buckets: buckets.as_ref().map(|b| b.1.clone()),
            },
            errors: errors.map(|e| e.0),
            buckets: buckets.map(|b| b.0),
        }
    };
    Ok(CountsPlan {
        canary: track(&spec.canary, "canary"),
        stable: track(&spec.stable, "stable"),
        le_scale: counts.le_scale,
    })
}

impl CountsPlan {
    /// Both tracks' counters from the batch's answers.
    pub fn reading(&self, answers: &Answers) -> CountsReading {
        CountsReading {
            canary: self.track(&self.canary, answers),
            stable: self.track(&self.stable, answers),
        }
    }

    fn track(&self, t: &TrackPlan, answers: &Answers) -> TrackCounts {
        let snapshot = (|| {
            let requests = counter(answers.get(&t.requests))?;
            let errors = t
                .errors
                .as_ref()
                .map(|slot| counter(answers.get(slot)))
                .transpose()?;
            let buckets = match &t.buckets {
                Some(slot) => histogram(answers.get(slot), self.le_scale)?,
                None => Vec::new(),
            };
            Ok(Snapshot {
                requests,
                errors,
                buckets,
            })
        })();
        TrackCounts {
            snapshot,
            queries: t.queries.clone(),
        }
    }
}

/// A counter's value: no series means it never moved (0).
fn counter(answer: &Answer) -> Result<f64, Inconclusive> {
    match single_value(answer) {
        Err(Inconclusive::NoData) => Ok(0.0),
        other => other.map(|v| v.max(0.0)),
    }
}

/// A cumulative histogram from `sum by (le) (…_bucket)`: one series per
/// bound, sorted, `+Inf` last; bounds scaled to seconds. No series: no
/// histogram yet.
fn histogram(answer: &Answer, le_scale: f64) -> Result<Vec<(f64, f64)>, Inconclusive> {
    let series = match answer {
        Err(why) => return Err(why.clone()),
        Ok(QueryValue::Scalar(_)) => {
            return Err(Inconclusive::ProviderError {
                message: "the latency histogram query returned a scalar, not a series per `le`"
                    .into(),
            });
        }
        Ok(QueryValue::Vector(series)) => series,
    };
    let mut buckets = Vec::with_capacity(series.len());
    for s in series {
        let Some(le) = s.labels.get("le") else {
            return Err(Inconclusive::ProviderError {
                message: "a latency histogram series has no `le` label (group it `by (le)`)".into(),
            });
        };
        let bound = match le {
            "+Inf" | "Inf" | "inf" => f64::INFINITY,
            other => {
                other
                    .parse::<f64>()
                    .map_err(|_| Inconclusive::ProviderError {
                        message: format!("histogram bound `le=\"{other}\"` is not a number"),
                    })?
                    * le_scale
            }
        };
        if !s.value.is_finite() {
            return Err(Inconclusive::not_finite(s.value));
        }
        buckets.push((bound, s.value.max(0.0)));
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.last().is_some_and(|b| b.0.is_finite()) {
        return Err(Inconclusive::ProviderError {
            message: "the latency histogram has no `le=\"+Inf\"` bucket".into(),
        });
    }
    Ok(buckets)
}
