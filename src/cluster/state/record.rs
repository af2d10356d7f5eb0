//! Pure status arithmetic for the cluster store: what a committed decision,
//! a watched-time checkpoint or a delivery attempt does to a Rollout's
//! `status`, and what the decision log and the outbox read back from it.
//! No I/O and no clock: `now` is passed in.
//!
//! Bounds (one Rollout is one etcd object, at most 1.5 MiB): the latest
//! [`MAX_DECISIONS`] records, every undelivered alert and the latest
//! [`MAX_FINISHED_ALERTS`] delivered or given-up ones; past
//! [`MAX_STATUS_BYTES`] the oldest records and finished alerts go first.

use std::hash::{DefaultHasher, Hash, Hasher};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::{Deserialize, Serialize};

use crate::cluster::crd::conditions::{ConditionType, ConditionUpdate, set_condition};
use crate::cluster::crd::{LastDecision, RolloutPhase, RolloutStatus};
use crate::engine::{AlertEvent, DecisionRecord, Phase, RolloutState, Timestamp};
use crate::notify::{AlertMessage, sink_key};
use crate::ports::{
    Change, Checkpoint, Delivery, DeliveryState, DeliveryStatus, PendingDelivery, StoreError,
};
use crate::spec::model::{AlertSink, RolloutId};

/// Decision records a status keeps (the API's `decisions` returns at most these).
pub const MAX_DECISIONS: usize = 50;
/// Delivered or given-up alerts a status keeps besides the undelivered ones.
pub const MAX_FINISHED_ALERTS: usize = 50;
/// Past this serialized size, older records and finished alerts are dropped
/// (down to [`MIN_DECISIONS`]), far below etcd's 1.5 MiB per object.
pub const MAX_STATUS_BYTES: usize = 512 * 1024;
/// Records kept whatever the size.
pub const MIN_DECISIONS: usize = 10;

/// One alert to one sink, as the status keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxEntry {
    /// The decision that raised it.
    pub seq: u64,
    /// The event.
    pub event: AlertEvent,
    /// The sink's key (`slack:env:SLACK_WEBHOOK_URL`; never a URL).
    pub sink_key: String,
    /// The sink (references to secrets only).
    pub sink: AlertSink,
    /// What it says.
    pub message: AlertMessage,
    /// When it was queued.
    pub queued_at: Timestamp,
    /// Attempts so far.
    pub attempts: u32,
    /// Not before this.
    pub next_attempt_at: Timestamp,
    /// When the receiver accepted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<Timestamp>,
    /// When it was given up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gave_up_at: Option<Timestamp>,
    /// The last failure (no secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl OutboxEntry {
    /// Not yet delivered nor given up.
    pub fn open(&self) -> bool {
        self.delivered_at.is_none() && self.gave_up_at.is_none()
    }

    fn same(&self, other: &OutboxEntry) -> bool {
        self.seq == other.seq && self.event == other.event && self.sink_key == other.sink_key
    }

    /// The notifier's handle of this delivery: stable across replicas (a
    /// hash of rollout, decision, event and sink), positive.
    pub fn handle(&self, id: &RolloutId) -> i64 {
        let mut h = DefaultHasher::new();
        (
            &id.namespace,
            &id.name,
            self.seq,
            self.event.name(),
            &self.sink_key,
        )
            .hash(&mut h);
        i64::try_from(h.finish() >> 1).unwrap_or(i64::MAX)
    }

    /// As the API shows it.
    pub fn status(&self) -> DeliveryStatus {
        let state = match (self.delivered_at, self.gave_up_at) {
            (Some(_), _) => DeliveryState::Delivered,
            (None, Some(_)) => DeliveryState::GaveUp,
            (None, None) => DeliveryState::Pending,
        };
        DeliveryStatus {
            seq: self.seq,
            event: self.event,
            sink: self.sink_key.clone(),
            title: self.message.title.clone(),
            state,
            attempts: self.attempts,
            queued_at: self.queued_at,
            delivered_at: self.delivered_at,
            last_error: self.last_error.clone(),
        }
    }
}

fn corrupt(what: &'static str, e: serde_json::Error) -> StoreError {
    StoreError::Corrupt {
        what,
        message: e.to_string(),
    }
}

fn to_value<T: Serialize>(value: &T) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(value).map_err(|e| corrupt("value", e))
}

