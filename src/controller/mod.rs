//! The controller of standalone mode: the long-running loop that reads the
//! deploy directory (hot reload), measures each rollout's gates at its
//! interval, asks the engine, commits every decision, then drives the routers.
//!
//! Ordering of one tick (BRIEF §3): weight *cuts* are applied first (a
//! rollback takes traffic off the canary before anything else), then the
//! tick's decisions are committed in one transaction (state, records, alert
//! deliveries; the notifier sends them on its own task),
//! then the remaining effects run (weight raises). A crash between steps
//! resumes from the last commit: the router is set back to the stored weight
//! at start-up, and the same state decides the same thing again (stored once).

pub mod files;
pub mod history;
pub mod metrics;
mod rollout;
mod tick;
pub mod view;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, mpsc, oneshot};

use crate::engine::{Command, RolloutState, Timestamp};
use crate::notify::Routing;
use crate::provider::PrometheusSource;
use crate::router::RouterMetrics;
use crate::spec::model::RolloutId;
use crate::spec::policy::PolicySet;
use crate::store::{SqliteStore, StoreError};

use files::{DeployDir, FileEvent};
pub use metrics::Metrics;
use rollout::Managed;
pub use view::{Event, RolloutView, View};

/// Settings of the loop.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The directory of deploy files.
    pub deploy_dir: PathBuf,
    /// Prometheus for files that name none.
    pub default_prometheus: Option<String>,
    /// How often the deploy directory is scanned.
    pub reload_every: Duration,
    /// How often the built-in routers check their upstreams.
    pub health_interval: Duration,
}

/// A person's command, with where to send the outcome.
pub struct CommandRequest {
    /// Which rollout.
    pub id: RolloutId,
    /// What to do.
    pub command: Command,
    /// The rollout after it, or why not.
    pub reply: oneshot::Sender<Result<RolloutView, CommandError>>,
}

/// Why a command was not carried out.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommandError {
    /// No such rollout.
    #[error("no rollout {0}")]
    NotFound(String),
    /// The engine refused it in this phase.
    #[error("{0}")]
    Rejected(String),
    /// It was decided but could not be stored; nothing changed.
    #[error("{0}")]
    Store(String),
}

/// The controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The deploy directory cannot be read.
    #[error("deploy directory {dir}: {source}")]
    DeployDir {
        /// The directory.
        dir: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The running controller.
pub struct Controller {
    settings: Settings,
    policies: PolicySet,
    store: Arc<SqliteStore>,
    source: PrometheusSource,
    view: Arc<View>,
    metrics: Metrics,
    router_metrics: RouterMetrics,
    alerts: Routing,
    alerts_queued: Arc<Notify>,
    dir: DeployDir,
    /// States loaded from the store and not yet claimed by a deploy file.
    stored: BTreeMap<RolloutId, RolloutState>,
    rollouts: BTreeMap<RolloutId, Managed>,
}

/// Now, from the system clock (the only clock read of the controller).
pub fn now() -> Timestamp {
    Timestamp::from_system(SystemTime::now())
}

/// What the controller needs from outside.
pub struct Parts {
    /// Metric policies.
    pub policies: PolicySet,
    /// The state store.
    pub store: Arc<SqliteStore>,
    /// Where gates are measured.
    pub source: PrometheusSource,
    /// Shared with the API.
    pub view: Arc<View>,
    /// Own metrics.
    pub metrics: Metrics,
    /// The built-in routers' metrics.
    pub router_metrics: RouterMetrics,
    /// Where alerts go besides each file's own sinks, and dashboard links.
    pub alerts: Routing,
    /// Signalled after a commit that queued alerts (wakes the notifier).
    pub alerts_queued: Arc<Notify>,
}

impl Controller {
    /// Loads the stored state and the deploy directory, starts each rollout's
    /// router and sets it back to the stored weight.
    pub async fn start(settings: Settings, parts: Parts) -> Result<Controller, ControllerError> {
        let store = parts.store.clone();
        let stored = tokio::task::spawn_blocking(move || store.load())
            .await
            .map_err(|e| StoreError::Corrupt {
                what: "load task",
                message: e.to_string(),
            })??;
        let dir = DeployDir::new(settings.deploy_dir.clone());
        let mut controller = Controller {
            settings,
            policies: parts.policies,
            store: parts.store,
            source: parts.source,
            view: parts.view,
            metrics: parts.metrics,
            router_metrics: parts.router_metrics,
            alerts: parts.alerts,
            alerts_queued: parts.alerts_queued,
            dir,
            stored: stored.into_iter().map(|s| (s.id, s.state)).collect(),
            rollouts: BTreeMap::new(),
        };
        controller
            .reload(now())
            .await
            .map_err(|source| ControllerError::DeployDir {
                dir: controller.settings.deploy_dir.display().to_string(),
                source,
            })?;
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
        let mut ticks = tokio::time::interval(Duration::from_millis(100));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(request) = commands.recv() => self.command(request).await,
                _ = reload.tick() => {
                    if let Err(e) = self.reload(now()).await {
                        tracing::error!(dir = %self.settings.deploy_dir.display(), error = %e, "cannot read the deploy directory; rollouts keep running");
                    }
                }
                _ = ticks.tick() => self.tick_due(now()).await,
            }
        }
        for m in self.rollouts.values() {
            m.router.stop();
        }
        tracing::info!("controller stopped");
    }

    /// Applies what changed in the deploy directory.
    async fn reload(&mut self, now: Timestamp) -> std::io::Result<()> {
        let events = self.dir.scan(&self.policies)?;
        for event in events {
            match event {
                FileEvent::Changed {
                    path,
                    spec,
                    text,
                    warnings,
                } => {
                    for w in warnings {
                        tracing::warn!(file = %path.display(), "{w}");
                    }
                    let store = self.store.clone();
                    let key = path.display().to_string();
                    let saved = tokio::task::spawn_blocking(move || {
                        store.save_accepted_file(&key, &text, now)
                    })
                    .await;
                    if !matches!(saved, Ok(Ok(()))) {
                        tracing::warn!(file = %path.display(), "cannot remember the accepted file; a restart with a broken file would not run it");
                    }
                    self.file_changed(path, *spec, now).await;
                }
                FileEvent::Rejected { path, report } => {
                    if !self.rollouts.values().any(|m| m.file == path) {
                        self.run_last_good(&path, now).await;
                    }
                    self.file_rejected(&path, report);
                }
                FileEvent::Removed { path } => self.file_removed(&path),
            }
        }
        Ok(())
    }

    /// A file that is broken now (after a restart) runs its last accepted version.
    async fn run_last_good(&mut self, path: &std::path::Path, now: Timestamp) {
        let store = self.store.clone();
        let key = path.display().to_string();
        let Ok(Ok(Some(text))) =
            tokio::task::spawn_blocking(move || store.accepted_file(&key)).await
        else {
            return;
        };
        let decoded =
            crate::spec::decode::decode(&path.display().to_string(), &text, &self.policies);
        if let Some(spec) = decoded
            .spec
            .filter(|_| !decoded.diagnostics.iter().any(|d| d.is_error()))
        {
            tracing::warn!(file = %path.display(), rollout = %spec.id, "the file is broken; running its last accepted version");
            self.file_changed(path.to_path_buf(), spec, now).await;
        }
    }
}
