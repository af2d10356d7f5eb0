//! The standalone router factory: the built-in proxy or HAProxy, as a spec
//! names; the cluster kinds need cluster mode.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;

use super::haproxy_stats::FRESH_FOR;
use super::{
    BuiltinConfig, BuiltinRouter, ConnectionLimits, HaproxyConfig, HaproxyRouter, Health,
    RouterError, RouterMetrics, StatsReader, UpstreamPool,
};
use crate::ports::{RouterFactory, RouterReading, TrafficRouter};
use crate::spec::model::{DeployMode, DeploySpec, RouterSpec};
use crate::spec::units::Weight;

/// Builds standalone routers; the built-in ones share one health checker
/// and one connection pool per upstream address.
pub struct Routers {
    /// The built-in routers' request metrics.
    metrics: RouterMetrics,
    /// How often a built-in router's upstreams are checked.
    health_interval: Duration,
    /// Each built-in router's connection limits and timeouts.
    limits: ConnectionLimits,
    /// What the built-in routers share per upstream.
    upstreams: UpstreamPool,
    /// One `show stat` reader per HAProxy socket.
    haproxy_stats: Mutex<HashMap<String, StatsReader>>,
}

impl Routers {
    /// A factory whose built-in routers check upstreams every
    /// `health_interval` and serve clients under `limits`.
    pub fn new(
        metrics: RouterMetrics,
        health_interval: Duration,
        limits: ConnectionLimits,
    ) -> Routers {
        Routers {
            metrics,
            health_interval,
            limits,
            // Idle upstream connections: one router's worth per upstream.
            upstreams: UpstreamPool::new(health_interval, limits.max_connections),
            haproxy_stats: Mutex::default(),
        }
    }

    /// The stats reader of HAProxy `socket`, shared by its rollouts.
    fn haproxy_stats(&self, socket: &str) -> StatsReader {
        self.haproxy_stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(socket.to_string())
            .or_insert_with(|| StatsReader::new(socket, FRESH_FOR))
            .clone()
    }

    /// The upstream addresses being health-checked now.
    pub fn checked_upstreams(&self) -> Vec<String> {
        self.upstreams.checked()
    }
}

#[async_trait]
impl RouterFactory for Routers {
    async fn router(&self, spec: &DeploySpec) -> Result<Arc<dyn TrafficRouter>, RouterError> {
        match &spec.router {
            RouterSpec::Builtin { listen } => {
                let listen = listen.parse().map_err(|_| {
                    RouterError::Refused(format!(
                        "router.listen `{listen}` is not an address such as 127.0.0.1:8080"
                    ))
                })?;
                let (Some(stable), Some(canary)) = (&spec.stable.address, &spec.canary.address)
                else {
                    return Err(RouterError::Refused(
                        "the built-in router needs `stable.address` and `canary.address`".into(),
                    ));
                };
                let config = BuiltinConfig {
                    listen,
                    namespace: spec.id.namespace.clone(),
                    route: spec.id.name.clone(),
                    stable: stable.clone(),
                    canary: canary.clone(),
                    health_interval: self.health_interval,
                    // Shadow: the split is the team's, given in the file;
                    // canaryd never changes it.
                    weight: match spec.strategy.mode {
                        DeployMode::Shadow => spec.strategy.shadow_weight.unwrap_or(Weight::ZERO),
                        DeployMode::Active => Weight::ZERO,
                    },
                };
                let router = BuiltinRouter::start_in(
                    config,
                    self.limits,
                    self.metrics.clone(),
                    &self.upstreams,
                )
                .await
                .map_err(|e| RouterError::Refused(format!("cannot listen on {listen}: {e}")))?;
                Ok(Arc::new(router))
            }
            RouterSpec::Haproxy {
                socket,
                backend,
                stable_server,
                canary_server,
            } => Ok(Arc::new(HaproxyRouter::with_stats(
                HaproxyConfig {
                    socket: socket.clone(),
                    backend: backend.clone(),
                    stable_server: stable_server.clone(),
                    canary_server: canary_server.clone(),
                },
                self.haproxy_stats(socket),
            ))),
            other => Err(RouterError::Unsupported(format!(
                "router kind `{}` needs cluster mode; standalone mode drives `builtin` and `haproxy`",
                other.kind()
            ))),
        }
    }
}

#[async_trait]
impl TrafficRouter for BuiltinRouter {
    async fn set_weight(&self, weight: Weight) -> Result<(), RouterError> {
        BuiltinRouter::set_weight(self, weight);
        Ok(())
    }

    async fn weight(&self) -> Result<Weight, RouterError> {
        Ok(BuiltinRouter::weight(self))
    }

    async fn health(&self) -> Health {
        BuiltinRouter::health(self)
    }

    async fn retarget(&self, spec: &DeploySpec) -> Result<(), RouterError> {
        if let (Some(stable), Some(canary)) = (&spec.stable.address, &spec.canary.address) {
            self.set_upstreams(stable.clone(), canary.clone()).await;
        }
        Ok(())
    }

    fn stop(&self) {
        BuiltinRouter::stop(self);
    }
}

#[async_trait]
impl TrafficRouter for HaproxyRouter {
    async fn set_weight(&self, weight: Weight) -> Result<(), RouterError> {
        HaproxyRouter::set_weight(self, weight).await
    }

    async fn weight(&self) -> Result<Weight, RouterError> {
        HaproxyRouter::weight(self).await
    }

    async fn health(&self) -> Health {
        HaproxyRouter::health(self).await
    }

    async fn observe(&self) -> RouterReading {
        HaproxyRouter::observe(self).await
    }

    fn same_weight(&self, a: Weight, b: Weight) -> bool {
        super::haproxy::server_weights(a) == super::haproxy::server_weights(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rollouts_on_one_haproxy_socket_share_its_stats_reader() {
        let mut registry = prometheus_client::registry::Registry::default();
        let routers = Routers::new(
            RouterMetrics::register(&mut registry),
            Duration::from_secs(1),
            ConnectionLimits::ROUTER,
        );
        let a = routers.haproxy_stats("/nonexistent/a.sock");
        let b = routers.haproxy_stats("/nonexistent/a.sock");
        let other = routers.haproxy_stats("/nonexistent/b.sock");
        assert!(a.states().await.is_err());
        assert!(b.states().await.is_err(), "the failed read, reused");
        assert_eq!((a.reads(), b.reads(), other.reads()), (1, 1, 0));
    }
}
