//! Pure status arithmetic: setting a condition (its `lastTransitionTime`
//! moves only when its status flips), and the status and Event of a spec that
//! does not validate. No I/O and no clock: `now` is passed in.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::runtime::events::{Event, EventType};

use super::decode::SpecProblem;
use super::status::RolloutStatus;
use crate::cluster::names::{action, condition, reason};

/// The condition types a Rollout's status carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionType {
    /// A rollout is in flight.
    Progressing,
    /// The rollout is paused.
    Paused,
    /// The last canary was promoted.
    Promoted,
    /// The last canary was rolled back or aborted.
    RolledBack,
    /// The spec does not validate.
    InvalidSpec,
}

impl ConditionType {
    /// The `type` as written in the status.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionType::Progressing => condition::PROGRESSING,
            ConditionType::Paused => condition::PAUSED,
            ConditionType::Promoted => condition::PROMOTED,
            ConditionType::RolledBack => condition::ROLLED_BACK,
            ConditionType::InvalidSpec => condition::INVALID_SPEC,
        }
    }
}

/// A condition as canaryd wants it to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionUpdate {
    /// Which condition.
    pub kind: ConditionType,
    /// True or False.
    pub status: bool,
    /// A PascalCase reason.
    pub reason: String,
    /// For people.
    pub message: String,
}

/// The condition of `kind`, if the status has it.
pub fn find(conditions: &[Condition], kind: ConditionType) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == kind.as_str())
}

/// True when the condition of `kind` is present and `True`.
pub fn is_true(conditions: &[Condition], kind: ConditionType) -> bool {
    find(conditions, kind).is_some_and(|c| c.status == "True")
}

/// The spec's problem as the status says it, while `InvalidSpec` is True.
pub fn invalid_message(status: &RolloutStatus) -> Option<String> {
    is_true(&status.conditions, ConditionType::InvalidSpec)
        .then(|| status.message.clone().unwrap_or_default())
}

/// Sets a condition, as Kubernetes' `meta.SetStatusCondition` does: a new
/// condition or a flipped status takes `now` as its `lastTransitionTime`; an
/// unchanged status keeps its time while reason and message follow `update`.
/// Returns whether anything changed (so an unchanged status is not written).
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    update: ConditionUpdate,
    generation: Option<i64>,
    now: &Time,
) -> bool {
    let status = if update.status { "True" } else { "False" };
    let wanted = |last_transition_time: Time| Condition {
        type_: update.kind.as_str().to_string(),
        status: status.to_string(),
        reason: update.reason.clone(),
        message: update.message.clone(),
        observed_generation: generation,
        last_transition_time,
    };
    match conditions
        .iter_mut()
        .find(|c| c.type_ == update.kind.as_str())
    {
        None => {
            conditions.push(wanted(now.clone()));
            true
        }
        Some(existing) => {
            let time = if existing.status == status {
                existing.last_transition_time.clone()
            } else {
                now.clone()
            };
            let next = wanted(time);
            let changed = *existing != next;
            *existing = next;
            changed
        }
    }
}

/// An Event about a Rollout, to publish with kube's `Recorder`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolloutEvent {
    /// Warning (something is wrong) or Normal.
    pub warning: bool,
    /// PascalCase reason (`InvalidSpec`).
    pub reason: String,
    /// What happened, for people (at most 1 kB).
    pub note: String,
    /// What canaryd was doing (`Validate`).
    pub action: String,
}

impl RolloutEvent {
    /// The Event for `kube::runtime::events::Recorder::publish`.
    pub fn to_kube(&self) -> Event {
        Event {
            type_: if self.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: self.reason.clone(),
            note: Some(self.note.clone()),
            action: self.action.clone(),
            secondary: None,
        }
    }
}

/// What to write and say when the spec of `generation` does not validate.
#[derive(Clone, Debug, PartialEq)]
pub struct InvalidSpecOutcome {
    /// The status to write: only `InvalidSpec`, `message` and
    /// `observedGeneration` differ from the current one; the rollout keeps
    /// its phase, step and weight (it runs on its last valid spec).
    pub status: RolloutStatus,
    /// The Warning Event to publish, only when the condition changed (a
    /// spec that stays broken the same way is not announced on every pass).
    pub event: Option<RolloutEvent>,
    /// Whether the status differs from the current one.
    pub changed: bool,
}

/// The status and Event for a spec that does not validate. `problems` are the
/// decoder's diagnostics (only errors count).
pub fn invalid_spec(
    current: &RolloutStatus,
    generation: Option<i64>,
    problems: &[SpecProblem],
    now: &Time,
) -> InvalidSpecOutcome {
    let errors: Vec<&SpecProblem> = problems.iter().filter(|p| p.is_error()).collect();
    let summary = match errors.as_slice() {
        [] => "the spec does not validate".to_string(),
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} (and {} more)", rest.len()),
    };
    let mut status = current.clone();
    let changed_condition = set_condition(
        &mut status.conditions,
        ConditionUpdate {
            kind: ConditionType::InvalidSpec,
            status: true,
            reason: reason::INVALID_SPEC.to_string(),
            message: summary.clone(),
        },
        generation,
        now,
    );
    status.message = Some(summary.clone());
    status.observed_generation = generation;
    let event = changed_condition.then(|| RolloutEvent {
        warning: true,
        reason: reason::INVALID_SPEC.to_string(),
        note: truncate(&all_problems(&errors), 1024),
        action: action::VALIDATE.to_string(),
    });
    InvalidSpecOutcome {
        changed: status != *current,
        status,
        event,
    }
}

/// The status once the spec of `generation` validates: `InvalidSpec` False
/// (a transition only if it was True). The message is left to the controller.
pub fn valid_spec(current: &RolloutStatus, generation: Option<i64>, now: &Time) -> RolloutStatus {
    let mut status = current.clone();
    set_condition(
        &mut status.conditions,
        ConditionUpdate {
            kind: ConditionType::InvalidSpec,
            status: false,
            reason: reason::SPEC_VALID.to_string(),
            message: "the spec validates".to_string(),
        },
        generation,
        now,
    );
    status.observed_generation = generation;
    status
}

fn all_problems(errors: &[&SpecProblem]) -> String {
    errors
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Cuts `text` to at most `max` bytes on a character boundary.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub(1);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end.saturating_sub(2)])
}
