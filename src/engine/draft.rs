//! The next state under construction, and the transitions every rule shares
//! (start, advance, promote, roll back, pause), each emitting its effects in
//! the order BRIEF §3 fixes.

use std::time::Duration;

use super::Decision;
use super::effect::{Action, Alert, AlertEvent, DecisionRecord, Effect, Reason};
use super::state::{Counters, PauseReason, Phase, RolloutState};
use super::time::Timestamp;
use super::verdict::GateResult;
use crate::spec::model::DeploySpec;
use crate::spec::units::Weight;

/// A decision being built.
pub(super) struct Draft<'a> {
    pub spec: &'a DeploySpec,
    pub state: RolloutState,
    pub now: Timestamp,
    /// Gates judged on this tick, copied into every record.
    pub gates: Vec<GateResult>,
    /// Who issued the command decided on, copied into every record.
    by: Option<String>,
    effects: Vec<Effect>,
}

impl<'a> Draft<'a> {
    pub fn new(spec: &'a DeploySpec, state: &RolloutState, now: Timestamp) -> Draft<'a> {
        Draft {
            spec,
            state: state.clone(),
            now,
            gates: Vec::new(),
            by: None,
            effects: Vec::new(),
        }
    }

    /// The same draft, its records saying who issued the command.
    pub fn by(self, by: Option<String>) -> Draft<'a> {
        Draft { by, ..self }
    }

    /// The weight of the current step.
    pub fn step_weight(&self) -> Weight {
        self.spec
            .strategy
            .steps
            .get(self.state.step)
            .map_or(Weight::FULL, |s| s.weight)
    }

    /// True on the last step.
    pub fn is_last_step(&self) -> bool {
        self.state.step + 1 >= self.spec.strategy.steps.len()
    }

    /// True when this decision acts on traffic; false in shadow mode, where
    /// the state moves exactly as when acting but no traffic effect is emitted.
    pub fn acting(&self) -> bool {
        !self.state.shadow()
    }

    /// Asks the router for `weight` if it differs from what it holds (in
    /// shadow, only remembers it as the weight canaryd would have set).
    pub fn set_weight(&mut self, weight: Weight) {
        if self.state.weight != weight {
            self.state.weight = weight;
            if self.acting() {
                self.effects.push(Effect::SetWeight { weight });
            }
        }
    }

    /// Cuts the canary's traffic as the very first effect of this decision,
    /// ahead of anything already drafted (rollback, abort, supersede).
    pub fn cut_traffic_first(&mut self) {
        if !self.acting() {
            self.state.weight = Weight::ZERO;
            return;
        }
        self.effects
            .retain(|e| !matches!(e, Effect::SetWeight { .. }));
        self.state.weight = Weight::ZERO;
        self.effects.insert(
            0,
            Effect::SetWeight {
                weight: Weight::ZERO,
            },
        );
    }

    fn enter(&mut self, phase: Phase, pause: Option<PauseReason>) {
        if self.state.phase != phase || self.state.pause != pause {
            self.state.since = self.now;
        }
        self.state.phase = phase;
        self.state.pause = pause;
    }

    /// Appends a decision record; `from` is the phase before the decision.
    /// In shadow the reason says what canaryd would have done.
    pub fn record(&mut self, from: Phase, action: Action, detail: Reason) -> u64 {
        self.state.decisions += 1;
        let seq = self.state.decisions;
        let shadow = !self.acting();
        let reason = if shadow {
            format!("{}: {detail}", action.would())
        } else {
            detail.to_string()
        };
        self.effects.push(Effect::Record(DecisionRecord {
            seq,
            at: self.now,
            from,
            to: self.state.phase,
            action,
            reason,
            detail,
            step: self.state.step + 1,
            weight: self.state.weight,
            stable_version: self.state.stable_version.clone(),
            canary_version: self.state.canary_version.clone().unwrap_or_default(),
            gates: self.gates.clone(),
            shadow,
            by: self.by.clone(),
        }));
        seq
    }

    /// Queues an alert about the decision `seq`. A shadow alert is `info`:
    /// nothing happened to traffic.
    pub fn notify(&mut self, seq: u64, event: AlertEvent) {
        let shadow = !self.acting();
        let severity = if shadow {
            crate::spec::model::AlertSeverity::Info
        } else {
            event.severity()
        };
        self.effects.push(Effect::Notify(Alert {
            seq,
            event,
            severity,
            shadow,
        }));
    }

