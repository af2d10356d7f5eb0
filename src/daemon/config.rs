//! The daemon's settings after every source is merged (flags, `CANARYD_*`,
//! a config file, defaults): see `canaryd run --help` and the README.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};

use crate::api::{ApiTokens, ReadAccess};
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
    /// Bearer token of the mutating endpoints, named `default`.
    pub api_token: Option<String>,
    /// Named bearer tokens of the mutating endpoints: name → where the token
    /// is read (`env:VAR` or `file:/path`, read at startup), so the decision
    /// log says whose token issued each command. A map, or comma-separated
    /// `name=env:VAR` pairs (`CANARYD_API_TOKENS`).
    #[serde(default, deserialize_with = "token_refs")]
    pub api_tokens: BTreeMap<String, String>,
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
    /// Shadow mode for every rollout (`--shadow`).
    #[serde(default)]
    pub shadow: bool,
    /// Cluster mode: specs are Rollout resources, state lives in their
    /// status, traffic moves through Kubernetes routers, and replicas elect
    /// a leader (`false`: standalone).
    pub cluster: bool,
    /// Cluster mode: the Lease's namespace (default: `POD_NAMESPACE`, else `canaryd`).
    pub lease_namespace: Option<String>,
    /// Cluster mode: the Lease's name (`canaryd-leader`).
    pub lease_name: String,
    /// Cluster mode: how long a leader holds the Lease without renewing it (`15s`).
    pub lease_duration: String,
    /// Cluster mode: how long before expiry the leader renews (`5s`).
    pub lease_grace: String,
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

/// Token references written as a map or as `name=ref,name=ref`.
fn token_refs<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum TextOrMap {
        Text(String),
        Map(BTreeMap<String, String>),
    }
    match TextOrMap::deserialize(d)? {
        TextOrMap::Map(map) => Ok(map),
        TextOrMap::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|pair| !pair.is_empty())
            .map(|pair| match pair.split_once('=') {
                Some((name, source)) => Ok((name.trim().to_string(), source.trim().to_string())),
                // The entry is not echoed: it may be a token pasted alone.
                None => Err(serde::de::Error::custom(
                    "api_tokens: each entry is `name=env:VAR` or `name=file:/path`",
                )),
            })
            .collect(),
    }
}

impl DaemonConfig {
    /// The API tokens: `api_token` as `default`, and every named one read
    /// from its environment variable or file. An empty `api_token` means
    /// none (it would let an empty `Bearer` through).
    pub fn tokens(&self) -> Result<ApiTokens, String> {
        let mut tokens = Vec::new();
        if let Some(t) = self.api_token.as_ref().filter(|t| !t.trim().is_empty()) {
            tokens.push((crate::api::tokens::DEFAULT_NAME.to_string(), t.clone()));
        }
        for (name, source) in &self.api_tokens {
            tokens.push((name.clone(), read_token(name, source)?));
        }
        ApiTokens::named(tokens).map_err(|e| e.to_string())
    }
}

/// A named token's value from `env:VAR` or `file:/path` (its last line
/// break dropped); errors name the token and the source, never a value.
fn read_token(name: &str, source: &str) -> Result<String, String> {
    if let Some(var) = source.strip_prefix("env:") {
        std::env::var(var).map_err(|_| format!("API token `{name}`: ${var} is not set"))
    } else if let Some(path) = source.strip_prefix("file:") {
        std::fs::read_to_string(path)
            .map(|t| t.trim_end_matches(['\n', '\r']).to_string())
            .map_err(|e| format!("API token `{name}`: cannot read {path}: {e}"))
    } else {
        // Not echoed: it may be the token itself.
        Err(format!(
            "API token `{name}`: write where it is read, `env:VAR` or `file:/path`, never the token itself"
        ))
    }
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
            .field("api_tokens", &self.api_tokens)
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
            .field("shadow", &self.shadow)
            .field("cluster", &self.cluster)
            .field("lease_namespace", &self.lease_namespace)
            .field("lease_name", &self.lease_name)
            .field("lease_duration", &self.lease_duration)
            .field("lease_grace", &self.lease_grace)
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
            api_tokens: BTreeMap::new(),
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
            shadow: false,
            cluster: false,
            lease_namespace: None,
            lease_name: "canaryd-leader".into(),
            lease_duration: "15s".into(),
            lease_grace: "5s".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::run::RunArgs;

    fn load(dir: &std::path::Path, text: &str) -> Result<DaemonConfig, String> {
        let path = dir.join("canaryd.yaml");
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        DaemonConfig::load(&RunArgs {
            config: Some(path),
            ..RunArgs::default()
        })
    }

    #[test]
    fn named_tokens_read_from_files_as_a_map_or_as_pairs_beside_the_default_one() {
        let dir = tempfile::tempdir().expect("dir");
        let (alice, ci) = (dir.path().join("alice"), dir.path().join("ci"));
        std::fs::write(&alice, "alice-t\n").expect("write");
        std::fs::write(&ci, "ci-t").expect("write");
        let map = format!(
            "api_token: d-t\napi_tokens:\n  alice: file:{}\n  ci: file:{}\n",
            alice.display(),
            ci.display()
        );
        let pairs = format!(
            "api_tokens: \"alice=file:{}, ci=file:{}\"\n",
            alice.display(),
            ci.display()
        );
        for (text, names) in [
            (map, vec!["default", "alice", "ci"]),
            (pairs, vec!["alice", "ci"]),
        ] {
            let tokens = load(dir.path(), &text)
                .and_then(|c| c.tokens())
                .expect("tokens");
            assert_eq!(tokens.names().collect::<Vec<_>>(), names, "{text}");
            assert_eq!(tokens.identify("alice-t"), Some("alice"));
            assert_eq!(tokens.identify("ci-t"), Some("ci"));
        }
    }

    #[test]
    fn a_token_written_in_the_config_or_a_missing_source_is_refused_without_its_value() {
        let dir = tempfile::tempdir().expect("dir");
        let literal = load(dir.path(), "api_tokens:\n  alice: hunter2\n")
            .and_then(|c| c.tokens())
            .expect_err("a literal token");
        assert!(
            literal.contains("alice") && !literal.contains("hunter2"),
            "{literal}"
        );
        let missing = load(
            dir.path(),
            "api_tokens:\n  ci: file:/nonexistent/ci-token\n",
        )
        .and_then(|c| c.tokens())
        .expect_err("a missing file");
        assert!(missing.contains("ci"), "{missing}");
        let unset = load(
            dir.path(),
            "api_tokens:\n  ci: env:CANARYD_TEST_SURELY_UNSET_TOKEN\n",
        )
        .and_then(|c| c.tokens())
        .expect_err("an unset variable");
        assert!(unset.contains("CANARYD_TEST_SURELY_UNSET_TOKEN"), "{unset}");
        let bad = load(dir.path(), "api_tokens: \"alice\"\n").expect_err("not a pair");
        assert!(bad.contains("name=env:VAR"), "{bad}");
    }
}
