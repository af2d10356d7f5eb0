//! The parts of a Rollout's `spec`: the deploy file's keys, spelled as in a
//! deploy file, plus the cluster-only `targetRef` and router kinds.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The workload a Rollout manages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TargetRef {
    /// `apps/v1` (the default).
    #[serde(
        rename = "apiVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub api_version: Option<String>,
    /// The kind of workload.
    pub kind: TargetKind,
    /// Its name, in the Rollout's namespace.
    pub name: String,
}

/// Kinds of workload a Rollout can target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TargetKind {
    /// An `apps/v1` Deployment.
    Deployment,
}

/// The cluster routers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RouterKind {
    /// Gateway API HTTPRoute backendRef weights.
    GatewayApi,
    /// SMI TrafficSplit backend weights.
    Smi,
    /// The replica ratio of the primary and canary Deployments (no mesh).
    KubernetesReplicas,
}

impl RouterKind {
    /// The kind as written in a spec.
    pub fn as_str(self) -> &'static str {
        match self {
            RouterKind::GatewayApi => "gateway-api",
            RouterKind::Smi => "smi",
            RouterKind::KubernetesReplicas => "kubernetes-replicas",
        }
    }
}

/// `router:`: the kind and its settings (which keys go with which kind is
/// checked by the decoder, with the deploy file's messages).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RouterRef {
    /// Which router shifts traffic.
    pub kind: RouterKind,
    /// `gateway-api`: the HTTPRoute's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// `smi`: the TrafficSplit's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_split: Option<String>,
    /// `smi`: the root (apex) Service clients address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_service: Option<String>,
    /// `gateway-api`, `smi`: the Service of the stable track (the primary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_backend: Option<String>,
    /// `gateway-api`, `smi`: the Service of the canary track.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_backend: Option<String>,
    /// `kubernetes-replicas`: the replicas shared by the two Deployments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
}

/// `deploy:`: the strategy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StrategySpec {
    /// `canary` (the only one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// Traffic steps, in order.
    pub steps: Vec<StepSpec>,
    /// Abort conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackSpec>,
    /// Analysis settings; every key has a default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisSpec>,
    /// `active` (the default: canaryd shifts traffic) or `shadow` (canaryd
    /// measures and records what it would do, never touching traffic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<ModeSpec>,
    /// In shadow mode, the canary's share the team gives it (`10%`), for a
    /// router canaryd does not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_weight: Option<String>,
}

/// `deploy.mode`: `active` (the default: canaryd shifts traffic) or
/// `shadow` (canaryd measures and records what it would do, never touching
/// traffic).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModeSpec {
    /// canaryd shifts traffic, promotes and rolls back.
    Active,
    /// canaryd only records what it would have done.
    Shadow,
}

/// One step: `deploy: 5%`, `duration: 10m`, promotion gates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StepSpec {
    /// The canary weight, `5%`.
    pub deploy: String,
    /// How long the canary is watched at this weight (`10m`); all steps but the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Early success: the least time watched (`2m`); the step advances once
    /// its promotion gates pass on evidence, at most `duration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_duration: Option<String>,
    /// Promotion gates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<GateSpec>,
}

/// `rollback:`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RollbackSpec {
    /// Roll back without asking (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto: Option<bool>,
    /// Abort conditions, watched on every tick.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on: Vec<GateSpec>,
}

/// `deploy.analysis`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AnalysisSpec {
    /// How often gates are measured (`10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// The trailing PromQL range (`1m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// Fewer canary requests in the window is inconclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<u64>,
    /// Breaching ticks in a row before an abort condition rolls back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_breaches: Option<u64>,
    /// Failed promotion-gate checks within a step that roll back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_limit: Option<u64>,
    /// Inconclusive ticks in a row before `no_data` applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inconclusive_limit: Option<u64>,
    /// `hold`, `rollback` or `ignore`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_data: Option<String>,
    /// How sure a verdict must be (`99%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<String>,
    /// How long a step may wait past its duration for its promotion
    /// gates' evidence (`10m`; the step's duration by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_extension: Option<String>,
}

/// A gate: `error_rate_less_than: 1%`, optionally with its own `query:`.
/// The keys are the metric names, so the schema keeps them open.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GateSpec(pub BTreeMap<String, serde_json::Value>);

impl JsonSchema for GateSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "GateSpec".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        // A threshold is a string (`1%`, `200ms`) or a number (`42`), and a
        // structural schema has no "string or float" type: the values are
        // kept as written and the decoder judges them.
        schemars::json_schema!({
            "description": "`<metric>_less_than` or `<metric>_greater_than` with a threshold (`1%`, `200ms`, `42`), and optionally `query` (PromQL template).",
            "type": "object",
            "additionalProperties": { "x-kubernetes-preserve-unknown-fields": true }
        })
    }
}

/// An alert sink: exactly one of the keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AlertSpec {
    /// Slack incoming webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<SinkSpec>,
    /// Microsoft Teams workflow webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teams: Option<SinkSpec>,
    /// Discord webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discord: Option<SinkSpec>,
    /// Google Chat webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub google_chat: Option<SinkSpec>,
    /// Generic signed JSON webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<SinkSpec>,
}

/// Where a sink's URL and secret are read from (never the values themselves).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SinkSpec {
    /// Environment variable holding the webhook URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_env: Option<String>,
    /// File holding the webhook URL (a mounted Secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_file: Option<String>,
    /// Environment variable holding the signing secret (`webhook`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// File holding the signing secret (`webhook`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<String>,
    /// The least severe event sent: `info`, `warn`, `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
}
