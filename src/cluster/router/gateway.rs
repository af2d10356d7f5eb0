//! Gateway API: the weights of two backendRefs of an HTTPRoute.
//!
//! The route belongs to the user (its hostnames, matches and parents are
//! theirs); canaryd finds the rule whose `backendRefs` hold both the stable
//! and the canary Service and changes only their two `weight`s, with a JSON
//! patch whose `test` operations make it fail (422) if the rule moved
//! between the read and the write. `rules` is an atomic list, so a
//! server-side apply would have to own every rule: a patch does not.

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

/// The part of `gateway.networking.k8s.io/v1` HTTPRoute canaryd reads
/// (the published `gateway-api` crate is built on an older kube).
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1",
    kind = "HTTPRoute",
    namespaced,
    schema = "disabled"
)]
pub struct HTTPRouteSpec {
    /// Routing rules.
    #[serde(default)]
    pub rules: Vec<HTTPRouteRule>,
}

/// One rule (matches and filters are not read).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HTTPRouteRule {
    /// Where matching requests go.
    #[serde(default, rename = "backendRefs")]
    pub backend_refs: Vec<HTTPBackendRef>,
}

/// A weighted backend.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HTTPBackendRef {
    /// The Service's name.
    pub name: String,
    /// The backend's group (`""` for a Service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The backend's kind (`Service` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The Service's port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// The share of the rule's traffic; 1 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
}

impl HTTPBackendRef {
    fn is_service(&self, name: &str) -> bool {
        self.name == name
            && self.group.as_deref().unwrap_or_default().is_empty()
            && self.kind.as_deref().unwrap_or("Service") == "Service"
    }
}

/// Where the two backendRefs are: rule index and their indexes in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendSlots {
    /// The rule.
    pub rule: usize,
    /// The stable backendRef.
    pub stable: usize,
    /// The canary backendRef.
    pub canary: usize,
}

/// Finds the first rule holding both backends.
pub fn find_backends(route: &HTTPRoute, stable: &str, canary: &str) -> Option<BackendSlots> {
    route.spec.rules.iter().enumerate().find_map(|(rule, r)| {
        let s = r.backend_refs.iter().position(|b| b.is_service(stable))?;
        let c = r.backend_refs.iter().position(|b| b.is_service(canary))?;
        Some(BackendSlots {
            rule,
            stable: s,
            canary: c,
        })
    })
}

/// Shifts traffic through an HTTPRoute's backendRef weights.
pub struct GatewayApiRouter {
    routes: Api<HTTPRoute>,
    route: String,
    stable_backend: String,
    canary_backend: String,
    tracks: Tracks,
}

impl GatewayApiRouter {
    /// A router for `route` in `namespace`, shifting between two Services;
    /// health comes from `tracks`.
    pub fn new(
        client: Client,
        namespace: &str,
        route: &str,
        stable_backend: &str,
        canary_backend: &str,
        tracks: Tracks,
    ) -> GatewayApiRouter {
        GatewayApiRouter {
            routes: Api::namespaced(client, namespace),
            route: route.to_string(),
            stable_backend: stable_backend.to_string(),
            canary_backend: canary_backend.to_string(),
            tracks,
        }
    }

    async fn read(&self) -> Result<(HTTPRoute, BackendSlots), ClusterError> {
        let route = self
            .routes
            .get(&self.route)
            .await
            .map_err(|e| ClusterError::api(format!("get HTTPRoute {}", self.route), e))?;
        let slots =
            find_backends(&route, &self.stable_backend, &self.canary_backend).ok_or_else(|| {
                ClusterError::Invalid(format!(
                    "HTTPRoute {} has no rule with both backendRefs `{}` and `{}`",
                    self.route, self.stable_backend, self.canary_backend
                ))
            })?;
        Ok((route, slots))
    }
}

fn weights(route: &HTTPRoute, slots: BackendSlots) -> (u64, u64) {
    let refs = &route.spec.rules[slots.rule].backend_refs;
    let w = |i: usize| u64::try_from(refs[i].weight.unwrap_or(1)).unwrap_or(0);
    (w(slots.stable), w(slots.canary))
}

/// The JSON patch setting the two weights, guarded by the backends' names.
pub fn weight_patch(
    slots: BackendSlots,
    stable_backend: &str,
    canary_backend: &str,
    weight: Weight,
) -> json_patch::Patch {
    let (stable, canary) = backend_weights(weight);
    let base = format!("/spec/rules/{}/backendRefs", slots.rule);
    let ops = json!([
        { "op": "test", "path": format!("{base}/{}/name", slots.stable), "value": stable_backend },
        { "op": "test", "path": format!("{base}/{}/name", slots.canary), "value": canary_backend },
        { "op": "add", "path": format!("{base}/{}/weight", slots.stable), "value": stable },
        { "op": "add", "path": format!("{base}/{}/weight", slots.canary), "value": canary },
    ]);
    // The literal above is a valid patch document.
    serde_json::from_value(ops).unwrap_or_else(|_| json_patch::Patch(Vec::new()))
}

#[async_trait]
impl TrafficRouter for GatewayApiRouter {
    async fn set_weight(&self, weight: Weight) -> Result<(), RouterError> {
        let (route, slots) = self.read().await?;
        let (stable, canary) = weights(&route, slots);
        if weight_of(stable, canary) == weight {
            return Ok(());
        }
        let patch = weight_patch(slots, &self.stable_backend, &self.canary_backend, weight);
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PatchParams::default()
        };
        self.routes
            .patch(&self.route, &params, &Patch::<()>::Json(patch))
            .await
            .map_err(|e| ClusterError::api(format!("patch HTTPRoute {} weights", self.route), e))?;
        Ok(())
    }

    async fn weight(&self) -> Result<Weight, RouterError> {
        let (route, slots) = self.read().await?;
        let (stable, canary) = weights(&route, slots);
        Ok(weight_of(stable, canary))
    }

    async fn health(&self) -> Health {
        self.tracks.health().await
    }
}
