//! The pure rollout engine: `decide(spec, state, input, now) -> Decision`.
//!
//! No I/O, no async, no clock reads. The controller measures the gates that
//! [`active_gates`] names, calls [`decide`], executes the returned effects in
//! order and stores the new state. Everything time-dependent takes `now`, so
//! the whole of BRIEF §3 is tested with simulated time.
//!
//! Rules, in the order a tick applies them:
//! 1. **Version.** A canary version in the file that is neither stable nor the
//!    one already finished starts a rollout; a different version while one is
//!    in flight supersedes it (weight 0, then a fresh start at step 1).
//! 2. **Watched time.** A step's clock advances only while Progressing with the
//!    step's weight applied, by at most two intervals per tick: time canaryd was
//!    down, paused, or waiting for a ready canary does not count.
//! 3. **Readiness.** An unready canary gets weight 0 and its gates are inconclusive.
//! 4. **Abort conditions** (`rollback.on`), in every in-flight phase: a breach
//!    counts; `consecutive_breaches` in a row roll back. A tick where all pass
//!    resets the run; an inconclusive tick leaves it as is.
//! 5. **Inconclusive data** (no data, NaN, too few requests, Prometheus error):
//!    never a pass. The step holds; after `inconclusive_limit` consecutive
//!    ticks `no_data` decides: `hold` pauses (resuming by itself when data
//!    returns), `rollback` rolls back, `ignore` lets the tick through, logged.
//! 6. **Promotion gates**: each failing tick counts one failure, cumulatively
//!    within the step; the `failure_limit`-th failure rolls back.
//! 7. **Step completion**: once the watched time reaches the step's duration and
//!    a tick passes every gate, the next step's weight is set; after the last
//!    step the canary is promoted (100%, then finalize). With `min_duration`
//!    (early success, opt-in per step), the step completes earlier: at the
//!    first tick past `min_duration`, after the warm-up, with nothing
//!    inconclusive, where every promotion gate has passed on evidence.
//!
//! With `rollback.auto: false`, every "roll back" above pauses and alerts instead.
//!
//! **Shadow mode** (`deploy.mode: shadow`, or `canaryd run --shadow`): the
//! mode is taken into the state when a release starts (a new version, or a
//! retry), so a change applies from the next release, never mid-rollout. A
//! shadowed release runs every rule above exactly as when acting, on the
//! weights canaryd *would* have set (its own plan: the step's weight, 0 on a
//! rollback), but its decisions emit no `SetWeight` or `Finalize` effect;
//! each record is marked `shadow` and says what canaryd would have done
//! (`would roll back: …`), and its alerts are `info`.

mod command;
mod draft;
pub mod effect;
pub mod evidence;
pub mod observation;
pub mod state;
mod tick;
pub mod time;
pub mod verdict;

pub use command::Rejected;
pub use effect::{Action, Alert, AlertEvent, Command, DecisionRecord, Effect, Reason};
pub use evidence::{Evidence, EvidenceSummary};
pub use observation::{
    CountsNeeded, CountsQueries, CountsReading, GateRef, Inconclusive, Measurement, Observation,
    Reading, TrackCounts, active_gates, counts_needed, reading_gates,
};
pub use state::{Counters, PauseReason, Phase, RolloutState};
pub use time::Timestamp;
pub use verdict::{GateResult, TrackKind, Verdict};

use crate::spec::model::DeploySpec;

/// What the engine is asked to decide on.
// One input per decision, passed by reference: boxing the observation
// would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// A scheduled evaluation with fresh measurements.
    Tick(Observation),
    /// A person's command, and who issued it (the name of the API token,
    /// recorded with the decision; never the token).
    Command(Command, Option<String>),
    /// The rollout's spec was removed (its deploy file deleted): an
    /// in-flight canary is aborted, so all traffic goes back to stable.
    SpecRemoved,
}

/// The outcome of one decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The state to store.
    pub state: RolloutState,
    /// What to do, in order.
    pub effects: Vec<Effect>,
    /// When to tick next; `None` when nothing is in flight.
    pub next_tick: Option<Timestamp>,
    /// The gates judged on this tick (empty for commands and idle rollouts):
    /// what the view, the charts and the metrics show.
    pub gates: Vec<GateResult>,
}

impl Decision {
    /// The decision records it appends to the log, in order.
    pub fn records(&self) -> impl Iterator<Item = &DecisionRecord> {
        self.effects.iter().filter_map(|e| match e {
            Effect::Record(r) => Some(r),
            _ => None,
        })
    }

    /// The alerts it queues, in order.
    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.effects.iter().filter_map(|e| match e {
            Effect::Notify(a) => Some(a),
            _ => None,
        })
    }
}

/// Decides what happens to one rollout. Only commands can be rejected.
pub fn decide(
    spec: &DeploySpec,
    state: &RolloutState,
    input: &Input,
    now: Timestamp,
) -> Result<Decision, Rejected> {
    let draft = draft::Draft::new(spec, state, now);
    let done = match input {
        Input::Tick(obs) => tick::tick(draft, obs),
        Input::Command(command, by) => command::apply(draft.by(by.clone()), *command)?,
        Input::SpecRemoved => command::spec_removed(draft),
    };
    Ok(done.finish())
}
