//! Manual control: every command in every phase, and what it does.

mod common;

use canaryd::engine::{Action, Command, Effect, PauseReason, Phase};
use canaryd::spec::units::Weight;
use common::{SEED_FILE, Sim, World, spec, weight};

/// The phases a person can find a rollout in.
#[derive(Clone, Copy, Debug)]
enum Setup {
    Idle,
    Progressing,
    PausedByHand,
    PausedForData,
    Promoted,
    RolledBack,
    Aborted,
}

fn make(setup: Setup) -> Sim {
    if let Setup::Idle = setup {
        return Sim::new(spec(&SEED_FILE.replace("version: v2", "version: v1")));
    }
    let mut sim = Sim::new(spec(SEED_FILE));
    let healthy = World::healthy();
    sim.tick_now(&healthy);
    sim.tick_until(&healthy, 1000, |s| s.state.step == 1);
    match setup {
        Setup::Progressing | Setup::Idle => {}
        Setup::PausedByHand => {
            sim.command(Command::Pause).expect("pausable");
        }
        Setup::PausedForData => sim.tick_until(&World::healthy().without_data(), 50, |s| {
            s.state.pause == Some(canaryd::engine::PauseReason::NoData)
        }),
        Setup::Promoted => sim.tick_until(&healthy, 1000, |s| s.state.phase == Phase::Promoted),
        Setup::RolledBack => {
            sim.tick(&World::healthy().with("error_rate", 0.5));
        }
        Setup::Aborted => {
            sim.command(Command::Abort).expect("abortable");
        }
    }
    sim
}

#[test]
fn each_command_in_each_phase_does_what_the_table_says() {
    use Setup::*;
    // Some(phase) = accepted and ends in that phase; None = refused, nothing changes.
    let table: [(Command, [Option<Phase>; 7]); 5] = [
        (
            Command::Pause,
            [
                None,
                Some(Phase::Paused),
                None,
                Some(Phase::Paused),
                None,
                None,
                None,
            ],
        ),
        (
            Command::Resume,
            [
                None,
                None,
                Some(Phase::Progressing),
                Some(Phase::Progressing),
                None,
                None,
                None,
            ],
        ),
        (
            Command::Promote,
            [
                None,
                Some(Phase::Promoted),
                Some(Phase::Promoted),
                Some(Phase::Promoted),
                None,
                None,
                None,
            ],
        ),
        (
            Command::Abort,
            [
                None,
                Some(Phase::Aborted),
                Some(Phase::Aborted),
                Some(Phase::Aborted),
                None,
                None,
                None,
            ],
        ),
        (
            Command::Retry,
            [
                None,
                None,
                None,
                None,
                None,
                Some(Phase::Progressing),
                Some(Phase::Progressing),
            ],
        ),
    ];
    let setups = [
        Idle,
        Progressing,
        PausedByHand,
        PausedForData,
        Promoted,
        RolledBack,
        Aborted,
    ];
    for (command, expected) in table {
        for (setup, want) in setups.into_iter().zip(expected) {
            let mut sim = make(setup);
            let before = sim.state.clone();
            let result = sim.command(command).map(|d| d.state.phase);
            match want {
                Some(phase) => assert_eq!(result.ok(), Some(phase), "{command} in {setup:?}"),
                None => {
                    let err = result.expect_err(&format!("{command} in {setup:?} must be refused"));
                    assert_eq!(err.command, command);
                    assert!(!err.to_string().is_empty());
                    assert_eq!(sim.state, before, "a refused command changes nothing");
                }
            }
        }
    }
}

#[test]
fn a_refusal_says_what_to_do_instead() {
    let mut sim = make(Setup::Promoted);
    let err = sim.command(Command::Abort).expect_err("nothing in flight");
    assert_eq!(
        err.to_string(),
        "cannot abort a rollout that is Promoted: it was promoted; deploy a new canary version to start again"
    );
}

#[test]
fn pause_holds_the_weight_and_the_step_clock() {
    let mut sim = make(Setup::Progressing);
    let elapsed = sim.state.step_elapsed;
    sim.command(Command::Pause).expect("pausable");
    assert_eq!(sim.state.pause, Some(PauseReason::Manual));
    sim.ticks(500, &World::healthy());
    assert_eq!(
        (sim.state.phase, sim.state.step, sim.router),
        (Phase::Paused, 1, weight(50))
    );
    assert_eq!(
        sim.state.step_elapsed, elapsed,
        "paused time is not watched time"
    );
    sim.command(Command::Resume).expect("resumable");
    sim.tick_until(&World::healthy(), 1000, |s| s.state.step == 2);
}

