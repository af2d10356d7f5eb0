//! The rollout engine, specified tick by tick with simulated time (BRIEF §3).

mod common;

use std::time::Duration;

use canaryd::engine::{Action, Effect, PauseReason, Phase};
use canaryd::spec::units::Weight;
use common::{SEED_FILE, Sim, World, spec, weight};

const MIN: Duration = Duration::from_secs(60);

fn seed() -> Sim {
    Sim::new(spec(SEED_FILE))
}

/// Starts the seed rollout and runs it healthy to step `step` (0-based).
fn at_step(step: usize) -> Sim {
    let mut sim = seed();
    let healthy = World::healthy();
    sim.tick_now(&healthy);
    sim.tick_until(&healthy, 1000, |s| s.state.step == step);
    sim
}

fn actions(sim: &Sim) -> Vec<Action> {
    sim.log.iter().map(|r| r.action).collect()
}

// === The happy path ===

#[test]
fn the_seed_strategy_is_promoted_on_its_exact_timeline() {
    let mut sim = seed();
    let healthy = World::healthy();
    sim.tick_now(&healthy);
    assert_eq!(
        (sim.state.phase, sim.router),
        (Phase::Progressing, weight(5))
    );

    // 5% for exactly 10 minutes of ticks every 10 s.
    sim.tick_until(&healthy, 1000, |s| s.router != weight(5));
    assert_eq!(sim.elapsed(), 10 * MIN);
    assert_eq!((sim.state.step, sim.router), (1, weight(50)));

    // 50% for exactly 20 minutes.
    sim.tick_until(&healthy, 1000, |s| s.router != weight(50));
    assert_eq!(sim.elapsed(), 30 * MIN);
    assert_eq!((sim.state.step, sim.router), (2, Weight::FULL));

    // The last step has no duration: promoted on the next tick, after 100% was checked once.
    sim.tick(&healthy);
    assert_eq!(sim.state.phase, Phase::Promoted);
    assert_eq!(sim.elapsed(), 30 * MIN + Duration::from_secs(10));
    assert_eq!(sim.state.stable_version, "v2");
    assert_eq!(
        actions(&sim),
        [
            Action::Start,
            Action::Advance,
            Action::Advance,
            Action::Promote
        ]
    );
    assert!(sim.last_effects().contains(&Effect::Finalize {
        version: "v2".into()
    }));
    assert_eq!(
        sim.last.as_ref().expect("decided").next_tick,
        None,
        "nothing left to watch"
    );
}

#[test]
fn a_promoted_canary_stays_promoted_while_the_file_is_unchanged() {
    let mut sim = seed();
    let healthy = World::healthy();
    sim.tick_now(&healthy);
    sim.tick_until(&healthy, 1000, |s| s.state.phase == Phase::Promoted);
    let decisions = sim.log.len();
    sim.ticks(50, &healthy);
    assert_eq!(
        (sim.state.phase, sim.log.len(), sim.router),
        (Phase::Promoted, decisions, Weight::FULL)
    );
}

// === Readiness and time ===

#[test]
fn an_unready_canary_gets_no_traffic_and_its_time_does_not_count() {
    let mut sim = seed();
    sim.tick_now(&World::healthy().unready());
    assert_eq!(
        (sim.state.phase, sim.router),
        (Phase::Progressing, Weight::ZERO)
    );
    sim.ticks(3, &World::healthy().unready());
    assert_eq!(sim.router, Weight::ZERO);
    assert_eq!(sim.state.step_elapsed, Duration::ZERO);
    sim.tick(&World::healthy());
    assert_eq!(sim.router, weight(5), "weight applied once ready");
    sim.tick_until(&World::healthy(), 1000, |s| s.state.step == 1);
    assert_eq!(
        sim.elapsed(),
        10 * MIN + Duration::from_secs(40),
        "the unready 40 s did not count"
    );
}

#[test]
fn the_interval_in_which_the_canary_became_unready_does_not_count() {
    let mut sim = seed();
    sim.tick_now(&World::healthy());
    sim.tick(&World::healthy());
    assert_eq!(sim.state.step_elapsed, Duration::from_secs(10));
    sim.tick(&World::healthy().unready());
    assert_eq!(sim.state.step_elapsed, Duration::from_secs(10));
}

#[test]
fn downtime_between_ticks_does_not_count_as_watched_time() {
    let mut sim = seed();
    sim.tick_now(&World::healthy());
    sim.tick(&World::healthy());
    assert_eq!(sim.state.step_elapsed, Duration::from_secs(10));
    sim.now = sim.now.plus(Duration::from_secs(3600)); // canaryd was down for an hour
    sim.tick(&World::healthy());
    assert_eq!(
        sim.state.step_elapsed,
        Duration::from_secs(30),
        "at most two intervals per tick"
    );
    assert_eq!(sim.state.step, 0);
}

// === Versions ===

#[test]
fn nothing_happens_while_the_canary_version_equals_the_stable_one() {
    let text = SEED_FILE.replace("version: v2", "version: v1");
    let mut sim = Sim::new(spec(&text));
    sim.ticks(5, &World::healthy());
    assert_eq!(
        (sim.state.phase, sim.log.len(), sim.router),
        (Phase::Idle, 0, Weight::ZERO)
    );
}

