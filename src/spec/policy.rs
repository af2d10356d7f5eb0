//! Metric policies: reusable maps from metric names (`error_rate`) to PromQL
//! templates, so a deploy file needs no PromQL for the common case.
//!
//! A policy is a YAML file in `policies/`. The shipped ones are embedded in the
//! binary; a policy directory adds to them or replaces them by name.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::diagnostic::{Code, Diagnostic};
use super::reader::Reader;
pub use super::template::{
    PLACEHOLDERS, QueryTemplate, TemplateError, TemplateVars, escape_label_value,
};
use super::units::trim_float;
use super::yaml::{self, Node, Pos};

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
            include_str!(concat!("../../policies/", $name, ".yaml")),
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

/// Parses a policy file, returning every problem found when it is invalid.
pub fn parse_policy(file: &str, text: &str) -> Result<Policy, Vec<Diagnostic>> {
    let root = yaml::parse(text)
        .map_err(|e| vec![Diagnostic::error(Code::YamlSyntax, file, e.pos, e.message)])?;
    let mut r = Reader::new(file);
    let policy = read_policy(&mut r, &root);
    match policy {
        Some(p) if !r.has_errors() => Ok(p),
        _ => Err(r.diags),
    }
}

fn read_policy(r: &mut Reader<'_>, root: &Node) -> Option<Policy> {
    let f = r.map(
        root,
        "the policy",
        &[
            "name",
            "description",
            "tracks",
            "requests",
            "counts",
            "metrics",
        ],
    )?;
    let name = r.required(&f, "name", "the policy", "name: my-policy", |r, n| {
        r.text(n, "`name`")
    });
    let description = f
        .get("description")
        .and_then(|n| r.text(n, "`description`"))
        .unwrap_or_default();
    let requests = r.required(
        &f,
        "requests",
        "the policy",
        "requests: <PromQL counting a track's requests>",
        |r, n| template(r, n, "`requests`"),
    );
    let mut metrics = BTreeMap::new();
    if let Some(node) = f.get("metrics") {
        if let Some(mf) = r.any_map(node, "`metrics`") {
            for (key, def) in mf.entries() {
                let what = format!("metric `{}`", key.name);
                let Some(df) = r.map(def, &what, &["unit", "query", "description", "evidence"])
                else {
                    continue;
                };
                let unit = r.required(&df, "unit", &what, "unit: ratio", |r, n| {
                    let t = r.text(n, "`unit`")?;
                    let unit = Unit::parse(&t);
                    if unit.is_none() {
                        r.error(Code::BadValue, n.pos, format!("unknown unit `{t}`"))
                            .hint(format!("units: {}", Unit::NAMES.join(", ")));
                    }
                    unit
                });
                let query = r.required(&df, "query", &what, "query: <PromQL>", |r, n| {
                    template(r, n, "`query`")
                });
                let description = df
                    .get("description")
                    .and_then(|n| r.text(n, "`description`"))
                    .unwrap_or_default();
                let evidence = df.get("evidence").and_then(|n| read_evidence(r, n, unit));
                if let (Some(unit), Some(query)) = (unit, query) {
                    metrics.insert(
                        key.name.clone(),
                        MetricDef {
                            unit,
                            query,
                            description,
                            evidence,
                        },
                    );
                }
            }
        }
    } else {
        r.missing(
            &f,
            "metrics",
            "the policy",
            "metrics: { error_rate: { unit: ratio, query: ... } }",
        );
    }
    let track_selectors = f
        .get("tracks")
        .map(|n| read_track_selectors(r, n))
        .unwrap_or_default();
    let counts = f.get("counts").and_then(|n| read_counts(r, n));
    check_evidence_has_counts(r, &f, &metrics, counts.as_ref());
    Some(Policy {
        name: name?,
        description,
        requests: requests?,
        counts,
        metrics,
        track_selectors,
    })
}

