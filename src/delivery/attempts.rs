//! The decision log cut into **attempts**: one canary version rolled out
//! once, from its `start` (or `retry`) to its end — promoted, rolled back,
//! aborted, superseded by a newer version, or still in flight.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::engine::evidence::Method;
use crate::engine::{Action, DecisionRecord, Reason, Timestamp};
use crate::spec::model::RolloutId;

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum End {
    /// Promoted (automatically or by hand).
    Promoted,
    /// Rolled back by canaryd.
    RolledBack,
    /// Aborted by a person.
    Aborted,
    /// Replaced by a newer canary version (or cancelled) before it ended.
    Superseded,
    /// Not over at the end of the records read.
    InFlight,
}

/// One canary version rolled out once.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Attempt {
    /// `namespace/name`.
    pub rollout: String,
    /// The canary version.
    pub version: String,
    /// Its `start` or `retry` record's time (unknown when the records read
    /// begin after it).
    pub started: Option<Timestamp>,
    /// Where its lead time counts from: the start of the version's first
    /// attempt when this one is a `retry` of it.
    #[serde(skip)]
    pub lead_from: Option<Timestamp>,
    /// How it ended.
    pub end: End,
    /// When it ended (none in flight).
    pub ended: Option<Timestamp>,
    /// For a rollback: when the fault's evidence begins (see [`fault_start`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault_at: Option<Timestamp>,
}

impl Attempt {
    /// Seconds from its (chain's) start to promotion.
    pub fn lead_time_seconds(&self) -> Option<f64> {
        match (self.end, self.lead_from, self.ended) {
            (End::Promoted, Some(from), Some(at)) => Some(at.since(from).as_secs_f64()),
            _ => None,
        }
    }

    /// Seconds from the fault's evidence to weight 0 (the rollback).
    pub fn time_to_restore_seconds(&self) -> Option<f64> {
        match (self.end, self.fault_at, self.ended) {
            (End::RolledBack, Some(fault), Some(at)) => Some(at.since(fault).as_secs_f64()),
            _ => None,
        }
    }
}

/// An attempt being read.
struct Open {
    version: String,
    started: Option<Timestamp>,
    lead_from: Option<Timestamp>,
    first_failure: Option<Timestamp>,
}

/// Cuts every rollout's records into attempts (records in any order; each
/// rollout's are taken by sequence number).
pub fn attempts(records: &[(RolloutId, DecisionRecord)]) -> Vec<Attempt> {
    let mut by_rollout: BTreeMap<String, Vec<&DecisionRecord>> = BTreeMap::new();
    for (id, r) in records {
        by_rollout.entry(id.to_string()).or_default().push(r);
    }
    let mut out = Vec::new();
    for (rollout, mut records) in by_rollout {
        records.sort_by_key(|r| r.seq);
        one_rollout(&rollout, &records, &mut out);
    }
    out
}

fn one_rollout(rollout: &str, records: &[&DecisionRecord], out: &mut Vec<Attempt>) {
    let mut open: Option<Open> = None;
    let close = |open: Open, end: End, at: Timestamp, fault_at: Option<Timestamp>| Attempt {
        rollout: rollout.to_string(),
        version: open.version,
        started: open.started,
        lead_from: open.lead_from,
        end,
        ended: Some(at),
        fault_at,
    };
    let mut last: Option<Attempt> = None;
    for r in records {
        let unknown_start = || Open {
            version: r.canary_version.clone(),
            started: None,
            lead_from: None,
            first_failure: None,
        };
        match r.action {
            Action::Start | Action::Retry => {
                // A start without the end of the previous one: it was replaced.
                if let Some(o) = open.take() {
                    out.push(close(o, End::Superseded, r.at, None));
                }
                // A retry continues the version's previous attempt: its lead
                // time counts from that attempt's start.
                let lead_from = match (&last, r.action) {
                    (Some(prev), Action::Retry) if prev.version == r.canary_version => {
                        prev.lead_from
                    }
                    _ => Some(r.at),
                };
                open = Some(Open {
                    version: r.canary_version.clone(),
                    started: Some(r.at),
                    lead_from,
                    first_failure: None,
                });
            }
            Action::Promote | Action::Rollback | Action::Abort | Action::Supersede => {
                let o = open.take().unwrap_or_else(unknown_start);
                let (end, fault_at) = match r.action {
                    Action::Promote => (End::Promoted, None),
                    Action::Rollback => {
                        let fault = fault_start(r).or(o.first_failure).unwrap_or(r.at);
                        (End::RolledBack, Some(fault))
                    }
                    Action::Abort => (End::Aborted, None),
                    _ => (End::Superseded, None),
                };
                let attempt = close(o, end, r.at, fault_at);
                last = Some(attempt.clone());
                out.push(attempt);
            }
            Action::Advance => {
                // A step passed its gates: an earlier failure was not the fault.
                let o = open.get_or_insert_with(unknown_start);
                o.first_failure = None;
            }
            _ => {
                let o = open.get_or_insert_with(unknown_start);
                if o.first_failure.is_none() && failing(r) {
                    o.first_failure = Some(r.at);
                }
            }
        }
    }
    if let Some(o) = open {
        out.push(Attempt {
            rollout: rollout.to_string(),
            version: o.version,
            started: o.started,
            lead_from: o.lead_from,
            end: End::InFlight,
            ended: None,
            fault_at: None,
        });
    }
}

/// Where the fault's evidence begins, by the rollback record alone: the
/// earliest `since` of its failed gates judged by a change detector (abort
/// conditions on counts), which is when the data that convicted it starts.
pub fn fault_start(rollback: &DecisionRecord) -> Option<Timestamp> {
    rollback
        .gates
        .iter()
        .filter(|g| g.failed())
        .filter_map(|g| g.evidence.as_ref())
        .filter(|e| e.method == Method::Detector)
        .map(|e| e.since)
        .min()
}

/// A record that counts a failure: a breach, a failed promotion gate, data
/// that could not be judged, or a gate that failed on its tick.
fn failing(r: &DecisionRecord) -> bool {
    matches!(
        r.detail,
        Reason::AbortCondition { .. }
            | Reason::PromotionGate { .. }
            | Reason::Inconclusive { .. }
            | Reason::NotEnoughEvidence { .. }
    ) || r.gates.iter().any(|g| g.failed())
}
