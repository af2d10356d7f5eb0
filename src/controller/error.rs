//! The controller's errors, each with a low-cardinality kind for
//! `canaryd_errors_total{kind}` and the logs.

use crate::ports::{RouterError, SpecSourceError, StoreError};

/// What went wrong in the controller.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The state store failed; nothing of the tick was committed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A router failed.
    #[error(transparent)]
    Router(#[from] RouterError),
    /// The spec source could not be read; the rollouts keep running.
    #[error(transparent)]
    Specs(#[from] SpecSourceError),
    /// This process may not write (not the leader).
    #[error("not the leader: another replica acts")]
    NotLeader,
}

impl ControllerError {
    /// A low-cardinality name for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ControllerError::Store(e) => e.kind(),
            ControllerError::Router(e) => e.kind(),
            ControllerError::Specs(_) => "spec_source",
            ControllerError::NotLeader => "not_leader",
        }
    }
}

/// Why a command was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// No such rollout.
    #[error("no rollout {0}")]
    NotFound(crate::spec::model::RolloutId),
    /// The engine refused it in this phase.
    #[error(transparent)]
    Rejected(#[from] crate::engine::Rejected),
    /// It was decided but could not be carried out (nothing was stored; a
    /// weight cut may already be applied, and the next tick decides again).
    #[error("{0}; the decision was not stored and the next tick decides again")]
    Failed(#[source] ControllerError),
}
