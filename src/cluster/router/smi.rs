//! SMI: a `split.smi-spec.io/v1alpha2` TrafficSplit canaryd owns.
//!
//! The split has nothing of the user's in it (the root Service and two
//! weighted backends), so canaryd writes it whole with server-side apply,
//! forced: it creates the split when missing, and takes a hand edit back on
//! the next write. Weights are integers (v1alpha1 used Quantities).

use async_trait::async_trait;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, CustomResource};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Tracks, backend_weights, weight_of};
use crate::cluster::ClusterError;
use crate::cluster::names::FIELD_MANAGER;
use crate::ports::TrafficRouter;
use crate::router::{Health, RouterError};
use crate::spec::units::Weight;

/// `split.smi-spec.io/v1alpha2` TrafficSplit.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "split.smi-spec.io",
    version = "v1alpha2",
    kind = "TrafficSplit",
    namespaced,
    schema = "disabled"
)]
pub struct TrafficSplitSpec {
    /// The root (apex) Service clients address.
    pub service: String,
    /// The weighted backends.
    #[serde(default)]
    pub backends: Vec<TrafficSplitBackend>,
}

/// One backend Service and its weight.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrafficSplitBackend {
    /// The backend Service.
    pub service: String,
    /// Its share.
    pub weight: u32,
}

/// Shifts traffic through a TrafficSplit.
pub struct SmiRouter {
    splits: Api<TrafficSplit>,
    name: String,
    root_service: String,
    stable_backend: String,
    canary_backend: String,
    tracks: Tracks,
}

impl SmiRouter {
    /// A router for the split `name` in `namespace`.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        root_service: &str,
        stable_backend: &str,
        canary_backend: &str,
        tracks: Tracks,
    ) -> SmiRouter {
        SmiRouter {
            splits: Api::namespaced(client, namespace),
            name: name.to_string(),
            root_service: root_service.to_string(),
            stable_backend: stable_backend.to_string(),
            canary_backend: canary_backend.to_string(),
            tracks,
        }
    }

    /// The object canaryd applies for `weight`.
    pub fn desired(&self, weight: Weight) -> serde_json::Value {
        let (stable, canary) = backend_weights(weight);
        json!({
            "apiVersion": "split.smi-spec.io/v1alpha2",
            "kind": "TrafficSplit",
            "metadata": { "name": self.name },
            "spec": {
                "service": self.root_service,
                "backends": [
                    { "service": self.stable_backend, "weight": stable },
                    { "service": self.canary_backend, "weight": canary },
                ],
            },
        })
    }

    /// The canary weight of a split, when it has exactly canaryd's two backends.
    fn read_weight(&self, split: &TrafficSplit) -> Option<Weight> {
        let weight = |name: &str| {
            split
                .spec
                .backends
                .iter()
                .find(|b| b.service == name)
                .map(|b| u64::from(b.weight))
        };
        let ours = split.spec.service == self.root_service && split.spec.backends.len() == 2;
        Some(weight_of(
            weight(&self.stable_backend)?,
            weight(&self.canary_backend)?,
        ))
        .filter(|_| ours)
    }
}

#[async_trait]
impl TrafficRouter for SmiRouter {
    async fn set_weight(&self, weight: Weight) -> Result<(), RouterError> {
        let current = self
            .splits
            .get_opt(&self.name)
            .await
            .map_err(|e| ClusterError::api(format!("get TrafficSplit {}", self.name), e))?;
        if current.as_ref().and_then(|s| self.read_weight(s)) == Some(weight) {
            return Ok(());
        }
        let params = PatchParams::apply(FIELD_MANAGER).force();
        self.splits
            .patch(&self.name, &params, &Patch::Apply(self.desired(weight)))
            .await
            .map_err(|e| ClusterError::api(format!("apply TrafficSplit {}", self.name), e))?;
        Ok(())
    }

    async fn weight(&self) -> Result<Weight, RouterError> {
        let split = self
            .splits
            .get(&self.name)
            .await
            .map_err(|e| ClusterError::api(format!("get TrafficSplit {}", self.name), e))?;
        self.read_weight(&split).ok_or_else(|| {
            RouterError::Refused(format!(
                "TrafficSplit {} does not split `{}` between `{}` and `{}`",
                self.name, self.root_service, self.stable_backend, self.canary_backend
            ))
        })
    }

    async fn health(&self) -> Health {
        self.tracks.health().await
    }
}
