//! What Prometheus knows about a service: which policy's metrics it exports,
//! for which versions (and at which scrape targets), and the stable
//! version's current error rate and p99 latency. Every query is built from
//! the policy's own templates, so a policy added with `--policies` is probed
//! the same way as the shipped ones.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::engine::time::Timestamp;
use crate::provider::{InstantQuery, PrometheusSource, QueryValue};
use crate::spec::policy::{Policy, TemplateVars, escape_label_value};
use crate::spec::promql::selectors;
use crate::spec::units::promql_duration;

/// Stands for the version while looking for the label that carries it.
const SENTINEL: &str = "canaryd-init-version-probe";

/// A version seen in Prometheus.
#[derive(Clone, Debug, PartialEq)]
pub struct Seen {
    /// The version label's value.
    pub version: String,
    /// Its requests in the window.
    pub requests: f64,
    /// The scrape targets (`instance`) its series come from.
    pub instances: Vec<String>,
}

/// What one policy's metrics say about the service.
#[derive(Clone, Debug, PartialEq)]
pub enum Found {
    /// The policy tells versions apart by a label: the versions with traffic.
    Versions {
        /// The label (`version`).
        label: String,
        /// Most requests first.
        seen: Vec<Seen>,
    },
    /// The policy tells tracks apart (router, mesh): requests per track.
    Tracks {
        /// Requests of the stable track in the window.
        stable: f64,
        /// Requests of the canary track in the window.
        canary: f64,
    },
}

impl Found {
    /// Requests seen in the window, all versions or tracks together.
    pub fn requests(&self) -> f64 {
        match self {
            Found::Versions { seen, .. } => seen.iter().map(|s| s.requests).sum(),
            Found::Tracks { stable, canary } => stable + canary,
        }
    }
}

/// Asks one Prometheus.
pub struct Probe {
    source: PrometheusSource,
    server: String,
    at: Timestamp,
    /// The service (rollout name).
    pub service: String,
    /// The namespace.
    pub namespace: String,
    /// How far back to look.
    pub window: Duration,
}

impl Probe {
    /// A probe of `server` for `service`, evaluated now.
    pub fn new(
        source: PrometheusSource,
        server: &str,
        service: &str,
        namespace: &str,
        window: Duration,
    ) -> Probe {
        Probe {
            source,
            server: server.to_string(),
            at: Timestamp::from_system(SystemTime::now()),
            service: service.to_string(),
            namespace: namespace.to_string(),
            window,
        }
    }

    fn vars<'a>(
        &'a self,
        policy: &'a Policy,
        version: &'a str,
        track: &'a str,
    ) -> TemplateVars<'a> {
        TemplateVars {
            service: &self.service,
            namespace: &self.namespace,
            version,
            track,
            window: self.window,
            track_selector: policy.track_selectors.of(track),
        }
    }

    async fn ask(&self, promql: String) -> Result<QueryValue, String> {
        let query = InstantQuery {
            server: self.server.clone(),
            promql,
        };
        self.source
            .query(&query, self.at)
            .await
            .map_err(|e| format!("Prometheus: {e}"))
    }

    /// What `policy`'s request metric shows for the service, or `None` when
    /// it has no traffic in the window.
    pub async fn discover(&self, policy: &Policy) -> Result<Option<Found>, String> {
        let rendered = policy
            .requests
            .render(&self.vars(policy, SENTINEL, "stable"));
        let found = selectors(&rendered)?.into_iter().find_map(|s| {
            let (label, ..) = s
                .matchers
                .iter()
                .find(|(_, op, v)| op == "=" && v == SENTINEL)?;
            Some((label.clone(), s))
        });
        let Some((label, selector)) = found else {
            // Tracks, not versions, are in the labels: ask each track's count.
            let stable = self.requests(policy, "", "stable").await?;
            let canary = self.requests(policy, "", "canary").await?;
            return Ok((stable + canary > 0.0).then_some(Found::Tracks { stable, canary }));
        };
        let Some(metric) = selector.metric else {
            return Ok(None);
        };
        let matchers: Vec<String> = selector
            .matchers
            .iter()
            .filter(|(l, ..)| *l != label)
            .map(|(l, op, v)| format!("{l}{op}\"{}\"", escape_label_value(v)))
            .collect();
        let promql = format!(
            "sum by ({label}, instance) (increase({metric}{{{}}}[{}]))",
            matchers.join(", "),
            promql_duration(self.window)
        );
        let mut by_version: BTreeMap<String, Seen> = BTreeMap::new();
        if let QueryValue::Vector(series) = self.ask(promql).await? {
            for s in series
                .into_iter()
                .filter(|s| s.value.is_finite() && s.value > 0.0)
            {
                let Some(version) = s.labels.get(&label) else {
                    continue;
                };
                let seen = by_version
                    .entry(version.to_string())
                    .or_insert_with(|| Seen {
                        version: version.to_string(),
                        requests: 0.0,
                        instances: Vec::new(),
                    });
                seen.requests += s.value;
                if let Some(instance) = s.labels.get("instance") {
                    seen.instances.push(instance.to_string());
                }
            }
        }
        let mut seen: Vec<Seen> = by_version.into_values().collect();
        seen.sort_by(|a, b| b.requests.total_cmp(&a.requests));
        Ok((!seen.is_empty()).then_some(Found::Versions { label, seen }))
    }

    /// The track's request count in the window (0 without data).
    pub async fn requests(
        &self,
        policy: &Policy,
        version: &str,
        track: &str,
    ) -> Result<f64, String> {
        let promql = policy.requests.render(&self.vars(policy, version, track));
        Ok(single(self.ask(promql).await?).unwrap_or(0.0))
    }

    /// The value of `policy`'s `metric` for one version, `None` without data.
    pub async fn measure(
        &self,
        policy: &Policy,
        metric: &str,
        version: &str,
    ) -> Result<Option<f64>, String> {
        let Some(def) = policy.metrics.get(metric) else {
            return Ok(None);
        };
        let promql = def.query.render(&self.vars(policy, version, "stable"));
        Ok(single(self.ask(promql).await?))
    }
}

/// One finite value, if the answer holds exactly one.
fn single(value: QueryValue) -> Option<f64> {
    let v = match value {
        QueryValue::Scalar(v) => v,
        QueryValue::Vector(series) => match series.as_slice() {
            [one] => one.value,
            _ => return None,
        },
    };
    v.is_finite().then_some(v)
}
