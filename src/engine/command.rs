//! Manual control (BRIEF §3): pause, resume, promote, abort, retry — what each
//! does in each phase, and a clear refusal where it makes no sense.

use thiserror::Error;

use super::draft::Draft;
use super::effect::{Action, Command, Reason};
use super::state::{PauseReason, Phase};

/// A command that does not apply to the rollout's phase.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("cannot {command} a rollout that is {phase}: {why}")]
pub struct Rejected {
    /// The command refused.
    pub command: Command,
    /// The phase it was refused in.
    pub phase: Phase,
    /// What to do instead.
    pub why: &'static str,
}

pub(super) fn apply(mut d: Draft<'_>, command: Command) -> Result<Draft<'_>, Rejected> {
    let phase = d.state.phase;
    let reject = |why| {
        Err(Rejected {
            command,
            phase,
            why,
        })
    };
    let manual = Reason::Manual { command };
    match (command, phase) {
        (Command::Pause, Phase::Progressing) => d.pause(PauseReason::Manual, manual),
        (Command::Pause, Phase::Paused) if d.state.pause == Some(PauseReason::Manual) => {
            return reject("it is already paused");
        }
        (Command::Pause, Phase::Paused) => d.pause(PauseReason::Manual, manual),
        (Command::Resume, Phase::Paused) => d.resume(manual),
        (Command::Resume, Phase::Progressing) => return reject("it is not paused"),
        (Command::Promote, Phase::Progressing | Phase::Paused) => d.promote(manual),
        (Command::Abort, Phase::Progressing | Phase::Paused) => d.abort(manual),
        (Command::Retry, Phase::RolledBack | Phase::Aborted) => {
            let Some(version) = d.state.canary_version.clone() else {
                return reject("it has no canary version to retry");
            };
            // The weight is applied by the next tick, once the canary is seen ready.
            d.start(version, false, Action::Retry, manual);
        }
        (Command::Retry, Phase::Progressing | Phase::Paused) => {
            return reject("it is still in flight; abort it first");
        }
        (_, Phase::Idle) => {
            return reject("no canary is in flight; change `canary.version` to start one");
        }
        (_, Phase::Promoted) => {
            return reject("it was promoted; deploy a new canary version to start again");
        }
        (_, Phase::RolledBack | Phase::Aborted) => {
            return reject("it is over; `retry` starts the same version again");
        }
    }
    Ok(d)
}

/// The spec was removed: an in-flight canary is aborted (weight 0 first,
/// recorded and alerted); a rollout not in flight stays as it is.
pub(super) fn spec_removed(mut d: Draft<'_>) -> Draft<'_> {
    if d.state.phase.in_flight() {
        d.abort(Reason::SpecRemoved);
    }
    d
}
