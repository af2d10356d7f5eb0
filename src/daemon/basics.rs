//! What both modes build the same way from the settings: policies, own
//! metrics, Prometheus, the view, the API's listener and access, alert
//! routing and retries, the controller's settings.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};

use super::{
    DaemonConfig, DaemonError, access, alert_routing, connection_limits, duration, retry_policy,
    setting,
};
use crate::api::tokens::ApiTokens;
use crate::api::{self, Access, ApiState, ReadAccess};
use crate::controller::{CommandRequest, Metrics, Parts, Settings, View};
use crate::delivery::gauges::DeliveryGauges;
use crate::notify::{Notifier, RetryPolicy, Routing};
use crate::ports::store::PeriodLog;
use crate::ports::{AlertOutbox, DecisionLog, MetricsSource};
use crate::provider::{PrometheusSource, ProviderConfig};
use crate::router::{ConnectionLimits, ListenerStats, RouterMetrics};
use crate::spec::policy::PolicySet;

/// The parts every mode shares.
pub(super) struct Basics {
    pub policies: PolicySet,
    pub registry: Registry,
    pub metrics: Metrics,
    pub router_metrics: RouterMetrics,
    pub source: Arc<dyn MetricsSource>,
    pub view: Arc<View>,
    pub listener: TcpListener,
    pub bound: SocketAddr,
    pub alerts: Routing,
    pub access: Access,
    pub api_limits: ConnectionLimits,
    pub router_limits: ConnectionLimits,
    pub retry: RetryPolicy,
    pub settings: Settings,
    pub alerts_queued: Arc<Notify>,
    /// The API tokens, by name (read once at startup).
    pub tokens: ApiTokens,
}

/// The API, ready to serve.
pub(super) struct Api {
    pub state: Arc<ApiState>,
    listener: TcpListener,
    pub bound: SocketAddr,
    pub limits: ConnectionLimits,
}

impl Basics {
    /// Builds them (binding the API's address).
    pub async fn build(config: &DaemonConfig, policies: PolicySet) -> Result<Basics, DaemonError> {
        let tokens = config.tokens().map_err(|message| DaemonError::Setting {
            key: "api_tokens",
            message,
        })?;
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let router_metrics = RouterMetrics::register(&mut registry);
        let source = PrometheusSource::new(ProviderConfig {
            timeout: duration("query_timeout", &config.query_timeout)?,
            ..ProviderConfig::default()
        })
        .map_err(|e| DaemonError::Build(e.to_string()))?;
        let listen: SocketAddr = config.listen.parse().map_err(|_| {
            setting(
                "listen",
                format!(
                    "`{}` is not an address such as 127.0.0.1:9900",
                    config.listen
                ),
            )
        })?;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| DaemonError::Listen {
                addr: listen,
                source,
            })?;
        let bound = listener.local_addr().unwrap_or(listen);
        let alerts = alert_routing(config, bound)?;
        let access = access(config, bound)?;
        let (api_limits, router_limits) = connection_limits(config)?;
        let retry = retry_policy(config)?;
        let settings = Settings {
            default_prometheus: config.prometheus_url.clone(),
            reload_every: duration("reload_every", &config.reload_every)?,
            checkpoint_every: duration("checkpoint_every", &config.checkpoint_every)?,
            shadow: config.shadow,
            ..Settings::default()
        };
        Ok(Basics {
            policies,
            registry,
            metrics,
            router_metrics,
            source: Arc::new(source),
            view: Arc::new(View::default()),
            listener,
            bound,
            alerts,
            access,
            api_limits,
            router_limits,
            retry,
            settings,
            alerts_queued: Arc::new(Notify::new()),
            tokens,
        })
    }

    /// A notifier delivering from `outbox`.
    pub fn notifier(&self, outbox: Arc<dyn AlertOutbox>) -> Result<Notifier, DaemonError> {
        Notifier::new(
            outbox,
            self.retry,
            self.alerts_queued.clone(),
            self.metrics.alerts.clone(),
        )
        .map_err(|e| DaemonError::Build(e.to_string()))
    }

    /// What the controller shares with the API and the notifier.
    pub fn parts(&self) -> Parts {
        Parts {
            policies: self.policies.clone(),
            view: self.view.clone(),
            metrics: self.metrics.clone(),
            alerts: self.alerts.clone(),
            alerts_queued: self.alerts_queued.clone(),
        }
    }

    /// The API over `log`, `periods` and `outbox`, sending commands to
    /// `commands`; `/metrics` gets the delivery gauges over `periods`.
    pub fn api(
        mut self,
        log: Arc<dyn DecisionLog>,
        periods: Arc<dyn PeriodLog>,
        outbox: Arc<dyn AlertOutbox>,
        commands: mpsc::Sender<CommandRequest>,
    ) -> Api {
        self.registry
            .register_collector(Box::new(DeliveryGauges::new(periods.clone())));
        let tokens = self.tokens;
        if tokens.is_empty() {
            tracing::warn!(
                "neither CANARYD_API_TOKEN nor api_tokens is set: pause/resume/promote/abort/retry are disabled"
            );
        } else {
            tracing::info!(api_tokens = ?tokens, "commands are recorded with their token's name");
        }
        Api {
            state: Arc::new(ApiState {
                view: self.view,
                log,
                periods,
                outbox,
                commands,
                tokens,
                registry: Arc::new(self.registry),
                access: self.access,
            }),
            listener: self.listener,
            bound: self.bound,
            limits: self.api_limits,
        }
    }
}

impl Api {
    /// Serves until `stopped` reads true.
    pub fn spawn(self, stopped: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        if self.state.access.reads == ReadAccess::Open && !self.bound.ip().is_loopback() {
            tracing::warn!(listen = %self.bound, "API reads are open to anyone who can reach {}; `--read-access loopback` keeps them to this machine (and holders of a token)", self.bound);
        }
        tokio::spawn(api::server::serve(
            self.listener,
            self.state,
            self.limits,
            Arc::new(ListenerStats::default()),
            stopped,
        ))
    }
}

/// Waits for the API to stop. Open event streams (a dashboard tab) never end
/// by themselves: requests in flight get a moment, then it stops regardless.
pub(super) async fn stop_api(api: tokio::task::JoinHandle<()>) {
    if tokio::time::timeout(Duration::from_secs(3), api)
        .await
        .is_err()
    {
        tracing::info!("closing open event streams");
    }
}