/// The engine state a status holds, if any.
pub fn engine_state(status: &RolloutStatus) -> Result<Option<RolloutState>, StoreError> {
    status
        .engine_state
        .clone()
        .map(|v| serde_json::from_value(v).map_err(|e| corrupt("rollout state", e)))
        .transpose()
}

/// The decision records a status holds, oldest first (an entry this build
/// cannot read is skipped).
pub fn records(status: &RolloutStatus) -> Vec<DecisionRecord> {
    status
        .decisions
        .iter()
        .filter_map(|v| serde_json::from_value(v.clone()).ok())
        .collect()
}

/// The outbox a status holds, in queue order.
pub fn outbox(status: &RolloutStatus) -> Vec<OutboxEntry> {
    status
        .alerts
        .iter()
        .filter_map(|v| serde_json::from_value(v.clone()).ok())
        .collect()
}

/// A change decided from a state older than the stored one: the stored
/// state already holds a decision this change numbers again (a commit whose
/// answer was lost, another writer). Such a change must not be written.
pub fn is_stale(stored: Option<&RolloutState>, change: &Change) -> bool {
    let Some(stored) = stored else {
        return false;
    };
    match change.records.first() {
        Some(first) => stored.decisions >= first.seq,
        None => stored.decisions > change.state.decisions,
    }
}

/// Kubernetes' time of an engine timestamp.
pub fn kube_time(t: Timestamp) -> Time {
    let ms = i64::try_from(t.millis()).unwrap_or(i64::MAX);
    Time(k8s_openapi::jiff::Timestamp::from_millisecond(ms).unwrap_or_default())
}

/// The phase as the status spells it.
pub fn phase(p: Phase) -> RolloutPhase {
    match p {
        Phase::Idle => RolloutPhase::Idle,
        Phase::Progressing => RolloutPhase::Progressing,
        Phase::Paused => RolloutPhase::Paused,
        Phase::Promoted => RolloutPhase::Promoted,
        Phase::RolledBack => RolloutPhase::RolledBack,
        Phase::Aborted => RolloutPhase::Aborted,
    }
}

/// Writes a committed change into `status`: the engine state, what people
/// read, the phase conditions, new records and deliveries (each once), then
/// the bounds. The caller has checked [`is_stale`].
pub fn apply_change(
    status: &mut RolloutStatus,
    change: &Change,
    now: Timestamp,
) -> Result<(), StoreError> {
    let state = &change.state;
    status.engine_state = Some(to_value(state)?);
    status.phase = Some(phase(state.phase));
    status.step = u32::try_from(state.step + 1).ok();
    status.weight = Some(state.weight.percent());
    status.stable_version = Some(state.stable_version.clone());
    status.canary_version = state.canary_version.clone();
    let time = kube_time(now);
    for update in phase_conditions(state) {
        set_condition(
            &mut status.conditions,
            update,
            status.observed_generation,
            &time,
        );
    }
    let mut known = records(status);
    for r in &change.records {
        if known.iter().all(|k| k.seq != r.seq) {
            status.decisions.push(to_value(r)?);
            known.push(r.clone());
        }
    }
    if let Some(last) = change.records.last() {
        status.message = Some(last.reason.clone());
        status.last_decision = Some(LastDecision {
            at: kube_time(last.at),
            action: last.action.to_string(),
            reason: last.reason.clone(),
        });
    }
    let mut queued = outbox(status);
    for d in &change.deliveries {
        let entry = OutboxEntry {
            seq: d.seq,
            event: d.event,
            sink_key: sink_key(&d.sink),
            sink: d.sink.clone(),
            message: d.message.clone(),
            queued_at: now,
            attempts: 0,
            next_attempt_at: now,
            delivered_at: None,
            gave_up_at: None,
            last_error: None,
        };
        if queued.iter().all(|q| !q.same(&entry)) {
            queued.push(entry);
        }
    }
    status.alerts = queued.iter().map(to_value).collect::<Result<_, _>>()?;
    bound(status)
}

/// The conditions a phase implies.
fn phase_conditions(state: &RolloutState) -> Vec<ConditionUpdate> {
    let name = state.phase.to_string();
    let cond = |kind, on: bool, reason: &str| ConditionUpdate {
        kind,
        status: on,
        reason: reason.to_string(),
        message: format!("the rollout is {name}"),
    };
    let mut out = vec![
        cond(ConditionType::Progressing, state.phase.in_flight(), &name),
        cond(ConditionType::Paused, state.phase == Phase::Paused, &name),
    ];
    // The outcome of the last canary, once there is one.
    match state.phase {
        Phase::Promoted => out.extend([
            cond(ConditionType::Promoted, true, &name),
            cond(ConditionType::RolledBack, false, &name),
        ]),
        Phase::RolledBack | Phase::Aborted => out.extend([
            cond(ConditionType::Promoted, false, &name),
            cond(ConditionType::RolledBack, true, &name),
        ]),
        Phase::Progressing | Phase::Paused | Phase::Idle => {}
    }
    out
}

