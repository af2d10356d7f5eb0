//! The ports: small, dyn-safe interfaces between the controller and the
//! systems it drives. Each system has one adapter (the built-in router,
//! HAProxy, … ); the controller holds them as `Arc<dyn Port>` and names no
//! adapter type.

use async_trait::async_trait;

use crate::router::{Health, RouterError};
use crate::spec::units::Weight;

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

    /// Whether two weights are the same at this router's resolution
    /// (HAProxy rounds to 1/256; replica counts to 1/replicas).
    fn same_weight(&self, a: Weight, b: Weight) -> bool {
        a == b
    }

    /// Releases what the router holds inside canaryd (the built-in proxy's
    /// listener); routers outside canaryd keep their last weight.
    fn stop(&self) {}
}

#[async_trait]
impl TrafficRouter for crate::router::BuiltinRouter {
    async fn set_weight(&self, weight: Weight) -> Result<(), RouterError> {
        crate::router::BuiltinRouter::set_weight(self, weight);
        Ok(())
    }

    async fn weight(&self) -> Result<Weight, RouterError> {
        Ok(crate::router::BuiltinRouter::weight(self))
    }

    async fn health(&self) -> Health {
        crate::router::BuiltinRouter::health(self)
    }

    fn stop(&self) {
        crate::router::BuiltinRouter::stop(self);
    }
}

#[async_trait]
impl TrafficRouter for crate::router::HaproxyRouter {
    async fn set_weight(&self, weight: Weight) -> Result<(), RouterError> {
        crate::router::HaproxyRouter::set_weight(self, weight).await
    }

    async fn weight(&self) -> Result<Weight, RouterError> {
        crate::router::HaproxyRouter::weight(self).await
    }

    async fn health(&self) -> Health {
        crate::router::HaproxyRouter::health(self).await
    }

    fn same_weight(&self, a: Weight, b: Weight) -> bool {
        crate::router::haproxy::server_weights(a) == crate::router::haproxy::server_weights(b)
    }
}
