//! A rollout's state between two decisions: phase, step, weight, clocks and counters.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::evidence::Evidence;
use super::time::Timestamp;
use crate::spec::model::{DeployMode, DeploySpec};
use crate::spec::units::Weight;

/// Where a rollout is (BRIEF §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Phase {
    /// Only the stable version serves traffic.
    Idle,
    /// The canary serves the current step's weight and is being judged.
    Progressing,
    /// Held at its weight: by a person, or waiting for data.
    Paused,
    /// The canary became the stable version.
    Promoted,
    /// canaryd sent all traffic back to stable on its own.
    RolledBack,
    /// A person stopped the rollout.
    Aborted,
}

impl Phase {
    /// True while a canary is in flight (receives traffic or waits to).
    pub fn in_flight(self) -> bool {
        matches!(self, Phase::Progressing | Phase::Paused)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Why a rollout is paused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseReason {
    /// `canaryd pause`; only `resume`, `promote` or `abort` end it.
    Manual,
    /// Data stayed inconclusive past the limit; ends by itself when data returns.
    NoData,
    /// canaryd would have rolled back but `rollback.auto` is false; a person decides.
    RollbackDisabled,
    /// The step ran its duration and its extension without conclusive
    /// evidence for its promotion gates (`no_data: hold`); ends by itself
    /// when they pass.
    Evidence,
}

/// Running counts the rules of BRIEF §3 are judged on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Consecutive ticks on which an abort condition breached.
    pub breaches: u32,
    /// Failed promotion-gate evaluations in the current step (cumulative).
    pub failures: u32,
    /// Consecutive inconclusive ticks.
    pub inconclusive: u32,
    /// The step ran its duration and waits for its gates' evidence (the
    /// wait is recorded once).
    #[serde(default)]
    pub waiting: bool,
}

/// Everything the engine remembers about one rollout. Persisted as is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RolloutState {
    /// The phase.
    pub phase: Phase,
    /// Why it is paused (only in [`Phase::Paused`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<PauseReason>,
    /// The version serving the rest of the traffic.
    pub stable_version: String,
    /// The version being (or last) rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_version: Option<String>,
    /// The current step, 0-based.
    pub step: usize,
    /// The canary weight the router must hold.
    pub weight: Weight,
    /// Watched time in the current step: ticks while Progressing with a ready
    /// canary, each counting at most two intervals, so downtime does not count.
    #[serde(with = "millis")]
    pub step_elapsed: Duration,
    /// When the engine last measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_tick: Option<Timestamp>,
    /// When the phase (or step) last changed.
    pub since: Timestamp,
    /// Breach, failure and inconclusive counts.
    pub counters: Counters,
    /// Number of decisions recorded so far; the next record gets this + 1.
    pub decisions: u64,
    /// The counts and tests of the evidence gates.
    #[serde(default)]
    pub evidence: Evidence,
    /// Whether this release is acted on or only watched (shadow). Taken
    /// from the spec when a release starts, so a change of `deploy.mode`
    /// applies from the next release, never mid-rollout.
    #[serde(default)]
    pub mode: DeployMode,
}

impl RolloutState {
    /// True when canaryd only watches this rollout: its decisions are what
    /// it would have done, and it never touches traffic.
    pub fn shadow(&self) -> bool {
        self.mode == DeployMode::Shadow
    }

    /// A rollout that has not started: the spec's stable version, no canary.
    pub fn new(spec: &DeploySpec, now: Timestamp) -> RolloutState {
        RolloutState {
            phase: Phase::Idle,
            pause: None,
            stable_version: spec.stable.version.clone(),
            canary_version: None,
            step: 0,
            weight: Weight::ZERO,
            step_elapsed: Duration::ZERO,
            last_tick: None,
            since: now,
            counters: Counters::default(),
            decisions: 0,
            evidence: Evidence::default(),
            mode: spec.strategy.mode,
        }
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}
