//! The daemon: builds each port's standalone adapter (the deploy directory,
//! SQLite, the built-in and HAProxy routers, Prometheus), then runs the
//! controller, the API and the notifier together until shutdown.

mod config;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::sync::mpsc;

use crate::api::{self, Access, ApiState, HostAllowList, ReadAccess};
use crate::cli::policy_dir;
use crate::controller::{Controller, Metrics, Parts, Ports, Settings, View};
use crate::deploy_dir::DeployDir;
use crate::notify::{Notifier, RetryPolicy, Routing, SinkConfig};
use crate::ports::AlwaysLeader;
use crate::provider::{PrometheusSource, ProviderConfig, redact_url};
use crate::router::{ConnectionLimits, ListenerStats, RouterMetrics, Routers};
use crate::spec::load::load_policies;
use crate::spec::units::parse_duration;
use crate::store::SqliteStore;

pub use config::DaemonConfig;

/// The daemon could not start (or stopped on an error).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A setting is invalid.
    #[error("{key}: {message}")]
    Setting {
        /// The setting's key (`listen`, `alert_timeout`…).
        key: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A policy file is invalid.
    #[error("policy {path} is invalid:\n{report}")]
    Policy {
        /// The file.
        path: String,
        /// Its diagnostics, rendered.
        report: String,
    },
    /// The state store cannot be opened.
    #[error("{source} ({path})")]
    Store {
        /// Its path.
        path: String,
        /// Why.
        source: crate::ports::StoreError,
    },
    /// The API's address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A part could not be built (the HTTP client of Prometheus or of the
    /// notifier).
    #[error("{0}")]
    Build(String),
    /// The controller could not start.
    #[error(transparent)]
    Controller(#[from] crate::controller::ControllerError),
}

fn setting(key: &'static str, message: impl Into<String>) -> DaemonError {
    DaemonError::Setting {
        key,
        message: message.into(),
    }
}

fn duration(key: &'static str, text: &str) -> Result<Duration, DaemonError> {
    match parse_duration(text) {
        Ok(d) if d.is_zero() => Err(setting(key, "must be longer than 0s")),
        Ok(d) => Ok(d),
        Err(e) => Err(setting(key, e.to_string())),
    }
}

/// Starts the controller and the API with `config`, until `shutdown`.
pub async fn serve(
    config: DaemonConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    let tokens = config.tokens().map_err(|message| DaemonError::Setting {
        key: "api_tokens",
        message,
    })?;
    let (policies, problems) = load_policies(policy_dir(config.policy_dir.as_deref()));
    if let Some((path, text, diags)) = problems.first() {
        let rendered: Vec<String> = diags.iter().map(|d| d.render(Some(text))).collect();
        return Err(DaemonError::Policy {
            path: path.display().to_string(),
            report: rendered.join("\n"),
        });
    }
    let store = open_store(&config.state)?;
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let router_metrics = RouterMetrics::register(&mut registry);
    registry.register_collector(Box::new(crate::delivery::gauges::DeliveryGauges::new(
        Arc::new(store.clone()),
    )));
    let source = PrometheusSource::new(ProviderConfig {
        timeout: duration("query_timeout", &config.query_timeout)?,
        ..ProviderConfig::default()
    })
    .map_err(|e| DaemonError::Build(e.to_string()))?;
    let view = Arc::new(View::default());
    let listen: SocketAddr = config.listen.parse().map_err(|_| {
        setting(
            "listen",
            format!(
                "`{}` is not an address such as 127.0.0.1:9900",
                config.listen
            ),
        )
    })?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| DaemonError::Listen {
            addr: listen,
            source,
        })?;
    let bound = listener.local_addr().unwrap_or(listen);
    let alerts = alert_routing(&config, bound)?;
    let access = access(&config, bound)?;
    let (api_limits, router_limits) = connection_limits(&config)?;
    let retry = retry_policy(&config)?;
    let alerts_queued = Arc::new(tokio::sync::Notify::new());
    let notifier = Notifier::new(
        Arc::new(store.clone()),
        retry,
        alerts_queued.clone(),
        metrics.alerts.clone(),
    )
    .map_err(|e| DaemonError::Build(e.to_string()))?;
    let settings = Settings {
        default_prometheus: config.prometheus_url.clone(),
        reload_every: duration("reload_every", &config.reload_every)?,
        checkpoint_every: duration("checkpoint_every", &config.checkpoint_every)?,
        ..Settings::default()
    };
    // One adapter per port: the deploy directory, SQLite, the standalone
    // routers, Prometheus; standalone, this process always acts.
    let ports = Ports {
        specs: Box::new(DeployDir::new(
            config.deploy_dir.clone(),
            policies.clone(),
            Arc::new(store.clone()),
        )),
        store: Arc::new(store.clone()),
        log: Arc::new(store.clone()),
        routers: Arc::new(Routers {
            metrics: router_metrics,
            health_interval: Duration::from_secs(1),
            limits: router_limits,
        }),
        metrics: Arc::new(source),
        leadership: Arc::new(AlwaysLeader),
    };
    let controller = Controller::start(
        settings,
        ports,
        Parts {
            policies,
            view: view.clone(),
            metrics,
            alerts,
            alerts_queued,
        },
    )
    .await?;
    let (commands, requests) = mpsc::channel(64);
    if tokens.is_empty() {
        tracing::warn!(
            "neither CANARYD_API_TOKEN nor api_tokens is set: pause/resume/promote/abort/retry are disabled"
        );
    } else {
        tracing::info!(api_tokens = ?tokens, "commands are recorded with their token's name");
    }
    let state = Arc::new(ApiState {
        view,
        log: Arc::new(store.clone()),
        periods: Arc::new(store.clone()),
        outbox: Arc::new(store),
        commands,
        tokens,
        registry: Arc::new(registry),
        access,
    });
    tracing::info!(
        api = %format!("http://{bound}/"),
        allowed_hosts = %state.access.hosts.describe(),
        read_access = ?state.access.reads,
        max_connections = api_limits.max_connections,
        router_max_connections = router_limits.max_connections,
        deploy_dir = %config.deploy_dir.display(),
        state = %config.state.display(),
        prometheus = %config.prometheus_url.as_deref().map(redact_url).unwrap_or_else(|| "(per file)".into()),
        "canaryd running"
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    if state.access.reads == ReadAccess::Open && !bound.ip().is_loopback() {
        tracing::warn!(listen = %bound, "API reads are open to anyone who can reach {bound}; `--read-access loopback` keeps them to this machine (and holders of a token)");
    }
    let api = tokio::spawn(api::server::serve(
        listener,
        state,
        api_limits,
        Arc::new(ListenerStats::default()),
        stopped,
    ));
    let mut notifier_stopped = stop.subscribe();
    let notifier = tokio::spawn(notifier.run(async move {
        let _ = notifier_stopped.changed().await;
    }));
    controller.run(requests, shutdown).await;
    let _ = stop.send(true);
    let _ = notifier.await;
    // Open event streams (a dashboard tab) never end by themselves: give
    // requests in flight a moment, then stop regardless.
    if tokio::time::timeout(Duration::from_secs(3), api)
        .await
        .is_err()
    {
        tracing::info!("closing open event streams");
    }
    Ok(())
}

fn alert_routing(config: &DaemonConfig, bound: SocketAddr) -> Result<Routing, DaemonError> {
    let defaults = config
        .alerts
        .iter()
        .map(SinkConfig::resolve)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| setting("alerts", e))?;
    let base = match &config.public_url {
        Some(url) if !url.trim().is_empty() => url.trim().to_string(),
        _ => {
            if bound.ip().is_unspecified() {
                tracing::warn!(listen = %bound, "public_url is not set: dashboard links in alerts point at {bound}, which chat readers cannot open; set CANARYD_PUBLIC_URL");
            }
            format!("http://{bound}")
        }
    };
    Ok(Routing {
        defaults,
        dashboard_base: Some(base),
    })
}

