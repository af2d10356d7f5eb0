//! Metric policies: reusable maps from metric names (`error_rate`) to PromQL
//! templates, so a deploy file needs no PromQL for the common case.
//!
//! A policy is a YAML file in `policies/`. The shipped ones are embedded in the
//! binary; a policy directory adds to them or replaces them by name.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

pub use super::template::{
    PLACEHOLDERS, QueryTemplate, TemplateError, TemplateVars, escape_label_value,
};
use super::units::trim_float;

/// The unit a metric's value is reported in; decides how thresholds are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// A fraction between 0 and 1, written as a percentage (`1%`).
    Ratio,
    /// Seconds, written as a latency (`200ms`).
    Seconds,
    /// Events per second, a plain number.
    PerSecond,
    /// Any other plain number.
    Number,
}

impl Unit {
    const NAMES: [&'static str; 4] = ["ratio", "seconds", "per_second", "number"];

    fn parse(text: &str) -> Option<Unit> {
        match text {
            "ratio" => Some(Unit::Ratio),
            "seconds" => Some(Unit::Seconds),
            "per_second" => Some(Unit::PerSecond),
            "number" => Some(Unit::Number),
            _ => None,
        }
    }

    /// Formats a measured value for people (`1.2%`, `310ms`, `4.5/s`).
    pub fn format(self, value: f64) -> String {
        if !value.is_finite() {
            return value.to_string();
        }
        // Three significant digits: a measurement, not an accounting figure.
        let sig = |x: f64| trim_float(round_significant(x, 3));
        match self {
            Unit::Ratio => format!("{}%", sig(value * 100.0)),
            Unit::Seconds if value < 1.0 => format!("{}ms", sig(value * 1000.0)),
            Unit::Seconds => format!("{}s", sig(value)),
            Unit::PerSecond => format!("{}/s", sig(value)),
            Unit::Number => sig(value),
        }
    }
}

/// `x` rounded to `digits` significant digits (whole numbers keep all of theirs).
fn round_significant(x: f64, digits: i32) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let magnitude = x.abs().log10().floor() as i32;
    let decimals = (digits - 1 - magnitude).max(0);
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Unit::Ratio => "ratio",
            Unit::Seconds => "seconds",
            Unit::PerSecond => "per_second",
            Unit::Number => "number",
        };
        f.write_str(name)
    }
}

// === Policies ===

/// One metric of a policy.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricDef {
    /// What the value is in.
    pub unit: Unit,
    /// The PromQL template measuring it for one track (display, `check`,
    /// and gates judged on single readings).
    pub query: QueryTemplate,
    /// A line for people.
    pub description: String,
    /// How gates on it are judged on the policy's counts; `None`: on
    /// single readings of `query`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<EvidenceKind>,
}

/// What a metric's gates count, from the policy's `counts`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceKind {
    /// Errors among requests (`counts.errors` / `counts.requests`): a ratio.
    Errors,
    /// Requests slower than the threshold (`counts.latency_buckets`): the
    /// quantile `q` is under the threshold when fewer than `1 − q` are.
    Quantile(f64),
}

/// The policy's cumulative counters, per track: canaryd reads them at every
/// tick and judges evidence gates on the differences (no window: nothing is
/// counted twice and nothing is lost).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CountQueries {
    /// A track's requests since its counters started (one value).
    pub requests: QueryTemplate,
    /// Of those, errors (one value; none means 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<QueryTemplate>,
    /// A track's cumulative latency histogram, one series per `le`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_buckets: Option<QueryTemplate>,
    /// Seconds per unit of the buckets' `le` label (0.001 for milliseconds).
    pub le_scale: f64,
    /// The histogram bounds the stack exports by default, in seconds
    /// ascending (`counts.latency_bounds`, written in `le_unit`): `validate`
    /// warns about latency thresholds they judge coarsely.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_bounds: Option<Vec<f64>>,
}

/// A named set of metric definitions.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Policy {
    /// The policy name (`http-red`).
    pub name: String,
    /// What stack it fits.
    pub description: String,
    /// Counts a track's requests in the window, for `min_requests` of gates
    /// judged on single readings.
    pub requests: QueryTemplate,
    /// The counters evidence gates are judged on (`None`: every gate of the
    /// policy is judged on single readings).
    pub counts: Option<CountQueries>,
    /// Metric name → definition.
    pub metrics: BTreeMap<String, MetricDef>,
    /// What `{{track_selector}}` becomes for each track (empty when not given):
    /// label matchers for stacks that tell tracks apart by something other
    /// than a label value (ingress-nginx: `canary!=""` / `canary=""`).
    pub track_selectors: TrackSelectors,
}

/// The policy's `tracks:` map.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TrackSelectors {
    /// Matchers selecting the canary's series.
    pub canary: String,
    /// Matchers selecting the stable version's series.
    pub stable: String,
}

impl TrackSelectors {
    /// The matchers of `track` (`canary` or `stable`).
    pub fn of(&self, track: &str) -> &str {
        if track == "canary" {
            &self.canary
        } else {
            &self.stable
        }
    }
}

/// `("policies/NAME.yaml", <its text>)`, compiled in.
macro_rules! shipped {
    ($name:literal) => {
        (
            concat!("policies/", $name, ".yaml"),
            include_str!(concat!("../../../policies/", $name, ".yaml")),
        )
    };
}

