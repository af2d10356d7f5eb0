//! What a decision asks the outside world to do, in order, and the record of why.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::observation::Inconclusive;
use super::state::Phase;
use super::time::Timestamp;
use super::verdict::GateResult;
use crate::spec::model::AlertSeverity;
use crate::spec::units::Weight;

/// One thing to do. Effects are executed in the order given.
// Effects are short-lived values made once per decision and matched on by
// value everywhere: boxing the record would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    /// Send this share of traffic to the canary (idempotent).
    SetWeight {
        /// The canary weight.
        weight: Weight,
    },
    /// Make the canary the stable version (after 100% was set).
    Finalize {
        /// The version that becomes stable.
        version: String,
    },
    /// Append to the decision log.
    Record(DecisionRecord),
    /// Queue an alert for the chat sinks.
    Notify(Alert),
}

/// What a decision did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A rollout began at its first step.
    Start,
    /// Moved to the next step.
    Advance,
    /// Stayed at the current step and counted something (a failure, no data).
    Hold,
    /// Canary promoted: 100% and finalized.
    Promote,
    /// All traffic sent back to stable by canaryd.
    Rollback,
    /// Paused (by a person, for missing data, or instead of a disabled rollback).
    Pause,
    /// Resumed after a pause.
    Resume,
    /// Stopped by a person.
    Abort,
    /// The same canary version started again.
    Retry,
    /// A newer canary version replaced the one in flight.
    Supersede,
    /// Inconclusive data let through because `no_data: ignore` (logged loudly).
    IgnoreNoData,
}

impl Action {
    /// What a shadow decision records instead of the action: `would roll back`.
    pub fn would(self) -> &'static str {
        match self {
            Action::Start => "would start",
            Action::Advance => "would advance",
            Action::Hold => "would hold",
            Action::Promote => "would promote",
            Action::Rollback => "would roll back",
            Action::Pause => "would pause",
            Action::Resume => "would resume",
            Action::Abort => "would abort",
            Action::Retry => "would retry",
            Action::Supersede => "would supersede",
            Action::IgnoreNoData => "would ignore missing data",
        }
    }

    /// True for the actions that end a release: its verdict.
    pub fn is_verdict(self) -> bool {
        matches!(
            self,
            Action::Promote | Action::Rollback | Action::Abort | Action::Supersede
        )
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        f.write_str(&s)
    }
}

/// A manual command (BRIEF §3 "Manual control").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Hold at the current weight.
    Pause,
    /// Continue after a pause.
    Resume,
    /// Skip the remaining steps: 100% and finalize.
    Promote,
    /// Stop and send all traffic to stable.
    Abort,
    /// Start the same canary version again after a rollback or abort.
    Retry,
}

impl Command {
    /// All commands.
    pub const ALL: [Command; 5] = [
        Command::Pause,
        Command::Resume,
        Command::Promote,
        Command::Abort,
        Command::Retry,
    ];
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Command::Pause => "pause",
            Command::Resume => "resume",
            Command::Promote => "promote",
            Command::Abort => "abort",
            Command::Retry => "retry",
        };
        f.write_str(s)
    }
}

