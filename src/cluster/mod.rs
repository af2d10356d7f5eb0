//! Cluster mode's building blocks: the `Rollout` custom resource, the
//! Kubernetes traffic routers, the primary/canary workload, leader election,
//! and an in-process fake API server the tests run them against.
//!
//! ```text
//!  Rollout CR ──crd::decode──▶ DeploySpec (the deploy-file decoder, paths for positions)
//!      │                           │
//!      │ status ◀── crd::conditions (pure)            ports::TrafficRouter
//!      │                                                  ▲
//!  leader (Lease) ── only the leader writes ──▶ router::{gateway, smi, replicas}
//!                                               workload (primary/canary Deployments)
//! ```
//!
//! The adapters of the controller's ports (wired by `crate::daemon::cluster`):
//!
//! * [`specs::RolloutSpecs`]: `SpecSource` over the watch caches of Rollouts
//!   and Deployments ([`resolve`] turns one Rollout into a deploy spec);
//! * [`state::ClusterStore`]: `StateStore`, `DecisionLog` and `AlertOutbox`
//!   in each Rollout's status, fenced by resourceVersion ([`state::book`]);
//! * [`routers::ClusterRouters`]: `RouterFactory` of the three routers, each
//!   wrapped with its workload (promotion, rollback, readiness);
//! * the Lease's `watch::Receiver<bool>` is the `Leadership`;
//! * [`mirror::Mirror`]: a standby's view, from the watch cache;
//! * [`events`]: a Kubernetes Event per decision.

pub mod crd;
pub mod events;
pub mod fake;
pub mod leader;
pub mod mirror;
pub mod names;
pub mod resolve;
pub mod router;
pub mod routers;
pub mod specs;
pub mod state;
pub mod tls;
pub mod workload;

/// What went wrong talking to the API server in cluster mode.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The API server answered with an error status.
    #[error("{what}: {source}")]
    Api {
        /// The operation that failed (`get Deployment shop/checkout`).
        what: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// An object exists but does not hold what canaryd needs.
    #[error("{0}")]
    Invalid(String),
    /// A write carried a resourceVersion that is no longer current: another
    /// writer got there first (a stale leader, a hand edit).
    #[error("{what}: stale resourceVersion, the object changed since it was read")]
    Stale {
        /// The operation that was refused.
        what: String,
    },
    /// Leader election could not start or stopped.
    #[error("leader election: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    /// A router could not read or set its weight.
    #[error(transparent)]
    Router(#[from] crate::ports::RouterError),
}

impl ClusterError {
    /// Wraps a client error with the operation it belongs to; a 409 for a
    /// stale resourceVersion becomes [`ClusterError::Stale`] (a field-manager
    /// conflict of server-side apply stays an API error).
    pub fn api(what: impl Into<String>, source: kube::Error) -> ClusterError {
        let what = what.into();
        match &source {
            // A server-side apply's field conflict is a 409 too, with causes.
            kube::Error::Api(status)
                if status.code == 409
                    && status.reason == "Conflict"
                    && status.details.as_ref().is_none_or(|d| d.causes.is_empty()) =>
            {
                ClusterError::Stale { what }
            }
            _ => ClusterError::Api { what, source },
        }
    }

    /// The HTTP status the API server answered, when it answered one.
    pub fn code(&self) -> Option<u16> {
        match self {
            ClusterError::Api {
                source: kube::Error::Api(status),
                ..
            } => Some(status.code),
            ClusterError::Stale { .. } => Some(409),
            _ => None,
        }
    }
}

impl From<ClusterError> for crate::router::RouterError {
    fn from(e: ClusterError) -> Self {
        crate::router::RouterError::Refused(e.to_string())
    }
}
