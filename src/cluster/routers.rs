//! [`RouterFactory`] for cluster mode, and the workload around each router.
//!
//! The factory builds the router a Rollout's spec names (`gateway-api`,
//! `smi`, `kubernetes-replicas`) over the rollout's two Deployments, and
//! wraps it in a [`WorkloadRouter`], which keeps the primary/canary pair in
//! step with the committed phase. It is level-triggered — each read of
//! the router (every tick, and every reconcile) compares the Deployments
//! with the phase stored in the Rollout's status and does what is missing —
//! so a new leader finishes what the old one started:
//!
//! * a canary in flight gets pods (Gateway API, SMI: as many as the primary);
//! * a promoted canary's template goes into the primary; once the primary is
//!   available with it, traffic goes back to the primary and the canary is
//!   scaled to zero (the route never points at a canary without pods);
//! * a rolled-back or aborted canary is scaled to zero once its weight is 0;
//!   the primary is never touched.
//!
//! Once the primary runs the canary's template the canary track is retired:
//! whatever weight the engine holds (100% after a promotion), the route sends
//! everything to the primary, and reads back the engine's weight.
//!
//! `kubernetes-replicas` and readiness: its weight *is* the canary's pods, so
//! at weight 0 the canary has none and could never be "available". canaryd
//! does not pre-start a pod at weight 0 — behind the shared Service a ready
//! pod takes its share at once, so that would be traffic at "weight 0". The
//! gate moves to the pods: a Service sends nothing to a pod before its
//! readiness probe passes, so for this router the canary counts as ready
//! once the Deployment controller has rolled its pods (if any) to the
//! current template; a pod that never becomes ready takes no traffic, and
//! the step holds for lack of data.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Client;

use crate::cluster::ClusterError;
use crate::cluster::crd::RolloutPhase;
use crate::cluster::router::{GatewayApiRouter, ReplicasRouter, SmiRouter};
use crate::cluster::state::StatusBook;
use crate::cluster::workload::{Observed, Workload};
use crate::ports::{Health, Leadership, RouterError, RouterFactory, TrafficRouter};
use crate::spec::model::{DeploySpec, RolloutId, RouterSpec};
use crate::spec::units::Weight;

/// How often a promotion in progress is looked at until it is finished.
const FINISH_EVERY: Duration = Duration::from_secs(1);
/// How long a promotion may take to finish before it is left to the
/// reconcile loop (a primary that never becomes available).
const FINISH_WITHIN: Duration = Duration::from_secs(600);

/// Builds cluster routers.
pub struct ClusterRouters {
    client: Client,
    book: Arc<StatusBook>,
    leadership: Arc<dyn Leadership>,
}

impl ClusterRouters {
    /// Routers over `client`; the committed phases come from `book`.
    pub fn new(
        client: Client,
        book: Arc<StatusBook>,
        leadership: Arc<dyn Leadership>,
    ) -> ClusterRouters {
        ClusterRouters {
            client,
            book,
            leadership,
        }
    }
}

