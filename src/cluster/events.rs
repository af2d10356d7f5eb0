//! Kubernetes Events about Rollouts: one per decision record (`kubectl
//! describe rollout` shows the history) and one for a spec that does not
//! validate. Events are best effort, as in Kubernetes itself: one that
//! cannot be published is logged and counted, and nothing waits on it; the
//! decision log in the status is the record.

use kube::Client;
use kube::Resource;
use kube::runtime::events::{Recorder, Reporter};

use crate::cluster::crd::Rollout;
use crate::cluster::crd::conditions::{RolloutEvent, truncate};
use crate::cluster::names::{FIELD_MANAGER, action, decision};
use crate::engine::{Action, DecisionRecord};

/// The Event of a decision record.
pub fn decision_event(r: &DecisionRecord) -> RolloutEvent {
    let (reason, warning) = match r.action {
        Action::Start => (decision::STARTED, false),
        Action::Advance => (decision::ADVANCED, false),
        Action::Hold => (decision::HELD, true),
        Action::Promote => (decision::PROMOTED, false),
        Action::Rollback => (decision::ROLLED_BACK, true),
        Action::Pause => (decision::PAUSED, true),
        Action::Resume => (decision::RESUMED, false),
        Action::Abort => (decision::ABORTED, true),
        Action::Retry => (decision::RETRIED, false),
        Action::Supersede => (decision::SUPERSEDED, false),
        Action::IgnoreNoData => (decision::NO_DATA_IGNORED, true),
    };
    let note = format!(
        "{} (decision {}, step {}, canary {} at {})",
        r.reason, r.seq, r.step, r.canary_version, r.weight
    );
    RolloutEvent {
        warning,
        reason: reason.to_string(),
        note: truncate(&note, 1024),
        action: action::DECIDE.to_string(),
    }
}

/// Publishes Events about Rollouts.
#[derive(Clone)]
pub struct EventSink {
    recorder: Recorder,
}

impl EventSink {
    /// Events reported by canaryd's replica `instance`.
    pub fn new(client: Client, instance: &str) -> EventSink {
        EventSink {
            recorder: Recorder::new(
                client,
                Reporter {
                    controller: FIELD_MANAGER.to_string(),
                    instance: Some(instance.to_string()),
                },
            ),
        }
    }

    /// Publishes `event` about `rollout`; a failure is logged, never returned.
    pub async fn publish(&self, rollout: &Rollout, event: &RolloutEvent) {
        let reference = rollout.object_ref(&());
        if let Err(e) = self.recorder.publish(&event.to_kube(), &reference).await {
            tracing::warn!(rollout = ?reference.name, reason = %event.reason, error = %e, "cannot publish a Kubernetes Event (best effort)");
        }
    }
}
