//! One tick: reconcile the version, count watched time, judge the gates, and
//! apply BRIEF §3's rules in a fixed order — abort conditions, then
//! inconclusive data, then promotion gates, then step completion (at the
//! step's `duration`, or earlier with `min_duration` once every promotion
//! gate has passed on conclusive evidence).

use std::time::Duration;

use super::draft::Draft;
use super::effect::{Action, Reason};
use super::evidence::{self, TickContext};
use super::observation::{GateRef, Inconclusive, Observation, active_gates};
use super::state::RolloutState;
use super::state::{PauseReason, Phase};
use super::verdict::{GateResult, Verdict};
use crate::spec::model::{DeploySpec, Judged, NoDataPolicy, Step};
use crate::spec::units::Weight;

/// How many intervals one tick may add to a step's watched time. A longer gap
/// means canaryd was not watching (down, or stalled), and that time is not counted.
const MAX_TICK_GAP_INTERVALS: u32 = 2;

pub(super) fn tick<'a>(mut d: Draft<'a>, obs: &Observation) -> Draft<'a> {
    d = judge_and_apply(d, obs);
    // Raise the weight only now, and only while progressing: a rollback decided on
    // the same tick never sends traffic before cutting it, and a paused rollout
    // holds the weight it has — except one paused for missing data at weight 0
    // because its canary was not ready: ready again, it gets its step's weight
    // back, or no data could ever return to resume it.
    let waiting_for_data = d.state.phase == Phase::Paused
        && d.state.pause == Some(PauseReason::NoData)
        && d.state.weight == Weight::ZERO;
    if (d.state.phase == Phase::Progressing || waiting_for_data) && obs.canary_ready {
        let w = d.step_weight();
        d.set_weight(w);
    }
    d
}

/// Whether the tick could read what its gates judge: the canary's counters
/// when the spec has evidence gates, else at least one reading that is not a
/// Prometheus failure. Watched time counts only then.
fn measured(spec: &DeploySpec, obs: &Observation) -> bool {
    if super::observation::counts_needed_by(spec).is_some() {
        return obs
            .counts
            .as_ref()
            .is_some_and(|c| c.canary.snapshot.is_ok());
    }
    obs.measurements.is_empty()
        || obs.measurements.iter().any(|m| {
            !matches!(
                m.canary.value,
                Err(Inconclusive::ProviderError { .. } | Inconclusive::Timeout)
            )
        })
}