#[async_trait]
impl RouterFactory for ClusterRouters {
    async fn router(&self, spec: &DeploySpec) -> Result<Arc<dyn TrafficRouter>, RouterError> {
        let target = spec.canary.address.as_deref().ok_or_else(|| {
            RouterError::Unsupported(format!("rollout {} names no target Deployment", spec.id))
        })?;
        let ns = &spec.id.namespace;
        let workload = Workload::new(self.client.clone(), ns, target);
        let tracks = workload.tracks();
        let c = self.client.clone();
        let (inner, replicas): (Arc<dyn TrafficRouter>, bool) = match &spec.router {
            RouterSpec::GatewayApi {
                route,
                stable_backend,
                canary_backend,
            } => (
                Arc::new(GatewayApiRouter::new(
                    c,
                    ns,
                    route,
                    stable_backend,
                    canary_backend,
                    tracks,
                )),
                false,
            ),
            RouterSpec::Smi {
                traffic_split,
                root_service,
                stable_backend,
                canary_backend,
            } => (
                Arc::new(SmiRouter::new(
                    c,
                    ns,
                    traffic_split,
                    root_service,
                    stable_backend,
                    canary_backend,
                    tracks,
                )),
                false,
            ),
            RouterSpec::KubernetesReplicas { replicas } => {
                (Arc::new(ReplicasRouter::new(tracks, *replicas)), true)
            }
            RouterSpec::Builtin { .. } | RouterSpec::Haproxy { .. } => {
                return Err(RouterError::Unsupported(
                    "cluster mode drives gateway-api, smi and kubernetes-replicas routers".into(),
                ));
            }
        };
        Ok(Arc::new(WorkloadRouter {
            parts: Arc::new(Parts {
                id: spec.id.clone(),
                inner,
                workload,
                replicas,
                book: self.book.clone(),
                leadership: self.leadership.clone(),
                held: Mutex::new(None),
                retired: AtomicBool::new(false),
                finishing: AtomicBool::new(false),
            }),
            finisher: Mutex::new(None),
        }))
    }

    fn needs_new_router(&self, old: &DeploySpec, new: &DeploySpec) -> bool {
        old.router != new.router || old.canary.address != new.canary.address
    }
}

/// What a router and its promotion finisher share.
struct Parts {
    id: RolloutId,
    inner: Arc<dyn TrafficRouter>,
    workload: Workload,
    /// `kubernetes-replicas`: the weight moves the canary's pods.
    replicas: bool,
    book: Arc<StatusBook>,
    leadership: Arc<dyn Leadership>,
    /// The weight the engine last asked for.
    held: Mutex<Option<Weight>>,
    /// The primary runs the canary's template and is available.
    retired: AtomicBool,
    finishing: AtomicBool,
}

