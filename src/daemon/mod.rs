//! The daemon: builds each port's standalone adapter (the deploy directory,
//! SQLite, the built-in and HAProxy routers, Prometheus), then runs the
//! controller, the API and the notifier together until shutdown. Cluster
//! mode ([`cluster`]) builds the Kubernetes adapters instead and runs the
//! same controller, API, notifier and `/metrics`.

mod basics;
pub mod cluster;
mod config;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::api::{Access, HostAllowList};
use crate::cli::policy_dir;
use crate::controller::{Controller, Ports};
use crate::deploy_dir::DeployDir;
use crate::notify::{RetryPolicy, Routing, SinkConfig};
use crate::ports::AlwaysLeader;
use crate::provider::redact_url;
use crate::router::{ConnectionLimits, Routers};
use crate::spec::load::load_policies;
use crate::spec::policy::PolicySet;
use crate::spec::units::parse_duration;
use crate::store::SqliteStore;
use basics::{Basics, stop_api};

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
    /// Cluster mode could not start (leader election, the API server).
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
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

/// Starts the controller and the API with `config`, until `shutdown`: the
/// standalone daemon, or with `cluster` set, cluster mode ([`cluster`]).
pub async fn serve(
    config: DaemonConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    if config.cluster {
        return cluster::serve(config, shutdown).await;
    }
    let policies = load_policy_set(&config)?;
    let store = open_store(&config.state)?;
    let basics = Basics::build(&config, policies).await?;
    let notifier = basics.notifier(Arc::new(store.clone()))?;
    // One adapter per port: the deploy directory, SQLite, the standalone
    // routers, Prometheus; standalone, this process always acts.
    let ports = Ports {
        specs: Box::new(DeployDir::new(
            config.deploy_dir.clone(),
            basics.policies.clone(),
            Arc::new(store.clone()),
        )),
        store: Arc::new(store.clone()),
        log: Arc::new(store.clone()),
        routers: Arc::new(Routers::new(
            basics.router_metrics.clone(),
            Duration::from_secs(1),
            basics.router_limits,
        )),
        metrics: basics.source.clone(),
        leadership: Arc::new(AlwaysLeader),
    };
    let controller = Controller::start(basics.settings.clone(), ports, basics.parts()).await?;
    let (commands, requests) = mpsc::channel(64);
    let router_limits = basics.router_limits;
    let api = basics.api(
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        Arc::new(store),
        commands,
    );
    tracing::info!(
        api = %format!("http://{}/", api.bound),
        allowed_hosts = %api.state.access.hosts.describe(),
        read_access = ?api.state.access.reads,
        max_connections = api.limits.max_connections,
        router_max_connections = router_limits.max_connections,
        deploy_dir = %config.deploy_dir.display(),
        state = %config.state.display(),
        prometheus = %config.prometheus_url.as_deref().map(redact_url).unwrap_or_else(|| "(per file)".into()),
        "canaryd running"
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let api = api.spawn(stopped);
    let mut notifier_stopped = stop.subscribe();
    let notifier = tokio::spawn(notifier.run(async move {
        let _ = notifier_stopped.changed().await;
    }));
    controller.run(requests, shutdown).await;
    let _ = stop.send(true);
    let _ = notifier.await;
    stop_api(api).await;
    Ok(())
}

/// The metric policies, or the first invalid one.
fn load_policy_set(config: &DaemonConfig) -> Result<PolicySet, DaemonError> {
    let (policies, problems) = load_policies(policy_dir(config.policy_dir.as_deref()));
    if let Some((path, text, diags)) = problems.first() {
        let rendered: Vec<String> = diags.iter().map(|d| d.render(Some(text))).collect();
        return Err(DaemonError::Policy {
            path: path.display().to_string(),
            report: rendered.join("\n"),
        });
    }
    Ok(policies)
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
    use crate::api::ReadAccess;
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
    fn shadow_mode_for_every_rollout_comes_from_the_flag_or_the_config_file_and_is_off_by_default()
    {
        assert!(!load("").expect("defaults").shadow);
        assert!(load("shadow: true\n").expect("from the file").shadow);
        let flag = DaemonConfig::load(&RunArgs {
            shadow: true,
            ..RunArgs::default()
        })
        .expect("from the flag");
        assert!(flag.shadow);
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
