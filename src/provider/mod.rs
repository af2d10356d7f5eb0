//! Measuring gates: which PromQL queries a tick needs (`plan`, pure), the
//! [`MetricsSource`] port that answers a batch of them, and its Prometheus
//! adapter (`prometheus`).

pub mod counts;
pub mod plan;
pub mod prometheus;

use std::collections::BTreeMap;
use std::future::Future;

use serde::Serialize;

use crate::engine::observation::Inconclusive;
use crate::engine::time::Timestamp;

pub use counts::{CountsPlan, plan_counts};
pub use plan::{Batch, PlanError, RolloutPlan, every_gate, plan_rollout};
pub use prometheus::{PrometheusSource, ProviderConfig, ProviderError, redact_url};

/// One instant query for one Prometheus server.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct InstantQuery {
    /// Base URL of the Prometheus server.
    pub server: String,
    /// The rendered PromQL.
    pub promql: String,
}

/// One series of an instant vector, with its labels.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Series {
    /// The series' labels.
    pub labels: BTreeMap<String, String>,
    /// Its value at the evaluation time.
    pub value: f64,
}

/// What an instant query returned.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", content = "result", rename_all = "snake_case")]
pub enum QueryValue {
    /// A scalar (`scalar(...)`, `vector(1)` folded by the user, a number literal).
    Scalar(f64),
    /// An instant vector, possibly empty.
    Vector(Vec<Series>),
}

/// The answer to one query: a value, or why the source could not give one
/// (provider error, timeout). Interpreting the value is the plan's job.
pub type Answer = Result<QueryValue, Inconclusive>;

/// A source of metric values: answers many instant queries, all evaluated at
/// the same instant, in one call (answers in the order of the queries).
pub trait MetricsSource: Send + Sync {
    /// Answers `queries` as of `at`.
    fn query_batch(
        &self,
        queries: &[InstantQuery],
        at: Timestamp,
    ) -> impl Future<Output = Vec<Answer>> + Send;
}
