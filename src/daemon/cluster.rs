//! Cluster mode's wiring (`canaryd run --cluster`): the Kubernetes adapter
//! of every port, around the same controller, API, dashboard, notifier and
//! `/metrics` as standalone mode.
//!
//! Every replica elects on a Lease, keeps watch caches of Rollouts and
//! Deployments, and serves the API. A **standby** shows the rollouts from
//! its cache ([`Mirror`]) and never writes; commands sent to it are refused
//! (`not_leader`). The **leader** runs one term: the notifier, and a
//! controller started from the statuses read afresh, so every rollout
//! resumes at its stored step with its watched time and every pending alert
//! is delivered once. A term ends when the lease is lost (the controller
//! stops; its writes were already refused by the fenced store) or on
//! shutdown; if the store raises its fence (another writer, a commit half
//! done), the controller restarts from what is stored. Everything this
//! replica spawns dies with it, and a dropped replica is no longer allowed
//! to act: an aborted task (the tests' crash) stops writing at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::basics::{Basics, stop_api};
use super::{DaemonConfig, DaemonError, duration, load_policy_set, setting};
use crate::cluster::crd::Rollout;
use crate::cluster::events::EventSink;
use crate::cluster::leader::{self, LeaderConfig};
use crate::cluster::mirror::Mirror;
use crate::cluster::routers::ClusterRouters;
use crate::cluster::specs::RolloutSpecs;
use crate::cluster::state::{ClusterStore, StatusBook};
use crate::controller::{
    CommandError, CommandRequest, Controller, ControllerError, Metrics, Parts, Ports, Settings,
    View,
};
use crate::engine::Timestamp;
use crate::notify::{Notifier, RetryPolicy, Routing};
use crate::ports::{Leadership, MetricsSource};
use crate::provider::redact_url;
use crate::spec::policy::PolicySet;

/// How often a standby refreshes its picture from the watch cache.
const MIRROR_EVERY: Duration = Duration::from_secs(1);
/// How long a controller that cannot start waits before trying again.
const RESTART_AFTER: Duration = Duration::from_secs(1);
/// How long a stopping replica waits for the Lease to be released.
const RELEASE_WITHIN: Duration = Duration::from_secs(3);

/// Cluster mode with the client built from in-cluster credentials or
/// `KUBECONFIG`, and this pod's name (`POD_NAME`) as the identity.
pub async fn serve(
    config: DaemonConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    let client = Client::try_default().await.map_err(|e| {
        DaemonError::Build(format!(
            "cannot build a Kubernetes client (in-cluster credentials, else KUBECONFIG): {e}"
        ))
    })?;
    let identity = LeaderConfig::new("canaryd").identity;
    serve_with_client(config, client, identity, shutdown).await
}

/// The Lease settings.
fn lease_config(config: &DaemonConfig, identity: &str) -> Result<LeaderConfig, DaemonError> {
    let seconds = |key, text: &str| duration(key, text).map(|d| d.as_secs().max(1));
    let namespace = config
        .lease_namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| "canaryd".into());
    let lease = LeaderConfig {
        namespace,
        lease: config.lease_name.clone(),
        identity: identity.to_string(),
        duration_seconds: seconds("lease_duration", &config.lease_duration)?,
        grace_seconds: seconds("lease_grace", &config.lease_grace)?,
    };
    if lease.grace_seconds >= lease.duration_seconds {
        return Err(setting(
            "lease_grace",
            "must be shorter than lease_duration (whole seconds)",
        ));
    }
    Ok(lease)
}

/// This replica may act: it holds the Lease and has not been stopped.
struct Replica {
    lease: watch::Receiver<bool>,
    alive: Arc<AtomicBool>,
}

impl Leadership for Replica {
    fn may_act(&self) -> bool {
        self.alive.load(Ordering::SeqCst) && *self.lease.borrow()
    }
}

/// Clears the flag when the replica's future ends or is dropped.
struct Alive(Arc<AtomicBool>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Aborts a task that is not in a `JoinSet` when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A watch cache of every `K` in the cluster, fed by a task in `tasks`.
fn cache<K>(tasks: &mut JoinSet<()>, api: Api<K>) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).default_backoff(),
    );
    tasks.spawn(async move {
        stream
            .for_each(|event| async move {
                if let Err(e) = event {
                    tracing::warn!(error = %e, kind = %K::kind(&K::DynamicType::default()), "watch failed; retrying");
                }
            })
            .await;
    });
    reader
}

