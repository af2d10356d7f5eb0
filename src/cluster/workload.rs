//! The workload model: Flagger's primary/canary.
//!
//! The user's Deployment (the `targetRef`) is the **canary**: a new pod
//! template there is a new version. canaryd keeps `<name>-primary`, a clone
//! of it whose selector and pod labels end in `-primary`, as the **stable**
//! track. Promotion copies the canary's template into the primary and, once
//! the primary is available with it, scales the canary to zero; rollback
//! scales the canary to zero and leaves the primary untouched.
//!
//! Why not Argo's `workloadRef`: there the Rollout owns ReplicaSets and
//! reimplements the Deployment controller's rollout. Here the Deployment
//! controller keeps doing that, users keep editing their own Deployment (a
//! GitOps change of image is what starts a canary), and each track is a
//! plain Deployment behind its own Service — what HTTPRoute and TrafficSplit
//! backends name.
//!
//! A new template is detected by a hash of the target's pod template
//! (Flagger's `lastAppliedSpec`); the primary records the hash it was last
//! promoted from in an annotation, so detection survives restarts.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::cluster::ClusterError;
use crate::cluster::names::{
    FIELD_MANAGER, MANAGED_BY, PRIMARY_SUFFIX, PROMOTED_HASH, VERSION_LABEL,
};
use crate::cluster::router::replicas::scale_body;
use crate::cluster::router::tracks::{Tracks, is_ready};

/// A short, stable hash of a pod template: a change of image, env, anything
/// in the template, changes it.
pub fn template_hash(template: &PodTemplateSpec) -> String {
    // Typed structs and BTreeMaps serialize in a fixed order.
    let text = serde_json::to_string(template).unwrap_or_default();
    let digest = Sha256::digest(text.as_bytes());
    hex::encode(&digest[..5])
}

/// A track's version: the template's `app.kubernetes.io/version` label when
/// set (what the app's metrics carry), else its template hash.
pub fn version(template: &PodTemplateSpec) -> String {
    template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref())
        .and_then(|l| l.get(VERSION_LABEL))
        .cloned()
        .unwrap_or_else(|| template_hash(template))
}

/// What the two Deployments say now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// The target's template hash.
    pub canary_hash: String,
    /// The hash the primary was promoted from; `None` before the primary exists.
    pub stable_hash: Option<String>,
    /// The target's version.
    pub canary_version: String,
    /// The primary's version.
    pub stable_version: Option<String>,
    /// The target is available with its current template.
    pub canary_ready: bool,
    /// The primary is available with its current template.
    pub stable_ready: bool,
    /// The replicas the target wants.
    pub canary_replicas: u32,
    /// The replicas the primary wants; `None` before it exists.
    pub stable_replicas: Option<u32>,
}

impl Observed {
    /// What `target` and `primary` (as read, or from a watch cache) say;
    /// `None` when the target has no spec.
    pub fn of(target: &Deployment, primary: Option<&Deployment>) -> Option<Observed> {
        let template = &target.spec.as_ref()?.template;
        let annotation = |d: &Deployment| {
            d.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(PROMOTED_HASH))
                .cloned()
        };
        let stable_hash = primary.and_then(annotation);
        // The primary's template has rewritten labels, so its own hash is not
        // the version: the hash it was promoted from is.
        let stable_version = primary
            .and_then(|p| p.spec.as_ref())
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.labels.as_ref())
            .and_then(|l| l.get(VERSION_LABEL))
            .cloned()
            .or_else(|| stable_hash.clone());
        let replicas = |d: &Deployment| {
            u32::try_from(d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)).unwrap_or(0)
        };
        Some(Observed {
            canary_hash: template_hash(template),
            stable_hash,
            canary_version: version(template),
            stable_version,
            canary_ready: is_ready(target),
            stable_ready: primary.is_some_and(is_ready),
            canary_replicas: replicas(target),
            stable_replicas: primary.map(replicas),
        })
    }

    /// The target holds a template the primary was not promoted from.
    pub fn new_canary(&self) -> bool {
        self.stable_hash.as_deref() != Some(self.canary_hash.as_str())
    }
}

/// Where a promotion stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Promotion {
    /// The primary has the canary's template but is not available with it yet.
    Waiting,
    /// The primary is available with the canary's template; the canary is scaled to zero.
    Done,
}

/// The primary/canary pair of one Rollout.
#[derive(Clone)]
pub struct Workload {
    api: Api<Deployment>,
    target: String,
    owner: Option<OwnerReference>,
}

impl Workload {
    /// The pair for the Deployment `target` in `namespace`.
    pub fn new(client: Client, namespace: &str, target: &str) -> Workload {
        Workload {
            api: Api::namespaced(client, namespace),
            target: target.to_string(),
            owner: None,
        }
    }

    /// Makes the Rollout the primary's owner, so deleting it deletes the primary.
    pub fn with_owner(mut self, owner: OwnerReference) -> Workload {
        self.owner = Some(owner);
        self
    }

    /// `<target>-primary`.
    pub fn primary_name(&self) -> String {
        format!("{}{PRIMARY_SUFFIX}", self.target)
    }

    /// The two Deployments, for routers' health.
    pub fn tracks(&self) -> Tracks {
        Tracks {
            api: self.api.clone(),
            stable: self.primary_name(),
            canary: self.target.clone(),
        }
    }

    async fn get(&self, name: &str) -> Result<Option<Deployment>, ClusterError> {
        self.api
            .get_opt(name)
            .await
            .map_err(|e| ClusterError::api(format!("get Deployment {name}"), e))
    }