/// The policies shipped in `policies/`, compiled into the binary.
const BUILTIN: &[(&str, &str)] = &[
    shipped!("http-red"),
    shipped!("canaryd-router"),
    shipped!("istio"),
    shipped!("linkerd"),
    shipped!("nginx-ingress"),
    shipped!("envoy"),
];

/// Every policy known, by name.
#[derive(Clone, Debug, Default)]
pub struct PolicySet {
    policies: BTreeMap<String, Policy>,
}

impl PolicySet {
    /// The policies shipped with canaryd.
    pub fn builtin() -> PolicySet {
        let mut set = PolicySet::default();
        for (file, text) in BUILTIN {
            // Shipped policies are checked by tests; a broken one is a build defect.
            let policy = parse_policy(file, text).expect("shipped policy is valid");
            set.insert(policy);
        }
        set
    }

    /// Adds or replaces a policy.
    pub fn insert(&mut self, policy: Policy) {
        self.policies.insert(policy.name.clone(), policy);
    }

    /// The policy called `name`.
    pub fn get(&self, name: &str) -> Option<&Policy> {
        self.policies.get(name)
    }

    /// All policy names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.policies.keys().map(String::as_str)
    }
}

mod read;

pub use read::{parse_policy, template};

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn vars<'a>(service: &'a str, version: &'a str) -> TemplateVars<'a> {
        TemplateVars {
            service,
            namespace: "default",
            version,
            track: "canary",
            window: Duration::from_secs(30),
            track_selector: "",
        }
    }

    #[test]
    fn the_shipped_policy_defines_the_red_metrics() {
        let set = PolicySet::builtin();
        let red = set.get("http-red").expect("http-red ships");
        for metric in ["error_rate", "latency_p99", "request_rate"] {
            assert!(red.metrics.contains_key(metric), "{metric}");
        }
        assert_eq!(red.metrics["error_rate"].unit, Unit::Ratio);
        assert_eq!(red.metrics["latency_p99"].unit, Unit::Seconds);
    }

    #[test]
    fn rendering_fills_the_http_red_label_contract() {
        let set = PolicySet::builtin();
        let q = set.get("http-red").expect("ships").metrics["error_rate"]
            .query
            .render(&vars("checkout", "v2"));
        assert!(
            q.contains(
                r#"http_requests_total{service="checkout", version="v2", code=~"5.."}[30s]"#
            ),
            "{q}"
        );
    }

    #[test]
    fn every_shipped_policy_declares_its_stacks_default_latency_bounds_in_seconds() {
        let set = PolicySet::builtin();
        for name in set.names() {
            let policy = set.get(name).expect("listed");
            let bounds = policy
                .counts
                .as_ref()
                .and_then(|c| c.latency_bounds.as_ref())
                .unwrap_or_else(|| panic!("{name} declares no latency_bounds"));
            assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{name}: {bounds:?}");
        }
        let bounds = |name: &str| {
            set.get(name)
                .and_then(|p| p.counts.clone())
                .and_then(|c| c.latency_bounds)
                .expect("declared")
        };
        // canaryd's router exports the sample app's buckets.
        assert_eq!(
            bounds("canaryd-router"),
            crate::sample::app::LATENCY_BUCKETS.to_vec()
        );
        // Milliseconds are read in `le_unit` and kept in seconds.
        let near = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(near(bounds("istio")[0], 0.0005) && near(bounds("istio")[2], 0.005));
        assert!(near(bounds("linkerd")[4], 0.2));
        assert_eq!(bounds("http-red"), bounds("nginx-ingress"));
    }

    #[test]
    fn latency_bounds_must_be_positive_ascending_numbers() {
        let policy = |bounds: &str| {
            format!(
                "name: p\nrequests: up\ncounts:\n  requests: up\n  latency_bounds: {bounds}\nmetrics: {{}}\n"
            )
        };
        assert!(parse_policy("p.yaml", &policy("[0.1, 0.2]")).is_ok());
        for (bad, message) in [
            (
                "[0.2, 0.1]",
                "latency bound 0.1 is not above the one before it",
            ),
            ("[0, 0.1]", "latency bound 0 is not a positive number"),
            ("[fast]", "a latency bound must be a number"),
            ("[]", "`latency_bounds` is empty"),
        ] {
            let diags = parse_policy("p.yaml", &policy(bad)).expect_err(bad);
            assert!(
                diags.iter().any(|d| d.message.starts_with(message)),
                "{bad}: {diags:?}"
            );
        }
    }

    #[test]
    fn values_are_formatted_in_their_unit() {
        assert_eq!(Unit::Ratio.format(0.0123), "1.23%");
        assert_eq!(Unit::Seconds.format(0.31), "310ms");
        assert_eq!(Unit::Seconds.format(1.5), "1.5s");
        assert_eq!(Unit::PerSecond.format(4.5), "4.5/s");
        assert_eq!(Unit::Ratio.format(0.05911824), "5.91%");
        assert_eq!(Unit::Seconds.format(0.087525), "87.5ms");
        assert_eq!(Unit::Seconds.format(0.3102), "310ms");
        assert_eq!(Unit::PerSecond.format(1234.56), "1235/s");
        assert_eq!(Unit::Ratio.format(0.0), "0%");
    }
}