/// What the leader's terms are built from.
struct Cluster {
    client: Client,
    rollouts: Store<Rollout>,
    deployments: Store<Deployment>,
    book: Arc<StatusBook>,
    events: EventSink,
    store: ClusterStore,
    leadership: Arc<dyn Leadership>,
    is_leader: watch::Receiver<bool>,
    policies: PolicySet,
    view: Arc<View>,
    metrics: Metrics,
    alerts: Routing,
    alerts_queued: Arc<tokio::sync::Notify>,
    retry: RetryPolicy,
    settings: Settings,
    source: Arc<dyn MetricsSource>,
    /// Where the API's commands go while a controller runs.
    term: Arc<Mutex<Option<mpsc::Sender<CommandRequest>>>>,
}

/// Why a controller stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ended {
    /// The lease was lost.
    Lost,
    /// The store raised its fence: restart from what is stored.
    Fenced,
    /// It could not start.
    Failed,
    /// Shutdown.
    Down,
}

/// Cluster mode over `client` (the tests pass the fake API server's), as
/// the replica `identity`, until `shutdown`.
pub async fn serve_with_client(
    config: DaemonConfig,
    client: Client,
    identity: String,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    let policies = load_policy_set(&config)?;
    let lease = lease_config(&config, &identity)?;
    let basics = Basics::build(&config, policies).await?;
    let alive = Alive(Arc::new(AtomicBool::new(true)));
    let election = leader::start(client.clone(), &lease).await?;
    let lease_task = AbortOnDrop(election.task.abort_handle());
    let leadership: Arc<dyn Leadership> = Arc::new(Replica {
        lease: election.is_leader.clone(),
        alive: alive.0.clone(),
    });
    let mut tasks = JoinSet::new();
    let rollouts = cache::<Rollout>(&mut tasks, Api::all(client.clone()));
    let deployments = cache::<Deployment>(&mut tasks, Api::all(client.clone()));
    let book = Arc::new(StatusBook::new(client.clone(), leadership.clone()));
    let events = EventSink::new(client.clone(), &identity);
    let store = ClusterStore::new(book.clone(), rollouts.clone(), events.clone());
    let (commands, requests) = mpsc::channel(64);
    let cluster = Cluster {
        client,
        rollouts,
        deployments,
        book,
        events,
        store: store.clone(),
        leadership,
        is_leader: election.is_leader.clone(),
        policies: basics.policies.clone(),
        view: basics.view.clone(),
        metrics: basics.metrics.clone(),
        alerts: basics.alerts.clone(),
        alerts_queued: basics.alerts_queued.clone(),
        retry: basics.retry,
        settings: basics.settings.clone(),
        source: basics.source.clone(),
        term: Arc::new(Mutex::new(None)),
    };
    let api = basics.api(
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        Arc::new(store),
        commands,
    );
    tracing::info!(
        api = %format!("http://{}/", api.bound),
        identity = %identity,
        lease = %format!("{}/{}", lease.namespace, lease.lease),
        lease_seconds = lease.duration_seconds,
        prometheus = %config.prometheus_url.as_deref().map(redact_url).unwrap_or_else(|| "(per Rollout)".into()),
        "canaryd running in cluster mode"
    );
    let (stop_api_tx, stopped) = watch::channel(false);
    let api_task = api.spawn(stopped);
    let _api_guard = AbortOnDrop(api_task.abort_handle());
    let (down_tx, mut down) = watch::channel(false);
    tasks.spawn(async move {
        shutdown.await;
        let _ = down_tx.send(true);
    });
    tasks.spawn(dispatch(requests, cluster.term.clone()));
    let outcome = cluster.run(&mut down).await;
    let _ = stop_api_tx.send(true);
    stop_api(api_task).await;
    // Dropping every receiver ends the election task, which releases the
    // Lease so the other replica takes over at once.
    drop(cluster);
    drop(election.is_leader);
    drop(alive);
    tasks.shutdown().await;
    let _ = tokio::time::timeout(RELEASE_WITHIN, election.task).await;
    drop(lease_task);
    outcome
}

/// Sends each command to the running controller, or refuses it.
async fn dispatch(
    mut requests: mpsc::Receiver<CommandRequest>,
    term: Arc<Mutex<Option<mpsc::Sender<CommandRequest>>>>,
) {
    while let Some(request) = requests.recv().await {
        let to = term.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let refused = match to {
            Some(to) => to.send(request).await.err().map(|e| e.0),
            None => Some(request),
        };
        if let Some(request) = refused {
            let _ = request
                .reply
                .send(Err(CommandError::Failed(ControllerError::NotLeader)));
        }
    }
}

impl Cluster {
    fn leads(&self) -> bool {
        self.leadership.may_act()
    }

    /// Standby and leader terms, until shutdown.
    async fn run(&self, down: &mut watch::Receiver<bool>) -> Result<(), DaemonError> {
        let synced = async {
            let _ = self.rollouts.wait_until_ready().await;
            let _ = self.deployments.wait_until_ready().await;
        };
        tokio::select! {
            () = synced => {}
            _ = down.wait_for(|d| *d) => return Ok(()),
        }
        self.view.set_ready();
        let mut mirror = Mirror::new(
            self.rollouts.clone(),
            self.deployments.clone(),
            self.policies.clone(),
            self.view.clone(),
        );
        loop {
            self.standby(&mut mirror, down).await?;
            if *down.borrow() {
                return Ok(());
            }
            self.lead(down).await;
            if *down.borrow() {
                return Ok(());
            }
        }
    }

