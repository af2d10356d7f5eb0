//! No mesh: the canary's share is its share of the pods behind one Service.
//!
//! The primary and the canary Deployment carry the labels the Service
//! selects, so each Ready pod gets an equal share of connections. A weight
//! `w` of `N` replicas gives the canary `round(w × N)` and the primary the
//! rest: the resolution is 1/N (10 replicas: 10% steps; half-way rounds up, so
//! 5% of 10 is one pod), and [`TrafficRouter::same_weight`] compares at it.
//! The canary is scaled first, so a cut takes its pods away before the
//! primary grows back. Kubernetes sends nothing to a pod before its
//! readiness probe passes, so an unready canary pod never takes traffic.

use async_trait::async_trait;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::{Tracks, weight_of};
use crate::cluster::ClusterError;
use crate::cluster::names::FIELD_MANAGER;
use crate::ports::TrafficRouter;
use crate::router::{Health, RouterError};
use crate::spec::units::Weight;

/// Shifts traffic by replica counts.
pub struct ReplicasRouter {
    tracks: Tracks,
    replicas: u32,
}

impl ReplicasRouter {
    /// A router sharing `replicas` pods between the two Deployments of `tracks`.
    pub fn new(tracks: Tracks, replicas: u32) -> ReplicasRouter {
        ReplicasRouter {
            tracks,
            replicas: replicas.max(1),
        }
    }

    /// (primary, canary) replicas for a weight.
    pub fn replicas_for(&self, weight: Weight) -> (u32, u32) {
        let n = u64::from(self.replicas);
        let canary = (u64::from(weight.basis_points()) * n + 5_000) / 10_000;
        let canary = u32::try_from(canary)
            .unwrap_or(self.replicas)
            .min(self.replicas);
        (self.replicas - canary, canary)
    }

    async fn replicas_of(&self, name: &str) -> Result<i32, ClusterError> {
        let d = self
            .tracks
            .api
            .get(name)
            .await
            .map_err(|e| ClusterError::api(format!("get Deployment {name}"), e))?;
        Ok(d.spec.and_then(|s| s.replicas).unwrap_or(1))
    }

    async fn scale(&self, name: &str, replicas: u32) -> Result<(), ClusterError> {
        if i64::from(self.replicas_of(name).await?) == i64::from(replicas) {
            return Ok(());
        }
        let body = scale_body(name, replicas);
        self.tracks
            .api
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(body),
            )
            .await
            .map_err(|e| ClusterError::api(format!("scale Deployment {name}"), e))?;
        Ok(())
    }
}

/// The server-side apply body that owns only `spec.replicas`.
pub fn scale_body(name: &str, replicas: u32) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name },
        "spec": { "replicas": replicas },
    })
}

#[async_trait]
impl TrafficRouter for ReplicasRouter {
    async fn set_weight(&self, weight: Weight) -> Result<(), RouterError> {
        let (stable, canary) = self.replicas_for(weight);
        self.scale(&self.tracks.canary, canary).await?;
        self.scale(&self.tracks.stable, stable).await?;
        Ok(())
    }

    async fn weight(&self) -> Result<Weight, RouterError> {
        let stable = self.replicas_of(&self.tracks.stable).await?;
        let canary = self.replicas_of(&self.tracks.canary).await?;
        let n = |r: i32| u64::try_from(r).unwrap_or(0);
        Ok(weight_of(n(stable), n(canary)))
    }

    async fn health(&self) -> Health {
        self.tracks.health().await
    }

    fn same_weight(&self, a: Weight, b: Weight) -> bool {
        self.replicas_for(a) == self.replicas_for(b)
    }
}