/// Why a decision was taken, with the numbers behind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// The deploy file names a canary version not yet rolled out.
    NewVersion {
        /// The version.
        version: String,
    },
    /// The step was watched for its duration and its gates passed.
    StepPassed {
        /// 1-based step.
        step: usize,
    },
    /// Early success: the step was watched for its `min_duration` and every
    /// promotion gate passed on conclusive evidence before its `duration`.
    StepPassedEarly {
        /// 1-based step.
        step: usize,
        /// The step's watched time when it advanced, in seconds.
        watched_seconds: u64,
        /// The step's `duration`, in seconds.
        duration_seconds: u64,
    },
    /// An abort condition breached (enough consecutive times).
    AbortCondition {
        /// `error_rate > 2%`.
        gate: String,
        /// The measured value in the gate's unit.
        value: String,
        /// The threshold.
        threshold: String,
        /// Consecutive breaching ticks.
        breaches: u32,
        /// Breaches needed to roll back.
        limit: u32,
        /// The evidence of the breach (gates judged on counts).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        evidence: Option<String>,
    },
    /// A promotion gate failed.
    PromotionGate {
        /// `error_rate < 1%`.
        gate: String,
        /// The measured value.
        value: String,
        /// The threshold.
        threshold: String,
        /// Failures counted in this step.
        failures: u32,
        /// Failures that roll back.
        limit: u32,
        /// The evidence of the failure (gates judged on counts).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        evidence: Option<String>,
    },
    /// The step ran its duration; its promotion gates are still undecided,
    /// so it goes on (up to its extension) for their evidence.
    AwaitingEvidence {
        /// 1-based step.
        step: usize,
        /// The first undecided gate.
        gate: String,
        /// Its evidence so far.
        evidence: String,
        /// How much longer the step may wait, in seconds.
        extension_seconds: u64,
    },
    /// The step ran its duration and its extension without conclusive
    /// evidence for a promotion gate: `no_data` decides.
    NotEnoughEvidence {
        /// 1-based step.
        step: usize,
        /// The undecided gate.
        gate: String,
        /// Its evidence.
        evidence: String,
    },
    /// The promotion gates' evidence arrived after a pause for it.
    EvidenceArrived,
    /// The rollout's spec was removed while its canary was in flight.
    SpecRemoved,
    /// Data was inconclusive.
    Inconclusive {
        /// The first inconclusive gate.
        gate: String,
        /// Why.
        why: Inconclusive,
        /// Consecutive inconclusive ticks.
        ticks: u32,
        /// Ticks before the no-data policy applies.
        limit: u32,
    },
    /// Data came back after a pause for missing data.
    DataReturned,
    /// A person asked.
    Manual {
        /// The command.
        command: Command,
    },
    /// A newer canary version arrived.
    Superseded {
        /// The version in flight.
        old: String,
        /// The version replacing it.
        new: String,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NewVersion { version } => write!(f, "new canary version {version}"),
            Reason::StepPassed { step } => write!(f, "step {step} passed its duration and gates"),
            Reason::StepPassedEarly {
                step,
                watched_seconds,
                duration_seconds,
            } => {
                let d = |s: &u64| {
                    crate::spec::units::format_duration(std::time::Duration::from_secs(*s))
                };
                write!(
                    f,
                    "step {step} passed early: its gates passed after {} of its {}",
                    d(watched_seconds),
                    d(duration_seconds)
                )
            }
            Reason::AbortCondition {
                gate,
                value,
                threshold: _,
                breaches,
                limit,
                evidence,
            } => {
                match evidence {
                    Some(e) => write!(f, "abort condition {gate} breached: {e}")?,
                    None => write!(f, "abort condition {gate} breached: value {value}")?,
                }
                if *limit > 1 {
                    write!(f, " ({breaches}/{limit} consecutive)")?;
                }
                Ok(())
            }
            Reason::PromotionGate {
                gate,
                value,
                threshold: _,
                failures,
                limit,
                evidence,
            } => {
                match evidence {
                    Some(e) => write!(f, "promotion gate {gate} failed: {e}")?,
                    None => write!(f, "promotion gate {gate} failed: value {value}")?,
                }
                if *limit > 1 {
                    write!(f, " (failure {failures}/{limit} in this step)")?;
                }
                Ok(())
            }
            Reason::AwaitingEvidence {
                step,
                gate,
                evidence,
                extension_seconds,
            } => write!(
                f,
                "step {step} ran its duration; waiting up to {} more for evidence on {gate}: {evidence}",
                crate::spec::units::format_duration(std::time::Duration::from_secs(
                    *extension_seconds
                ))
            ),
            Reason::NotEnoughEvidence {
                step,
                gate,
                evidence,
            } => write!(
                f,
                "step {step} ran its duration and extension without conclusive evidence on {gate}: {evidence}"
            ),
            Reason::EvidenceArrived => f.write_str("the promotion gates passed; continuing"),
            Reason::SpecRemoved => {
                f.write_str("its deploy spec was removed; all traffic back on the stable version")
            }
            Reason::Inconclusive {
                gate,
                why,
                ticks,
                limit,
            } => {
                write!(f, "inconclusive: {gate}: {why} ({ticks}/{limit} ticks)")
            }
            Reason::DataReturned => f.write_str("data returned; continuing"),
            Reason::Manual { command } => write!(f, "manual {command}"),
            Reason::Superseded { old, new } => write!(f, "canary {old} superseded by {new}"),
        }
    }
}

