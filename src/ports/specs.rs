//! Where rollout specs come from: the deploy directory in standalone mode,
//! Rollout resources in cluster mode. Specs are keyed by rollout id; where a
//! spec came from (a file, a resource) is only its `origin`, for people.

use async_trait::async_trait;

use crate::spec::model::{DeploySpec, RolloutId};

/// What changed among the specs.
#[derive(Clone, Debug)]
pub enum SpecEvent {
    /// A new or changed valid spec.
    Changed {
        /// The spec.
        spec: Box<DeploySpec>,
        /// Where it came from (`checkout.yaml`), for people.
        origin: String,
        /// Warnings (`no_data: ignore`…), rendered.
        warnings: Vec<String>,
    },
    /// A spec that could not be accepted; the rollout's previous spec, if
    /// any, keeps running.
    Rejected {
        /// The rollout it declares, when known.
        id: Option<RolloutId>,
        /// Where it came from.
        origin: String,
        /// Every error, rendered as `validate` prints them.
        report: String,
    },
    /// A rollout no longer declared.
    Removed {
        /// The rollout.
        id: RolloutId,
        /// Where it was declared.
        origin: String,
    },
}

/// The source could not be read at all (its specs keep running).
#[derive(Debug, thiserror::Error)]
#[error("{what}: {message}")]
pub struct SpecSourceError {
    /// What could not be read (`deploy directory deploy/`).
    pub what: String,
    /// Why.
    pub message: String,
}

/// A source of rollout specs.
#[async_trait]
pub trait SpecSource: Send {
    /// What changed since the last call (everything, on the first).
    async fn changes(&mut self) -> Result<Vec<SpecEvent>, SpecSourceError>;

    /// A spec that was fine but could not be applied (its router could not
    /// start): offer it again on the next call.
    fn retry(&mut self, id: &RolloutId);
}
