//! A standby's picture of the rollouts: the API and the dashboard of a
//! replica that does not lead are served from its watch cache. Each
//! Rollout's status holds the engine state and the decision log the leader
//! committed, so the standby shows the same rollouts, phases, steps,
//! weights and decisions, and streams them (`state` and `decision` events)
//! as the leader's writes arrive. What only the leader has in memory — gate
//! values between decisions, the charts, upstream health — is not shown.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::reflector::Store;

use crate::cluster::crd::Rollout;
use crate::cluster::crd::conditions::invalid_message;
use crate::cluster::resolve::{Resolution, resolve};
use crate::cluster::specs::origin;
use crate::cluster::state::id_of;
use crate::cluster::state::record::{engine_state, records};
use crate::controller::view::LastDecision;
use crate::controller::{Event, RolloutView, View};
use crate::engine::{RolloutState, Timestamp};
use crate::spec::model::RolloutId;
use crate::spec::policy::PolicySet;

/// What the mirror last showed of a rollout.
struct Shown {
    view: RolloutView,
    /// The last decision streamed.
    seq: u64,
}

/// Keeps a [`View`] in step with the watch cache.
pub struct Mirror {
    rollouts: Store<Rollout>,
    deployments: Store<Deployment>,
    policies: PolicySet,
    view: std::sync::Arc<View>,
    shown: BTreeMap<RolloutId, Shown>,
}

impl Mirror {
    /// A mirror of the two caches into `view`.
    pub fn new(
        rollouts: Store<Rollout>,
        deployments: Store<Deployment>,
        policies: PolicySet,
        view: std::sync::Arc<View>,
    ) -> Mirror {
        Mirror {
            rollouts,
            deployments,
            policies,
            view,
            shown: BTreeMap::new(),
        }
    }

    /// Forgets what it showed: the next refresh shows everything again
    /// (after a term as leader, whose controller kept the view).
    pub fn reset(&mut self) {
        self.shown.clear();
    }

    /// Shows every Rollout as its status says, at `now`; streams what changed.
    pub fn refresh(&mut self, now: Timestamp) {
        let mut present = Vec::new();
        for rollout in self.rollouts.state() {
            let id = id_of(&rollout);
            present.push(id.clone());
            let status = rollout.status.clone().unwrap_or_default();
            let Resolution::Valid { spec, .. } =
                resolve(&rollout, &self.deployments, &self.policies)
            else {
                // Still showing its last valid picture, with why.
                if let Some(shown) = self.shown.get_mut(&id) {
                    let error = invalid_message(&status);
                    if shown.view.file_error != error {
                        shown.view.file_error = error;
                        self.view.put(shown.view.clone());
                    }
                }
                continue;
            };
            let state = engine_state(&status)
                .ok()
                .flatten()
                .unwrap_or_else(|| RolloutState::new(&spec, now));
            let mut view = RolloutView::of(&spec, &state, &origin(&id));
            let log = records(&status);
            view.last_decision = log.last().map(|r| LastDecision {
                at: r.at,
                action: r.action.to_string(),
                reason: r.reason.clone(),
                by: r.by.clone(),
            });
            view.file_error = invalid_message(&status);
            let previous = self.shown.get(&id);
            let first = previous.is_none();
            let last_seq = previous.map_or(0, |s| s.seq);
            if previous.is_some_and(|s| s.view == view) {
                continue;
            }
            let shared = self.view.put(view.clone());
            let fresh: Vec<_> = log.iter().filter(|r| r.seq > last_seq).collect();
            if first || fresh.is_empty() {
                // History is not replayed; a change without a decision is a state event.
                self.view.publish(Event::State {
                    rollout: shared.clone(),
                });
            } else {
                for r in &fresh {
                    self.view.publish(Event::Decision {
                        rollout: shared.clone(),
                        decision: Box::new((*r).clone()),
                    });
                }
            }
            let seq = log.last().map_or(last_seq, |r| r.seq);
            self.shown.insert(id, Shown { view, seq });
        }
        let gone: Vec<RolloutId> = self
            .shown
            .keys()
            .filter(|id| !present.contains(id))
            .cloned()
            .collect();
        for id in gone {
            self.shown.remove(&id);
            self.view.remove(&id);
        }
    }
}
