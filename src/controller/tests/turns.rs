//! The control loop's turns stay short at scale: a tick is planned and its
//! deferred writes go out a chunk per turn, a command during a tick leaves
//! the tick's writes to its end, and a command is answered while the spec
//! source is still looking.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::fakes::{FakeRouter, FakeSpecs, FakeStore};
use super::{Rig, built, id, paused, spec};
use crate::controller::deferred::WRITE_CHUNK;
use crate::controller::tick::PLAN_CHUNK;
use crate::controller::{Controller, Settings};
use crate::engine::{Command, Phase};
use crate::ports::SpecEvent;
use crate::spec::model::{DeploySpec, RolloutId};

/// The test spec for service `name` (decoded once: thousands are made).
fn spec_named(name: &str) -> DeploySpec {
    static SPEC_DECODED: std::sync::OnceLock<DeploySpec> = std::sync::OnceLock::new();
    let mut spec = SPEC_DECODED.get_or_init(spec).clone();
    spec.id = id_named(name);
    spec
}

fn id_named(name: &str) -> RolloutId {
    RolloutId {
        namespace: "default".into(),
        name: name.into(),
    }
}

/// Adds `n` more rollouts to the controller through its spec source.
async fn add_rollouts(c: &mut Controller, specs: &FakeSpecs, n: usize) {
    for i in 0..n {
        let name = format!("svc{i}");
        specs.push(SpecEvent::Changed {
            spec: Box::new(spec_named(&name)),
            origin: format!("{name}.yaml"),
            warnings: Vec::new(),
        });
    }
    let now = c.now();
    c.reload(now).await.expect("the specs are read");
}

/// A controller on `store` over fakes, managing the test rollout and `n` more.
async fn with_rollouts(store: &Arc<FakeStore>, n: usize) -> Controller {
    let (mut c, parts) = built(
        store.clone(),
        spec(),
        Settings::default(),
        FakeRouter::default(),
    )
    .await;
    add_rollouts(&mut c, &parts.specs, n).await;
    c
}

fn measuring(c: &Controller) -> usize {
    c.rollouts.values().filter(|m| m.measuring).count()
}