    /// Shows the cache until this replica leads or shuts down.
    async fn standby(
        &self,
        mirror: &mut Mirror,
        down: &mut watch::Receiver<bool>,
    ) -> Result<(), DaemonError> {
        mirror.reset();
        let mut is_leader = self.is_leader.clone();
        let mut every = tokio::time::interval(MIRROR_EVERY);
        loop {
            if self.leads() || *down.borrow() {
                return Ok(());
            }
            tokio::select! {
                _ = every.tick() => mirror.refresh(Timestamp::from_system(SystemTime::now())),
                changed = is_leader.changed() => if changed.is_err() {
                    return Err(DaemonError::Build("leader election stopped".into()));
                },
                _ = down.changed() => {}
            }
        }
    }

    /// One leadership term: the notifier, and the controller (restarted
    /// from what is stored when the store raises its fence).
    async fn lead(&self, down: &mut watch::Receiver<bool>) {
        tracing::info!("leading: every rollout resumes from its status");
        let notifier = Notifier::new(
            Arc::new(self.store.clone()),
            self.retry,
            self.alerts_queued.clone(),
            self.metrics.alerts.clone(),
        );
        let (stop_notifier, notifier_stopped) = watch::channel(false);
        let notifier = notifier.map(|n| {
            let mut stopped = notifier_stopped;
            tokio::spawn(n.run(async move {
                let _ = stopped.wait_for(|s| *s).await;
            }))
        });
        let _notifier_guard = notifier
            .as_ref()
            .ok()
            .map(|t| AbortOnDrop(t.abort_handle()));
        if let Err(e) = &notifier {
            tracing::error!(error = %e, "cannot start the notifier; alerts stay queued");
        }
        loop {
            self.book.clear();
            let ended = self.control(down).await;
            tracing::info!(why = ?ended, "controller stopped");
            let again = matches!(ended, Ended::Fenced | Ended::Failed);
            if !(again && self.leads() && !*down.borrow()) {
                break;
            }
        }
        // Attempts in flight finish and are recorded while this replica
        // still holds the lease.
        let _ = stop_notifier.send(true);
        if let Ok(task) = notifier {
            let within = self.retry.timeout + Duration::from_secs(2);
            let _ = tokio::time::timeout(within, task).await;
        }
        self.book.clear();
    }

    /// Runs a controller until the lease is lost, the fence is raised or shutdown.
    async fn control(&self, down: &mut watch::Receiver<bool>) -> Ended {
        let ports = Ports {
            specs: Box::new(RolloutSpecs::new(
                self.client.clone(),
                self.rollouts.clone(),
                self.deployments.clone(),
                self.policies.clone(),
                self.book.clone(),
                self.events.clone(),
            )),
            store: Arc::new(self.store.clone()),
            log: Arc::new(self.store.clone()),
            routers: Arc::new(ClusterRouters::new(
                self.client.clone(),
                self.book.clone(),
                self.leadership.clone(),
            )),
            metrics: self.source.clone(),
            leadership: self.leadership.clone(),
        };
        let parts = Parts {
            policies: self.policies.clone(),
            view: self.view.clone(),
            metrics: self.metrics.clone(),
            alerts: self.alerts.clone(),
            alerts_queued: self.alerts_queued.clone(),
        };
        let controller = match Controller::start(self.settings.clone(), ports, parts).await {
            Ok(c) => c,
            Err(e) => {
                self.metrics.count_error(e.kind());
                tracing::error!(error = %e, "cannot start the controller; trying again");
                tokio::select! {
                    () = tokio::time::sleep(RESTART_AFTER) => {}
                    _ = down.wait_for(|d| *d) => {}
                }
                return Ended::Failed;
            }
        };
        let (to_controller, requests) = mpsc::channel(64);
        *self.term.lock().unwrap_or_else(PoisonError::into_inner) = Some(to_controller);
        let why = Mutex::new(Ended::Down);
        let mut is_leader = self.is_leader.clone();
        let mut down_rx = down.clone();
        let stop = async {
            let ended = tokio::select! {
                _ = is_leader.wait_for(|l| !*l) => Ended::Lost,
                () = self.book.fenced() => Ended::Fenced,
                _ = down_rx.wait_for(|d| *d) => Ended::Down,
            };
            *why.lock().unwrap_or_else(PoisonError::into_inner) = ended;
        };
        controller.run(requests, stop).await;
        *self.term.lock().unwrap_or_else(PoisonError::into_inner) = None;
        *why.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