fn access(config: &DaemonConfig, bound: SocketAddr) -> Result<Access, DaemonError> {
    Ok(Access {
        hosts: HostAllowList::for_listener(
            bound,
            config.public_url.as_deref(),
            &config.allowed_hosts,
        )
        .map_err(|e| setting("allowed_hosts", e))?,
        reads: config.read_access,
        // An empty token would let an empty `Bearer` through: it means "none".
        read_token: config.read_token.clone().filter(|t| !t.trim().is_empty()),
    })
}

fn count(key: &'static str, text: &str) -> Result<usize, DaemonError> {
    text.trim()
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| setting(key, format!("`{text}` is not a whole number above 0")))
}

/// The API's and each built-in router's connection limits.
fn connection_limits(
    config: &DaemonConfig,
) -> Result<(ConnectionLimits, ConnectionLimits), DaemonError> {
    let header_timeout = duration("header_timeout", &config.header_timeout)?;
    let idle_timeout = duration("idle_timeout", &config.idle_timeout)?;
    let api = ConnectionLimits {
        max_connections: count("max_connections", &config.max_connections)?,
        header_timeout,
        idle_timeout,
    };
    let router = ConnectionLimits {
        max_connections: count("router_max_connections", &config.router_max_connections)?,
        ..api
    };
    Ok((api, router))
}

