//! Traffic routers: shifting a share of requests to the canary. Each adapter
//! sets the weight idempotently, reads it back, and says whether each track's
//! upstream is ready (a canary that is not gets no traffic).
//!
//! Adapters: [`builtin`] (canaryd's own reverse proxy) and [`haproxy`] (its
//! Runtime API). The controller holds them in [`Router`], one per rollout.

pub mod builtin;
pub mod haproxy;
pub mod listener;
pub mod metrics;

use crate::spec::units::Weight;

pub use builtin::{BuiltinConfig, BuiltinRouter};
pub use haproxy::{HaproxyConfig, HaproxyRouter};
pub use listener::{ConnectionLimits, ListenerStats};
pub use metrics::RouterMetrics;

/// A router could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// The listener or socket failed.
    #[error("router I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The router refused or misreported a weight.
    #[error("router: {0}")]
    Refused(String),
}

/// Readiness of the two upstreams, from the router's health checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize)]
pub struct Health {
    /// The stable upstream answers its health check.
    pub stable: bool,
    /// The canary upstream answers its health check.
    pub canary: bool,
}

/// One rollout's router.
pub enum Router {
    /// canaryd's own reverse proxy.
    Builtin(BuiltinRouter),
    /// A running HAProxy, through its Runtime API.
    Haproxy(HaproxyRouter),
}

impl Router {
    /// Sets the canary's share of traffic (idempotent).
    pub async fn set_weight(&self, weight: Weight) -> Result<(), RouterError> {
        match self {
            Router::Builtin(r) => {
                r.set_weight(weight);
                Ok(())
            }
            Router::Haproxy(r) => r.set_weight(weight).await,
        }
    }

    /// The canary weight the router applies now (read back, not remembered).
    pub async fn weight(&self) -> Result<Weight, RouterError> {
        match self {
            Router::Builtin(r) => Ok(r.weight()),
            Router::Haproxy(r) => r.weight().await,
        }
    }

    /// Whether two weights are the same at this router's resolution (HAProxy
    /// rounds to 1/256, so 10% reads back as 10.16%).
    pub fn same_weight(&self, a: Weight, b: Weight) -> bool {
        match self {
            Router::Builtin(_) => a == b,
            Router::Haproxy(_) => haproxy::server_weights(a) == haproxy::server_weights(b),
        }
    }

    /// Stops a router that runs inside canaryd (the built-in proxy).
    pub fn stop(&self) {
        if let Router::Builtin(r) = self {
            r.stop();
        }
    }

    /// Whether each upstream is ready.
    pub async fn health(&self) -> Health {
        match self {
            Router::Builtin(r) => r.health(),
            Router::Haproxy(r) => r.health().await,
        }
    }
}
