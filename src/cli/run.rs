//! `canaryd run`: the daemon. Settings come from flags, then `CANARYD_*`
//! environment variables, then an optional config file (`--config`, YAML or
//! TOML), then defaults. The API token comes from `CANARYD_API_TOKEN` only
//! (never a flag: flags show in `ps`), and so does the read token
//! (`CANARYD_READ_TOKEN`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use serde::{Deserialize, Deserializer, Serialize};
use tokio::sync::mpsc;

use super::policy_dir;
use crate::api::{self, Access, ApiState, HostAllowList, ReadAccess};
use crate::controller::{Controller, Metrics, Parts, Settings, View};
use crate::notify::{Notifier, RetryPolicy, Routing, SinkConfig};
use crate::provider::{PrometheusSource, ProviderConfig, redact_url};
use crate::router::{ConnectionLimits, ListenerStats, RouterMetrics};
use crate::spec::load::load_policies;
use crate::spec::units::parse_duration;
use crate::store::SqliteStore;

/// Flags of `canaryd run`.
#[derive(Debug, Default, clap::Args)]
pub struct RunArgs {
    /// A config file (YAML or TOML) with the keys below, snake_case.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Directory of deploy files, watched for changes [env: CANARYD_DEPLOY_DIR] [default: deploy]
    #[arg(long)]
    pub deploy_dir: Option<PathBuf>,
    /// Address of the API and dashboard [env: CANARYD_LISTEN] [default: 127.0.0.1:9900]
    #[arg(long)]
    pub listen: Option<String>,
    /// SQLite state file [env: CANARYD_STATE] [default: canaryd.db]
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Prometheus for deploy files that name none [env: CANARYD_PROMETHEUS_URL]
    #[arg(long)]
    pub prometheus: Option<String>,
    /// Extra metric policies [env: CANARYD_POLICY_DIR]
    #[arg(long)]
    pub policies: Option<PathBuf>,
    /// Who may read the API, the dashboard and /metrics: anyone who can
    /// connect, or loopback peers only (others need CANARYD_READ_TOKEN or
    /// CANARYD_API_TOKEN) [env: CANARYD_READ_ACCESS] [default: open]
    #[arg(long, value_enum)]
    pub read_access: Option<ReadAccess>,
}

/// The daemon's settings after every source is merged.
#[derive(Deserialize, Serialize)]
pub struct DaemonConfig {
    /// Directory of deploy files.
    pub deploy_dir: PathBuf,
    /// API address.
    pub listen: String,
    /// State file.
    pub state: PathBuf,
    /// Default Prometheus.
    pub prometheus_url: Option<String>,
    /// Extra policies.
    pub policy_dir: Option<PathBuf>,
    /// Bearer token of the mutating endpoints.
    pub api_token: Option<String>,
    /// Per-query timeout (`5s`).
    pub query_timeout: String,
    /// Deploy directory scan period (`1s`).
    pub reload_every: String,
    /// The daemon's URL as people reach it, for dashboard links in alerts
    /// (default: `http://` and the listen address).
    pub public_url: Option<String>,
    /// Sinks that receive every rollout's alerts, besides each file's own.
    #[serde(default)]
    pub alerts: Vec<SinkConfig>,
    /// Delivery attempts before an alert is given up (`12`).
    pub alert_max_attempts: String,
    /// Delay after an alert's first failed attempt, doubled after each (`1s`).
    pub alert_retry_first: String,
    /// How long one alert request may take (`10s`).
    pub alert_timeout: String,
    /// Host names the API answers besides the defaults (the listen address,
    /// its loopback names, `public_url`'s host); `*` for any. A list, or
    /// comma-separated (`CANARYD_ALLOWED_HOSTS`).
    #[serde(default, deserialize_with = "comma_list")]
    pub allowed_hosts: Vec<String>,
    /// Who may read (`open`, `loopback`).
    pub read_access: ReadAccess,
    /// Bearer token that allows reads from other peers with `read_access: loopback`.
    pub read_token: Option<String>,
    /// Open API connections at most (`128`).
    pub max_connections: String,
    /// Open connections per built-in router listener at most (`256`).
    pub router_max_connections: String,
    /// How long a new connection may take to send its request headers (`10s`).
    pub header_timeout: String,
    /// How long a connection may stay open with no request in flight (`60s`).
    pub idle_timeout: String,
}

