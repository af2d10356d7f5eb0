//! The typed deploy file: what a rollout is, how traffic moves, what is measured.
//!
//! Everything here is already checked: weights are in range and never go down,
//! durations are real durations, every gate resolves to a query of a known unit.
//! Values are built only by the decoder ([`super::decode`]), so holding a
//! [`DeploySpec`] means holding a valid one.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::policy::{QueryTemplate, Unit};
use super::units::{Threshold, Weight, format_duration};

/// A rollout's identity: `namespace/name` (the name is the service).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
pub struct RolloutId {
    /// Namespace, `default` unless given.
    pub namespace: String,
    /// Rollout name, the deploy file's `service`.
    pub name: String,
}

impl fmt::Display for RolloutId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A whole deploy file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeploySpec {
    /// Which rollout this is.
    pub id: RolloutId,
    /// The policy that maps metric names to PromQL (`http-red`).
    pub policy: String,
    /// The Prometheus to query; the daemon's default when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<String>,
    /// How traffic is shifted.
    pub router: RouterSpec,
    /// The version serving traffic today.
    pub stable: Track,
    /// The version being rolled out.
    pub canary: Track,
    /// Steps, abort conditions and analysis settings.
    pub strategy: Strategy,
    /// Where alerts go.
    pub alerts: Vec<AlertSink>,
}

/// One side of the rollout: a version and where it listens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Track {
    /// The version label (`v2`); selects the track's series in Prometheus.
    pub version: String,
    /// `host:port` of the instance (standalone routers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// The traffic router and its settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum RouterSpec {
    /// canaryd's own reverse proxy.
    Builtin {
        /// Where the proxy listens.
        listen: String,
    },
    /// HAProxy through its Runtime API socket.
    Haproxy {
        /// Path or `host:port` of the Runtime API socket.
        socket: String,
        /// The backend holding both servers.
        backend: String,
        /// Server name of the stable track.
        stable_server: String,
        /// Server name of the canary track.
        canary_server: String,
    },
    /// Gateway API HTTPRoute backend weights (cluster mode).
    GatewayApi {
        /// The HTTPRoute's name.
        route: String,
        /// Backend (Service) of the stable track.
        stable_backend: String,
        /// Backend (Service) of the canary track.
        canary_backend: String,
    },
    /// SMI TrafficSplit backend weights (cluster mode).
    Smi {
        /// The TrafficSplit's name.
        traffic_split: String,
        /// The root (apex) Service clients address.
        root_service: String,
        /// Backend (Service) of the stable track.
        stable_backend: String,
        /// Backend (Service) of the canary track.
        canary_backend: String,
    },
    /// Replica ratio of two Deployments when there is no mesh (cluster mode).
    KubernetesReplicas {
        /// Total replicas shared between the tracks.
        replicas: u32,
    },
}

impl RouterSpec {
    /// The kind as written in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            RouterSpec::Builtin { .. } => "builtin",
            RouterSpec::Haproxy { .. } => "haproxy",
            RouterSpec::GatewayApi { .. } => "gateway-api",
            RouterSpec::Smi { .. } => "smi",
            RouterSpec::KubernetesReplicas { .. } => "kubernetes-replicas",
        }
    }
}

/// The canary strategy: the `deploy:` block.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Strategy {
    /// Traffic steps, in order; weights never go down.
    pub steps: Vec<Step>,
    /// Abort conditions and whether canaryd acts on its own.
    pub rollback: Rollback,
    /// How and how often gates are measured.
    pub analysis: Analysis,
}

/// One traffic step.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    /// Canary weight during the step.
    pub weight: Weight,
    /// How long the canary is watched at this weight; `None` only on the last
    /// step. With `min_duration`, the most it is watched before the step
    /// waits for evidence.
    #[serde(serialize_with = "ser_opt_duration")]
    pub duration: Option<Duration>,
    /// Early success (opt-in): the least time the canary is watched at this
    /// weight; from then on the step advances at the first tick where every
    /// promotion gate has passed on conclusive evidence. At most `duration`;
    /// only on a step with promotion gates.
    #[serde(
        serialize_with = "ser_opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub min_duration: Option<Duration>,
    /// Promotion gates: all must pass for the step to advance.
    pub gates: Vec<Gate>,
}

