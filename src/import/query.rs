//! Reading a peer's PromQL and its pass/fail condition: an error ratio, a
//! success ratio or a latency quantile on metrics a shipped policy reads
//! becomes that policy's gate; anything else stays a custom `query:` gate.

use std::collections::BTreeMap;
use std::time::Duration;

use promql_parser::label::MatchOp;
use promql_parser::parser::{self, Expr, VectorSelector};
use promql_parser::util::{ExprVisitor, walk_expr};

use crate::spec::model::Comparison;
use crate::spec::policy::{PolicySet, TemplateVars};

use super::draft::Threshold;

/// What a recognised query measures, in canaryd's terms.
#[derive(Clone, Debug, PartialEq)]
pub struct Recognised {
    /// The policy metric (`error_rate`, `latency_p99`).
    pub metric: &'static str,
    /// True when the query measures the success ratio (1 − error rate).
    pub success: bool,
    /// The query's value is canaryd's value × `scale` (100 for percentages, 1000 for milliseconds).
    pub scale: f64,
    /// The shipped policy that reads the query's metric.
    pub policy: String,
    /// The query's range (`[2m]`), the window of the measurement.
    pub window: Option<Duration>,
}

/// `result[0] >= 0.95` and the like.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Condition {
    /// The comparison, with `result` on the left.
    pub comparison: Comparison,
    /// The number compared against.
    pub value: f64,
    /// A guard that lets an empty result pass (`len(result) == 0 || …`).
    pub passes_no_data: bool,
}

/// Parses a peer's condition: `result[0] OP N` or `result OP N` (either side),
/// optionally guarded by `len(result) > 0 &&`, `!isNaN(result[0]) &&`,
/// `len(result) == 0 ||` or `isNaN(result[0]) ||`.
pub fn condition(text: &str) -> Option<Condition> {
    let t = text.trim();
    let mut passes_no_data = false;
    let core = if let Some((guard, rest)) = t.split_once("&&") {
        match compact(guard).as_str() {
            "len(result)>0" | "!isNaN(result[0])" | "len(result)!=0" => rest,
            _ => return None,
        }
    } else if let Some((guard, rest)) = t.split_once("||") {
        match compact(guard).as_str() {
            "len(result)==0" | "isNaN(result[0])" => {
                passes_no_data = true;
                rest
            }
            _ => return None,
        }
    } else {
        t
    };
    let c = compact(core);
    for (op, flipped) in [("<=", ">="), (">=", "<="), ("<", ">"), (">", "<")] {
        let Some((left, right)) = c.split_once(op) else {
            continue;
        };
        let (number, op) = if is_result(left) {
            (right, op)
        } else if is_result(right) {
            (left, flipped)
        } else {
            return None;
        };
        let value: f64 = number.parse().ok()?;
        let comparison = if op.starts_with('<') {
            Comparison::LessThan
        } else {
            Comparison::GreaterThan
        };
        return Some(Condition {
            comparison,
            value,
            passes_no_data,
        });
    }
    None
}

fn compact(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

fn is_result(text: &str) -> bool {
    matches!(text, "result" | "result[0]")
}

/// The other comparison.
pub fn flip(c: Comparison) -> Comparison {
    match c {
        Comparison::LessThan => Comparison::GreaterThan,
        Comparison::GreaterThan => Comparison::LessThan,
    }
}

impl Recognised {
    /// The canaryd comparison and threshold equivalent to `query OP value`.
    pub fn gate(&self, comparison: Comparison, value: f64) -> (Comparison, Threshold) {
        let v = value / self.scale;
        if self.success {
            // success OP v  ⇔  error (flipped OP) 1 − v
            (flip(comparison), Threshold::Ratio(1.0 - v))
        } else if self.metric == "error_rate" {
            (comparison, Threshold::Ratio(v))
        } else {
            (comparison, Threshold::Seconds(v))
        }
    }
}

/// Metric name → the shipped policy whose templates read it.
pub fn policy_metrics(policies: &PolicySet) -> BTreeMap<String, String> {
    let vars = TemplateVars {
        service: "s",
        namespace: "n",
        version: "v",
        track: "canary",
        window: Duration::from_secs(60),
        track_selector: "",
    };
    let mut out = BTreeMap::new();
    for name in policies.names() {
        let Some(policy) = policies.get(name) else {
            continue;
        };
        let templates =
            std::iter::once(&policy.requests).chain(policy.metrics.values().map(|m| &m.query));
        for t in templates {
            for s in crate::spec::promql::selectors(&t.render(&vars)).unwrap_or_default() {
                if let Some(metric) = s.metric {
                    out.entry(metric).or_insert_with(|| name.to_string());
                }
            }
        }
    }
    out
}

/// Recognises an error ratio, a success ratio or a latency quantile. `query`
/// has had the peer's own placeholders replaced by plain values.
pub fn recognise(query: &str, metrics: &BTreeMap<String, String>) -> Option<Recognised> {
    let expr = parser::parse(query).ok()?;
    let window = first_range(&expr);
    let mut r = shape(unparen(&expr))?;
    r.window = window;
    Some(r).filter(|r| !r.policy.is_empty()).and_then(|mut r| {
        r.policy = metrics.get(&r.policy)?.clone();
        Some(r)
    })
}

fn unparen(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unparen(&p.expr),
        other => other,
    }
}

