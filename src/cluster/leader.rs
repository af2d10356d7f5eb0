//! Leader election on a `coordination.k8s.io/v1` Lease (kube-lease-manager),
//! and the fenced status write.
//!
//! Every replica runs the election and keeps its caches warm; only the one
//! whose receiver reads `true` acts. kube-lease-manager takes a free lease
//! with a non-forced server-side apply (a 409 means someone else got it) and
//! renews it with patches; a holder that stops renewing loses it after the
//! lease duration. It gives no fencing token: a leader paused past its lease
//! may still believe it leads for a moment. So every status write carries the
//! resourceVersion it read ([`write_status`]): a stale writer gets 409.

use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::ClusterError;
use super::crd::{Rollout, RolloutStatus};
use super::names::FIELD_MANAGER;

/// How the election runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderConfig {
    /// The Lease's namespace (canaryd's own).
    pub namespace: String,
    /// The Lease's name.
    pub lease: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// Seconds a holder keeps the lease without renewing it.
    pub duration_seconds: u64,
    /// Seconds before expiry the holder renews (less than the duration).
    pub grace_seconds: u64,
}

impl LeaderConfig {
    /// The defaults: lease `canaryd-leader`, 15 s held, renewed 5 s before
    /// expiry; identity from `POD_NAME`, else `HOSTNAME`.
    pub fn new(namespace: &str) -> LeaderConfig {
        let identity = std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| format!("canaryd-{}", std::process::id()));
        LeaderConfig {
            namespace: namespace.to_string(),
            lease: "canaryd-leader".to_string(),
            identity,
            duration_seconds: 15,
            grace_seconds: 5,
        }
    }
}

/// This replica's part in the election.
pub struct Leadership {
    /// This replica's identity, as written in the Lease's `holderIdentity`.
    pub identity: String,
    /// `true` while this replica holds the lease.
    pub is_leader: watch::Receiver<bool>,
    /// The election task; it ends (releasing the lease) when every receiver
    /// is dropped. Aborting it stops renewals without releasing (a crash).
    pub task: JoinHandle<kube_lease_manager::Result<LeaseManager>>,
}

/// Starts the election: creates the Lease if missing, then tries to take it
/// and keeps renewing it while held.
pub async fn start(client: Client, config: &LeaderConfig) -> Result<Leadership, ClusterError> {
    if config.grace_seconds == 0 || config.grace_seconds >= config.duration_seconds {
        return Err(ClusterError::Invalid(format!(
            "the lease's grace ({} s) must be above zero and below its duration ({} s)",
            config.grace_seconds, config.duration_seconds
        )));
    }
    let manager = LeaseManagerBuilder::new(client, &config.lease)
        .with_namespace(&config.namespace)
        .with_identity(&config.identity)
        .with_field_manager(format!("{FIELD_MANAGER}-{}", config.identity))
        .with_duration(config.duration_seconds)
        .with_grace(config.grace_seconds)
        .build()
        .await?;
    let (is_leader, task) = manager.watch().await;
    Ok(Leadership {
        identity: config.identity.clone(),
        is_leader,
        task,
    })
}

/// Writes a Rollout's status, fenced by the resourceVersion of `read` (the
/// object as this writer last read it): if anyone wrote the Rollout since,
/// the API server answers 409 and this returns [`ClusterError::Stale`]; read
/// again and recompute. Returns the object as written.
pub async fn write_status(
    api: &Api<Rollout>,
    read: &Rollout,
    status: RolloutStatus,
) -> Result<Rollout, ClusterError> {
    let name = read.name_any();
    if read.resource_version().is_none() {
        return Err(ClusterError::Invalid(format!(
            "Rollout {name} has no resourceVersion: write only what was read"
        )));
    }
    let mut next = read.clone();
    next.metadata.managed_fields = None;
    next.status = Some(status);
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PostParams::default()
    };
    api.replace_status(&name, &params, &next)
        .await
        .map_err(|e| ClusterError::api(format!("write Rollout {name} status"), e))
}

/// [`write_status`], only while `is_leader` reads `true`.
pub async fn write_status_as_leader(
    is_leader: &watch::Receiver<bool>,
    api: &Api<Rollout>,
    read: &Rollout,
    status: RolloutStatus,
) -> Result<Option<Rollout>, ClusterError> {
    if !*is_leader.borrow() {
        return Ok(None);
    }
    write_status(api, read, status).await.map(Some)
}
