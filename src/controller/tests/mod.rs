//! The controller in process, with a fake for every port, in simulated time
//! (paused tokio): commits that fail, routers that refuse, a stalled
//! Prometheus, a restart from stored state, writes only on change (and the
//! tick's deferred writes around commands and shutdown), idle rollouts,
//! removed specs.

mod deferred;
mod fakes;
mod shadow;
mod turns;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{CommandRequest, Controller, Metrics, Parts, Ports, Settings, View};
use crate::engine::{Command, Phase, RolloutState, Timestamp};
use crate::notify::Routing;
use crate::ports::{AlwaysLeader, SpecEvent, StoredRollout};
use crate::spec::decode::decode;
use crate::spec::model::{DeploySpec, RolloutId};
use crate::spec::policy::PolicySet;
use crate::spec::units::Weight;
use fakes::{FakeMetrics, FakeRouter, FakeRouters, FakeSpecs, FakeStore};

const SPEC: &str = "service: checkout
policy: http-red
prometheus: http://prometheus.test:9090
router: { kind: builtin, listen: 127.0.0.1:1 }
stable: { version: v1, address: 127.0.0.1:2 }
canary: { version: v2, address: 127.0.0.1:3 }
deploy:
  strategy: canary
  steps:
    - deploy: 10%
      duration: 1m
      metrics:
        - error_rate_less_than: 5%
    - deploy: 50%
      duration: 1m
    - deploy: 100%
  rollback:
    on:
      - error_rate_greater_than: 10%
  analysis:
    interval: 1s
    window: 5s
";

fn spec() -> DeploySpec {
    decode("checkout.yaml", SPEC, &PolicySet::builtin())
        .spec
        .expect("the test spec is valid")
}

fn id() -> RolloutId {
    RolloutId {
        namespace: "default".into(),
        name: "checkout".into(),
    }
}

/// A person's pause of the test rollout (progressing), decided at `now`.
fn paused(c: &Controller, now: Timestamp) -> crate::engine::Decision {
    let m = &c.rollouts[&id()];
    crate::engine::decide(
        &m.spec,
        &m.state,
        &crate::engine::Input::Command(Command::Pause, None),
        now,
    )
    .expect("a progressing rollout pauses")
}

/// The fakes a controller was started on.
struct Built {
    view: Arc<View>,
    store: Arc<FakeStore>,
    router: Arc<FakeRouter>,
    metrics: Arc<FakeMetrics>,
    specs: FakeSpecs,
}

/// A controller started on `spec` over fakes (its specs read, nothing run).
async fn built(
    store: Arc<FakeStore>,
    spec: DeploySpec,
    settings: Settings,
    router: FakeRouter,
) -> (Controller, Built) {
    let router = Arc::new(router);
    let start = Timestamp::from_system(std::time::SystemTime::now());
    let metrics = Arc::new(FakeMetrics::new(start, 1000.0, router.clone()));
    let specs = FakeSpecs::default();
    specs.push(SpecEvent::Changed {
        spec: Box::new(spec),
        origin: "checkout.yaml".into(),
        warnings: Vec::new(),
    });
    let view = Arc::new(View::default());
    let mut registry = prometheus_client::registry::Registry::default();
    let controller = Controller::start(
        Settings {
            reload_every: Duration::from_millis(100),
            ..settings
        },
        Ports {
            specs: Box::new(specs.clone()),
            store: store.clone(),
            log: store.clone(),
            routers: Arc::new(FakeRouters(router.clone())),
            metrics: metrics.clone(),
            leadership: Arc::new(AlwaysLeader),
        },
        Parts {
            policies: PolicySet::builtin(),
            view: view.clone(),
            metrics: Metrics::register(&mut registry),
            alerts: Routing {
                defaults: Vec::new(),
                dashboard_base: None,
            },
            alerts_queued: Arc::new(tokio::sync::Notify::new()),
        },
    )
    .await
    .expect("starts");
    let parts = Built {
        view,
        store,
        router,
        metrics,
        specs,
    };
    (controller, parts)
}

/// A running controller over fakes.
struct Rig {
    view: Arc<View>,
    store: Arc<FakeStore>,
    router: Arc<FakeRouter>,
    metrics: Arc<FakeMetrics>,
    specs: FakeSpecs,
    commands: mpsc::Sender<CommandRequest>,
    _stop: oneshot::Sender<()>,
}

impl Rig {
    async fn start(store: Arc<FakeStore>) -> Rig {
        Rig::start_with(store, spec(), Settings::default(), FakeRouter::default()).await
    }

    /// A controller on `spec`, with `settings` (its reload period set
    /// here) and `router` as every rollout's router.
    async fn start_with(
        store: Arc<FakeStore>,
        spec: DeploySpec,
        settings: Settings,
        router: FakeRouter,
    ) -> Rig {
        let (controller, parts) = built(store, spec, settings, router).await;
        let Built {
            view,
            store,
            router,
            metrics,
            specs,
        } = parts;
        let (commands, requests) = mpsc::channel(8);
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(controller.run(requests, async {
            let _ = stopped.await;
        }));
        Rig {
            view,
            store,
            router,
            metrics,
            specs,
            commands,
            _stop: stop,
        }
    }

