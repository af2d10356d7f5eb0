//! Gates in a deploy file: `<metric>_less_than` / `<metric>_greater_than`
//! items, resolved through the policy (or their own `query:`) to a metric of a
//! known unit, with a threshold written in that unit.

use super::diagnostic::{Code, suggest};
use super::model::{Comparison, Gate, Judged, Limit};
use super::policy::{EvidenceKind, Policy, QueryTemplate, Unit, template};
use super::reader::Reader;
use super::units::{Threshold, trim_float};
use super::yaml::{Key, Node, Value};

/// Reads a list of gates (`metrics:` of a step, or `rollback.on`).
pub fn read_gates(
    r: &mut Reader<'_>,
    node: &Node,
    what: &str,
    policy: Option<&Policy>,
) -> Option<Vec<Gate>> {
    let items = r.list(node, what)?;
    let mut gates = Vec::new();
    let mut ok = true;
    for item in items {
        match read_gate_item(r, item, policy) {
            Some(mut g) => gates.append(&mut g),
            None => ok = false,
        }
    }
    ok.then_some(gates)
}

/// One list item: `- error_rate_less_than: 1%`, optionally with its own `query:`.
fn read_gate_item(r: &mut Reader<'_>, node: &Node, policy: Option<&Policy>) -> Option<Vec<Gate>> {
    let f = r.any_map(node, "a gate")?;
    let query = match f.get("query") {
        Some(n) => Some(template(r, n, "the gate's `query`")?),
        None => None,
    };
    let gate_keys: Vec<_> = f
        .entries()
        .iter()
        .filter(|(k, _)| k.name != "query")
        .collect();
    if gate_keys.is_empty() {
        r.error(
            Code::MissingKey,
            node.pos,
            "this gate has a `query` but no comparison",
        )
        .hint("add `<name>_less_than: <threshold>` next to the query");
        return None;
    }
    if query.is_some() && gate_keys.len() > 1 {
        r.error(
            Code::WrongType,
            node.pos,
            "a gate with its own `query` has exactly one comparison",
        )
        .hint("split it into one list item per comparison");
        return None;
    }
    let mut gates = Vec::new();
    let mut ok = true;
    for (key, value) in gate_keys {
        match read_gate(r, key, value, policy, query.clone()) {
            Some(g) => gates.push(g),
            None => ok = false,
        }
    }
    ok.then_some(gates)
}