fn number(e: &Expr) -> Option<f64> {
    match unparen(e) {
        Expr::NumberLiteral(n) => Some(n.val),
        _ => None,
    }
}

/// The measure of `e`; `policy` holds the metric name until [`recognise`] maps it.
fn shape(e: &Expr) -> Option<Recognised> {
    match e {
        Expr::Binary(b) => {
            let op = b.op.to_string();
            match op.as_str() {
                "*" => {
                    let (k, inner) = match (number(&b.lhs), number(&b.rhs)) {
                        (Some(k), None) => (k, &b.rhs),
                        (None, Some(k)) => (k, &b.lhs),
                        _ => return None,
                    };
                    let mut r = shape(unparen(inner))?;
                    r.scale *= k;
                    Some(r)
                }
                "-" => {
                    // `1 - success` is the error ratio (and `100 - …` in percent).
                    let k = number(&b.lhs)?;
                    let mut r = shape(unparen(&b.rhs))?;
                    (r.metric == "error_rate" && (k - r.scale).abs() < 1e-9).then(|| {
                        r.success = !r.success;
                        r
                    })
                }
                "/" => ratio(unparen(&b.lhs), unparen(&b.rhs)),
                _ => None,
            }
        }
        Expr::Call(c) if c.func.name == "histogram_quantile" => {
            let q = number(c.args.args.first()?)?;
            let metric = match q {
                q if (q - 0.99).abs() < 1e-9 => "latency_p99",
                q if (q - 0.95).abs() < 1e-9 => "latency_p95",
                q if (q - 0.5).abs() < 1e-9 => "latency_p50",
                _ => return None,
            };
            let found = vector_selectors(c.args.args.get(1)?);
            let [s] = found.as_slice() else {
                return None;
            };
            let name = s.name.clone()?;
            let base = name.strip_suffix("_bucket")?;
            let scale = if base.contains("milliseconds") || base.ends_with("_ms") {
                1000.0
            } else if base.contains("seconds") {
                1.0
            } else {
                return None;
            };
            Some(Recognised {
                metric,
                success: false,
                scale,
                policy: name,
                window: None,
            })
        }
        _ => None,
    }
}

/// Labels that carry an HTTP status (or Linkerd's classification).
const STATUS_LABELS: [&str; 6] = [
    "code",
    "response_code",
    "status",
    "status_code",
    "envoy_response_code",
    "classification",
];

/// `errors / total` or `successes / total` over the same metric.
fn ratio(lhs: &Expr, rhs: &Expr) -> Option<Recognised> {
    let (lhs, rhs) = (vector_selectors(lhs), vector_selectors(rhs));
    let ([num], [den]) = (lhs.as_slice(), rhs.as_slice()) else {
        return None;
    };
    let name = num.name.clone()?;
    if den.name.as_deref() != Some(name.as_str()) {
        return None;
    }
    let extra: Vec<_> = num
        .matchers
        .matchers
        .iter()
        .filter(|m| !den.matchers.matchers.contains(m))
        .collect();
    let [m] = extra.as_slice() else {
        return None;
    };
    if !STATUS_LABELS.contains(&m.name.as_str()) {
        return None;
    }
    let bad = m.value.starts_with('5') || m.value == "failure";
    let negated = matches!(m.op, MatchOp::NotEqual | MatchOp::NotRe(_));
    if !bad {
        return None;
    }
    Some(Recognised {
        metric: "error_rate",
        success: negated,
        scale: 1.0,
        policy: name,
        window: None,
    })
}