/// A list written as a YAML/TOML list or as one comma-separated string.
fn comma_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let items = match OneOrMany::deserialize(d)? {
        OneOrMany::One(text) => text.split(',').map(str::to_string).collect(),
        OneOrMany::Many(items) => items,
    };
    Ok(items
        .into_iter()
        .map(|i| i.trim().to_string())
        .filter(|i| !i.is_empty())
        .collect())
}

impl std::fmt::Debug for DaemonConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonConfig")
            .field("deploy_dir", &self.deploy_dir)
            .field("listen", &self.listen)
            .field("state", &self.state)
            .field(
                "prometheus_url",
                &self.prometheus_url.as_deref().map(redact_url),
            )
            .field("policy_dir", &self.policy_dir)
            .field("api_token", &self.api_token.as_ref().map(|_| "<set>"))
            .field("query_timeout", &self.query_timeout)
            .field("reload_every", &self.reload_every)
            .field("public_url", &self.public_url.as_deref().map(redact_url))
            .field("alerts", &self.alerts)
            .field("alert_max_attempts", &self.alert_max_attempts)
            .field("alert_retry_first", &self.alert_retry_first)
            .field("alert_timeout", &self.alert_timeout)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("read_access", &self.read_access)
            .field("read_token", &self.read_token.as_ref().map(|_| "<set>"))
            .field("max_connections", &self.max_connections)
            .field("router_max_connections", &self.router_max_connections)
            .field("header_timeout", &self.header_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            deploy_dir: PathBuf::from("deploy"),
            listen: "127.0.0.1:9900".into(),
            state: PathBuf::from("canaryd.db"),
            prometheus_url: None,
            policy_dir: None,
            api_token: None,
            query_timeout: "5s".into(),
            reload_every: "1s".into(),
            public_url: None,
            alerts: Vec::new(),
            alert_max_attempts: "12".into(),
            alert_retry_first: "1s".into(),
            alert_timeout: "10s".into(),
            allowed_hosts: Vec::new(),
            read_access: ReadAccess::Open,
            read_token: None,
            max_connections: ConnectionLimits::API.max_connections.to_string(),
            router_max_connections: ConnectionLimits::ROUTER.max_connections.to_string(),
            header_timeout: "10s".into(),
            idle_timeout: "60s".into(),
        }
    }
}

impl DaemonConfig {
    /// Merges defaults, the config file, `CANARYD_*` and the flags.
    pub fn load(args: &RunArgs) -> Result<DaemonConfig, String> {
        let defaults =
            config::Config::try_from(&DaemonConfig::default()).map_err(|e| e.to_string())?;
        let mut b = config::Config::builder().add_source(defaults);
        if let Some(file) = &args.config {
            b = b.add_source(config::File::from(file.as_path()).required(true));
        }
        b = b.add_source(config::Environment::with_prefix("CANARYD").try_parsing(false));
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        b = b
            .set_override_option("deploy_dir", path(&args.deploy_dir))
            .and_then(|b| b.set_override_option("listen", args.listen.clone()))
            .and_then(|b| b.set_override_option("state", path(&args.state)))
            .and_then(|b| b.set_override_option("prometheus_url", args.prometheus.clone()))
            .and_then(|b| b.set_override_option("policy_dir", path(&args.policies)))
            .and_then(|b| {
                b.set_override_option(
                    "read_access",
                    args.read_access.map(|r| match r {
                        ReadAccess::Open => "open",
                        ReadAccess::Loopback => "loopback",
                    }),
                )
            })
            .map_err(|e| e.to_string())?;
        b.build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| format!("configuration: {e}"))
    }
}

/// Runs the daemon until Ctrl-C or SIGTERM.
pub fn run(args: RunArgs) -> ExitCode {
    let config = match DaemonConfig::load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("stopping");
}

fn duration(key: &str, text: &str) -> Result<Duration, String> {
    match parse_duration(text) {
        Ok(d) if d.is_zero() => Err(format!("{key}: must be longer than 0s")),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("{key}: {e}")),
    }
}

