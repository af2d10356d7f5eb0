//! Grouped queries (pure): one PromQL query answers a metric for every
//! rollout of a tick, `by` the labels the policy selects rollouts with, and
//! its answer is split back to each rollout.
//!
//! A policy template selects one rollout's track with label matchers such as
//! `service="{{service}}", version="{{version}}"`. [`shape`] parses the
//! template (rendered with sentinels in place of those values) and rewrites
//! it, when that is provably equivalent, so that:
//!
//! * each such matcher selects the set of every member's values
//!   (`service=~"a|b|c"`), and
//! * every aggregation keeps those labels (`sum(…)` becomes
//!   `sum by (service, version) (…)`; `sum by (le)` becomes
//!   `sum by (le, service, version)`); vector matching (`on (…)`) too.
//!
//! Each rollout then reads the series whose grouping labels equal its own
//! values: none is *no data* for it alone, several are ambiguous, exactly as
//! its own query would have answered.
//!
//! Templates whose meaning would change are asked per rollout, as before:
//! a function that makes or drops labels (`vector()`, `scalar()`,
//! `absent()`, `label_replace()`, …), `topk`/`bottomk`/`count_values`, a
//! selector that does not select on every grouping label, a placeholder
//! anywhere but an exact matcher's value, `ignoring`/`without` a grouping
//! label, or a scalar result.

use std::collections::{BTreeSet, HashMap};

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{self, Expr, LabelModifier};

use super::{Answer, QueryValue, Series};
use crate::engine::observation::Inconclusive;
use crate::spec::template::{escape_label_value as escape_string, escape_regex};

/// A label-value placeholder a rollout's track fills in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Var {
    /// `{{service}}` (also spelled `{{rollout}}`).
    Service,
    /// `{{namespace}}`.
    Namespace,
    /// `{{version}}`.
    Version,
}

impl Var {
    /// Every placeholder, with its sentinel value.
    pub const ALL: [(Var, &'static str); 3] = [
        (Var::Service, "__canaryd_group_service__"),
        (Var::Namespace, "__canaryd_group_namespace__"),
        (Var::Version, "__canaryd_group_version__"),
    ];

    /// The value rendered in place of this placeholder when shaping.
    pub fn sentinel(self) -> &'static str {
        match self {
            Var::Service => Var::ALL[0].1,
            Var::Namespace => Var::ALL[1].1,
            Var::Version => Var::ALL[2].1,
        }
    }

    fn of_sentinel(value: &str) -> Option<Var> {
        Var::ALL.iter().find(|(_, s)| *s == value).map(|(v, _)| *v)
    }
}

/// Why a template is asked per rollout.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Ungroupable {
    /// The rendered query does not parse (Prometheus will say why).
    #[error("the query does not parse: {0}")]
    Parse(String),
    /// Nothing in it depends on the rollout (identical for all: asked once).
    #[error("no label selects the rollout")]
    NoPlaceholder,
    /// A construct whose result would change when grouped.
    #[error("{0}")]
    Unsupported(String),
}

/// A template's grouped form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape {
    /// The rewritten query, each bound matcher still holding its sentinel.
    promql: String,
    /// The grouping labels and the placeholder each is bound to.
    keys: Vec<(String, Var)>,
}

/// A member's values of the grouping labels, in [`Shape::keys`] order.
pub type Key = Vec<String>;

impl Shape {
    /// The grouping labels and their placeholders, in `by` order.
    pub fn keys(&self) -> &[(String, Var)] {
        &self.keys
    }

    /// The rewritten query with sentinels (the identity of a group).
    pub fn template(&self) -> &str {
        &self.promql
    }

    /// A member's key, from its placeholder values.
    pub fn key(&self, value_of: impl Fn(Var) -> String) -> Key {
        self.keys.iter().map(|(_, var)| value_of(*var)).collect()
    }

