//! Measuring gates: which PromQL queries a tick needs (`plan` and `counts`,
//! pure), and the Prometheus adapter of the [`MetricsSource`] port
//! (`prometheus`).

pub mod counts;
pub mod group;
pub mod plan;
pub mod prometheus;

pub use crate::ports::metrics::{Answer, InstantQuery, MetricsSource, QueryValue, Series};
pub use counts::{CountsPlan, plan_counts};
pub use plan::{Answers, Batch, PlanError, RolloutPlan, Slot, every_gate, groupable, plan_rollout};
pub use prometheus::{PrometheusSource, ProviderConfig, ProviderError, redact_url};