/// `evidence: errors` or `evidence: { quantile: 0.99 }`.
fn read_evidence(r: &mut Reader<'_>, node: &Node, unit: Option<Unit>) -> Option<EvidenceKind> {
    let hint = "`evidence: errors` (a ratio of errors to requests) or `evidence: { quantile: 0.99 }` (a latency)";
    let kind = match &node.value {
        yaml::Value::String(s) if s == "errors" => EvidenceKind::Errors,
        yaml::Value::Map(_) => {
            let f = r.map(node, "`evidence`", &["quantile"])?;
            let q = f.get("quantile")?;
            let yaml::Value::Number(q, _) = q.value else {
                r.wrong_type(q, "`quantile`", "a number between 0 and 1, e.g. 0.99");
                return None;
            };
            if !(q > 0.0 && q < 1.0) {
                r.error(
                    Code::OutOfRange,
                    node.pos,
                    format!("quantile {q} is not between 0 and 1"),
                )
                .hint("p99 is `quantile: 0.99`");
                return None;
            }
            EvidenceKind::Quantile(q)
        }
        _ => {
            r.error(Code::BadValue, node.pos, "unknown evidence kind")
                .hint(hint);
            return None;
        }
    };
    let fits = matches!(
        (kind, unit),
        (EvidenceKind::Errors, Some(Unit::Ratio))
            | (EvidenceKind::Quantile(_), Some(Unit::Seconds))
    );
    if !fits && unit.is_some() {
        r.error(
            Code::UnitMismatch,
            node.pos,
            "this evidence kind does not fit the metric's unit",
        )
        .hint("`errors` goes with `unit: ratio`, `quantile` with `unit: seconds`");
        return None;
    }
    Some(kind)
}

/// The `counts:` map of a policy.
fn read_counts(r: &mut Reader<'_>, node: &Node) -> Option<CountQueries> {
    let f = r.map(
        node,
        "`counts`",
        &[
            "requests",
            "errors",
            "latency_buckets",
            "le_unit",
            "latency_bounds",
        ],
    )?;
    let requests = r.required(
        &f,
        "requests",
        "`counts`",
        "requests: sum(http_requests_total{…})",
        |r, n| template(r, n, "`counts.requests`"),
    );
    let errors = f
        .get("errors")
        .and_then(|n| template(r, n, "`counts.errors`"));
    let latency_buckets = f
        .get("latency_buckets")
        .and_then(|n| template(r, n, "`counts.latency_buckets`"));
    let le_scale = match f.get("le_unit") {
        None => 1.0,
        Some(n) => match r.text(n, "`le_unit`").as_deref() {
            Some("seconds") => 1.0,
            Some("milliseconds") => 0.001,
            Some(other) => {
                r.error(
                    Code::BadValue,
                    n.pos,
                    format!("unknown `le_unit` `{other}`"),
                )
                .hint("`seconds` (the default) or `milliseconds`");
                return None;
            }
            None => return None,
        },
    };
    let latency_bounds = match f.get("latency_bounds") {
        None => None,
        Some(n) => Some(read_latency_bounds(r, n, le_scale)?),
    };
    Some(CountQueries {
        requests: requests?,
        errors,
        latency_buckets,
        le_scale,
        latency_bounds,
    })
}

/// `latency_bounds: [0.005, 0.01, …]`: the finite `le` values the stack
/// exports by default, ascending, in `le_unit`; returned in seconds.
fn read_latency_bounds(r: &mut Reader<'_>, node: &Node, le_scale: f64) -> Option<Vec<f64>> {
    let hint =
        "the finite `le` bounds of the histogram, ascending, in `le_unit`: [0.005, 0.01, 0.025, …]";
    let items = r.list(node, "`latency_bounds`")?;
    let mut bounds = Vec::with_capacity(items.len());
    for item in items {
        let yaml::Value::Number(v, _) = item.value else {
            r.wrong_type(item, "a latency bound", "a number (`+Inf` is implied)");
            return None;
        };
        if !(v.is_finite() && v > 0.0) {
            r.error(
                Code::OutOfRange,
                item.pos,
                format!("latency bound {v} is not a positive number"),
            )
            .hint(hint);
            return None;
        }
        if bounds.last().is_some_and(|last| v * le_scale <= *last) {
            r.error(
                Code::BadValue,
                item.pos,
                format!("latency bound {v} is not above the one before it"),
            )
            .hint(hint);
            return None;
        }
        bounds.push(v * le_scale);
    }
    if bounds.is_empty() {
        r.error(Code::MissingKey, node.pos, "`latency_bounds` is empty")
            .hint(hint);
        return None;
    }
    Some(bounds)
}

