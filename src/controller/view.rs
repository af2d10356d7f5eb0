//! What the API and the dashboard see of each rollout (BRIEF §5's rollout
//! object), kept current by the controller, and the event stream of every
//! decision and state change.
//!
//! The rollouts sit in a map ordered by id behind a lock held only to
//! replace one entry or to scan one page ([`page`]); views are shared
//! (`Arc`), so a reader copies pointers, never whole views. Events go to
//! per-client queues that keep the latest per rollout ([`stream`]).

pub mod page;
pub mod stream;

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::Serialize;

use self::page::{Entry, Page, PageRequest, Rollouts};
use self::stream::{Subscribers, Subscription, Topic};
use super::history::{Histories, Series};
use crate::engine::{DecisionRecord, GateResult, PauseReason, Phase, RolloutState, Timestamp};
use crate::ports::Health;
use crate::spec::model::{DeployMode, DeploySpec, RolloutId};

/// `{at, action, reason, by}` of the last decision.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LastDecision {
    /// When.
    pub at: Timestamp,
    /// What (`rollback`, `advance`…).
    pub action: String,
    /// Why, for people.
    pub reason: String,
    /// For a command: the name of the API token that issued it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// A rollout as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RolloutView {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Phase.
    pub phase: Phase,
    /// Why paused, when paused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_reason: Option<PauseReason>,
    /// The current step, 1-based.
    pub step: usize,
    /// Number of steps.
    pub steps: usize,
    /// Canary weight, 0–100.
    pub canary_weight: f64,
    /// The version taking the rest of the traffic.
    pub stable_version: String,
    /// The version being rolled out (or last rolled out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary_version: Option<String>,
    /// The canary version the deploy file asks for.
    pub desired_canary_version: String,
    /// Watched time in the current step, in seconds.
    pub step_elapsed_seconds: f64,
    /// The current step's duration, in seconds (none for the last step).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_duration_seconds: Option<f64>,
    /// When the state last changed.
    pub updated_at: Timestamp,
    /// The last decision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_decision: Option<LastDecision>,
    /// The gates judged on the last tick.
    pub gates: Vec<GateResult>,
    /// Upstream readiness seen by the router.
    pub health: Health,
    /// When the phase (or step) last changed.
    pub phase_since: Timestamp,
    /// Every step: its canary weight and how long it is watched.
    pub plan: Vec<StepView>,
    /// The deploy file, by name (relative to the deploy directory, which
    /// is flat): where it lives on disk is not everyone's business.
    pub file: String,
    /// The deploy file's path as canaryd opened it (the API shows it only
    /// to holders of the API token, on request).
    #[serde(skip)]
    pub file_path: String,
    /// Why the latest edit of the file was rejected (the previous version runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_error: Option<String>,
    /// `shadow` while canaryd only watches (the release in flight, or the
    /// last one, was started in shadow mode, or the file now says so): its
    /// decisions are what it would have done, and `canary_weight` is the
    /// weight read from the router. Otherwise `active`.
    pub mode: DeployMode,
}

impl RolloutView {
    /// The view of a rollout's state.
    pub fn of(spec: &DeploySpec, state: &RolloutState, file: &str) -> RolloutView {
        let step = state.step.min(spec.strategy.steps.len().saturating_sub(1));
        RolloutView {
            namespace: spec.id.namespace.clone(),
            name: spec.id.name.clone(),
            phase: state.phase,
            pause_reason: state.pause,
            step: step + 1,
            steps: spec.strategy.steps.len(),
            canary_weight: state.weight.percent(),
            stable_version: state.stable_version.clone(),
            canary_version: state.canary_version.clone(),
            desired_canary_version: spec.canary.version.clone(),
            step_elapsed_seconds: state.step_elapsed.as_secs_f64(),
            step_duration_seconds: spec
                .strategy
                .steps
                .get(step)
                .and_then(|s| s.duration)
                .map(|d| d.as_secs_f64()),
            updated_at: state.last_tick.unwrap_or(state.since),
            phase_since: state.since,
            plan: spec
                .strategy
                .steps
                .iter()
                .map(|s| StepView {
                    weight: s.weight.percent(),
                    duration_seconds: s.duration.map(|d| d.as_secs_f64()),
                })
                .collect(),
            last_decision: None,
            gates: Vec::new(),
            health: Health::default(),
            file: RolloutView::file_name(file),
            file_path: file.to_string(),
            file_error: None,
            mode: state.mode,
        }
    }

    /// How a deploy file at `path` is shown: its name in the deploy directory.
    pub fn file_name(path: &str) -> String {
        std::path::Path::new(path)
            .file_name()
            .map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned())
    }
}

/// One step of a rollout's plan.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StepView {
    /// Canary weight, 0–100.
    pub weight: f64,
    /// How long the step is watched (none on the last step).
    pub duration_seconds: Option<f64>,
}

