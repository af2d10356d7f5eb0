//! The controller: the long-running loop that turns spec changes, ticks and
//! people's commands into engine decisions, and carries them out through the
//! ports ([`crate::ports`]). It names no adapter type.
//!
//! * `rollout`: the rollouts it manages, and spec changes (added, changed,
//!   rejected, removed).
//! * `tick`: which rollouts are due; their measurement runs off the loop, so
//!   commands and reloads never wait behind a slow Prometheus; a tick's
//!   planning, deciding and deferred writes (`deferred`) go a chunk per turn.
//! * `specs`: the spec source, looking for changes on a task of its own.
//! * `executor`: the one place a decision is carried out, in the order
//!   cut → commit → raise → reconcile, and the only code that writes weights.
//! * `view`, `history`, `metrics`: what the API, the dashboard and
//!   `/metrics` show.

mod deferred;
pub mod error;
mod executor;
pub mod history;
pub mod metrics;
mod rollout;
mod specs;
mod tick;
mod timers;
pub mod view;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Notify, mpsc, oneshot};

use crate::engine::{Command, RolloutState, Timestamp};
use crate::notify::Routing;
use crate::ports::{
    DecisionLog, Leadership, MetricsSource, RouterFactory, SpecSource, StateStore, TrafficRouter,
};
use crate::spec::model::RolloutId;
use crate::spec::policy::PolicySet;
use metrics::LoopWork;

pub use error::{CommandError, ControllerError};
pub use metrics::Metrics;
use rollout::Managed;
use tick::Measured;
use timers::Timers;
pub use view::{Event, RolloutView, View};

/// Settings of the loop.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Prometheus for specs that name none.
    pub default_prometheus: Option<String>,
    /// How often the spec source is asked for changes.
    pub reload_every: Duration,
    /// How often a rollout's whole state (its evidence counts) is written
    /// when nothing else changes it. Its watched time is checkpointed every
    /// tick, so a crash loses at most one interval of it; and no evidence,
    /// since the counters are cumulative.
    pub checkpoint_every: Duration,
    /// How often the router of a rollout not in flight is reconciled.
    pub idle_reconcile_every: Duration,
    /// `canaryd run --shadow`: every rollout's spec is taken as
    /// `deploy.mode: shadow` (canaryd watches and never touches traffic).
    pub shadow: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            default_prometheus: None,
            reload_every: Duration::from_secs(1),
            checkpoint_every: Duration::from_secs(300),
            idle_reconcile_every: Duration::from_secs(60),
            shadow: false,
        }
    }
}

/// The systems the controller drives, each behind its port.
pub struct Ports {
    /// Where specs come from.
    pub specs: Box<dyn SpecSource>,
    /// Rollout states, committed with the tick's records and alerts.
    pub store: Arc<dyn StateStore>,
    /// The decision log (the last decision of each rollout, for the view).
    pub log: Arc<dyn DecisionLog>,
    /// Builds each rollout's router.
    pub routers: Arc<dyn RouterFactory>,
    /// Measures gates.
    pub metrics: Arc<dyn MetricsSource>,
    /// Whether this process may write.
    pub leadership: Arc<dyn Leadership>,
}

/// What the controller shares with the API and the notifier.
pub struct Parts {
    /// Metric policies.
    pub policies: PolicySet,
    /// The picture of every rollout (shared with the API).
    pub view: Arc<View>,
    /// Own metrics.
    pub metrics: Metrics,
    /// Where alerts go besides each spec's own sinks, and dashboard links.
    pub alerts: Routing,
    /// Signalled after a commit that queued alerts (wakes the notifier).
    pub alerts_queued: Arc<Notify>,
}

/// A person's command, with where to send the outcome.
pub struct CommandRequest {
    /// Which rollout.
    pub id: RolloutId,
    /// What to do.
    pub command: Command,
    /// The name of the API token that issued it, for the decision log.
    pub by: Option<String>,
    /// The rollout after it, or why not.
    pub reply: oneshot::Sender<Result<RolloutView, CommandError>>,
}

/// The running controller.
pub struct Controller {
    settings: Settings,
    specs: specs::Specs,
    store: Arc<dyn StateStore>,
    log: Arc<dyn DecisionLog>,
    routers: Arc<dyn RouterFactory>,
    source: Arc<dyn MetricsSource>,
    leadership: Arc<dyn Leadership>,
    policies: PolicySet,
    view: Arc<View>,
    metrics: Metrics,
    alerts: Routing,
    alerts_queued: Arc<Notify>,
    /// States loaded from the store and not yet claimed by a spec.
    stored: BTreeMap<RolloutId, RolloutState>,
    rollouts: BTreeMap<RolloutId, Managed>,
    /// Routers of rollouts whose spec was removed: kept serving (stable
    /// traffic goes on), handed back if the spec returns.
    released: BTreeMap<RolloutId, (Arc<dyn TrafficRouter>, crate::spec::model::DeploySpec)>,
    measured_tx: mpsc::Sender<Measured>,
    measured_rx: mpsc::Receiver<Measured>,
    timers: Timers,
    /// What this tick writes at its end.
    deferred: deferred::Deferred,
    /// The tick being planned, if any.
    planning: Option<tick::Planning>,
    /// Ticks planned or measured and not yet fully decided.
    ticks_in_flight: usize,
    clock: Clock,
}