/// The `rollback:` block.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rollback {
    /// When false, canaryd pauses and alerts where it would roll back.
    pub auto: bool,
    /// Abort conditions, watched on every tick of every step.
    pub on: Vec<Gate>,
}

/// `<metric>_less_than` or `<metric>_greater_than`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    /// Holds when the value is below the threshold.
    LessThan,
    /// Holds when the value is above the threshold.
    GreaterThan,
}

impl Comparison {
    /// The key suffix (`_less_than`).
    pub fn suffix(self) -> &'static str {
        match self {
            Comparison::LessThan => "_less_than",
            Comparison::GreaterThan => "_greater_than",
        }
    }

    /// The operator (`<`).
    pub fn symbol(self) -> &'static str {
        match self {
            Comparison::LessThan => "<",
            Comparison::GreaterThan => ">",
        }
    }
}

/// A comparison of one metric against a threshold.
///
/// For a promotion gate the comparison holding means *pass*; for an abort
/// condition it means *breach*.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Gate {
    /// The metric name (`error_rate`).
    pub metric: String,
    /// Less than or greater than.
    pub comparison: Comparison,
    /// What the metric is compared with.
    pub limit: Limit,
    /// The unit the metric's value is in.
    pub unit: Unit,
    /// The gate's own PromQL, replacing the policy's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<QueryTemplate>,
    /// How the gate is judged: on counts, or on single readings.
    pub judged: Judged,
}

/// What a gate compares the canary with.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Limit {
    /// A fixed threshold (`1%`, `200ms`).
    Fixed(Threshold),
    /// The stable version's value plus an amount in the metric's unit
    /// (`stable + 0.5%`: half a point above stable).
    StablePlus(Threshold),
    /// The stable version's value times a factor (`stable * 1.2`: 20% above).
    StableTimes(f64),
}

impl Limit {
    /// The fixed threshold in the metric's unit, if the limit is fixed.
    pub fn fixed(self) -> Option<f64> {
        match self {
            Limit::Fixed(t) => Some(t.value()),
            _ => None,
        }
    }

    /// The threshold given the stable version's value (`None` when it is
    /// relative and the stable value is unknown).
    pub fn against(self, stable: Option<f64>) -> Option<f64> {
        match self {
            Limit::Fixed(t) => Some(t.value()),
            Limit::StablePlus(t) => stable.map(|s| s + t.value()),
            Limit::StableTimes(f) => stable.map(|s| s * f),
        }
    }

    /// True when the limit depends on the stable version.
    pub fn is_relative(self) -> bool {
        !matches!(self, Limit::Fixed(_))
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Fixed(t) => write!(f, "{t}"),
            Limit::StablePlus(t) => write!(f, "stable + {t}"),
            Limit::StableTimes(x) => write!(f, "stable * {}", super::units::trim_float(*x)),
        }
    }
}

/// How a gate's verdict is reached.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Judged {
    /// Errors among requests, counted over the step (evidence).
    Errors,
    /// Requests slower than the threshold, counted over the step: the
    /// `quantile` is under the threshold when fewer than `1 − quantile` are.
    Quantile {
        /// 0.99 for p99.
        quantile: f64,
    },
    /// A single reading of the gate's query at each tick (custom `query:`
    /// gates, and metrics a policy defines without counts).
    Reading,
}

impl Judged {
    /// True when judged on counts (with the statistical guarantees).
    pub fn on_evidence(self) -> bool {
        !matches!(self, Judged::Reading)
    }
}

impl Gate {
    /// The key as written in the deploy file (`error_rate_less_than`).
    pub fn key(&self) -> String {
        format!("{}{}", self.metric, self.comparison.suffix())
    }

    /// True when `value` satisfies the comparison against a threshold of
    /// `limit`. NaN never does.
    pub fn holds_against(&self, value: f64, limit: f64) -> bool {
        match self.comparison {
            Comparison::LessThan => value < limit,
            Comparison::GreaterThan => value > limit,
        }
    }

    /// A value formatted in the gate's unit (`1.2%`, `310ms`).
    pub fn format_value(&self, value: f64) -> String {
        self.unit.format(value)
    }
}

impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.metric,
            self.comparison.symbol(),
            self.limit
        )
    }
}

/// What to do when data stays inconclusive past `inconclusive_limit` ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoDataPolicy {
    /// Pause the rollout and alert; resume when data returns (default).
    Hold,
    /// Roll back (or pause, when `rollback.auto` is false).
    Rollback,
    /// Treat missing data as passing. Every such decision is logged as a warning.
    Ignore,
}

/// Analysis settings (`deploy.analysis`); every field has a documented default.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Analysis {
    /// How often gates are measured.
    #[serde(serialize_with = "ser_duration")]
    pub interval: Duration,
    /// The trailing range each query covers.
    #[serde(serialize_with = "ser_duration")]
    pub window: Duration,
    /// Fewer canary requests than this in the window is inconclusive.
    pub min_requests: u64,
    /// Consecutive breaching ticks of an abort condition before rolling back.
    pub consecutive_breaches: u32,
    /// Failed promotion-gate evaluations within one step that roll back;
    /// `None`: 1 for gates judged on evidence, 3 for single readings.
    pub failure_limit: Option<u32>,
    /// 1 − the false-rollback budget of a healthy canary over the whole
    /// rollout, and of a false pass of each promotion gate (0.99).
    pub confidence: f64,
    /// How long a step may run past its duration waiting for its promotion
    /// gates' evidence before `no_data` decides; `None`: the step's duration.
    #[serde(serialize_with = "ser_opt_duration")]
    pub max_extension: Option<Duration>,
    /// Consecutive inconclusive ticks before `no_data` applies.
    pub inconclusive_limit: u32,
    /// What happens past `inconclusive_limit`.
    pub no_data: NoDataPolicy,
}

impl Analysis {
    /// The false-rollback / false-pass budget α.
    pub fn alpha(&self) -> f64 {
        (1.0 - self.confidence).clamp(1e-12, 0.5)
    }

    /// The failure limit of a gate judged as `judged`.
    pub fn failure_limit_for(&self, judged: Judged) -> u32 {
        self.failure_limit
            .unwrap_or(if judged.on_evidence() { 1 } else { 3 })
    }

    /// How long step `step` may wait for evidence past its duration.
    pub fn max_extension_for(&self, step: &Step) -> Duration {
        self.max_extension
            .or(step.duration)
            .unwrap_or(DEFAULT_LAST_STEP_WAIT)
    }
}

/// How long a last step without a `duration` may wait for its promotion
/// gates' evidence before `no_data` decides (unless `max_extension` is set).
pub const DEFAULT_LAST_STEP_WAIT: Duration = Duration::from_secs(600);

impl Default for Analysis {
    fn default() -> Self {
        Analysis {
            interval: Duration::from_secs(10),
            window: Duration::from_secs(60),
            min_requests: 20,
            consecutive_breaches: 1,
            failure_limit: None,
            confidence: 0.99,
            max_extension: None,
            inconclusive_limit: 6,
            no_data: NoDataPolicy::Hold,
        }
    }
}

/// A chat or webhook destination for alerts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AlertSink {
    /// Which service receives it.
    pub kind: SinkKind,
    /// Where the webhook URL is read from (never the URL itself).
    pub webhook: SecretRef,
    /// Where the signing secret is read from (generic webhooks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretRef>,
    /// The least severe event sent.
    pub min_severity: AlertSeverity,
}

/// Chat services canaryd posts to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    /// Slack incoming webhook.
    Slack,
    /// Microsoft Teams workflow webhook.
    Teams,
    /// Discord webhook.
    Discord,
    /// Google Chat webhook.
    GoogleChat,
    /// Generic JSON webhook with an HMAC signature.
    Webhook,
}

/// A secret's source: an environment variable or a file. The value is read at send time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretRef {
    /// The name of an environment variable.
    Env(String),
    /// The path of a file.
    File(String),
}

/// Alert severities, least severe first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertSeverity {
    /// Started, advanced, promoted.
    Info,
    /// Paused, inconclusive.
    Warn,
    /// Rolled back, aborted.
    Error,
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*d))
}

fn ser_opt_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&format_duration(*d)),
        None => s.serialize_none(),
    }
}
