//! Shadow mode in the engine, with simulated time: a shadowed release runs
//! every rule as an active one does, on the weights canaryd would have set,
//! but emits no traffic effect; its records say what canaryd would have
//! done and its alerts are `info`; the mode is fixed when a release starts.

mod common;

use canaryd::engine::{Action, Effect, Phase};
use canaryd::spec::model::{AlertSeverity, DeployMode};
use canaryd::spec::units::Weight;
use common::{SEED_FILE, Sim, World, spec, weight};

/// The seed rollout in shadow mode, its router held at 20% by the team.
fn shadowed() -> Sim {
    let mut s = spec(SEED_FILE);
    s.strategy.mode = DeployMode::Shadow;
    let mut sim = Sim::new(s);
    sim.router = weight(20);
    sim
}

fn traffic_effects(sim: &Sim) -> Vec<&Effect> {
    sim.effects
        .iter()
        .filter(|e| matches!(e, Effect::SetWeight { .. } | Effect::Finalize { .. }))
        .collect()
}

#[test]
fn a_shadowed_healthy_release_takes_the_active_decisions_without_a_traffic_effect() {
    let healthy = World::healthy();
    let mut active = Sim::new(spec(SEED_FILE));
    active.tick_now(&healthy);
    active.tick_until(&healthy, 5000, |s| s.state.phase == Phase::Promoted);
    let mut shadow = shadowed();
    shadow.tick_now(&healthy);
    shadow.tick_until(&healthy, 5000, |s| s.state.phase == Phase::Promoted);

    let actions = |sim: &Sim| {
        sim.log
            .iter()
            .map(|r| (r.action, r.step, r.weight))
            .collect::<Vec<_>>()
    };
    assert_eq!(actions(&shadow), actions(&active));
    assert_eq!(shadow.elapsed(), active.elapsed(), "the same timeline");
    assert!(
        traffic_effects(&shadow).is_empty(),
        "{:?}",
        traffic_effects(&shadow)
    );
    assert_eq!(shadow.router, weight(20), "the team's split stands");
    assert!(shadow.log.iter().all(|r| r.shadow));
    assert!(active.log.iter().all(|r| !r.shadow));
    let reasons: Vec<&str> = shadow.log.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(reasons[0], "would start: new canary version v2");
    assert_eq!(
        reasons.last().copied(),
        Some("would promote: step 3 passed its duration and gates")
    );
}

#[test]
fn a_shadowed_faulty_canary_would_roll_back_and_its_alert_is_info() {
    let mut sim = shadowed();
    sim.tick_now(&World::healthy());
    sim.tick_until(&World::healthy().with("error_rate", 0.2), 100, |s| {
        s.state.phase == Phase::RolledBack
    });
    let r = sim.last_record();
    assert_eq!(r.action, Action::Rollback);
    assert!(r.shadow);
    assert!(
        r.reason
            .starts_with("would roll back: abort condition error_rate > 2% breached: "),
        "{}",
        r.reason
    );
    assert_eq!(r.weight, Weight::ZERO, "the weight canaryd would have set");
    let alerts: Vec<_> = sim
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::Notify(a) => Some(a),
            _ => None,
        })
        .collect();
    assert!(!alerts.is_empty());
    assert!(
        alerts
            .iter()
            .all(|a| a.shadow && a.severity == AlertSeverity::Info)
    );
    assert!(traffic_effects(&sim).is_empty());
}

#[test]
fn a_change_of_mode_applies_from_the_next_release_never_mid_rollout() {
    let healthy = World::healthy();
    let mut sim = shadowed();
    sim.tick_now(&healthy);
    // The file turns active during the release: it stays shadowed.
    sim.spec.strategy.mode = DeployMode::Active;
    sim.tick_until(&healthy, 5000, |s| s.state.phase == Phase::Promoted);
    assert!(sim.log.iter().all(|r| r.shadow));
    assert!(traffic_effects(&sim).is_empty());
    // The next release is acted on.
    let mut next = spec(&SEED_FILE.replace("version: v2", "version: v3"));
    next.strategy.mode = DeployMode::Active;
    next.stable.version = "v2".into();
    sim.spec = next;
    sim.tick(&healthy);
    let start = sim.last_record();
    assert_eq!((start.action, start.shadow), (Action::Start, false));
    assert_eq!(start.reason, "new canary version v3");
    assert_eq!(sim.router, weight(5), "the first step's weight is set");
}