/// The controller's clock: the wall-clock time it started at, advanced by
/// tokio's monotonic clock (so tests run it in paused, simulated time, and a
/// wall-clock jump never moves a step's watched time).
#[derive(Clone, Copy, Debug)]
struct Clock {
    base: Timestamp,
    at: tokio::time::Instant,
}

impl Clock {
    fn start() -> Clock {
        Clock {
            base: Timestamp::from_system(SystemTime::now()),
            at: tokio::time::Instant::now(),
        }
    }

    fn now(&self) -> Timestamp {
        self.base.plus(self.at.elapsed())
    }

    /// The instant `t` falls at on the monotonic clock.
    fn instant(&self, t: Timestamp) -> tokio::time::Instant {
        self.at + Duration::from_millis(t.millis().saturating_sub(self.base.millis()))
    }
}

impl Controller {
    /// Loads the stored states and the specs, starts each rollout's router
    /// and sets it back to the stored weight.
    pub async fn start(
        settings: Settings,
        ports: Ports,
        parts: Parts,
    ) -> Result<Controller, ControllerError> {
        let stored = ports.store.load().await?;
        let (measured_tx, measured_rx) = mpsc::channel(16);
        let clock = Clock::start();
        let mut controller = Controller {
            settings,
            specs: specs::Specs::new(ports.specs),
            store: ports.store,
            log: ports.log,
            routers: ports.routers,
            source: ports.metrics,
            leadership: ports.leadership,
            policies: parts.policies,
            view: parts.view,
            metrics: parts.metrics,
            alerts: parts.alerts,
            alerts_queued: parts.alerts_queued,
            stored: stored.into_iter().map(|s| (s.id, s.state)).collect(),
            rollouts: BTreeMap::new(),
            released: BTreeMap::new(),
            measured_tx,
            measured_rx,
            timers: Timers::new(clock.now()),
            deferred: deferred::Deferred::default(),
            planning: None,
            ticks_in_flight: 0,
            clock,
        };
        let now = controller.now();
        controller.reload(now).await?;
        controller.view.set_ready();
        Ok(controller)
    }

    /// Runs until `shutdown` completes.
    pub async fn run(
        mut self,
        mut commands: mpsc::Receiver<CommandRequest>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut reload = tokio::time::interval(self.settings.reload_every);
        reload.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wake = match self.timers.next() {
                Some(t) => self.clock.instant(t),
                None => tokio::time::Instant::now() + self.settings.reload_every,
            };
            // In this order when several are ready: a person's command waits
            // for at most the one chunk being planned, decided or written.
            let turn = tokio::select! {
                biased;
                _ = &mut shutdown => break,
                Some(request) = commands.recv() => {
                    let started = Instant::now();
                    self.command(request).await;
                    (LoopWork::Command, started)
                }
                _ = std::future::ready(()), if self.planning.is_some() => {
                    let started = Instant::now();
                    self.plan_more(tick::PLAN_CHUNK);
                    (LoopWork::Tick, started)
                }
                _ = std::future::ready(()), if self.deferred.due => {
                    let started = Instant::now();
                    if !self.write_deferred_part(deferred::WRITE_CHUNK).await {
                        self.deferred.due = false;
                    }
                    (LoopWork::TickEnd, started)
                }
                _ = tokio::time::sleep_until(wake) => {
                    let started = Instant::now();
                    self.tick_due(self.now()).await;
                    (LoopWork::Tick, started)
                }
                _ = reload.tick() => {
                    // The look runs on its own task; its changes are applied below.
                    let started = Instant::now();
                    self.specs.start();
                    (LoopWork::Reload, started)
                }
                Some(looked) = self.specs.looked(), if self.specs.looking() => {
                    let started = Instant::now();
                    match looked {
                        Ok(events) => self.apply_spec_changes(events, self.now()).await,
                        Err(e) => {
                            let e = ControllerError::from(e);
                            self.metrics.count_error(e.kind());
                            tracing::error!(error = %e, "cannot read the specs; rollouts keep running");
                        }
                    }
                    (LoopWork::Reload, started)
                }
                Some(measured) = self.measured_rx.recv() => {
                    let started = Instant::now();
                    let tick_started = self.decide_measured(measured).await;
                    if let Some(tick_started) = tick_started {
                        self.metrics
                            .tick_duration
                            .observe(tick_started.elapsed().as_secs_f64());
                        self.deferred.due = true;
                    }
                    (LoopWork::Decide, started)
                }
            };
            self.metrics
                .observe_turn(turn.0, turn.1.elapsed().as_secs_f64());
        }
        // What the tick in progress decided is kept, not lost with the process.
        self.write_deferred().await;
        for m in self.rollouts.values() {
            m.router.stop();
        }
        for (r, _) in self.released.values() {
            r.stop();
        }
        tracing::info!("controller stopped");
    }

    /// Now, on the controller's clock.
    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Counts and logs an error of the controller's systems.
    fn error(&self, what: &str, e: &ControllerError) {
        self.metrics.count_error(e.kind());
        tracing::error!(error = %e, kind = e.kind(), "{what}");
    }
}

#[cfg(test)]
mod tests;