    /// Starts `version` at the first step. The weight is applied only to a ready canary.
    /// The spec's mode is taken now, for the whole release.
    pub fn start(&mut self, version: String, canary_ready: bool, action: Action, detail: Reason) {
        let from = self.state.phase;
        self.state.mode = self.spec.strategy.mode;
        self.state.canary_version = Some(version);
        self.state.step = 0;
        self.state.step_elapsed = Duration::ZERO;
        self.state.counters = Counters::default();
        self.state.evidence = Default::default();
        self.state.last_tick = Some(self.now);
        self.enter(Phase::Progressing, None);
        self.state.since = self.now; // also when a superseding version restarts
        let weight = if canary_ready {
            self.step_weight()
        } else {
            Weight::ZERO
        };
        self.set_weight(weight);
        let seq = self.record(from, action, detail);
        self.notify(seq, AlertEvent::Started);
    }

    /// Starts a version the deploy file names for the first time.
    pub fn start_new_version(&mut self, version: String, canary_ready: bool) {
        let detail = Reason::NewVersion {
            version: version.clone(),
        };
        self.start(version, canary_ready, Action::Start, detail);
    }

    /// Moves to the next step.
    pub fn advance(&mut self, detail: Reason) {
        let from = self.state.phase;
        self.state.step += 1;
        self.state.step_elapsed = Duration::ZERO;
        self.state.counters.failures = 0;
        self.state.counters.waiting = false;
        self.state.evidence.new_step();
        self.state.since = self.now;
        let weight = self.step_weight();
        self.set_weight(weight);
        let seq = self.record(from, Action::Advance, detail);
        self.notify(seq, AlertEvent::StepAdvanced);
    }

    /// Shifts 100% to the canary, then makes it the stable version.
    pub fn promote(&mut self, detail: Reason) {
        let from = self.state.phase;
        self.set_weight(Weight::FULL);
        let version = self.state.canary_version.clone().unwrap_or_default();
        if self.acting() {
            self.effects.push(Effect::Finalize {
                version: version.clone(),
            });
        }
        self.state.stable_version = version;
        self.enter(Phase::Promoted, None);
        let seq = self.record(from, Action::Promote, detail);
        self.notify(seq, AlertEvent::Promoted);
    }

    /// Rolls back: weight 0 first, then the record, then the alert. With
    /// `rollback.auto: false` it pauses and alerts instead.
    pub fn rollback(&mut self, detail: Reason) {
        if !self.spec.strategy.rollback.auto {
            // Pause and alert once; a person decides from there.
            if self.state.pause != Some(PauseReason::RollbackDisabled) {
                self.pause(PauseReason::RollbackDisabled, detail);
            }
            return;
        }
        let from = self.state.phase;
        self.cut_traffic_first();
        self.enter(Phase::RolledBack, None);
        let seq = self.record(from, Action::Rollback, detail);
        self.notify(seq, AlertEvent::RolledBack);
    }

    /// Rolls back once a counted limit is reached; below it, records a hold.
    pub fn rollback_at_limit(&mut self, reached: bool, detail: Reason) {
        if reached {
            self.rollback(detail);
        } else {
            let phase = self.state.phase;
            self.record(phase, Action::Hold, detail);
        }
    }

    /// Stops by a person's command: weight 0 first.
    pub fn abort(&mut self, detail: Reason) {
        let from = self.state.phase;
        self.cut_traffic_first();
        self.enter(Phase::Aborted, None);
        let seq = self.record(from, Action::Abort, detail);
        self.notify(seq, AlertEvent::Aborted);
    }

    /// Holds at the current weight.
    pub fn pause(&mut self, why: PauseReason, detail: Reason) {
        let from = self.state.phase;
        self.enter(Phase::Paused, Some(why));
        let seq = self.record(from, Action::Pause, detail);
        self.notify(seq, AlertEvent::Paused);
    }

    /// Continues after a pause; the step clock restarts from now.
    pub fn resume(&mut self, detail: Reason) {
        let from = self.state.phase;
        self.enter(Phase::Progressing, None);
        self.state.counters.inconclusive = 0;
        self.state.last_tick = Some(self.now);
        self.record(from, Action::Resume, detail);
    }

    /// Ends the draft.
    pub fn finish(self) -> Decision {
        let next_tick = self
            .state
            .phase
            .in_flight()
            .then(|| self.now.plus(self.spec.strategy.analysis.interval));
        Decision {
            state: self.state,
            effects: self.effects,
            next_tick,
            gates: self.gates,
        }
    }
}