fn read_gate(
    r: &mut Reader<'_>,
    key: &Key,
    value: &Node,
    policy: Option<&Policy>,
    query: Option<QueryTemplate>,
) -> Option<Gate> {
    let candidates: Vec<String> = policy
        .map(|p| {
            p.metrics
                .keys()
                .flat_map(|m| [format!("{m}_less_than"), format!("{m}_greater_than")])
                .collect()
        })
        .unwrap_or_default();
    let split = [Comparison::LessThan, Comparison::GreaterThan]
        .into_iter()
        .find_map(|c| {
            key.name
                .strip_suffix(c.suffix())
                .filter(|m| !m.is_empty())
                .map(|m| (m.to_string(), c))
        });
    let Some((metric, comparison)) = split else {
        let hint = suggest(&key.name, candidates.iter().map(String::as_str), || {
            "a gate is `<metric>_less_than` or `<metric>_greater_than`, e.g. `error_rate_less_than: 1%`".into()
        });
        r.error(
            Code::UnknownKey,
            key.pos,
            format!("`{}` is not a gate", key.name),
        )
        .len(key.name.chars().count())
        .hint(hint);
        return None;
    };
    let defined = policy.and_then(|p| p.metrics.get(&metric));
    if defined.is_none() && query.is_none() {
        let policy = policy?;
        let hint = suggest(&key.name, candidates.iter().map(String::as_str), || {
            format!(
                "`{}` defines {}; or give this gate its own `query:`",
                policy.name,
                policy
                    .metrics
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        });
        r.error(
            Code::UnknownMetric,
            key.pos,
            format!("policy `{}` has no metric `{metric}`", policy.name),
        )
        .len(key.name.chars().count())
        .hint(hint);
        return None;
    }
    let limit = limit(r, value)?;
    let amount = match limit {
        Limit::Fixed(t) | Limit::StablePlus(t) => Some(t),
        Limit::StableTimes(_) => None,
    };
    let unit = match (defined, amount) {
        (Some(def), Some(t)) => {
            check_unit(r, value, &metric, def.unit, t)?;
            def.unit
        }
        (Some(def), None) => def.unit,
        (None, Some(Threshold::Ratio(_))) => Unit::Ratio,
        (None, Some(Threshold::Latency(_))) => Unit::Seconds,
        (None, _) => Unit::Number,
    };
    let judged = match (&query, defined.and_then(|d| d.evidence)) {
        (None, Some(EvidenceKind::Errors)) => Judged::Errors,
        (None, Some(EvidenceKind::Quantile(quantile))) => Judged::Quantile { quantile },
        _ => Judged::Reading,
    };
    if judged.on_evidence() {
        check_evidence_limit(r, value, &metric, limit)?;
    }
    Some(Gate {
        metric,
        comparison,
        limit,
        unit,
        query,
        judged,
    })
}

/// A threshold, or a limit relative to the stable version: `stable + 0.5%`,
/// `stable + 50ms`, `stable * 1.2`.
fn limit(r: &mut Reader<'_>, node: &Node) -> Option<Limit> {
    let Value::String(text) = &node.value else {
        return threshold(r, node).map(Limit::Fixed);
    };
    let Some(rest) = text.trim().strip_prefix("stable") else {
        return threshold(r, node).map(Limit::Fixed);
    };
    let rest = rest.trim_start();
    let len = text.chars().count();
    if let Some(amount) = rest.strip_prefix('+') {
        return match Threshold::parse(amount.trim()) {
            Ok(Threshold::Number(n)) if n < 0.0 => None,
            Ok(t) => Some(Limit::StablePlus(t)),
            Err(e) => {
                r.error(Code::BadValue, node.pos, e.to_string())
                    .len(len)
                    .hint(
                        "write the amount in the metric's unit: `stable + 0.5%`, `stable + 50ms`",
                    );
                None
            }
        };
    }
    if let Some(factor) = rest.strip_prefix(['*', '×']) {
        return match factor.trim().parse::<f64>() {
            Ok(f) if f.is_finite() && f > 0.0 => Some(Limit::StableTimes(f)),
            _ => {
                r.error(
                    Code::BadValue,
                    node.pos,
                    format!("`{}` is not a factor", factor.trim()),
                )
                .len(len)
                .hint("a positive number: `stable * 1.2` is 20% above the stable version");
                None
            }
        };
    }
    r.error(
        Code::BadValue,
        node.pos,
        format!("`{text}` is not a limit"),
    )
    .len(len)
    .hint("compare with the stable version as `stable + 0.5%` (an amount) or `stable * 1.2` (a factor)");
    None
}

/// Evidence gates test a probability: a fixed ratio threshold strictly
/// between 0% and 100%, a latency above 0.
fn check_evidence_limit(r: &mut Reader<'_>, node: &Node, metric: &str, limit: Limit) -> Option<()> {
    let bad = match limit {
        Limit::Fixed(Threshold::Ratio(p)) if p <= 0.0 || p >= 1.0 => Some((
            format!("`{metric}` cannot be judged against {}", Threshold::Ratio(p)),
            "counts can show a rate is above or below a threshold strictly between 0% and 100%, e.g. `0.1%`".to_string(),
        )),
        Limit::Fixed(Threshold::Latency(d)) if d.is_zero() => Some((
            format!("`{metric}` cannot be judged against 0s"),
            "give a latency above zero".to_string(),
        )),
        Limit::StablePlus(Threshold::Ratio(p)) if p >= 1.0 => Some((
            format!("`stable + {}` is never reached", Threshold::Ratio(p)),
            "an amount below 100%, e.g. `stable + 0.5%`".to_string(),
        )),
        _ => None,
    };
    if let Some((message, hint)) = bad {
        r.error(Code::OutOfRange, node.pos, message).hint(hint);
        return None;
    }
    Some(())
}

fn threshold(r: &mut Reader<'_>, node: &Node) -> Option<Threshold> {
    match &node.value {
        Value::Number(n, _) => Some(Threshold::Number(*n)),
        Value::String(s) => match Threshold::parse(s) {
            Ok(t) => Some(t),
            Err(e) => {
                r.error(Code::BadValue, node.pos, e.to_string())
                    .len(s.chars().count())
                    .hint(e.hint());
                None
            }
        },
        _ => {
            r.wrong_type(node, "a threshold", "a percentage, a latency or a number");
            None
        }
    }
}

fn check_unit(
    r: &mut Reader<'_>,
    node: &Node,
    metric: &str,
    unit: Unit,
    t: Threshold,
) -> Option<()> {
    let text = match &node.value {
        Value::Number(_, text) | Value::String(text) => text.clone(),
        _ => String::new(),
    };
    let len = text.chars().count();
    let fits = matches!(
        (unit, t),
        (Unit::Ratio, Threshold::Ratio(_))
            | (Unit::Seconds, Threshold::Latency(_))
            | (Unit::PerSecond | Unit::Number, Threshold::Number(_))
    );
    if fits {
        return Some(());
    }
    let relative = text.trim_start().starts_with("stable");
    let (message, hint) = match (unit, t) {
        (Unit::Seconds, Threshold::Ratio(p)) if relative => (
            format!("`{metric}` is a latency: `{text}` adds a ratio to it"),
            format!(
                "for {}% above the stable version write `stable * {}`; for an amount, `stable + 50ms`",
                trim_float(p * 100.0),
                trim_float(1.0 + p)
            ),
        ),
        (Unit::Seconds, Threshold::Number(_)) => (
            format!("latency `{text}` has no unit"),
            format!("`{metric}` is a latency: write `{text}ms` or `{text}s`"),
        ),
        (Unit::Ratio, Threshold::Number(n)) => (
            format!("`{text}` has no percent sign"),
            format!(
                "`{metric}` is a ratio: write a percentage such as `{}%`",
                trim_float(n)
            ),
        ),
        (Unit::Ratio, _) => (
            format!("`{metric}` is a ratio, not a latency"),
            "write a percentage such as `1%`".to_string(),
        ),
        (Unit::Seconds, _) => (
            format!("`{metric}` is a latency, not a ratio"),
            "write a latency such as `200ms`".to_string(),
        ),
        _ => (
            format!("`{metric}` is a plain number"),
            "write a number such as `100`".to_string(),
        ),
    };
    r.error(Code::UnitMismatch, node.pos, message)
        .len(len)
        .hint(hint);
    None
}
