//! Shadow mode in process: the engine runs as when acting, every decision is
//! recorded as what canaryd would have done, and the router is only read.

use std::sync::Arc;
use std::time::Duration;

use super::fakes::{FakeRouter, FakeStore};
use super::{Rig, SPEC, id};
use crate::controller::Settings;
use crate::engine::{Action, DecisionRecord, Phase};
use crate::spec::decode::decode;
use crate::spec::model::{DeployMode, DeploySpec};
use crate::spec::policy::PolicySet;
use crate::spec::units::Weight;

/// The test spec with `extra` added to its `deploy:` block and the canary version `version`.
fn spec_with(extra: &str, version: &str) -> DeploySpec {
    let text = SPEC
        .replace(
            "  strategy: canary\n",
            &format!("  strategy: canary\n{extra}"),
        )
        .replace("version: v2", &format!("version: {version}"));
    decode("checkout.yaml", &text, &PolicySet::builtin())
        .spec
        .expect("the test spec is valid")
}

/// A router the team holds at 20%.
fn team_router() -> FakeRouter {
    let router = FakeRouter::default();
    *router.weight.lock().expect("lock") = twenty();
    router
}

fn twenty() -> Weight {
    Weight::from_basis_points(2000).expect("20%")
}

fn records(rig: &Rig) -> Vec<DecisionRecord> {
    rig.store.records.lock().expect("lock").clone()
}

fn has(rig: &Rig, action: Action) -> bool {
    records(rig).iter().any(|r| r.action == action)
}

#[tokio::test(start_paused = true)]
async fn a_shadow_rollout_with_a_faulty_canary_never_writes_a_weight_and_records_would_roll_back() {
    let spec = spec_with("  mode: shadow\n", "v2");
    let store = Arc::new(FakeStore::default());
    let rig = Rig::start_with(store, spec, Settings::default(), team_router()).await;
    *rig.metrics.canary_errors.lock().expect("lock") = 0.3;
    rig.until(Duration::from_secs(120), |r| has(r, Action::Rollback))
        .await;
    assert!(
        rig.router.sets.lock().expect("lock").is_empty(),
        "no weight was ever written"
    );
    assert_eq!(rig.router.weight(), twenty(), "the team's split stands");
    let all = records(&rig);
    assert!(all.iter().all(|r| r.shadow), "{all:#?}");
    let rollback = all
        .iter()
        .find(|r| r.action == Action::Rollback)
        .expect("would roll back");
    assert!(
        rollback
            .reason
            .starts_with("would roll back: abort condition error_rate > 10%"),
        "{}",
        rollback.reason
    );
    assert_eq!(
        rollback.weight,
        Weight::ZERO,
        "the weight it would have set"
    );
    let view = rig.view.get(&id()).expect("managed");
    assert_eq!(view.phase, Phase::RolledBack);
    assert_eq!(view.mode, DeployMode::Shadow);
    assert_eq!(view.canary_weight, 20.0, "the weight read from the router");
    let summary = crate::delivery::shadow::summary(&all);
    assert_eq!((summary.releases_watched, summary.would_roll_back), (1, 1));
    assert!(!summary.releases[0].evidence.is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_daemon_wide_shadow_setting_shadows_a_file_that_says_active() {
    let settings = Settings {
        shadow: true,
        ..Settings::default()
    };
    let store = Arc::new(FakeStore::default());
    let rig = Rig::start_with(store, super::spec(), settings, team_router()).await;
    rig.until(Duration::from_secs(300), |r| {
        r.phase() == Some(Phase::Promoted)
    })
    .await;
    assert!(rig.router.sets.lock().expect("lock").is_empty());
    assert_eq!(rig.router.weight(), twenty());
    let actions: Vec<String> = records(&rig).iter().map(|r| r.reason.clone()).collect();
    assert!(
        actions.iter().all(|r| r.starts_with("would ")),
        "{actions:?}"
    );
    assert!(
        actions
            .last()
            .is_some_and(|r| r.starts_with("would promote"))
    );
}

#[tokio::test(start_paused = true)]
async fn switching_to_active_applies_at_the_next_release_never_mid_rollout() {
    let store = Arc::new(FakeStore::default());
    let shadowed = spec_with("  mode: shadow\n", "v2");
    let rig = Rig::start_with(store, shadowed, Settings::default(), team_router()).await;
    rig.until(Duration::from_secs(5), |r| has(r, Action::Start))
        .await;
    // The file now says active, same release: canaryd still only watches it.
    rig.specs.push(crate::ports::SpecEvent::Changed {
        spec: Box::new(spec_with("  mode: active\n", "v2")),
        origin: "checkout.yaml".into(),
        warnings: Vec::new(),
    });
    rig.until(Duration::from_secs(90), |r| has(r, Action::Advance))
        .await;
    assert!(rig.router.sets.lock().expect("lock").is_empty());
    assert_eq!(
        rig.view.get(&id()).map(|v| v.mode),
        Some(DeployMode::Shadow)
    );
    // The next release is acted on: its first step's weight is set.
    rig.specs.push(crate::ports::SpecEvent::Changed {
        spec: Box::new(spec_with("  mode: active\n", "v3")),
        origin: "checkout.yaml".into(),
        warnings: Vec::new(),
    });
    rig.until(Duration::from_secs(5), |r| {
        r.router.weight() == Weight::from_basis_points(1000).expect("10%")
    })
    .await;
    let all = records(&rig);
    let v3: Vec<&DecisionRecord> = all.iter().filter(|r| r.canary_version == "v3").collect();
    assert!(!v3.is_empty() && v3.iter().all(|r| !r.shadow), "{all:#?}");
    assert_eq!(
        rig.view.get(&id()).map(|v| v.mode),
        Some(DeployMode::Active)
    );
}