    fn phase(&self) -> Option<Phase> {
        self.view.get(&id()).map(|v| v.phase)
    }

    /// Lets simulated time run until `done` holds, at most `limit`.
    async fn until(&self, limit: Duration, done: impl Fn(&Rig) -> bool) {
        let deadline = tokio::time::Instant::now() + limit;
        while !done(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "not reached within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn command(
        &self,
        command: Command,
    ) -> Result<crate::controller::RolloutView, crate::controller::CommandError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(CommandRequest {
                id: id(),
                command,
                by: Some("alice".into()),
                reply,
            })
            .await
            .expect("controller running");
        answer.await.expect("answered")
    }
}

#[tokio::test(start_paused = true)]
async fn a_healthy_rollout_runs_through_the_fakes_to_promotion() {
    let rig = Rig::start(Arc::new(FakeStore::default())).await;
    rig.until(Duration::from_secs(300), |r| {
        r.phase() == Some(Phase::Promoted)
    })
    .await;
    assert_eq!(rig.router.weight(), Weight::FULL);
    let actions: Vec<_> = rig
        .store
        .records
        .lock()
        .expect("lock")
        .iter()
        .map(|r| r.action.to_string())
        .collect();
    assert_eq!(actions, ["start", "advance", "advance", "promote"]);
}

#[tokio::test(start_paused = true)]
async fn a_commit_that_fails_applies_nothing_and_is_retried() {
    let store = Arc::new(FakeStore::default());
    store.fail.store(true, Ordering::SeqCst);
    let rig = Rig::start(store.clone()).await;
    // The start cannot be stored: the router gets no traffic, the failure shows.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(rig.router.weight(), Weight::ZERO);
    assert!(
        rig.router
            .sets
            .lock()
            .expect("lock")
            .iter()
            .all(|w| *w == Weight::ZERO)
    );
    assert!(rig.store.records.lock().expect("lock").is_empty());
    assert!(
        rig.view
            .store_error()
            .is_some_and(|e| e.contains("disk full"))
    );
    // The disk has room again: the same decision is taken and stored, once.
    store.fail.store(false, Ordering::SeqCst);
    rig.until(Duration::from_secs(5), |r| {
        r.router.weight() == Weight::from_basis_points(1000).expect("10%")
    })
    .await;
    assert!(rig.view.store_error().is_none());
    let records = rig.store.records.lock().expect("lock").clone();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].seq, 1);
}