/// One entry of the event stream.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A decision was taken (and committed).
    Decision {
        /// The rollout after it (shared with the view's list, not copied).
        rollout: Arc<RolloutView>,
        /// The record.
        decision: Box<DecisionRecord>,
    },
    /// The rollout's state changed without a decision (a tick, new health).
    State {
        /// The rollout now (shared with the view's list, not copied).
        rollout: Arc<RolloutView>,
    },
    /// A deploy file was rejected; the previous version keeps running.
    FileRejected {
        /// The file.
        file: String,
        /// The `validate` report.
        errors: String,
    },
}

/// The shared picture of every rollout, plus the event stream.
pub struct View {
    rollouts: RwLock<Rollouts>,
    histories: RwLock<Histories>,
    subscribers: Subscribers,
    ready: std::sync::atomic::AtomicBool,
    store_error: RwLock<Option<String>>,
}

impl Default for View {
    fn default() -> View {
        View {
            rollouts: RwLock::new(Rollouts::default()),
            histories: RwLock::new(BTreeMap::new()),
            subscribers: Subscribers::default(),
            ready: std::sync::atomic::AtomicBool::new(false),
            store_error: RwLock::new(None),
        }
    }
}

impl Drop for View {
    fn drop(&mut self) {
        // Event streams end with the view.
        self.subscribers.close();
    }
}

impl View {
    /// The map for reading (a poisoned lock still holds whole views: each
    /// write replaces one entry).
    fn read(&self) -> RwLockReadGuard<'_, Rollouts> {
        self.rollouts.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Rollouts> {
        self.rollouts
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// One page of the rollouts, by namespace and name (see [`page`]).
    pub fn page(&self, request: &PageRequest) -> Page {
        self.read().page(request)
    }

    /// One rollout.
    pub fn get(&self, id: &RolloutId) -> Option<RolloutView> {
        self.shared(id).map(Arc::unwrap_or_clone)
    }

    /// One rollout, shared (no copy of the view).
    pub fn shared(&self, id: &RolloutId) -> Option<Arc<RolloutView>> {
        self.read().map.get(id).map(|e| e.view.clone())
    }

    /// Replaces a rollout's view.
    pub fn put(&self, view: RolloutView) -> Arc<RolloutView> {
        let id = RolloutId {
            namespace: view.namespace.clone(),
            name: view.name.clone(),
        };
        // Built before the lock: the critical section is one map insert.
        let entry = Entry::new(view);
        let shared = entry.view.clone();
        self.write().insert(id, entry);
        shared
    }

    /// Forgets a rollout (its file was removed).
    pub fn remove(&self, id: &RolloutId) {
        self.write().remove(id);
        self.histories
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }

    /// Adds a tick's gate results to the rollout's charts.
    pub fn sample(
        &self,
        id: &RolloutId,
        spec: &DeploySpec,
        version: Option<&str>,
        at: Timestamp,
        results: &[GateResult],
    ) {
        self.histories
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(id.clone())
            .or_default()
            .record(spec, version, at, results);
    }

    /// The rollout's recent gate values.
    pub fn series(&self, id: &RolloutId) -> Series {
        self.histories
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
            .unwrap_or_default()
    }

    /// Publishes an event to every subscriber that wants it (none is fine);
    /// a subscriber's older pending event for the same rollout is replaced.
    pub fn publish(&self, event: Event) {
        self.subscribers.publish(event);
    }

    /// A new subscription to the event stream: every event, or one rollout's.
    pub fn subscribe(&self, topic: Topic) -> Subscription {
        self.subscribers.subscribe(topic)
    }

    /// Marks the controller as having loaded its state and files.
    pub fn set_ready(&self) {
        self.ready.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the controller is running its loop.
    pub fn is_ready(&self) -> bool {
        self.ready.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Records whether the last commit failed (disk full, locked…): the
    /// decisions it held were not stored and are taken again next tick.
    pub fn set_store_error(&self, error: Option<String>) {
        *self
            .store_error
            .write()
            .unwrap_or_else(PoisonError::into_inner) = error;
    }

    /// Why the last commit failed, while it does.
    pub fn store_error(&self) -> Option<String> {
        self.store_error
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A view of the seed deploy file (`deploy/checkout.yaml`), decoded once
/// (decoding is the slow part of a test making thousands).
#[cfg(test)]
pub(crate) fn seed_view() -> RolloutView {
    static SEED: std::sync::OnceLock<RolloutView> = std::sync::OnceLock::new();
    SEED.get_or_init(|| {
        let decoded = crate::spec::decode::decode(
            "checkout.yaml",
            include_str!("../../deploy/checkout.yaml"),
            &crate::spec::policy::PolicySet::builtin(),
        );
        let spec = decoded.spec.expect("the seed file decodes");
        let state = RolloutState::new(&spec, Timestamp::from_millis(0));
        RolloutView::of(&spec, &state, "deploy/checkout.yaml")
    })
    .clone()
}