    async fn target(&self) -> Result<(Deployment, PodTemplateSpec), ClusterError> {
        let target = self.get(&self.target).await?.ok_or_else(|| {
            ClusterError::Invalid(format!("Deployment {} does not exist", self.target))
        })?;
        let template = target
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .ok_or_else(|| {
                ClusterError::Invalid(format!("Deployment {} has no spec", self.target))
            })?;
        Ok((target, template))
    }

    /// Reads both Deployments.
    pub async fn observe(&self) -> Result<Observed, ClusterError> {
        let (target, _) = self.target().await?;
        let primary = self.get(&self.primary_name()).await?;
        Observed::of(&target, primary.as_ref())
            .ok_or_else(|| ClusterError::Invalid(format!("Deployment {} has no spec", self.target)))
    }

    /// Creates the primary from the target when it does not exist yet (the
    /// first time canaryd sees a Rollout: the running version is the stable
    /// one), with the target's replicas.
    pub async fn ensure_primary(&self) -> Result<(), ClusterError> {
        if self.get(&self.primary_name()).await?.is_some() {
            return Ok(());
        }
        let (target, template) = self.target().await?;
        let replicas = target.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        self.apply_primary(&target, &template, u32::try_from(replicas).unwrap_or(1))
            .await
    }

    /// The primary's server-side apply body: the target's selector and
    /// template with `-primary` label values, the promoted hash, `replicas`.
    pub fn primary_body(
        &self,
        target: &Deployment,
        template: &PodTemplateSpec,
        replicas: u32,
    ) -> serde_json::Value {
        let selector = target
            .spec
            .as_ref()
            .and_then(|s| s.selector.match_labels.clone())
            .unwrap_or_default();
        let rewrite = |labels: &BTreeMap<String, String>| -> BTreeMap<String, String> {
            labels
                .iter()
                .map(|(k, v)| {
                    let v = if selector.contains_key(k) {
                        format!("{v}{PRIMARY_SUFFIX}")
                    } else {
                        v.clone()
                    };
                    (k.clone(), v)
                })
                .collect()
        };
        let mut pod = template.clone();
        if let Some(meta) = pod.metadata.as_mut() {
            meta.labels = meta.labels.as_ref().map(rewrite);
        }
        let mut labels = target.metadata.labels.clone().unwrap_or_default();
        labels.insert(MANAGED_BY.to_string(), FIELD_MANAGER.to_string());
        let mut body = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": self.primary_name(),
                "labels": labels,
                "annotations": { PROMOTED_HASH: template_hash(template) },
            },
            "spec": {
                "replicas": replicas,
                "selector": { "matchLabels": rewrite(&selector) },
                "template": pod,
            },
        });
        if let Some(owner) = &self.owner {
            body["metadata"]["ownerReferences"] = json!([owner]);
        }
        body
    }

    async fn apply_primary(
        &self,
        target: &Deployment,
        template: &PodTemplateSpec,
        replicas: u32,
    ) -> Result<(), ClusterError> {
        let name = self.primary_name();
        let body = self.primary_body(target, template, replicas);
        self.api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(body),
            )
            .await
            .map_err(|e| ClusterError::api(format!("apply Deployment {name}"), e))?;
        Ok(())
    }

    async fn scale(&self, name: &str, replicas: u32) -> Result<(), ClusterError> {
        self.api
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(scale_body(name, replicas)),
            )
            .await
            .map_err(|e| ClusterError::api(format!("scale Deployment {name}"), e))?;
        Ok(())
    }

    /// Scales the canary (the target) to `replicas` to start a canary, for
    /// routers that keep traffic off it by weight (Gateway API, SMI).
    pub async fn start_canary(&self, replicas: u32) -> Result<(), ClusterError> {
        self.scale(&self.target, replicas).await
    }

    /// Promotes the canary: its template goes into the primary (with
    /// `replicas` pods); once the primary is available with it, the canary is
    /// scaled to zero. Call again until [`Promotion::Done`]; each call is idempotent.
    pub async fn promote(&self, replicas: u32) -> Result<Promotion, ClusterError> {
        if self.promote_primary(replicas).await? == Promotion::Waiting {
            return Ok(Promotion::Waiting);
        }
        self.scale(&self.target, 0).await?;
        Ok(Promotion::Done)
    }

    /// The first half of [`Workload::promote`]: the canary's template goes
    /// into the primary; [`Promotion::Done`] once the primary is available
    /// with it. The canary is left as it is, so traffic can be moved back to
    /// the primary before the canary is scaled down.
    pub async fn promote_primary(&self, replicas: u32) -> Result<Promotion, ClusterError> {
        let (target, template) = self.target().await?;
        let hash = template_hash(&template);
        let primary = self.get(&self.primary_name()).await?;
        let promoted = primary
            .as_ref()
            .and_then(|p| p.metadata.annotations.as_ref())
            .and_then(|a| a.get(PROMOTED_HASH))
            == Some(&hash);
        let sized = primary
            .as_ref()
            .and_then(|p| p.spec.as_ref())
            .and_then(|s| s.replicas)
            == i32::try_from(replicas).ok();
        if !(promoted && sized) {
            self.apply_primary(&target, &template, replicas).await?;
            return Ok(Promotion::Waiting);
        }
        if !primary.as_ref().is_some_and(is_ready) {
            return Ok(Promotion::Waiting);
        }
        Ok(Promotion::Done)
    }

    /// Rolls back: the canary is scaled to zero; the primary is not touched.
    pub async fn rollback(&self) -> Result<(), ClusterError> {
        self.scale(&self.target, 0).await
    }
}