/// Keeps the status within its bounds: the latest records, every open
/// delivery and the latest finished ones, and the size.
fn bound(status: &mut RolloutStatus) -> Result<(), StoreError> {
    let excess = status.decisions.len().saturating_sub(MAX_DECISIONS);
    status.decisions.drain(..excess);
    let mut entries = outbox(status);
    let finished = entries.iter().filter(|e| !e.open()).count();
    let mut drop = finished.saturating_sub(MAX_FINISHED_ALERTS);
    entries.retain(|e| {
        let gone = drop > 0 && !e.open();
        drop -= usize::from(gone);
        !gone
    });
    status.alerts = entries.iter().map(to_value).collect::<Result<_, _>>()?;
    while serde_json::to_vec(status).map_or(0, |v| v.len()) > MAX_STATUS_BYTES {
        if status.decisions.len() > MIN_DECISIONS {
            status.decisions.remove(0);
        } else if let Some(i) = outbox(status).iter().position(|e| !e.open()) {
            status.alerts.remove(i);
        } else {
            break;
        }
    }
    Ok(())
}

/// Checkpoints watched time into the stored engine state; false when the
/// stored state is as new or newer (nothing to write).
pub fn apply_checkpoint(status: &mut RolloutStatus, mark: &Checkpoint) -> Result<bool, StoreError> {
    let Some(mut state) = engine_state(status)? else {
        return Ok(false);
    };
    if state.last_tick.is_some_and(|t| t >= mark.last_tick) {
        return Ok(false);
    }
    state.step_elapsed = mark.step_elapsed;
    state.last_tick = Some(mark.last_tick);
    status.engine_state = Some(to_value(&state)?);
    Ok(true)
}

/// Records how a delivery attempt ended; false when the status has no such
/// delivery.
pub fn apply_delivery(
    status: &mut RolloutStatus,
    id: &RolloutId,
    handle: i64,
    outcome: &Delivery,
    at: Timestamp,
) -> Result<bool, StoreError> {
    let mut entries = outbox(status);
    let Some(entry) = entries.iter_mut().find(|e| e.handle(id) == handle) else {
        return Ok(false);
    };
    entry.attempts += 1;
    match outcome {
        Delivery::Delivered => {
            entry.delivered_at = Some(at);
            entry.last_error = None;
        }
        Delivery::Retry { retry_at, error } => {
            entry.next_attempt_at = *retry_at;
            entry.last_error = Some(error.clone());
        }
        Delivery::GaveUp { error } => {
            entry.gave_up_at = Some(at);
            entry.last_error = Some(error.clone());
        }
    }
    status.alerts = entries.iter().map(to_value).collect::<Result<_, _>>()?;
    bound(status)?;
    Ok(true)
}

/// Each sink's oldest undelivered alert, across rollouts, if it is due by
/// `now`: a later alert never overtakes an earlier one to the same sink.
pub fn due<'a>(
    rollouts: impl Iterator<Item = (RolloutId, &'a RolloutStatus)>,
    now: Timestamp,
    limit: usize,
) -> Vec<PendingDelivery> {
    let mut open: Vec<(RolloutId, OutboxEntry)> = rollouts
        .flat_map(|(id, status)| {
            outbox(status)
                .into_iter()
                .filter(OutboxEntry::open)
                .map(move |e| (id.clone(), e))
        })
        .collect();
    open.sort_by(|(a_id, a), (b_id, b)| {
        (a.queued_at, a_id, a.seq).cmp(&(b.queued_at, b_id, b.seq))
    });
    let mut seen = std::collections::HashSet::new();
    open.into_iter()
        .filter(|(_, e)| seen.insert(e.sink_key.clone()))
        .filter(|(_, e)| e.next_attempt_at <= now)
        .take(limit)
        .map(|(id, e)| PendingDelivery {
            id: e.handle(&id),
            sink_key: e.sink_key.clone(),
            sink: e.sink,
            message: e.message,
            attempts: e.attempts,
        })
        .collect()
}