/// A cluster router with its rollout's workload.
pub struct WorkloadRouter {
    parts: Arc<Parts>,
    finisher: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for WorkloadRouter {
    fn drop(&mut self) {
        if let Some(task) = self
            .finisher
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}

impl Parts {
    fn held(&self) -> Option<Weight> {
        *self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Brings the Deployments in step with the committed phase; returns what
    /// they said. Only the leader changes anything.
    async fn settle(&self) -> Result<Observed, ClusterError> {
        let observed = self.workload.observe().await?;
        let retired = !observed.new_canary() && observed.stable_ready;
        self.retired.store(retired, Ordering::SeqCst);
        if !self.leadership.may_act() {
            return Ok(observed);
        }
        let status = self
            .book
            .get(&self.id)
            .and_then(|r| r.status)
            .unwrap_or_default();
        let this_canary =
            status.canary_version.as_deref() == Some(observed.canary_version.as_str());
        if retired {
            // The canary's version runs on the primary: traffic back to
            // it first, then the canary's pods go.
            if self.inner.weight().await? != Weight::ZERO {
                self.inner.set_weight(Weight::ZERO).await?;
            }
            if !self.replicas && observed.canary_replicas > 0 {
                self.workload.rollback().await?;
            }
            return Ok(observed);
        }
        if !observed.new_canary() {
            return Ok(observed); // the primary is still rolling to the canary's template
        }
        match status.phase {
            Some(RolloutPhase::Progressing | RolloutPhase::Paused)
                if !self.replicas && observed.canary_replicas == 0 =>
            {
                let pods = observed.stable_replicas.unwrap_or(1).max(1);
                self.workload.start_canary(pods).await?;
            }
            Some(RolloutPhase::Promoted) if this_canary => {
                let pods = if self.replicas {
                    observed.canary_replicas.max(1)
                } else {
                    observed
                        .stable_replicas
                        .unwrap_or(observed.canary_replicas)
                        .max(1)
                };
                self.workload.promote_primary(pods).await?;
                self.finishing.store(true, Ordering::SeqCst);
            }
            Some(RolloutPhase::RolledBack | RolloutPhase::Aborted)
                if this_canary && !self.replicas && observed.canary_replicas > 0 =>
            {
                // The engine cut the weight first; the pods go only after.
                let cut = self.inner.weight().await? == Weight::ZERO;
                if cut {
                    self.workload.rollback().await?;
                }
            }
            _ => {}
        }
        Ok(observed)
    }

    /// Settles until a promotion is finished (the canary scaled to zero),
    /// leadership is lost or [`FINISH_WITHIN`] has passed.
    async fn finish(self: Arc<Self>) {
        let deadline = tokio::time::Instant::now() + FINISH_WITHIN;
        let mut every = tokio::time::interval(FINISH_EVERY);
        while tokio::time::Instant::now() < deadline && self.leadership.may_act() {
            every.tick().await;
            match self.settle().await {
                Ok(o)
                    if self.retired.load(Ordering::SeqCst)
                        && (self.replicas || o.canary_replicas == 0) =>
                {
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(rollout = %self.id, error = %e, "promotion not finished yet")
                }
            }
        }
        self.finishing.store(false, Ordering::SeqCst);
    }
}

impl WorkloadRouter {
    /// Settles, logging a failure, and starts the finisher of a promotion.
    async fn settle(&self) -> Option<Observed> {
        let observed = match self.parts.settle().await {
            Ok(o) => Some(o),
            Err(e) => {
                tracing::warn!(rollout = %self.parts.id, error = %e, "cannot bring the Deployments in step with the rollout; retried");
                None
            }
        };
        if self.parts.finishing.load(Ordering::SeqCst) {
            let mut finisher = self.finisher.lock().unwrap_or_else(PoisonError::into_inner);
            if finisher.as_ref().is_none_or(|t| t.is_finished()) {
                *finisher = Some(tokio::spawn(self.parts.clone().finish()).abort_handle());
            }
        }
        observed
    }
}

#[async_trait]
impl TrafficRouter for WorkloadRouter {
    async fn set_weight(&self, weight: Weight) -> Result<(), RouterError> {
        *self
            .parts
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(weight);
        // A retired canary track gets nothing, whatever the engine holds.
        let physical = if self.parts.retired.load(Ordering::SeqCst) {
            Weight::ZERO
        } else {
            weight
        };
        self.parts.inner.set_weight(physical).await
    }

    async fn weight(&self) -> Result<Weight, RouterError> {
        self.settle().await;
        let physical = self.parts.inner.weight().await?;
        if self.parts.retired.load(Ordering::SeqCst) && physical == Weight::ZERO {
            return Ok(self.parts.held().unwrap_or(physical));
        }
        Ok(physical)
    }

    async fn health(&self) -> Health {
        let observed = self.settle().await;
        let mut health = self.parts.inner.health().await;
        if self.parts.replicas {
            health.canary = self.canary_rolled().await;
        }
        if observed.is_none() {
            health.canary = false;
        }
        health
    }

    fn same_weight(&self, a: Weight, b: Weight) -> bool {
        self.parts.inner.same_weight(a, b)
    }
}

impl WorkloadRouter {
    /// `kubernetes-replicas`: the canary's pods, if any, run its current template.
    async fn canary_rolled(&self) -> bool {
        let tracks = self.parts.workload.tracks();
        match tracks.api.get_opt(&tracks.canary).await {
            Ok(Some(d)) => rolled(&d),
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(deployment = %tracks.canary, error = %e, "cannot read a Deployment");
                false
            }
        }
    }
}

/// The Deployment controller has observed the current spec and every pod it
/// runs has the current template (whether available yet or not).
pub fn rolled(d: &Deployment) -> bool {
    let Some(status) = &d.status else {
        return false;
    };
    let observed = match (d.metadata.generation, status.observed_generation) {
        (Some(g), Some(o)) => o >= g,
        (None, _) => true,
        (Some(_), None) => false,
    };
    observed && status.updated_replicas.unwrap_or(0) >= status.replicas.unwrap_or(0)
}
