//! What an alert says: one sink-neutral message built from a decision, the
//! rollout's state before it and its deploy file. Pure; no I/O.

use serde::{Deserialize, Serialize};

use crate::engine::{Action, Alert, AlertEvent, DecisionRecord, Reason, RolloutState, Timestamp};
use crate::spec::model::{AlertSeverity, DeploySpec, RolloutId};
use crate::spec::units::{Weight, format_duration};

/// An alert as every sink renders it; stored in the outbox, so a restart
/// sends exactly what the decision said.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertMessage {
    /// Unique per rollout, decision and event: the idempotency key.
    pub id: String,
    /// The rollout (its name is the service).
    pub rollout: RolloutId,
    /// What happened.
    pub event: AlertEvent,
    /// How loud it is.
    pub severity: AlertSeverity,
    /// About a shadow decision: canaryd only says what it would have done
    /// (the title starts with `[shadow]`).
    #[serde(default)]
    pub shadow: bool,
    /// One line: `checkout: v3 rolled back to v2`.
    pub title: String,
    /// Why, as a sentence.
    pub reason: String,
    /// The stable version (after a rollback: still serving).
    pub stable_version: String,
    /// The canary version concerned.
    pub canary_version: String,
    /// 1-based step at the decision.
    pub step: usize,
    /// Number of steps.
    pub steps: usize,
    /// Canary weight when the decision was taken (before a rollback's cut).
    pub weight: Weight,
    /// Canary weight after it.
    pub weight_after: Weight,
    /// The gate behind the decision, when one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateSummary>,
    /// The decision's sequence number in the rollout's log.
    pub seq: u64,
    /// When the decision was taken.
    pub at: Timestamp,
    /// The rollout's dashboard page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboard_url: Option<String>,
}

/// The breached (or inconclusive) gate, with the numbers and the query.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateSummary {
    /// `error_rate < 2%`.
    pub name: String,
    /// The canary's value in the gate's unit (`31.2%`), or `-`.
    pub value: String,
    /// The stable version's value over the same window, when measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_value: Option<String>,
    /// The threshold as written.
    pub threshold: String,
    /// The range each query covers (`1m`).
    pub window: String,
    /// The PromQL behind the value.
    pub query: String,
    /// Why it could not be judged, for an inconclusive gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inconclusive: Option<String>,
    /// For a gate judged on counts, what the verdict rests on:
    /// `31% errors over 240 requests since 12:03:10 (99.75% lower bound 22%)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
}

/// The idempotency key of an alert: `namespace/name/seq/event`.
pub fn alert_id(rollout: &RolloutId, alert: &Alert) -> String {
    format!(
        "{}/{}/{}/{}",
        rollout.namespace,
        rollout.name,
        alert.seq,
        alert.event.name()
    )
}

/// The dashboard page of a rollout under `base` (`http://host:9900`).
pub fn dashboard_url(base: &str, rollout: &RolloutId) -> String {
    format!(
        "{}/rollouts/{}/{}",
        base.trim_end_matches('/'),
        rollout.namespace,
        rollout.name
    )
}

/// The message of `alert`, raised by `record`; `before` is the state the
/// decision started from.
pub fn build(
    spec: &DeploySpec,
    before: &RolloutState,
    record: &DecisionRecord,
    alert: &Alert,
    dashboard_base: Option<&str>,
) -> AlertMessage {
    let (stable, canary) = (&record.stable_version, &record.canary_version);
    let steps = spec.strategy.steps.len();
    let title = if alert.shadow {
        shadow_title(spec, record, alert.event)
    } else {
        title(spec, record, alert.event)
    };
    // A promotion finalizes: the record's stable is the canary by then.
    let stable_version = if record.action == Action::Promote {
        before.stable_version.clone()
    } else {
        stable.clone()
    };
    AlertMessage {
        id: alert_id(&spec.id, alert),
        rollout: spec.id.clone(),
        event: alert.event,
        severity: alert.severity,
        shadow: alert.shadow,
        title,
        reason: record.reason.clone(),
        stable_version,
        canary_version: canary.clone(),
        step: record.step,
        steps,
        weight: before.weight,
        weight_after: record.weight,
        gate: gate_summary(spec, record),
        seq: record.seq,
        at: record.at,
        dashboard_url: dashboard_base.map(|b| dashboard_url(b, &spec.id)),
    }
}

/// The title of an alert about a shadow decision: what canaryd would have done.
fn shadow_title(spec: &DeploySpec, record: &DecisionRecord, event: AlertEvent) -> String {
    let service = &spec.id.name;
    let (stable, canary) = (&record.stable_version, &record.canary_version);
    let steps = spec.strategy.steps.len();
    let what = match event {
        AlertEvent::Started => format!(
            "watching canary {canary} (would start it at {})",
            record.weight
        ),
        AlertEvent::StepAdvanced => format!(
            "{canary} would advance to step {}/{steps} ({})",
            record.step, record.weight
        ),
        AlertEvent::Paused => format!("{canary} would pause at step {}/{steps}", record.step),
        AlertEvent::Promoted => format!("{canary} would be promoted"),
        AlertEvent::RolledBack => format!("{canary} would be rolled back to {stable}"),
        AlertEvent::Aborted => format!("{canary} no longer watched (aborted)"),
    };
    format!("[shadow] {service}: {what}")
}

/// The title of an alert about a decision canaryd carried out.
fn title(spec: &DeploySpec, record: &DecisionRecord, event: AlertEvent) -> String {
    let service = &spec.id.name;
    let (stable, canary) = (&record.stable_version, &record.canary_version);
    let steps = spec.strategy.steps.len();
    match event {
        AlertEvent::Started => {
            format!("{service}: canary {canary} started at {}", record.weight)
        }
        AlertEvent::StepAdvanced => format!(
            "{service}: {canary} advanced to step {}/{steps} ({})",
            record.step, record.weight
        ),
        AlertEvent::Paused => format!(
            "{service}: {canary} paused at step {}/{steps} ({})",
            record.step, record.weight
        ),
        AlertEvent::Promoted => format!("{service}: {canary} promoted, now the stable version"),
        AlertEvent::RolledBack => format!("{service}: {canary} rolled back to {stable}"),
        AlertEvent::Aborted => format!("{service}: {canary} aborted, traffic back on {stable}"),
    }
}

/// The gate the decision's reason names, looked up among the judged gates.
fn gate_summary(spec: &DeploySpec, record: &DecisionRecord) -> Option<GateSummary> {
    let name = match &record.detail {
        Reason::AbortCondition { gate, .. }
        | Reason::PromotionGate { gate, .. }
        | Reason::Inconclusive { gate, .. }
        | Reason::AwaitingEvidence { gate, .. }
        | Reason::NotEnoughEvidence { gate, .. } => gate,
        _ => return None,
    };
    let result = record.gates.iter().find(|g| &g.name == name)?;
    Some(GateSummary {
        name: result.name.clone(),
        value: result.shown.clone(),
        stable_value: result
            .stable_value
            .zip(result.gate.resolve(spec))
            .map(|(v, gate)| gate.unit.format(v)),
        threshold: result.threshold.clone(),
        window: format_duration(spec.strategy.analysis.window),
        query: result.query.clone(),
        inconclusive: result.inconclusive().map(ToString::to_string),
        evidence: result.evidence.as_ref().map(ToString::to_string),
    })
}