fn retry_policy(config: &DaemonConfig) -> Result<RetryPolicy, DaemonError> {
    let attempts: u32 = config
        .alert_max_attempts
        .trim()
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            setting(
                "alert_max_attempts",
                format!(
                    "`{}` is not a whole number above 0",
                    config.alert_max_attempts
                ),
            )
        })?;
    Ok(RetryPolicy {
        first: duration("alert_retry_first", &config.alert_retry_first)?,
        timeout: duration("alert_timeout", &config.alert_timeout)?,
        attempts,
        ..RetryPolicy::default()
    })
}

fn open_store(path: &Path) -> Result<SqliteStore, DaemonError> {
    let opened = if path.as_os_str() == ":memory:" {
        SqliteStore::in_memory()
    } else {
        SqliteStore::open(path)
    };
    opened.map_err(|source| DaemonError::Store {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::run::RunArgs;
    use crate::spec::model::{AlertSeverity, SecretRef, SinkKind};

    fn load(text: &str) -> Result<DaemonConfig, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().join("canaryd.yaml");
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        DaemonConfig::load(&RunArgs {
            config: Some(path),
            ..RunArgs::default()
        })
    }

    #[test]
    fn the_example_config_gives_daemon_wide_sinks_and_dashboard_links() {
        let text = include_str!("../../deploy/config/canaryd.yaml");
        let config = load(text).expect("the example loads");
        let bound: SocketAddr = "127.0.0.1:9900".parse().expect("address");
        let routing = alert_routing(&config, bound).expect("valid sinks");
        assert_eq!(routing.defaults.len(), 1);
        assert_eq!(routing.defaults[0].kind, SinkKind::Slack);
        assert_eq!(routing.defaults[0].min_severity, AlertSeverity::Error);
        assert_eq!(
            routing.defaults[0].webhook,
            SecretRef::Env("PLATFORM_SLACK_WEBHOOK_URL".into())
        );
        assert_eq!(
            routing.dashboard_base.as_deref(),
            Some("https://canaryd.example.internal")
        );
        assert_eq!(retry_policy(&config).expect("retry").attempts, 12);
    }

    #[test]
    fn allowed_hosts_read_as_a_list_or_comma_separated_and_limits_are_checked() {
        let list =
            load("allowed_hosts: [a.example, b.example]\nread_access: loopback\n").expect("a list");
        assert_eq!(list.allowed_hosts, ["a.example", "b.example"]);
        assert_eq!(list.read_access, ReadAccess::Loopback);
        let text = load("allowed_hosts: \"a.example, b.example,\"\n").expect("a string");
        assert_eq!(text.allowed_hosts, ["a.example", "b.example"]);
        assert_eq!(text.read_access, ReadAccess::Open);
        assert!(load("read_access: sometimes\n").is_err());
        let (api, router) = connection_limits(&text).expect("defaults");
        assert_eq!(api, ConnectionLimits::API);
        assert_eq!(router, ConnectionLimits::ROUTER);
        let zero = load("max_connections: \"0\"\n").expect("parses");
        assert!(connection_limits(&zero).is_err());
        let never = load("header_timeout: 0s\n").expect("parses");
        assert!(connection_limits(&never).is_err());
    }

    #[test]
    fn a_sink_without_a_url_source_or_with_a_typo_is_refused_with_its_name() {
        let bound: SocketAddr = "127.0.0.1:9900".parse().expect("address");
        let config = load("alerts:\n  - teams: { severity: warn }\n").expect("parses");
        let err = alert_routing(&config, bound)
            .expect_err("no URL")
            .to_string();
        assert!(
            err.contains("the `teams` sink has no `webhook_env`"),
            "{err}"
        );
        let typo = load("alerts:\n  - slack: { webhook_evn: X }\n").err();
        assert!(
            typo.as_deref().is_some_and(|e| e.contains("webhook_evn")),
            "{typo:?}"
        );
        let defaults = load("").expect("no file keys");
        let routing = alert_routing(&defaults, bound).expect("none");
        assert!(routing.defaults.is_empty());
        assert_eq!(
            routing.dashboard_base.as_deref(),
            Some("http://127.0.0.1:9900")
        );
    }
}
