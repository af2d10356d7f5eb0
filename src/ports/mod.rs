//! The ports: small, dyn-safe interfaces between the controller (with the
//! API and the notifier) and the systems they drive. Each system has one
//! adapter; the controller holds them as `Arc<dyn …>` and names no adapter
//! type.
//!
//! | port | for | standalone adapter | cluster adapter |
//! |---|---|---|---|
//! | [`SpecSource`] | rollout specs, keyed by rollout id | `deploy_dir::DeployDir` | Rollout resources |
//! | [`StateStore`] | each rollout's state, a tick committed at once | `store::SqliteStore` | Rollout status |
//! | [`DecisionLog`] | reading the decision log | `store::SqliteStore` | |
//! | [`AlertOutbox`] | alerts waiting for delivery | `store::SqliteStore` | |
//! | [`SpecMemory`] | the last accepted version of each spec | `store::SqliteStore` | |
//! | [`RouterFactory`] → [`TrafficRouter`] | shifting traffic | `router::Routers` (built-in, HAProxy) | `cluster::router` |
//! | [`MetricsSource`] | measuring gates | `provider::PrometheusSource` | the same |
//! | [`Leadership`] | may this process write? | [`AlwaysLeader`] | the Lease |

pub mod labels;
pub mod leader;
pub mod metrics;
pub mod router;
pub mod specs;
pub mod store;

pub use leader::{AlwaysLeader, Leadership};
pub use metrics::{Answer, InstantQuery, Labels, MetricsSource, QueryValue, Series};
pub use router::{Health, RouterError, RouterFactory, RouterReading, TrafficRouter};
pub use specs::{SpecEvent, SpecSource, SpecSourceError};
pub use store::{
    AlertOutbox, Change, Checkpoint, DecisionLog, Delivery, DeliveryState, DeliveryStatus,
    Outgoing, PendingDelivery, SpecMemory, StateStore, StoreError, StoredRollout,
};