/// Starts the controller and the API with `config`, until `shutdown`.
pub async fn serve(
    config: DaemonConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let (policies, problems) = load_policies(policy_dir(config.policy_dir.as_deref()));
    if let Some((path, text, diags)) = problems.first() {
        let rendered: Vec<String> = diags.iter().map(|d| d.render(Some(text))).collect();
        return Err(format!(
            "policy {} is invalid:\n{}",
            path.display(),
            rendered.join("\n")
        ));
    }
    let store = Arc::new(open_store(&config.state)?);
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let router_metrics = RouterMetrics::register(&mut registry);
    registry.register_collector(Box::new(crate::delivery::gauges::DeliveryGauges::new(
        store.clone(),
    )));
    let source = PrometheusSource::new(ProviderConfig {
        timeout: duration("query_timeout", &config.query_timeout)?,
        ..ProviderConfig::default()
    })
    .map_err(|e| e.to_string())?;
    let view = Arc::new(View::default());
    let listen: SocketAddr = config.listen.parse().map_err(|_| {
        format!(
            "listen: `{}` is not an address such as 127.0.0.1:9900",
            config.listen
        )
    })?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let bound = listener.local_addr().unwrap_or(listen);
    let alerts = alert_routing(&config, bound)?;
    let access = access(&config, bound)?;
    let (api_limits, router_limits) = connection_limits(&config)?;
    // Every built-in router the controller starts gets these.
    crate::router::builtin::set_default_limits(router_limits);
    let retry = retry_policy(&config)?;
    let alerts_queued = Arc::new(tokio::sync::Notify::new());
    let notifier = Notifier::new(
        store.clone(),
        retry,
        alerts_queued.clone(),
        metrics.alerts.clone(),
    )
    .map_err(|e| e.to_string())?;
    let settings = Settings {
        deploy_dir: config.deploy_dir.clone(),
        default_prometheus: config.prometheus_url.clone(),
        reload_every: duration("reload_every", &config.reload_every)?,
        health_interval: Duration::from_secs(1),
    };
    let controller = Controller::start(
        settings,
        Parts {
            policies,
            store: store.clone(),
            source,
            view: view.clone(),
            metrics,
            router_metrics,
            alerts,
            alerts_queued,
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    let (commands, requests) = mpsc::channel(64);
    // An empty token would let an empty `Bearer` through: it means "none".
    let token = config.api_token.clone().filter(|t| !t.trim().is_empty());
    if token.is_none() {
        tracing::warn!(
            "CANARYD_API_TOKEN is not set: pause/resume/promote/abort/retry are disabled"
        );
    }
    let state = Arc::new(ApiState {
        view,
        store,
        commands,
        token,
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

fn alert_routing(config: &DaemonConfig, bound: SocketAddr) -> Result<Routing, String> {
    let defaults = config
        .alerts
        .iter()
        .map(SinkConfig::resolve)
        .collect::<Result<Vec<_>, _>>()?;
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

fn access(config: &DaemonConfig, bound: SocketAddr) -> Result<Access, String> {
    Ok(Access {
        hosts: HostAllowList::for_listener(
            bound,
            config.public_url.as_deref(),
            &config.allowed_hosts,
        )?,
        reads: config.read_access,
        // An empty token would let an empty `Bearer` through: it means "none".
        read_token: config.read_token.clone().filter(|t| !t.trim().is_empty()),
    })
}

fn count(key: &str, text: &str) -> Result<usize, String> {
    text.trim()
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{key}: `{text}` is not a whole number above 0"))
}

/// The API's and each built-in router's connection limits.
fn connection_limits(
    config: &DaemonConfig,
) -> Result<(ConnectionLimits, ConnectionLimits), String> {
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

fn retry_policy(config: &DaemonConfig) -> Result<RetryPolicy, String> {
    let attempts: u32 = config
        .alert_max_attempts
        .trim()
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            format!(
                "alert_max_attempts: `{}` is not a whole number above 0",
                config.alert_max_attempts
            )
        })?;
    Ok(RetryPolicy {
        first: duration("alert_retry_first", &config.alert_retry_first)?,
        timeout: duration("alert_timeout", &config.alert_timeout)?,
        attempts,
        ..RetryPolicy::default()
    })
}

fn open_store(path: &Path) -> Result<SqliteStore, String> {
    if path.as_os_str() == ":memory:" {
        return SqliteStore::in_memory().map_err(|e| e.to_string());
    }
    SqliteStore::open(path).map_err(|e| format!("{} ({})", e, path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let err = alert_routing(&config, bound).expect_err("no URL");
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
