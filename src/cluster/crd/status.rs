//! A Rollout's `status`: where the rollout stands, written only by the leader.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The phases of BRIEF §3, as shown by `kubectl get rollouts`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RolloutPhase {
    /// Stable only.
    Idle,
    /// A canary is taking its steps.
    Progressing,
    /// Held by hand or waiting for data.
    Paused,
    /// The canary became the stable version.
    Promoted,
    /// The canary was rolled back automatically.
    RolledBack,
    /// The canary was aborted by hand.
    Aborted,
}

/// The last decision canaryd took for this rollout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastDecision {
    /// When it was taken.
    pub at: Time,
    /// What was done (`start`, `advance`, `rollback`, …).
    pub action: String,
    /// Why, with the numbers.
    pub reason: String,
}

/// The observed state of a Rollout.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// Where the rollout stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RolloutPhase>,
    /// The current step, 1-based.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u32>,
    /// The canary's share of traffic, in percent (0–100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// The version serving traffic (the primary's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_version: Option<String>,
    /// The version being rolled out (the target's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_version: Option<String>,
    /// `Progressing`, `Paused`, `Promoted`, `RolledBack`, `InvalidSpec`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// A one-line summary for people (the reason of the last transition, or the spec's first error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The last decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_decision: Option<LastDecision>,
}
