//! The `Rollout` custom resource (`canaryd.dev/v1alpha1`): one schema, two
//! carriers. Its `spec` is the deploy file's schema with the same keys
//! (the seed `deploy:` block is valid as-is under `spec.deploy`); instead of
//! `service`, `stable` and `canary` addresses it names the Deployment it
//! manages (`targetRef`) and a cluster router. `metadata.name` is the
//! rollout's name, `metadata.namespace` its namespace.
//!
//! The types below carry the spec to and from the API server and generate
//! the CRD's OpenAPI schema (`canaryd crd`); what a value *means* is decided
//! by the deploy-file decoder ([`decode`]), so both carriers get the same
//! diagnostics. Values the decoder parses (weights, durations, thresholds)
//! stay strings here so its hints, not the API server's, explain them.

pub mod conditions;
pub mod decode;
pub mod spec;
pub mod status;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use spec::{
    AlertSpec, AnalysisSpec, GateSpec, ModeSpec, RollbackSpec, RouterKind, RouterRef, SinkSpec,
    StepSpec, StrategySpec, TargetKind, TargetRef,
};
pub use status::{LastDecision, RolloutPhase, RolloutStatus};

/// The desired rollout: what to act on, how traffic moves, what is measured.
// Each printer column repeats `type_ = "string"`: not a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "canaryd.dev",
    version = "v1alpha1",
    kind = "Rollout",
    namespaced,
    status = "RolloutStatus",
    derive = "PartialEq",
    shortname = "cro",
    category = "canaryd",
    doc = "A canary rollout of a Deployment, judged on Prometheus (canaryd).",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Step", type_ = "integer", json_path = ".status.step"),
    printcolumn(name = "Weight", type_ = "number", json_path = ".status.weight"),
    printcolumn(name = "Canary", type_ = "string", json_path = ".status.canaryVersion"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct RolloutSpec {
    /// The Deployment whose new pod templates are rolled out (the canary;
    /// canaryd keeps `<name>-primary` as the stable track).
    #[serde(rename = "targetRef")]
    pub target_ref: TargetRef,
    /// The metric policy (`http-red` unless given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The Prometheus to query; the daemon's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<String>,
    /// How traffic is shifted between the primary and the canary.
    pub router: RouterRef,
    /// The strategy: steps, abort conditions, analysis settings (the deploy file's `deploy:`).
    pub deploy: StrategySpec,
    /// Where alerts go (the deploy file's `alerts:`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<AlertSpec>,
}

/// The CRD as YAML, as `canaryd crd` prints it and `deploy/kubernetes/crd.yaml` holds it.
pub fn crd_yaml() -> Result<String, serde_saphyr::SerializeError> {
    use kube::CustomResourceExt;
    let crd = Rollout::crd();
    serde_saphyr::to_string(&crd)
}