    /// The query for `members`: each bound matcher selects the set of the
    /// members' values (exactly, when there is one).
    pub fn render<'a>(&self, members: impl IntoIterator<Item = &'a Key>) -> String {
        let mut sets: Vec<BTreeSet<&str>> = vec![BTreeSet::new(); self.keys.len()];
        for key in members {
            for (set, value) in sets.iter_mut().zip(key) {
                set.insert(value);
            }
        }
        let mut out = self.promql.clone();
        for ((_, var), set) in self.keys.iter().zip(&sets) {
            let from = format!("=\"{}\"", var.sentinel());
            let to = if set.len() == 1 {
                let one = set.iter().next().copied().unwrap_or_default();
                format!("=\"{}\"", escape_string(one))
            } else {
                let alternatives: Vec<String> = set.iter().map(|v| escape_regex(v)).collect();
                format!("=~\"{}\"", escape_string(&alternatives.join("|")))
            };
            out = out.replace(&from, &to);
        }
        out
    }

    /// Splits a grouped answer by member key: each member's own answer (a
    /// vector of its series, without the grouping labels, which the key
    /// holds). An error is every member's error.
    pub fn split(&self, answer: Answer) -> Result<HashMap<Key, Answer>, Inconclusive> {
        let series = match answer {
            Err(why) => return Err(why),
            Ok(QueryValue::Vector(series)) => series,
            Ok(QueryValue::Scalar(_)) => {
                return Err(Inconclusive::ProviderError {
                    message: "a grouped query returned a scalar".into(),
                });
            }
        };
        let mut by_key: HashMap<Key, Vec<Series>> = HashMap::new();
        for mut s in series {
            // The grouping labels move into the key (their values are the
            // member's own); the others (`le`) stay on the series.
            let key: Option<Key> = self
                .keys
                .iter()
                .map(|(label, _)| s.labels.remove(label).map(String::from))
                .collect();
            if let Some(key) = key {
                by_key.entry(key).or_default().push(s);
            }
        }
        Ok(by_key
            .into_iter()
            .map(|(k, v)| (k, Ok(QueryValue::Vector(v))))
            .collect())
    }
}

/// The grouped form of `rendered`, a template rendered with each
/// placeholder's [`Var::sentinel`], or why it must be asked per rollout.
pub fn shape(rendered: &str) -> Result<Shape, Ungroupable> {
    let mut expr = parser::parse(rendered).map_err(Ungroupable::Parse)?;
    let mut selectors: Vec<Vec<(String, Var)>> = Vec::new();
    collect(&expr, &mut selectors)?;
    let mut keys: Vec<(String, Var)> = Vec::new();
    for bound in &selectors {
        for (label, var) in bound {
            match keys.iter().find(|(l, _)| l == label) {
                Some((_, v)) if v != var => {
                    return Err(unsupported(format!(
                        "label `{label}` selects two different placeholders"
                    )));
                }
                Some(_) => {}
                None => keys.push((label.clone(), *var)),
            }
        }
    }
    if keys.is_empty() {
        return Err(Ungroupable::NoPlaceholder);
    }
    for bound in &selectors {
        if bound.len() != keys.len() || keys.iter().any(|k| !bound.contains(k)) {
            return Err(unsupported(
                "a selector does not select on every label the others select the rollout by",
            ));
        }
    }
    if expr.value_type() != ValueType::Vector {
        return Err(unsupported("the query's result is not an instant vector"));
    }
    let labels: Vec<String> = keys.iter().map(|(l, _)| l.clone()).collect();
    rewrite(&mut expr, &labels)?;
    Ok(Shape {
        promql: expr.to_string(),
        keys,
    })
}

fn unsupported(why: impl Into<String>) -> Ungroupable {
    Ungroupable::Unsupported(why.into())
}

/// Functions that keep every label but `__name__` (and `le` only for
/// `histogram_quantile`, which is never a grouping label).
const LABEL_KEEPING: &[&str] = &[
    "abs",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "delta",
    "deriv",
    "exp",
    "floor",
    "histogram_avg",
    "histogram_count",
    "histogram_fraction",
    "histogram_quantile",
    "histogram_stddev",
    "histogram_stdvar",
    "histogram_sum",
    "idelta",
    "increase",
    "irate",
    "ln",
    "log10",
    "log2",
    "avg_over_time",
    "count_over_time",
    "last_over_time",
    "max_over_time",
    "min_over_time",
    "present_over_time",
    "quantile_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "predict_linear",
    "rate",
    "resets",
    "round",
    "sgn",
    "sqrt",
    "timestamp",
];

/// Aggregations that aggregate within each `by` group (adding a label to
/// `by` splits the result per rollout and changes nothing else).
const GROUPING_AGGREGATIONS: &[&str] = &[
    "avg", "count", "group", "max", "min", "quantile", "stddev", "stdvar", "sum",
];