fn vector_selectors(e: &Expr) -> Vec<VectorSelector> {
    struct Collect(Vec<VectorSelector>);
    impl ExprVisitor for Collect {
        type Error = ();
        fn pre_visit(&mut self, expr: &Expr) -> Result<bool, ()> {
            match expr {
                Expr::VectorSelector(vs) => self.0.push(vs.clone()),
                Expr::MatrixSelector(ms) => self.0.push(ms.vs.clone()),
                _ => {}
            }
            Ok(true)
        }
    }
    let mut c = Collect(Vec::new());
    let _ = walk_expr(&mut c, e);
    c.0
}

fn first_range(e: &Expr) -> Option<Duration> {
    struct First(Option<Duration>);
    impl ExprVisitor for First {
        type Error = ();
        fn pre_visit(&mut self, expr: &Expr) -> Result<bool, ()> {
            if let (None, Expr::MatrixSelector(ms)) = (self.0, expr) {
                self.0 = Some(ms.range);
            }
            Ok(true)
        }
    }
    let mut f = First(None);
    let _ = walk_expr(&mut f, e);
    f.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> BTreeMap<String, String> {
        policy_metrics(&PolicySet::builtin())
    }

    #[test]
    fn conditions_read_either_way_round_with_guards() {
        let c = condition("result[0] >= 0.95").expect("reads");
        assert_eq!((c.comparison, c.value), (Comparison::GreaterThan, 0.95));
        let c = condition("0.5 > result").expect("reads");
        assert_eq!((c.comparison, c.value), (Comparison::LessThan, 0.5));
        let c = condition("len(result) == 0 || result[0] < 100").expect("reads");
        assert!(c.passes_no_data);
        assert_eq!(condition("all(result, # < 1)"), None);
    }

    #[test]
    fn a_success_ratio_on_istio_metrics_is_the_istio_error_rate() {
        let q = r#"sum(irate(istio_requests_total{reporter="source",destination_service=~"x",response_code!~"5.*"}[5m])) / sum(irate(istio_requests_total{reporter="source",destination_service=~"x"}[5m]))"#;
        let r = recognise(q, &metrics()).expect("recognised");
        assert_eq!(
            (r.metric, r.success, r.policy.as_str()),
            ("error_rate", true, "istio")
        );
        assert_eq!(r.window, Some(Duration::from_secs(300)));
        let (c, t) = r.gate(Comparison::GreaterThan, 0.95);
        assert_eq!(c, Comparison::LessThan);
        assert!(matches!(t, Threshold::Ratio(x) if (x - 0.05).abs() < 1e-9));
    }

    #[test]
    fn a_millisecond_histogram_quantile_is_a_latency_in_seconds() {
        let q = "histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket{x=\"y\"}[1m])))";
        let r = recognise(q, &metrics()).expect("recognised");
        assert_eq!((r.metric, r.scale), ("latency_p99", 1000.0));
        let (_, t) = r.gate(Comparison::LessThan, 500.0);
        assert_eq!(t, Threshold::Seconds(0.5));
    }

    #[test]
    fn a_percentage_of_errors_written_as_100_minus_success_is_an_error_rate() {
        let q = r#"100 - sum(rate(http_requests_total{code!~"5.."}[1m])) / sum(rate(http_requests_total[1m])) * 100"#;
        let r = recognise(q, &metrics()).expect("recognised");
        assert_eq!((r.metric, r.success, r.scale), ("error_rate", false, 100.0));
        assert_eq!(r.policy, "http-red");
    }

    #[test]
    fn other_queries_are_not_guessed_at() {
        assert_eq!(
            recognise("sum(kafka_consumergroup_lag{topic=\"x\"})", &metrics()),
            None
        );
        let not_status =
            r#"sum(rate(http_requests_total{path="/a"}[1m])) / sum(rate(http_requests_total[1m]))"#;
        assert_eq!(recognise(not_status, &metrics()), None);
    }
}