#[test]
fn a_paused_rollout_holds_its_weight_when_the_canary_turns_ready_again() {
    let mut sim = make(Setup::Progressing);
    sim.tick(&World::healthy().unready());
    assert_eq!(sim.router, Weight::ZERO);
    sim.command(Command::Pause).expect("pausable");
    sim.ticks(3, &World::healthy());
    assert_eq!(sim.router, Weight::ZERO, "paused means held");
    sim.command(Command::Resume).expect("resumable");
    sim.tick(&World::healthy());
    assert_eq!(sim.router, weight(50));
}

#[test]
fn a_superseding_version_restarts_the_phase_clock() {
    let mut sim = make(Setup::Progressing);
    sim.spec = spec(&SEED_FILE.replace("version: v2", "version: v3"));
    sim.tick(&World::healthy());
    assert_eq!(sim.state.since, sim.now);
}

#[test]
fn a_manual_pause_does_not_resume_when_data_returns() {
    let mut sim = make(Setup::PausedForData);
    sim.command(Command::Pause)
        .expect("a data pause can become a manual one");
    sim.ticks(5, &World::healthy());
    assert_eq!(sim.state.pause, Some(PauseReason::Manual));
}

#[test]
fn promote_skips_the_remaining_steps_then_finalizes() {
    let mut sim = make(Setup::Progressing);
    sim.command(Command::Promote).expect("promotable");
    let effects = sim.last_effects();
    assert_eq!(
        effects[0],
        Effect::SetWeight {
            weight: Weight::FULL
        }
    );
    assert_eq!(
        effects[1],
        Effect::Finalize {
            version: "v2".into()
        }
    );
    assert_eq!(
        (
            sim.state.stable_version.as_str(),
            sim.last_record().reason.as_str()
        ),
        ("v2", "manual promote")
    );
}

#[test]
fn abort_sends_all_traffic_to_stable_before_anything_else() {
    let mut sim = make(Setup::PausedByHand);
    sim.command(Command::Abort).expect("abortable");
    assert_eq!(
        sim.last_effects()[0],
        Effect::SetWeight {
            weight: Weight::ZERO
        }
    );
    assert_eq!(
        (sim.router, sim.last_record().action),
        (Weight::ZERO, Action::Abort)
    );
}

#[test]
fn retry_starts_the_same_version_from_the_first_step_once_the_canary_is_ready() {
    let mut sim = make(Setup::RolledBack);
    sim.command(Command::Retry).expect("retryable");
    assert_eq!(sim.state.canary_version.as_deref(), Some("v2"));
    assert_eq!(
        (sim.state.step, sim.router, sim.last_record().action),
        (0, Weight::ZERO, Action::Retry)
    );
    assert_eq!(
        sim.state.counters,
        Default::default(),
        "counters start afresh"
    );
    sim.tick(&World::healthy());
    assert_eq!(sim.router, weight(5));
    sim.tick_until(&World::healthy(), 1000, |s| {
        s.state.phase == Phase::Promoted
    });
}

#[test]
fn a_command_is_recorded_with_the_name_of_the_token_that_issued_it_and_a_tick_with_none() {
    let mut sim = make(Setup::Progressing);
    let decision = sim
        .command_by(Command::Pause, Some("alice"))
        .expect("pausable");
    let records: Vec<_> = decision.records().collect();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].action, Action::Pause);
    assert_eq!(records[0].by.as_deref(), Some("alice"));
    let json = serde_json::to_value(records[0]).expect("json");
    assert_eq!(json["by"], "alice");
    sim.command_by(Command::Resume, Some("ci"))
        .expect("resumable");
    assert_eq!(sim.last_record().by.as_deref(), Some("ci"));
    // A tick's records name nobody, and say so by leaving `by` out.
    let seq = sim.last_record().seq;
    sim.tick_until(&World::healthy(), 1000, |s| s.last_record().seq > seq);
    assert_eq!(sim.last_record().by, None);
    let json = serde_json::to_value(sim.last_record()).expect("json");
    assert!(json.get("by").is_none(), "{json}");
}

#[test]
fn a_record_stored_before_tokens_had_names_still_reads() {
    let mut sim = make(Setup::Progressing);
    sim.command(Command::Pause).expect("pausable");
    let mut json = serde_json::to_value(sim.last_record()).expect("json");
    json.as_object_mut().expect("object").remove("by");
    let record: canaryd::engine::DecisionRecord = serde_json::from_value(json).expect("reads");
    assert_eq!(record.by, None);
}
