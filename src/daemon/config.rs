//! The daemon's settings after every source is merged (flags, `CANARYD_*`,
//! a config file, defaults): see `canaryd run --help` and the README.

use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};

use crate::api::ReadAccess;
use crate::notify::SinkConfig;
use crate::provider::redact_url;
use crate::router::ConnectionLimits;

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
    /// How often a quiet rollout's whole state (its evidence counts) is
    /// written; its watched time is checkpointed every tick.
    pub checkpoint_every: String,
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
            .field("checkpoint_every", &self.checkpoint_every)
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
            checkpoint_every: "5m".into(),
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
