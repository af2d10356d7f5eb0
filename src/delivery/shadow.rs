//! The shadow summary of one rollout, from its decision log (pure): the
//! releases canaryd watched in shadow mode, what it would have done with
//! each, the evidence behind a would-be rollback, and how long it took to
//! reach that verdict.
//!
//! A release is the span from a shadow `start` (or `retry`) record to the
//! first record that ends it: `would promote`, `would roll back`, an abort
//! or a supersede. Records of active releases are not in it.

use serde::Serialize;

use crate::engine::{Action, DecisionRecord, Timestamp};

/// What canaryd would have done with a watched release.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShadowVerdict {
    /// Every step passed: it would have promoted the canary.
    WouldPromote,
    /// A gate convicted the canary: it would have rolled it back.
    WouldRollBack,
    /// A person stopped watching it (`abort`).
    Aborted,
    /// A newer version replaced it before a verdict.
    Superseded,
    /// Still being watched.
    Watching,
}

/// A gate's evidence behind a verdict.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GateEvidence {
    /// `error_rate > 2%`.
    pub gate: String,
    /// The canary's value as shown (`3.1%`).
    pub value: String,
    /// The threshold as written.
    pub threshold: String,
    /// What the verdict rests on, for a gate judged on counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
}

/// One release watched in shadow.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ShadowRelease {
    /// The canary version.
    pub version: String,
    /// When canaryd began watching it (unknown when the log read begins later).
    pub started: Option<Timestamp>,
    /// What canaryd would have done.
    pub verdict: ShadowVerdict,
    /// When it reached the verdict.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict_at: Option<Timestamp>,
    /// Seconds from the start to the verdict.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_to_verdict_seconds: Option<f64>,
    /// The verdict's reason: `would roll back: …`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The failed gates behind a would-be rollback.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<GateEvidence>,
}

/// A rollout's shadow summary.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ShadowSummary {
    /// Releases watched in shadow (in the log read).
    pub releases_watched: usize,
    /// Of those, the ones canaryd would have rolled back.
    pub would_roll_back: usize,
    /// Of those, the ones canaryd would have promoted.
    pub would_promote: usize,
    /// Every release watched, oldest first.
    pub releases: Vec<ShadowRelease>,
}

/// The summary of one rollout's `records` (any order; taken by sequence number).
pub fn summary(records: &[DecisionRecord]) -> ShadowSummary {
    let mut records: Vec<&DecisionRecord> = records.iter().filter(|r| r.shadow).collect();
    records.sort_by_key(|r| r.seq);
    let mut releases: Vec<ShadowRelease> = Vec::new();
    let mut open: Option<ShadowRelease> = None;
    for r in records {
        match r.action {
            Action::Start | Action::Retry => {
                if let Some(o) = open.take() {
                    releases.push(close(o, ShadowVerdict::Superseded, r));
                }
                open = Some(ShadowRelease {
                    version: r.canary_version.clone(),
                    started: Some(r.at),
                    verdict: ShadowVerdict::Watching,
                    verdict_at: None,
                    time_to_verdict_seconds: None,
                    reason: None,
                    evidence: Vec::new(),
                });
            }
            action if action.is_verdict() => {
                let o = open.take().unwrap_or_else(|| ShadowRelease {
                    version: r.canary_version.clone(),
                    started: None,
                    verdict: ShadowVerdict::Watching,
                    verdict_at: None,
                    time_to_verdict_seconds: None,
                    reason: None,
                    evidence: Vec::new(),
                });
                let verdict = match action {
                    Action::Promote => ShadowVerdict::WouldPromote,
                    Action::Rollback => ShadowVerdict::WouldRollBack,
                    Action::Abort => ShadowVerdict::Aborted,
                    _ => ShadowVerdict::Superseded,
                };
                releases.push(close(o, verdict, r));
            }
            _ => {}
        }
    }
    releases.extend(open);
    ShadowSummary {
        releases_watched: releases.len(),
        would_roll_back: count(&releases, ShadowVerdict::WouldRollBack),
        would_promote: count(&releases, ShadowVerdict::WouldPromote),
        releases,
    }
}

fn count(releases: &[ShadowRelease], verdict: ShadowVerdict) -> usize {
    releases.iter().filter(|r| r.verdict == verdict).count()
}

/// Ends `release` with `verdict`, taken by `record`.
fn close(
    mut release: ShadowRelease,
    verdict: ShadowVerdict,
    record: &DecisionRecord,
) -> ShadowRelease {
    release.verdict = verdict;
    release.verdict_at = Some(record.at);
    release.time_to_verdict_seconds = release.started.map(|s| record.at.since(s).as_secs_f64());
    release.reason = Some(record.reason.clone());
    if verdict == ShadowVerdict::WouldRollBack {
        release.evidence = record
            .gates
            .iter()
            .filter(|g| g.failed())
            .map(|g| GateEvidence {
                gate: g.name.clone(),
                value: g.shown.clone(),
                threshold: g.threshold.clone(),
                evidence: g.evidence.as_ref().map(ToString::to_string),
            })
            .collect();
    }
    release
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Phase, Reason};
    use crate::spec::units::Weight;

    fn record(seq: u64, secs: u64, action: Action, version: &str, shadow: bool) -> DecisionRecord {
        let detail = Reason::NewVersion {
            version: version.into(),
        };
        DecisionRecord {
            seq,
            at: Timestamp::from_millis(1_800_000_000_000 + secs * 1000),
            from: Phase::Progressing,
            to: Phase::Progressing,
            action,
            reason: format!("{} {version}", action.would()),
            detail,
            step: 1,
            weight: Weight::ZERO,
            stable_version: "v1".into(),
            canary_version: version.into(),
            gates: Vec::new(),
            shadow,
            by: None,
        }
    }

    #[test]
    fn each_shadow_release_gets_its_verdict_and_the_time_it_took() {
        let records = [
            record(1, 0, Action::Start, "v2", true),
            record(2, 30, Action::Advance, "v2", true),
            record(3, 90, Action::Promote, "v2", true),
            record(4, 100, Action::Start, "v3", true),
            record(5, 112, Action::Rollback, "v3", true),
            record(6, 200, Action::Start, "v4", true),
            record(7, 210, Action::Supersede, "v4", true),
            record(8, 210, Action::Start, "v5", true),
        ];
        let s = summary(&records);
        assert_eq!(
            (s.releases_watched, s.would_promote, s.would_roll_back),
            (4, 1, 1)
        );
        let verdicts: Vec<(&str, ShadowVerdict, Option<f64>)> = s
            .releases
            .iter()
            .map(|r| (r.version.as_str(), r.verdict, r.time_to_verdict_seconds))
            .collect();
        assert_eq!(
            verdicts,
            [
                ("v2", ShadowVerdict::WouldPromote, Some(90.0)),
                ("v3", ShadowVerdict::WouldRollBack, Some(12.0)),
                ("v4", ShadowVerdict::Superseded, Some(10.0)),
                ("v5", ShadowVerdict::Watching, None),
            ]
        );
        assert_eq!(s.releases[1].reason.as_deref(), Some("would roll back v3"));
    }

    #[test]
    fn active_releases_are_not_in_the_shadow_summary() {
        let records = [
            record(1, 0, Action::Start, "v2", false),
            record(2, 60, Action::Rollback, "v2", false),
        ];
        assert_eq!(summary(&records), ShadowSummary::default());
    }
}
