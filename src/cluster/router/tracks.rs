//! The two Deployments behind a rollout's tracks and their readiness.

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;

use crate::router::Health;

/// The stable (primary) and canary (target) Deployments of one rollout.
#[derive(Clone)]
pub struct Tracks {
    /// Deployments in the rollout's namespace.
    pub api: Api<Deployment>,
    /// The primary's name (`checkout-primary`).
    pub stable: String,
    /// The target's name (`checkout`).
    pub canary: String,
}

impl Tracks {
    /// Both Deployments' readiness. A Deployment that cannot be read is not ready.
    pub async fn health(&self) -> Health {
        let ready = |name: String| {
            let api = self.api.clone();
            async move {
                match api.get_opt(&name).await {
                    Ok(Some(d)) => is_ready(&d),
                    Ok(None) => false,
                    Err(e) => {
                        tracing::warn!(deployment = %name, error = %e, "cannot read a Deployment's readiness");
                        false
                    }
                }
            }
        };
        let (stable, canary) =
            futures::join!(ready(self.stable.clone()), ready(self.canary.clone()));
        Health { stable, canary }
    }
}

/// Whether a Deployment can take traffic: the Deployment controller has seen
/// its current spec, it wants at least one pod, and every pod it wants is
/// updated to the current template and available. A Deployment scaled to
/// zero, still rolling, or with pods of an older template is not ready.
pub fn is_ready(d: &Deployment) -> bool {
    let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(status) = &d.status else {
        return false;
    };
    let observed = match (d.metadata.generation, status.observed_generation) {
        (Some(g), Some(o)) => o >= g,
        (None, _) => true,
        (Some(_), None) => false,
    };
    let updated = status.updated_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    wanted >= 1 && observed && updated >= wanted && available >= wanted && total == updated
}