#[tokio::test(start_paused = true)]
async fn a_quiet_step_whose_checkpoints_fail_shows_the_store_error_until_they_succeed() {
    let store = Arc::new(FakeStore::default());
    let rig = Rig::start(store.clone()).await;
    rig.until(Duration::from_secs(5), |r| {
        r.router.weight() == Weight::from_basis_points(1000).expect("10%")
    })
    .await;
    // The disk fills during a quiet step: nothing changes, so only the
    // watched-time checkpoints are written, and each fails.
    store.fail.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        rig.view
            .store_error()
            .is_some_and(|e| e.contains("disk full")),
        "a failing store shows (in /readyz) even when only checkpoints fail"
    );
    store.fail.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(rig.view.store_error().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_router_call_that_fails_leaves_the_state_at_the_weight_it_holds() {
    let rig = Rig::start(Arc::new(FakeStore::default())).await;
    rig.router.refuse.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let view = rig.view.get(&id()).expect("managed");
    assert_eq!(view.phase, Phase::Progressing);
    assert_eq!(
        view.canary_weight, 0.0,
        "the view shows the weight the router holds"
    );
    // The committed decision keeps the step's weight: raised once the router answers.
    let stored = rig.store.states.lock().expect("lock")[&id()].state.weight;
    assert_eq!(stored, Weight::from_basis_points(1000).expect("10%"));
    rig.router.refuse.store(false, Ordering::SeqCst);
    rig.until(Duration::from_secs(5), |r| {
        r.view.get(&id()).is_some_and(|v| v.canary_weight == 10.0)
    })
    .await;
    assert_eq!(rig.router.weight(), stored);
}

#[tokio::test(start_paused = true)]
async fn a_command_during_a_10s_prometheus_stall_is_answered_within_a_tick() {
    let rig = Rig::start(Arc::new(FakeStore::default())).await;
    rig.until(Duration::from_secs(5), |r| {
        r.phase() == Some(Phase::Progressing)
    })
    .await;
    *rig.metrics.stall.lock().expect("lock") = Some(Duration::from_secs(10));
    // Let a tick start its (stalled) measurement.
    let batches = rig.metrics.batches.load(Ordering::SeqCst);
    rig.until(Duration::from_secs(3), |r| {
        r.metrics.batches.load(Ordering::SeqCst) > batches
    })
    .await;
    let asked = tokio::time::Instant::now();
    let paused = rig.command(Command::Pause).await.expect("paused");
    assert_eq!(paused.phase, Phase::Paused);
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "answered after {:?}",
        asked.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn a_restart_from_stored_state_resumes_the_same_step_at_its_weight() {
    // A first run to the middle of step 2, then a new controller on its store.
    let store = Arc::new(FakeStore::default());
    {
        let rig = Rig::start(store.clone()).await;
        rig.until(Duration::from_secs(200), |r| {
            r.view
                .get(&id())
                .is_some_and(|v| v.step == 2 && v.step_elapsed_seconds >= 35.0)
        })
        .await;
    }
    let stored: RolloutState = store.states.lock().expect("lock")[&id()].state.clone();
    assert_eq!(stored.step, 1);
    let rig = Rig::start(store.clone()).await;
    rig.until(Duration::from_secs(3), |r| {
        r.router.weight() == Weight::from_basis_points(5000).expect("50%")
    })
    .await;
    let view = rig.view.get(&id()).expect("managed");
    assert_eq!((view.phase, view.step), (Phase::Progressing, 2));
    assert!(
        view.step_elapsed_seconds >= stored.step_elapsed.as_secs_f64(),
        "the watched time goes on from its checkpoint"
    );
    assert!(
        stored.step_elapsed.as_secs_f64() >= 34.0,
        "at most one interval lost: {stored:?}"
    );
    let seqs: Vec<u64> = store
        .records
        .lock()
        .expect("lock")
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "no decision twice"
    );
}

#[tokio::test(start_paused = true)]
async fn a_state_is_written_when_it_changes_or_its_checkpoint_is_due_not_every_tick() {
    let rig = Rig::start(Arc::new(FakeStore::default())).await;
    rig.until(Duration::from_secs(5), |r| {
        r.phase() == Some(Phase::Progressing)
    })
    .await;
    let before = rig.store.commits.load(Ordering::SeqCst);
    // 25 ticks of step 1 after its gate passed: nothing material changes.
    tokio::time::sleep(Duration::from_secs(25)).await;
    let commits = rig.store.commits.load(Ordering::SeqCst) - before;
    assert!(commits <= 2, "{commits} commits in 25 ticks");
}

#[tokio::test(start_paused = true)]
async fn an_idle_rollout_costs_no_measurement_and_a_router_read_a_minute() {
    let rig = Rig::start(Arc::new(FakeStore::default())).await;
    rig.until(Duration::from_secs(300), |r| {
        r.phase() == Some(Phase::Promoted)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (batches, reads, checks) = (
        rig.metrics.batches.load(Ordering::SeqCst),
        rig.router.reads.load(Ordering::SeqCst),
        rig.router.health_checks.load(Ordering::SeqCst),
    );
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(rig.metrics.batches.load(Ordering::SeqCst), batches);
    assert_eq!(rig.router.health_checks.load(Ordering::SeqCst), checks);
    assert!(rig.router.reads.load(Ordering::SeqCst) - reads <= 2);
}

#[tokio::test(start_paused = true)]
async fn a_hand_edited_router_is_set_back_to_the_committed_weight() {
    let rig = Rig::start(Arc::new(FakeStore::default())).await;
    rig.until(Duration::from_secs(5), |r| {
        r.phase() == Some(Phase::Progressing)
    })
    .await;
    *rig.router.weight.lock().expect("lock") = Weight::from_basis_points(8000).expect("80%");
    rig.until(Duration::from_secs(3), |r| {
        r.router.weight() == Weight::from_basis_points(1000).expect("10%")
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_removed_spec_aborts_its_canary_and_keeps_its_router_serving_stable() {
    let rig = Rig::start(Arc::new(FakeStore::default())).await;
    rig.until(Duration::from_secs(5), |r| {
        r.phase() == Some(Phase::Progressing)
    })
    .await;
    rig.specs.push(SpecEvent::Removed {
        id: id(),
        origin: "checkout.yaml".into(),
    });
    rig.until(Duration::from_secs(3), |r| r.phase().is_none())
        .await;
    assert_eq!(rig.router.weight(), Weight::ZERO);
    assert!(
        !rig.router.stopped.load(Ordering::SeqCst),
        "stable traffic goes on"
    );
    let last = rig
        .store
        .records
        .lock()
        .expect("lock")
        .last()
        .cloned()
        .expect("recorded");
    assert_eq!(last.action.to_string(), "abort");
    assert!(last.reason.contains("removed"), "{}", last.reason);
    let stored: StoredRollout = rig.store.states.lock().expect("lock")[&id()].clone();
    assert_eq!(stored.state.phase, Phase::Aborted);
}