#[tokio::test(start_paused = true)]
async fn a_tick_of_more_rollouts_than_a_chunk_is_planned_over_turns_and_asked_in_one_batch() {
    let store = Arc::new(FakeStore::default());
    let (mut c, parts) = built(store, spec(), Settings::default(), FakeRouter::default()).await;
    add_rollouts(&mut c, &parts.specs, 2 * PLAN_CHUNK + 9).await;
    let all = c.rollouts.len();
    assert_eq!(all, 2 * PLAN_CHUNK + 10);
    tokio::time::advance(Duration::from_secs(2)).await;
    c.tick_due(c.now()).await;
    assert_eq!(
        measuring(&c),
        PLAN_CHUNK,
        "the tick's first turn plans one chunk"
    );
    c.plan_more(PLAN_CHUNK);
    assert_eq!(measuring(&c), 2 * PLAN_CHUNK);
    assert!(c.planning.is_some(), "more to plan");
    c.plan_more(PLAN_CHUNK);
    assert_eq!(measuring(&c), all);
    assert!(c.planning.is_none(), "every rollout planned");
    // One measurement for the whole tick; every rollout decided on it.
    let mut last = false;
    while !last {
        let part = tokio::time::timeout(Duration::from_secs(5), c.measured_rx.recv())
            .await
            .expect("measured in time")
            .expect("the measurement reports");
        last = c.decide_measured(part).await.is_some();
    }
    assert_eq!(parts.metrics.batches.load(Ordering::SeqCst), 1);
    assert_eq!(measuring(&c), 0);
    assert!(
        c.rollouts
            .values()
            .all(|m| m.state.phase == Phase::Progressing),
        "every rollout started on the tick's one batch"
    );
    assert_eq!(c.ticks_in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn a_ticks_deferred_writes_go_out_in_parts_of_at_most_a_chunk_and_all_arrive() {
    let store = Arc::new(FakeStore::default());
    let mut c = with_rollouts(&store, WRITE_CHUNK + 99).await;
    tokio::time::advance(Duration::from_secs(1)).await;
    let tick = c.now();
    let ids: Vec<RolloutId> = c.rollouts.keys().cloned().collect();
    for id in &ids {
        let mut state = c.rollouts[id].state.clone();
        state.step_elapsed = Duration::from_secs(7);
        c.deferred.periodic(id, tick, state);
    }
    let commits = store.commits.load(Ordering::SeqCst);
    assert!(
        c.write_deferred_part(WRITE_CHUNK).await,
        "more waits after the first part"
    );
    assert_eq!(store.commits.load(Ordering::SeqCst), commits + 1);
    let written = |store: &FakeStore| {
        store
            .states
            .lock()
            .expect("lock")
            .values()
            .filter(|s| s.state.step_elapsed == Duration::from_secs(7))
            .count()
    };
    assert_eq!(written(&store), WRITE_CHUNK);
    assert!(
        !c.write_deferred_part(WRITE_CHUNK).await,
        "nothing waits after the second"
    );
    assert_eq!(store.commits.load(Ordering::SeqCst), commits + 2);
    assert_eq!(written(&store), ids.len());
}

#[tokio::test(start_paused = true)]
async fn a_command_during_a_tick_leaves_the_ticks_deferred_writes_to_the_ticks_end() {
    let store = Arc::new(FakeStore::default());
    {
        let rig = Rig::start(store.clone()).await;
        rig.until(Duration::from_secs(5), |r| {
            r.phase() == Some(Phase::Progressing)
        })
        .await;
    }
    // Restarted on that store, with one more rollout.
    let mut c = with_rollouts(&store, 1).await;
    tokio::time::advance(Duration::from_secs(1)).await;
    let tick = c.now();
    let other = id_named("svc0");
    let mut state = c.rollouts[&other].state.clone();
    state.step_elapsed = Duration::from_secs(7);
    c.deferred.periodic(&other, tick, state);
    // A tick is under way when a person pauses the first rollout.
    c.ticks_in_flight = 1;
    let now = c.now();
    let d = paused(&c, now);
    c.execute(vec![(id(), d)], now).await.expect("carried out");
    let stored = |store: &FakeStore, id: &RolloutId| {
        store
            .states
            .lock()
            .expect("lock")
            .get(id)
            .map(|s| s.state.clone())
    };
    assert_eq!(stored(&store, &id()).map(|s| s.phase), Some(Phase::Paused));
    assert_ne!(
        stored(&store, &other).map(|s| s.step_elapsed),
        Some(Duration::from_secs(7)),
        "the command did not write the tick's deferred state"
    );
    // The tick's end writes it.
    c.ticks_in_flight = 0;
    c.deferred.due = true;
    while c.write_deferred_part(WRITE_CHUNK).await {}
    assert_eq!(
        stored(&store, &other).map(|s| s.step_elapsed),
        Some(Duration::from_secs(7))
    );
}

#[tokio::test(start_paused = true)]
async fn a_command_is_answered_while_the_spec_source_is_still_looking() {
    let rig = Rig::start(Arc::new(FakeStore::default())).await;
    rig.until(Duration::from_secs(5), |r| {
        r.phase() == Some(Phase::Progressing)
    })
    .await;
    // The next look takes as long as a rescan of a huge directory.
    rig.specs.hold.store(true, Ordering::SeqCst);
    rig.until(Duration::from_secs(5), |r| {
        r.specs.holding.load(Ordering::SeqCst)
    })
    .await;
    let paused = tokio::time::timeout(Duration::from_secs(1), rig.command(Command::Pause))
        .await
        .expect("answered while the look goes on")
        .expect("a progressing rollout pauses");
    assert_eq!(paused.phase, Phase::Paused);
    assert!(
        rig.specs.holding.load(Ordering::SeqCst),
        "the look is still going"
    );
    // What the look finds is applied when it ends.
    rig.specs.push(SpecEvent::Changed {
        spec: Box::new(spec_named("late")),
        origin: "late.yaml".into(),
        warnings: Vec::new(),
    });
    rig.specs.hold.store(false, Ordering::SeqCst);
    rig.specs.release.notify_one();
    rig.until(Duration::from_secs(5), |r| {
        r.view.get(&id_named("late")).is_some()
    })
    .await;
}