/// Checks every node, and lists each selector's bound labels.
fn collect(expr: &Expr, selectors: &mut Vec<Vec<(String, Var)>>) -> Result<(), Ungroupable> {
    match expr {
        Expr::VectorSelector(vs) => {
            selectors.push(bound(&vs.matchers.matchers)?);
            if !vs.matchers.or_matchers.is_empty() {
                return Err(unsupported("`or` inside a selector"));
            }
            Ok(())
        }
        Expr::MatrixSelector(ms) => collect(&Expr::VectorSelector(ms.vs.clone()), selectors),
        Expr::Aggregate(a) => {
            let op = a.op.to_string();
            if !GROUPING_AGGREGATIONS.contains(&op.as_str()) {
                return Err(unsupported(format!("`{op}` ranks or relabels series")));
            }
            if let Some(p) = &a.param {
                collect(p, selectors)?;
            }
            collect(&a.expr, selectors)
        }
        Expr::Call(call) => {
            if !LABEL_KEEPING.contains(&call.func.name) {
                return Err(unsupported(format!(
                    "`{}()` makes or drops labels",
                    call.func.name
                )));
            }
            call.args
                .args
                .iter()
                .try_for_each(|a| collect(a, selectors))
        }
        Expr::Binary(b) => {
            collect(&b.lhs, selectors)?;
            collect(&b.rhs, selectors)
        }
        Expr::Unary(u) => collect(&u.expr, selectors),
        Expr::Paren(p) => collect(&p.expr, selectors),
        Expr::Subquery(s) => collect(&s.expr, selectors),
        Expr::NumberLiteral(_) => Ok(()),
        Expr::StringLiteral(s) if Var::ALL.iter().any(|(_, v)| s.val.contains(v)) => {
            Err(unsupported("a placeholder in a string argument"))
        }
        Expr::StringLiteral(_) => Ok(()),
        Expr::Extension(_) => Err(unsupported("an extension expression")),
    }
}

/// The labels a selector binds to placeholders (`label="{{service}}"`).
fn bound(matchers: &[Matcher]) -> Result<Vec<(String, Var)>, Ungroupable> {
    let mut out = Vec::new();
    for m in matchers {
        let sentinel_in = Var::ALL.iter().any(|(_, s)| m.value.contains(s));
        if !sentinel_in {
            continue;
        }
        match (&m.op, Var::of_sentinel(&m.value)) {
            (MatchOp::Equal, Some(var)) => out.push((m.name.clone(), var)),
            _ => {
                return Err(unsupported(format!(
                    "label `{}` uses a placeholder other than as its exact value",
                    m.name
                )));
            }
        }
    }
    Ok(out)
}

/// Adds the grouping labels to every aggregation and vector matching.
fn rewrite(expr: &mut Expr, labels: &[String]) -> Result<(), Ungroupable> {
    match expr {
        Expr::Aggregate(a) => {
            a.modifier = Some(with_labels(a.modifier.take(), labels, "without")?);
            if let Some(p) = a.param.as_mut() {
                rewrite(p, labels)?;
            }
            rewrite(&mut a.expr, labels)
        }
        Expr::Binary(b) => {
            let vectors =
                b.lhs.value_type() == ValueType::Vector && b.rhs.value_type() == ValueType::Vector;
            if vectors && let Some(m) = b.modifier.as_mut() {
                m.matching = match m.matching.take() {
                    None => None,
                    Some(existing) => Some(with_labels(Some(existing), labels, "ignoring")?),
                };
            }
            rewrite(&mut b.lhs, labels)?;
            rewrite(&mut b.rhs, labels)
        }
        Expr::Call(call) => call
            .args
            .args
            .iter_mut()
            .try_for_each(|a| rewrite(a, labels)),
        Expr::Unary(u) => rewrite(&mut u.expr, labels),
        Expr::Paren(p) => rewrite(&mut p.expr, labels),
        Expr::Subquery(s) => rewrite(&mut s.expr, labels),
        Expr::VectorSelector(_)
        | Expr::MatrixSelector(_)
        | Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::Extension(_) => Ok(()),
    }
}

/// `by (L)`/`on (L)` with the grouping labels added; `without (L)` /
/// `ignoring (L)` only when L names none of them.
fn with_labels(
    modifier: Option<LabelModifier>,
    labels: &[String],
    excluding: &str,
) -> Result<LabelModifier, Ungroupable> {
    match modifier {
        None => Ok(LabelModifier::Include(promql_parser::label::Labels {
            labels: labels.to_vec(),
        })),
        Some(LabelModifier::Include(mut ls)) => {
            for l in labels {
                if !ls.labels.contains(l) {
                    ls.labels.push(l.clone());
                }
            }
            Ok(LabelModifier::Include(ls))
        }
        Some(LabelModifier::Exclude(ls)) => {
            if let Some(l) = labels.iter().find(|l| ls.labels.contains(l)) {
                return Err(unsupported(format!(
                    "`{excluding} ({l})` drops a label the rollout is selected by"
                )));
            }
            Ok(LabelModifier::Exclude(ls))
        }
    }
}

#[cfg(test)]
mod tests;
