//! [`SpecSource`] over Rollout resources: the leader's controller reads its
//! specs from the watch caches of Rollouts and Deployments.
//!
//! * A valid Rollout is `Changed` when its spec or its tracks' versions
//!   change (a new pod template on the target starts a canary); the first
//!   time, its primary is created from the target.
//! * An invalid one is `Rejected` with the decoder's diagnostics, located by
//!   JSON path; its status gets the `InvalidSpec` condition, `message` and
//!   `observedGeneration`, and a Warning Event says why, once per change.
//!   Nothing else changes: the rollout runs on its last valid spec.
//! * A deleted Rollout is `Removed`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Client;
use kube::runtime::reflector::Store;

use crate::cluster::crd::Rollout;
use crate::cluster::crd::conditions::{invalid_spec, valid_spec};
use crate::cluster::crd::decode::SpecProblem;
use crate::cluster::events::EventSink;
use crate::cluster::resolve::{Resolution, report, resolve};
use crate::cluster::state::record::kube_time;
use crate::cluster::state::{StatusBook, id_of};
use crate::cluster::workload::Workload;
use crate::engine::Timestamp;
use crate::ports::{SpecEvent, SpecSource, SpecSourceError};
use crate::spec::model::{DeploySpec, RolloutId};
use crate::spec::policy::PolicySet;

/// How a Rollout is named where the deploy directory names its file.
pub fn origin(id: &RolloutId) -> String {
    format!("Rollout {} (namespace {})", id.name, id.namespace)
}

/// The specs of the Rollouts in the cluster.
pub struct RolloutSpecs {
    client: Client,
    rollouts: Store<Rollout>,
    deployments: Store<Deployment>,
    policies: PolicySet,
    book: Arc<StatusBook>,
    events: EventSink,
    accepted: BTreeMap<RolloutId, DeploySpec>,
    rejected: BTreeMap<RolloutId, String>,
}

impl RolloutSpecs {
    /// A source reading the two caches; status writes go through `book`.
    pub fn new(
        client: Client,
        rollouts: Store<Rollout>,
        deployments: Store<Deployment>,
        policies: PolicySet,
        book: Arc<StatusBook>,
        events: EventSink,
    ) -> RolloutSpecs {
        RolloutSpecs {
            client,
            rollouts,
            deployments,
            policies,
            book,
            events,
            accepted: BTreeMap::new(),
            rejected: BTreeMap::new(),
        }
    }

    /// The primary, cloned from the target the first time (the version
    /// running now is the stable one).
    async fn ensure_primary(&self, id: &RolloutId, target: &str) {
        let workload = Workload::new(self.client.clone(), &id.namespace, target);
        if let Err(e) = workload.ensure_primary().await {
            tracing::error!(rollout = %id, error = %e, "cannot create the primary Deployment; retried next reload");
        }
    }

    /// Sets `InvalidSpec` (and says why, once per change of problems).
    async fn mark_invalid(&self, rollout: &Rollout, problems: &[SpecProblem]) {
        let id = id_of(rollout);
        let generation = rollout.metadata.generation;
        let now = kube_time(Timestamp::from_system(SystemTime::now()));
        let mut event = None;
        let written = self
            .book
            .update(&id, |status| {
                let outcome = invalid_spec(status, generation, problems, &now);
                *status = outcome.status;
                event = outcome.event;
                Ok(outcome.changed)
            })
            .await;
        match written {
            Ok(Some(written)) => {
                if let Some(event) = event {
                    self.events.publish(&written, &event).await;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(rollout = %id, error = %e, "cannot set the InvalidSpec condition")
            }
        }
    }

    /// Clears `InvalidSpec` and records the generation run, when either changed.
    async fn mark_valid(&self, rollout: &Rollout) {
        let id = id_of(rollout);
        let generation = rollout.metadata.generation;
        let now = kube_time(Timestamp::from_system(SystemTime::now()));
        let written = self
            .book
            .update(&id, |status| {
                let next = valid_spec(status, generation, &now);
                let changed = next != *status;
                *status = next;
                Ok(changed)
            })
            .await;
        if let Err(e) = written {
            tracing::warn!(rollout = %id, error = %e, "cannot clear the InvalidSpec condition");
        }
    }
}

#[async_trait]
impl SpecSource for RolloutSpecs {
    async fn changes(&mut self) -> Result<Vec<SpecEvent>, SpecSourceError> {
        let mut events = Vec::new();
        let mut seen = BTreeSet::new();
        for rollout in self.rollouts.state() {
            let id = id_of(&rollout);
            seen.insert(id.clone());
            let resolved = resolve(&rollout, &self.deployments, &self.policies);
            match resolved {
                Resolution::Valid {
                    spec,
                    warnings,
                    primary_missing,
                } => {
                    if primary_missing {
                        self.ensure_primary(&id, &rollout.spec.target_ref.name)
                            .await;
                    }
                    self.mark_valid(&rollout).await;
                    let was_rejected = self.rejected.remove(&id).is_some();
                    if was_rejected || self.accepted.get(&id) != Some(&*spec) {
                        self.accepted.insert(id.clone(), (*spec).clone());
                        events.push(SpecEvent::Changed {
                            spec,
                            origin: origin(&id),
                            warnings,
                        });
                    }
                }
                Resolution::Invalid { problems } => {
                    self.mark_invalid(&rollout, &problems).await;
                    let text = report(&problems);
                    if self.rejected.get(&id) != Some(&text) {
                        self.rejected.insert(id.clone(), text.clone());
                        events.push(SpecEvent::Rejected {
                            id: Some(id.clone()),
                            origin: origin(&id),
                            report: text,
                        });
                    }
                }
            }
        }
        let gone: Vec<RolloutId> = self
            .accepted
            .keys()
            .filter(|id| !seen.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            self.accepted.remove(&id);
            events.push(SpecEvent::Removed {
                origin: origin(&id),
                id,
            });
        }
        self.rejected.retain(|id, _| seen.contains(id));
        Ok(events)
    }

    fn retry(&mut self, id: &RolloutId) {
        self.accepted.remove(id);
    }
}