fn judge_and_apply<'a>(mut d: Draft<'a>, obs: &Observation) -> Draft<'a> {
    if reconcile_version(&mut d, obs.canary_ready) {
        // This tick's counter reads are the new canary's baseline: its first
        // interval at the step's weight is counted from here.
        d.state.evidence.baseline(obs);
        return d;
    }
    if !d.state.phase.in_flight() {
        return d;
    }
    let analysis = d.spec.strategy.analysis.clone();
    // An edited file may have fewer steps now.
    d.state.step = d
        .state
        .step
        .min(d.spec.strategy.steps.len().saturating_sub(1));

    // Watched time: only while progressing with the step's weight applied,
    // the canary still ready, and the tick's data read (not while Prometheus
    // is down).
    let step_weight = d.step_weight();
    let interval_start = d.state.last_tick.unwrap_or(d.now);
    let had_traffic = d.state.weight > Weight::ZERO;
    if let Some(last) = d.state.last_tick {
        let gap = d
            .now
            .since(last)
            .min(analysis.interval * MAX_TICK_GAP_INTERVALS);
        if obs.canary_ready
            && d.state.phase == Phase::Progressing
            && d.state.weight == step_weight
            // With `no_data: ignore` missing data is let through, its time too.
            && (measured(d.spec, obs) || analysis.no_data == NoDataPolicy::Ignore)
        {
            d.state.step_elapsed += gap;
        }
    }
    d.state.last_tick = Some(d.now);

    // Never route to a canary that is not ready (the weight is raised again at
    // the end of a tick that finds it ready).
    if !obs.canary_ready {
        d.set_weight(Weight::ZERO);
    }

    let gates = active_gates(d.spec, &d.state);
    let tick = TickContext {
        now: d.now,
        since: interval_start,
        had_traffic,
    };
    d.gates = evidence::judge_all(&mut d.state.evidence, d.spec, &gates, obs, &tick);

    if abort_conditions(&mut d, analysis.consecutive_breaches) {
        return d;
    }
    // A conclusive failure counts even when another gate is inconclusive.
    let was_progressing = d.state.phase == Phase::Progressing;
    if was_progressing && promotion_gates(&mut d) {
        return d;
    }
    let watching_data = d.state.phase == Phase::Progressing
        || matches!(
            d.state.pause,
            Some(PauseReason::NoData | PauseReason::Evidence)
        );
    if !watching_data {
        return d; // paused by a person (or instead of a rollback): only abort conditions apply
    }
    let ignore_inconclusive =
        match inconclusive(&mut d, analysis.inconclusive_limit, analysis.no_data) {
            Flow::Stop => return d,
            Flow::Continue { ignored } => ignored,
        };
    if d.state.phase != Phase::Progressing {
        return d;
    }
    // Resumed on this tick (data returned): its promotion gates count too, so
    // a failing gate never completes the step it resumed.
    if !was_progressing && promotion_gates(&mut d) {
        return d;
    }
    let Some(step) = d.spec.strategy.steps.get(d.state.step) else {
        return d;
    };
    let duration = step.duration.unwrap_or(Duration::ZERO);
    let watched = d.state.step_elapsed >= duration && d.state.step_elapsed > Duration::ZERO;
    let early = !watched && passed_early(&d, step);
    // A step completes only once the canary has had a whole window of
    // traffic (so missing data has been judged at least once).
    if !(watched || early)
        || d.state.weight != step_weight
        || ignore_inconclusive_blocks(&d, ignore_inconclusive)
        || !d.state.evidence.warm(d.now, analysis.window)
    {
        return d;
    }
    let number = d.state.step + 1;
    if early {
        let reason = Reason::StepPassedEarly {
            step: number,
            watched_seconds: d.state.step_elapsed.as_secs(),
            duration_seconds: duration.as_secs(),
        };
        if d.is_last_step() {
            d.promote(reason);
        } else {
            d.advance(reason);
        }
        return d;
    }
    if let Some(open) = d
        .gates
        .iter()
        .find(|g| matches!(g.gate, GateRef::Promotion { .. }) && g.undecided())
    {
        let gate = open.name.clone();
        let evidence = open.value_with_evidence();
        let extension = analysis.max_extension_for(step);
        let waited = d.state.step_elapsed.saturating_sub(duration);
        if waited < extension {
            if !d.state.counters.waiting {
                d.state.counters.waiting = true;
                let phase = d.state.phase;
                let reason = Reason::AwaitingEvidence {
                    step: number,
                    gate,
                    evidence,
                    extension_seconds: extension.saturating_sub(waited).as_secs(),
                };
                d.record(phase, Action::Hold, reason);
            }
            return d;
        }
        let reason = Reason::NotEnoughEvidence {
            step: number,
            gate,
            evidence,
        };
        match analysis.no_data {
            NoDataPolicy::Hold => {
                d.pause(PauseReason::Evidence, reason);
                return d;
            }
            NoDataPolicy::Rollback => {
                d.rollback(reason);
                return d;
            }
            NoDataPolicy::Ignore => {
                let phase = d.state.phase;
                d.record(phase, Action::IgnoreNoData, reason);
            }
        }
    }
    let reason = Reason::StepPassed { step: number };
    if d.is_last_step() {
        d.promote(reason);
    } else {
        d.advance(reason);
    }
    d
}

/// Early success (`min_duration`): the step has been watched for at least
/// its `min_duration`, nothing is inconclusive on this tick (whatever
/// `no_data` says), and every promotion gate of the step has passed on
/// conclusive evidence (a pass is locked for the step). Gates judged on
/// single readings never give that evidence: they keep the step to its
/// `duration`. The warm-up and the step's weight are checked by the caller.
fn passed_early(d: &Draft<'_>, step: &Step) -> bool {
    let Some(min) = step.min_duration else {
        return false;
    };
    let elapsed = d.state.step_elapsed;
    if elapsed < min || elapsed == Duration::ZERO {
        return false;
    }
    if d.gates.iter().any(|g| g.inconclusive().is_some()) {
        return false;
    }
    let promotion: Vec<&GateResult> = d
        .gates
        .iter()
        .filter(|g| matches!(g.gate, GateRef::Promotion { .. }))
        .collect();
    !promotion.is_empty()
        && promotion.len() == step.gates.len()
        && promotion
            .iter()
            .all(|g| g.verdict == Verdict::Pass && d.state.evidence.passed(g.gate))
}

/// With `no_data: ignore`, inconclusive gates do not block; otherwise a step
/// never completes on a tick where anything was inconclusive.
fn ignore_inconclusive_blocks(d: &Draft<'_>, ignored: bool) -> bool {
    !ignored && d.gates.iter().any(|g| g.inconclusive().is_some())
}

/// The canary version the file asks to roll out, if any (neither the stable
/// version nor the one just promoted).
pub(super) fn wanted_version(spec: &DeploySpec, state: &RolloutState) -> Option<String> {
    let target = &spec.canary.version;
    (target != &spec.stable.version && target != &state.stable_version).then(|| target.clone())
}

