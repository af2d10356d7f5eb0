//! Metric policies: reusable maps from metric names (`error_rate`) to PromQL
//! templates, so a deploy file needs no PromQL for the common case.
//!
//! A policy is a YAML file in `policies/`. The shipped ones are embedded in the
//! binary; a policy directory adds to them or replaces them by name.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::diagnostic::{Code, Diagnostic};
use super::reader::Reader;
use super::units::{promql_duration, trim_float};
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

// === Query templates ===

/// The placeholders a query template may use.
pub const PLACEHOLDERS: [&str; 6] = [
    "service",
    "namespace",
    "rollout",
    "version",
    "track",
    "window",
];

/// A PromQL text with `{{placeholder}}`s, checked to use only known ones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct QueryTemplate(String);

/// A placeholder a template does not know, or a `{{` never closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateError {
    /// `{{name}}` where `name` is not a placeholder.
    Unknown {
        /// The name written.
        name: String,
        /// Byte offset of the `{{`.
        offset: usize,
    },
    /// `{{` without `}}`.
    Unclosed {
        /// Byte offset of the `{{`.
        offset: usize,
    },
}

/// The values that fill a template for one track of one rollout.
#[derive(Clone, Debug)]
pub struct TemplateVars<'a> {
    /// `service` (the rollout name).
    pub service: &'a str,
    /// `namespace`.
    pub namespace: &'a str,
    /// `version` of the track measured.
    pub version: &'a str,
    /// `track`: `canary` or `stable`.
    pub track: &'a str,
    /// `window`: the PromQL range.
    pub window: Duration,
}

impl QueryTemplate {
    /// Checks the placeholders of `text`.
    pub fn parse(text: &str) -> Result<QueryTemplate, TemplateError> {
        for piece in pieces(text) {
            if let Piece::Var { name, offset } = piece?
                && !PLACEHOLDERS.contains(&name)
            {
                return Err(TemplateError::Unknown {
                    name: name.to_string(),
                    offset,
                });
            }
        }
        Ok(QueryTemplate(text.trim().to_string()))
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Fills the placeholders. Label values are escaped for PromQL double-quoted
    /// strings, so no value can end its string and change the query.
    pub fn render(&self, vars: &TemplateVars<'_>) -> String {
        let mut out = String::with_capacity(self.0.len() + 32);
        for piece in pieces(&self.0).flatten() {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Var { name, .. } => match name {
                    "service" | "rollout" => out.push_str(&escape_label_value(vars.service)),
                    "namespace" => out.push_str(&escape_label_value(vars.namespace)),
                    "version" => out.push_str(&escape_label_value(vars.version)),
                    "track" => out.push_str(&escape_label_value(vars.track)),
                    "window" => out.push_str(&promql_duration(vars.window)),
                    _ => {}
                },
            }
        }
        out
    }
}

/// Escapes a value for use inside a double-quoted PromQL string literal.
/// (PromQL only lets a string escape its own quote, so templates quote
/// placeholders with `"`; the shipped policies all do.)
pub fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

enum Piece<'a> {
    Text(&'a str),
    Var { name: &'a str, offset: usize },
}

fn pieces(text: &str) -> impl Iterator<Item = Result<Piece<'_>, TemplateError>> {
    let mut rest = 0usize;
    std::iter::from_fn(move || {
        if rest >= text.len() {
            return None;
        }
        let tail = &text[rest..];
        match tail.find("{{") {
            Some(0) => {
                let offset = rest;
                let Some(end) = tail.find("}}") else {
                    rest = text.len();
                    return Some(Err(TemplateError::Unclosed { offset }));
                };
                rest += end + 2;
                Some(Ok(Piece::Var {
                    name: tail[2..end].trim(),
                    offset,
                }))
            }
            Some(start) => {
                rest += start;
                Some(Ok(Piece::Text(&tail[..start])))
            }
            None => {
                rest = text.len();
                Some(Ok(Piece::Text(tail)))
            }
        }
    })
}

// === Policies ===

/// One metric of a policy.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricDef {
    /// What the value is in.
    pub unit: Unit,
    /// The PromQL template measuring it for one track.
    pub query: QueryTemplate,
    /// A line for people.
    pub description: String,
}

/// A named set of metric definitions.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Policy {
    /// The policy name (`http-red`).
    pub name: String,
    /// What stack it fits.
    pub description: String,
    /// Counts a track's requests in the window, for `min_requests`.
    pub requests: QueryTemplate,
    /// Metric name → definition.
    pub metrics: BTreeMap<String, MetricDef>,
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
        &["name", "description", "requests", "metrics"],
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
                let Some(df) = r.map(def, &what, &["unit", "query", "description"]) else {
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
                if let (Some(unit), Some(query)) = (unit, query) {
                    metrics.insert(
                        key.name.clone(),
                        MetricDef {
                            unit,
                            query,
                            description,
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
    Some(Policy {
        name: name?,
        description,
        requests: requests?,
        metrics,
    })
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
                .hint("placeholders are filled with label values, so quote them: version=\"{{version}}\"");
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

    fn vars<'a>(service: &'a str, version: &'a str) -> TemplateVars<'a> {
        TemplateVars {
            service,
            namespace: "default",
            version,
            track: "canary",
            window: Duration::from_secs(30),
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
    fn hostile_label_values_cannot_close_their_string() {
        let t = QueryTemplate::parse(r#"up{version="{{version}}"}"#).expect("valid");
        let q = t.render(&vars("svc", "v1\"} or vector(1) or up{x=\"\\\n"));
        assert_eq!(q, r#"up{version="v1\"} or vector(1) or up{x=\"\\\n"}"#);
    }

    #[test]
    fn unknown_placeholders_are_refused() {
        assert_eq!(
            QueryTemplate::parse("up{v=\"{{versoin}}\"}"),
            Err(TemplateError::Unknown {
                name: "versoin".into(),
                offset: 6
            })
        );
        assert_eq!(
            QueryTemplate::parse("up{{"),
            Err(TemplateError::Unclosed { offset: 2 })
        );
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