#[test]
fn a_new_canary_version_supersedes_the_one_in_flight() {
    let mut sim = at_step(1);
    sim.spec = spec(&SEED_FILE.replace("version: v2", "version: v3"));
    sim.tick(&World::healthy());
    let effects = sim.last_effects();
    assert_eq!(
        effects[0],
        Effect::SetWeight {
            weight: Weight::ZERO
        },
        "the old canary loses traffic first"
    );
    assert_eq!(
        effects[1..]
            .iter()
            .filter(|e| matches!(e, Effect::Record(_)))
            .count(),
        2
    );
    assert_eq!(
        (sim.state.phase, sim.state.step, sim.router),
        (Phase::Progressing, 0, weight(5))
    );
    assert_eq!(sim.state.canary_version.as_deref(), Some("v3"));
    let n = sim.log.len();
    assert_eq!(
        (sim.log[n - 2].action, sim.log[n - 1].action),
        (Action::Supersede, Action::Start)
    );
    assert_eq!(sim.log[n - 2].reason, "canary v2 superseded by v3");
}

#[test]
fn reverting_the_canary_to_the_stable_version_cancels_the_rollout() {
    let mut sim = at_step(1);
    sim.spec = spec(&SEED_FILE.replace("version: v2", "version: v1"));
    sim.tick(&World::healthy());
    assert_eq!((sim.state.phase, sim.router), (Phase::Idle, Weight::ZERO));
}

#[test]
fn a_rolled_back_version_is_not_restarted_by_itself() {
    let mut sim = at_step(0);
    sim.tick(&World::healthy().with("error_rate", 0.05));
    assert_eq!(sim.state.phase, Phase::RolledBack);
    sim.ticks(20, &World::healthy());
    assert_eq!(
        (sim.state.phase, sim.router),
        (Phase::RolledBack, Weight::ZERO)
    );
    sim.spec = spec(&SEED_FILE.replace("version: v2", "version: v3"));
    sim.tick(&World::healthy());
    assert_eq!(
        (sim.state.phase, sim.state.canary_version.as_deref()),
        (Phase::Progressing, Some("v3"))
    );
}

#[test]
fn an_edited_step_weight_applies_from_the_next_tick() {
    let mut sim = at_step(1);
    sim.spec = spec(&SEED_FILE.replace("deploy: 50%", "deploy: 30%"));
    sim.tick(&World::healthy());
    assert_eq!(sim.router, weight(30));
}

// === rollback.auto: false ===

#[test]
fn with_auto_rollback_off_failures_pause_and_alert_instead() {
    let text = SEED_FILE.replace(
        "  rollback:\n    auto: true\n    on:\n      - error_rate_greater_than: 2%\n      - latency_p99_greater_than: 500ms\n",
        "  rollback:\n    auto: false\n",
    );
    let mut sim = Sim::new(spec(&text));
    sim.tick_now(&World::healthy());
    sim.ticks(3, &World::healthy().with("error_rate", 0.5));
    assert_eq!(
        (sim.state.phase, sim.state.pause),
        (Phase::Paused, Some(PauseReason::RollbackDisabled))
    );
    assert_eq!(
        sim.router,
        weight(5),
        "the weight is held for a person to decide"
    );
    sim.ticks(10, &World::healthy());
    assert_eq!(
        sim.state.phase,
        Phase::Paused,
        "it does not resume by itself"
    );
}

// === The decision log ===

#[test]
fn decision_numbers_count_up_from_one_without_gaps() {
    let mut sim = seed();
    sim.tick_now(&World::healthy());
    sim.tick_until(&World::healthy(), 1000, |s| {
        s.state.phase == Phase::Promoted
    });
    let seqs: Vec<u64> = sim.log.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
}

#[test]
fn a_rollout_paused_because_its_canary_was_unready_resumes_when_it_is_ready_again() {
    let mut sim = seed();
    sim.tick_now(&World::healthy());
    sim.tick(&World::healthy());
    sim.tick_until(&World::healthy().unready(), 50, |s| {
        s.state.pause == Some(PauseReason::NoData)
    });
    assert_eq!(
        sim.router,
        Weight::ZERO,
        "an unready canary gets no traffic"
    );
    // Ready again: its step's weight comes back so data can, and it resumes.
    sim.tick(&World::healthy());
    assert_eq!(sim.router, weight(5));
    sim.tick_until(&World::healthy(), 20, |s| {
        s.state.phase == Phase::Progressing
    });
    assert_eq!(sim.last_record().action, Action::Resume);
    sim.tick_until(&World::healthy(), 1000, |s| s.state.step == 1);
}

#[test]
fn watched_time_does_not_grow_while_prometheus_cannot_be_read() {
    let mut sim = seed();
    sim.tick_now(&World::healthy());
    sim.ticks(3, &World::healthy());
    let before = sim.state.step_elapsed;
    let down = World::healthy().inconclusive(
        "counts",
        canaryd::engine::Inconclusive::ProviderError {
            message: "connection refused".into(),
        },
    );
    sim.ticks(4, &down);
    assert_eq!(
        sim.state.step_elapsed, before,
        "the outage is not watched time"
    );
    sim.tick(&World::healthy());
    assert_eq!(sim.state.step_elapsed, before + sim.interval());
}