/// Starts, supersedes or leaves the rollout according to the file's canary
/// version. Returns true when it took this tick's decision.
fn reconcile_version(d: &mut Draft<'_>, canary_ready: bool) -> bool {
    let spec = d.spec;
    let target = &spec.canary.version;
    let wanted = wanted_version(spec, &d.state);
    match d.state.phase {
        Phase::Idle | Phase::Promoted | Phase::RolledBack | Phase::Aborted => {
            // A rolled-back or aborted version is not restarted by itself: `retry` does that.
            let finished = match d.state.phase {
                Phase::RolledBack | Phase::Aborted => d.state.canary_version.clone(),
                _ => None,
            };
            match wanted {
                Some(v) if Some(&v) != finished.as_ref() => {
                    d.start_new_version(v, canary_ready);
                    true
                }
                _ => false,
            }
        }
        Phase::Progressing | Phase::Paused => {
            let current = d.state.canary_version.clone().unwrap_or_default();
            if &current == target {
                return false;
            }
            // Superseded: stop the old canary's traffic first, then start the new one.
            let from = d.state.phase;
            d.cut_traffic_first();
            let reason = Reason::Superseded {
                old: current,
                new: target.clone(),
            };
            match wanted {
                Some(v) => {
                    d.record(from, Action::Supersede, reason);
                    d.start_new_version(v, canary_ready);
                }
                None => {
                    d.state.phase = Phase::Idle;
                    d.state.pause = None;
                    d.state.since = d.now;
                    d.record(from, Action::Supersede, reason);
                }
            }
            true
        }
    }
}

/// Returns true when a rollback (or its pause) was decided.
fn abort_conditions(d: &mut Draft<'_>, limit: u32) -> bool {
    let aborts: Vec<&GateResult> = d
        .gates
        .iter()
        .filter(|g| matches!(g.gate, GateRef::Abort(_)))
        .collect();
    let breached = aborts.iter().find(|g| g.failed()).map(|g| {
        (
            g.name.clone(),
            g.shown.clone(),
            g.threshold.clone(),
            g.evidence.as_ref().map(|e| e.to_string()),
        )
    });
    let all_pass = aborts
        .iter()
        .all(|g| !g.failed() && g.inconclusive().is_none());
    match breached {
        Some((gate, value, threshold, evidence)) => {
            d.state.counters.breaches += 1;
            let breaches = d.state.counters.breaches;
            let reason = Reason::AbortCondition {
                gate,
                value,
                threshold,
                breaches,
                limit,
                evidence,
            };
            d.rollback_at_limit(breaches >= limit, reason);
            true
        }
        None => {
            // Inconclusive ticks neither extend nor break a run of breaches.
            if all_pass {
                d.state.counters.breaches = 0;
            }
            false
        }
    }
}

enum Flow {
    Stop,
    Continue { ignored: bool },
}

fn inconclusive(d: &mut Draft<'_>, limit: u32, policy: NoDataPolicy) -> Flow {
    let Some(first) = d.gates.iter().find(|g| g.inconclusive().is_some()) else {
        d.state.counters.inconclusive = 0;
        if d.state.pause == Some(PauseReason::NoData) {
            d.resume(Reason::DataReturned);
        }
        let all_passed = d
            .gates
            .iter()
            .filter(|g| matches!(g.gate, GateRef::Promotion { .. }))
            .all(|g| g.verdict == Verdict::Pass);
        if d.state.pause == Some(PauseReason::Evidence) && all_passed {
            d.resume(Reason::EvidenceArrived);
        }
        return Flow::Continue { ignored: false };
    };
    let gate = first.name.clone();
    let why = first
        .inconclusive()
        .cloned()
        .unwrap_or(super::observation::Inconclusive::NotMeasured);
    d.state.counters.inconclusive = d.state.counters.inconclusive.saturating_add(1);
    let ticks = d.state.counters.inconclusive;
    if d.state.phase == Phase::Paused {
        return Flow::Stop; // already holding for data
    }
    let reason = Reason::Inconclusive {
        gate,
        why,
        ticks,
        limit,
    };
    let phase = d.state.phase;
    if ticks < limit {
        d.record(phase, Action::Hold, reason);
        return Flow::Stop;
    }
    match policy {
        NoDataPolicy::Hold => {
            d.pause(PauseReason::NoData, reason);
            Flow::Stop
        }
        NoDataPolicy::Rollback => {
            d.rollback(reason);
            Flow::Stop
        }
        NoDataPolicy::Ignore => {
            d.record(phase, Action::IgnoreNoData, reason);
            Flow::Continue { ignored: true }
        }
    }
}

/// Counts a failed promotion gate; returns true when the tick's decision is taken.
fn promotion_gates(d: &mut Draft<'_>) -> bool {
    let failed = d
        .gates
        .iter()
        .find(|g| matches!(g.gate, GateRef::Promotion { .. }) && g.failed())
        .map(|g| {
            (
                g.gate,
                g.name.clone(),
                g.shown.clone(),
                g.threshold.clone(),
                g.evidence.as_ref().map(|e| e.to_string()),
            )
        });
    let Some((r, gate, value, threshold, evidence)) = failed else {
        return false;
    };
    let judged = r.resolve(d.spec).map_or(Judged::Reading, |g| g.judged);
    let limit = d.spec.strategy.analysis.failure_limit_for(judged);
    d.state.counters.failures += 1;
    let failures = d.state.counters.failures;
    let reason = Reason::PromotionGate {
        gate,
        value,
        threshold,
        failures,
        limit,
        evidence,
    };
    d.rollback_at_limit(failures >= limit, reason);
    true
}
