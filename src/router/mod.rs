//! Traffic routers: shifting a share of requests to the canary. Each adapter
//! sets the weight idempotently, reads it back, and says whether each track's
//! upstream is ready (a canary that is not gets no traffic).
//!
//! Adapters of the [`TrafficRouter`](crate::ports::TrafficRouter) port for
//! standalone mode: [`builtin`] (canaryd's own reverse proxy) and
//! [`haproxy`] (its Runtime API); [`Routers`] builds the one a spec names.

pub mod builtin;
mod factory;
pub mod haproxy;
pub mod haproxy_stats;
pub mod health;
pub mod listener;
pub mod metrics;

pub use crate::ports::router::{Health, RouterError};
pub use factory::Routers;

pub use builtin::{BuiltinConfig, BuiltinRouter};
pub use haproxy::{HaproxyConfig, HaproxyRouter};
pub use haproxy_stats::StatsReader;
pub use health::UpstreamPool;
pub use listener::{ConnectionLimits, ListenerStats};
pub use metrics::RouterMetrics;