/// A metric judged on counts needs the counter it counts.
fn check_evidence_has_counts(
    r: &mut Reader<'_>,
    f: &super::reader::Fields<'_>,
    metrics: &BTreeMap<String, MetricDef>,
    counts: Option<&CountQueries>,
) {
    let pos = f
        .key("counts")
        .or(f.key("metrics"))
        .map_or(Pos::default(), |k| k.pos);
    for (name, def) in metrics {
        let missing = match def.evidence {
            None => continue,
            Some(EvidenceKind::Errors) => counts
                .is_none_or(|c| c.errors.is_none())
                .then_some("errors"),
            Some(EvidenceKind::Quantile(_)) => counts
                .is_none_or(|c| c.latency_buckets.is_none())
                .then_some("latency_buckets"),
        };
        if let Some(query) = missing {
            r.error(
                Code::MissingKey,
                pos,
                format!("metric `{name}` is judged on counts but `counts.{query}` is not given"),
            )
            .hint(format!(
                "add `counts: {{ {query}: <PromQL> }}` or remove the metric's `evidence`"
            ));
        }
    }
}

/// `tracks: { canary: 'canary!=""', stable: 'canary=""' }`: label matchers,
/// each checked to parse inside a selector.
fn read_track_selectors(r: &mut Reader<'_>, node: &Node) -> TrackSelectors {
    let mut selectors = TrackSelectors::default();
    let Some(f) = r.map(node, "`tracks`", &["canary", "stable"]) else {
        return selectors;
    };
    for (track, slot) in [
        ("canary", &mut selectors.canary),
        ("stable", &mut selectors.stable),
    ] {
        let Some(n) = f.get(track) else { continue };
        let Some(text) = r.text(n, "a track selector") else {
            continue;
        };
        match super::promql::check_matchers(&text) {
            Ok(()) => *slot = text,
            Err(message) => {
                r.error(
                    Code::BadPromql,
                    n.pos,
                    format!("the {track} selector is not a list of label matchers: {message}"),
                )
                .hint(r#"write matchers as inside `{…}`, e.g. canary!="""#);
            }
        }
    }
    selectors
}

/// Reads a query template, pointing at a bad placeholder when there is one.
pub fn template(r: &mut Reader<'_>, node: &Node, what: &str) -> Option<QueryTemplate> {
    let text = r.text(node, what)?;
    match QueryTemplate::parse(&text) {
        Ok(t) => match super::promql::check_template(&t) {
            Ok(()) => Some(t),
            Err(message) => {
                let first = message.lines().next().unwrap_or("syntax error").to_string();
                r.error(
                    Code::BadPromql,
                    node.pos,
                    format!("{what} is not valid PromQL: {first}"),
                )
                .hint("try the query in Prometheus' expression browser ({{window}} becomes a range such as 1m)");
                None
            }
        },
        Err(TemplateError::Unknown { name, offset }) => {
            let pos = offset_pos(node.pos, &text, offset);
            let hint = match super::diagnostic::did_you_mean(&name, PLACEHOLDERS) {
                Some(near) => format!("did you mean `{{{{{near}}}}}`?"),
                None => format!(
                    "placeholders: {}",
                    PLACEHOLDERS.map(|p| format!("{{{{{p}}}}}")).join(", ")
                ),
            };
            r.error(
                Code::UnknownPlaceholder,
                pos,
                format!("unknown placeholder `{{{{{name}}}}}` in {what}"),
            )
            .len(name.len() + 4)
            .hint(hint);
            None
        }
        Err(TemplateError::Misplaced { name, offset }) => {
            let pos = offset_pos(node.pos, &text, offset);
            let hint = if name == "window" || name == "track_selector" {
                format!("`{{{{{name}}}}}` is PromQL syntax, not a value: put it outside quotes")
            } else {
                format!(
                    "put it inside double quotes, e.g. {name}=\"{{{{{name}}}}}\": canaryd escapes values for double-quoted strings only"
                )
            };
            r.error(
                Code::BadPromql,
                pos,
                format!("`{{{{{name}}}}}` cannot stand here in {what}"),
            )
            .len(name.len() + 4)
            .hint(hint);
            None
        }
        Err(TemplateError::Unclosed { offset }) => {
            let pos = offset_pos(node.pos, &text, offset);
            r.error(
                Code::BadValue,
                pos,
                format!("`{{{{` is never closed in {what}"),
            )
            .hint("close it with `}}`");
            None
        }
    }
}

/// The position of byte `offset` of a scalar starting at `start`; exact for
/// plain single-line scalars, the scalar's start otherwise.
fn offset_pos(start: Pos, text: &str, offset: usize) -> Pos {
    if text[..offset].contains('\n') {
        return start;
    }
    Pos {
        line: start.line,
        column: start.column + text[..offset].chars().count() as u32,
    }
}

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