/// One entry of the decision log (BRIEF §5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// 1-based sequence number within the rollout; makes recording idempotent.
    pub seq: u64,
    /// When.
    pub at: Timestamp,
    /// Phase before.
    pub from: Phase,
    /// Phase after.
    pub to: Phase,
    /// What was done.
    pub action: Action,
    /// Why, as a sentence.
    pub reason: String,
    /// Why, structured.
    pub detail: Reason,
    /// 1-based step after the decision.
    pub step: usize,
    /// Canary weight after the decision.
    pub weight: Weight,
    /// Stable version after the decision.
    pub stable_version: String,
    /// Canary version concerned.
    pub canary_version: String,
    /// Every gate judged on this tick.
    pub gates: Vec<GateResult>,
    /// A shadow decision: what canaryd would have done; it did not touch
    /// traffic (its `reason` starts with `would …`, its `weight` is the one
    /// canaryd would have set).
    #[serde(default)]
    pub shadow: bool,
    /// For a command: the name of the API token that issued it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// Kinds of alert (issue: chat alerts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertEvent {
    /// A rollout began.
    Started,
    /// A step was passed.
    StepAdvanced,
    /// Paused or inconclusive.
    Paused,
    /// Promoted.
    Promoted,
    /// Rolled back by canaryd.
    RolledBack,
    /// Aborted by a person.
    Aborted,
}

impl AlertEvent {
    /// The name as serialized (`rolled_back`): stored, sent in headers and keys.
    pub fn name(self) -> &'static str {
        match self {
            AlertEvent::Started => "started",
            AlertEvent::StepAdvanced => "step_advanced",
            AlertEvent::Paused => "paused",
            AlertEvent::Promoted => "promoted",
            AlertEvent::RolledBack => "rolled_back",
            AlertEvent::Aborted => "aborted",
        }
    }

    /// How loud the event is.
    pub fn severity(self) -> AlertSeverity {
        match self {
            AlertEvent::Started | AlertEvent::StepAdvanced | AlertEvent::Promoted => {
                AlertSeverity::Info
            }
            AlertEvent::Paused => AlertSeverity::Warn,
            AlertEvent::RolledBack | AlertEvent::Aborted => AlertSeverity::Error,
        }
    }
}

/// An alert to deliver; it refers to the decision that raised it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The decision's sequence number (with the rollout, the idempotency key).
    pub seq: u64,
    /// The event.
    pub event: AlertEvent,
    /// Its severity (`info` for every shadow alert).
    pub severity: AlertSeverity,
    /// About a shadow decision: labelled so in chat.
    #[serde(default)]
    pub shadow: bool,
}

#[cfg(test)]
mod tests {
    use super::AlertEvent;

    #[test]
    fn an_alert_events_name_is_its_serialized_form() {
        for e in [
            AlertEvent::Started,
            AlertEvent::StepAdvanced,
            AlertEvent::Paused,
            AlertEvent::Promoted,
            AlertEvent::RolledBack,
            AlertEvent::Aborted,
        ] {
            assert_eq!(serde_json::to_value(e).ok(), Some(e.name().into()));
        }
    }
}
