//! Shifting one rollout's traffic between its stable and canary tracks, and
//! building the router a spec asks for.

use std::sync::Arc;

use async_trait::async_trait;

use crate::spec::model::DeploySpec;
use crate::spec::units::Weight;

/// A router could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// The listener or socket failed.
    #[error("router I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The router refused or misreported a weight.
    #[error("router: {0}")]
    Refused(String),
    /// This process cannot drive the router the spec names.
    #[error("{0}")]
    Unsupported(String),
}

impl RouterError {
    /// A low-cardinality name for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            RouterError::Io(_) => "router_io",
            RouterError::Refused(_) => "router_refused",
            RouterError::Unsupported(_) => "router_unsupported",
        }
    }
}

/// Readiness of the two upstreams, from the router's health checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize)]
pub struct Health {
    /// The stable upstream answers its health check.
    pub stable: bool,
    /// The canary upstream answers its health check.
    pub canary: bool,
}

/// A router's health and weight, read together for a tick.
#[derive(Debug)]
pub struct RouterReading {
    /// Readiness of both tracks.
    pub health: Health,
    /// The canary weight applied, or why it could not be read.
    pub weight: Result<Weight, RouterError>,
}

/// Shifts one rollout's traffic between its stable and canary tracks.
///
/// Every call is idempotent; `weight` reads back what the router applies now
/// (never a remembered value), so the controller can correct drift.
#[async_trait]
pub trait TrafficRouter: Send + Sync {
    /// Sets the canary's share of traffic.
    async fn set_weight(&self, weight: Weight) -> Result<(), RouterError>;

    /// The canary weight the router applies now.
    async fn weight(&self) -> Result<Weight, RouterError>;

    /// Whether each track is ready to take traffic (a canary that is not gets none).
    async fn health(&self) -> Health;

    /// Health and weight for a tick's measurement. Routers that have both in
    /// one shared snapshot (HAProxy's `show stat`) read them from it; that
    /// weight may be up to the snapshot's age old, so a caller re-reads
    /// `weight` before acting on a difference.
    async fn observe(&self) -> RouterReading {
        RouterReading {
            health: self.health().await,
            weight: self.weight().await,
        }
    }

    /// Whether two weights are the same at this router's resolution
    /// (HAProxy rounds to 1/256; replica counts to 1/replicas).
    fn same_weight(&self, a: Weight, b: Weight) -> bool {
        a == b
    }

    /// Points the router at a spec's (possibly moved) upstreams, keeping its
    /// weight. Routers that do not hold addresses ignore it.
    async fn retarget(&self, _spec: &DeploySpec) -> Result<(), RouterError> {
        Ok(())
    }

    /// Releases what the router holds inside canaryd (the built-in proxy's
    /// listener); routers outside canaryd keep their last weight.
    fn stop(&self) {}
}

/// Builds the router a spec asks for.
#[async_trait]
pub trait RouterFactory: Send + Sync {
    /// A router for `spec`, started and ready to take weights.
    async fn router(&self, spec: &DeploySpec) -> Result<Arc<dyn TrafficRouter>, RouterError>;

    /// Whether going from `old` to `new` needs another router (not just other
    /// weights or upstreams).
    fn needs_new_router(&self, old: &DeploySpec, new: &DeploySpec) -> bool {
        old.router != new.router
    }
}
