//! A Rollout's `status`: where the rollout stands, written only by the leader.
//!
//! Besides what people read (`phase`, `step`, `weight`, versions,
//! conditions, `message`, `lastDecision`), the status carries what a new
//! leader needs to resume and what must survive a failover: the engine's
//! whole state (`engineState`), the latest decision records (`decisions`)
//! and the alert outbox (`alerts`). They are canaryd's own formats, kept
//! opaque to the API server (`x-kubernetes-preserve-unknown-fields`) and
//! bounded in size (see `crate::cluster::state`). One object holds them all,
//! so one write with its resourceVersion commits a decision atomically.

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
    /// The engine's whole state (canaryd's own format), for resuming the
    /// same step with its watched time after a restart or failover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque_object")]
    pub engine_state: Option<serde_json::Value>,
    /// The latest decision records, oldest first (bounded; canaryd's format).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "opaque_list")]
    pub decisions: Vec<serde_json::Value>,
    /// The alert outbox: every undelivered alert per sink and the latest
    /// delivered or given-up ones (bounded; canaryd's format).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "opaque_list")]
    pub alerts: Vec<serde_json::Value>,
}

/// An object the API server keeps as written (no schema of its own).
fn opaque_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// A list of such objects.
fn opaque_list(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": { "type": "object", "x-kubernetes-preserve-unknown-fields": true }
    })
}
