//! Measuring gates: a batch of instant queries answered at one instant.

use async_trait::async_trait;
use serde::Serialize;

pub use super::labels::Labels;
use crate::engine::observation::Inconclusive;
use crate::engine::time::Timestamp;

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
    pub labels: Labels,
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
#[async_trait]
pub trait MetricsSource: Send + Sync {
    /// Answers `queries` as of `at`.
    async fn query_batch(&self, queries: &[InstantQuery], at: Timestamp) -> Vec<Answer>;
}
