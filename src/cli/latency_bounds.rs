//! Latency thresholds against histogram bounds, for `validate` (the bounds
//! a policy says its stack exports by default) and `check` (the `le` values
//! Prometheus returns now).
//!
//! A latency gate is judged on the requests slower than a bound of the
//! histogram, never between two: a threshold that is not a bound is judged at
//! the conservative one on each side (`engine::evidence::counts::judged_bound`).
//! `p99 < 200ms` with bounds at 100ms and 250ms passes only once fewer than
//! 1% of requests are shown slower than 100ms, and fails only once more than
//! 1% are shown slower than 250ms. Users are told when that matters: a bound
//! used more than 10% away from the threshold, or no bound at all on one side.

use serde::Serialize;

use crate::engine::evidence::counts::judged_bound;
use crate::engine::observation::GateRef;
use crate::spec::diagnostic::{Code, Diagnostic};
use crate::spec::model::{Comparison, DeploySpec, Gate, Judged, Limit};
use crate::spec::policy::{PolicySet, Unit};
use crate::spec::yaml::{self, Node, Value};

/// How far (relative to the threshold) a bound may be before users are told.
pub const TOLERANCE: f64 = 0.10;

/// What a gate's side decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Pass,
    Fail,
    Breach,
}

impl Outcome {
    fn verb(self) -> &'static str {
        match self {
            Outcome::Pass => "passes",
            Outcome::Fail => "fails",
            Outcome::Breach => "breaches",
        }
    }

    fn never(self) -> &'static str {
        match self {
            Outcome::Pass => "can never pass (it fails or stays undecided)",
            Outcome::Fail => "can never fail (it passes or stays undecided)",
            Outcome::Breach => "can never breach",
        }
    }
}

/// One finding about a latency gate's threshold.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    /// `step 1: latency_p99 < 200ms` or `rollback: latency_p99 > 500ms`.
    pub gate: String,
    /// What happens, in a sentence.
    pub message: String,
    /// What to do about it.
    pub hint: String,
}

/// The sides of `gate` (a promotion gate or an abort condition) and the
/// direction each is judged in: `true` when it uses the bound at or above
/// the threshold (mirrors `engine::evidence::gate`).
fn sides(r: GateRef, comparison: Comparison) -> Vec<(Outcome, bool)> {
    // A `less_than` gate is broken by a quantile above its threshold.
    let broken_above = comparison == Comparison::LessThan;
    match r {
        GateRef::Promotion { .. } => vec![
            (Outcome::Pass, !broken_above),
            (Outcome::Fail, broken_above),
        ],
        // An abort condition breaches in the direction its comparison holds.
        GateRef::Abort(_) => vec![(Outcome::Breach, !broken_above)],
    }
}

/// What users should know about `gate`'s threshold against `bounds`
/// (seconds, ascending, finite), if anything: a message and a hint.
/// `source` names the bounds (`the histogram's bounds`).
pub fn judge(
    r: GateRef,
    gate: &Gate,
    bounds: &[f64],
    scope: &str,
    source: &str,
) -> Option<(String, String)> {
    let Judged::Quantile { quantile } = gate.judged else {
        return None;
    };
    let Limit::Fixed(t) = gate.limit else {
        return None;
    };
    let threshold = t.value();
    if bounds.is_empty() || threshold <= 0.0 {
        return None;
    }
    let ms = |s: f64| Unit::Seconds.format(s);
    let share = Unit::Ratio.format(1.0 - quantile);
    let sides = sides(r, gate.comparison);
    let used: Vec<(Outcome, bool, Option<f64>)> = sides
        .iter()
        .map(|&(o, above)| (o, above, judged_bound(bounds, threshold, above)))
        .collect();
    let smallest = bounds.first().copied().unwrap_or(threshold);
    let largest = bounds.last().copied().unwrap_or(threshold);
    // No bound on a side: that outcome cannot happen.
    if let Some(&(o, above, _)) = used.iter().find(|(_, _, b)| b.is_none()) {
        let message = if above {
            format!(
                "`{gate}` ({scope}): {source} have none at or above {} (the largest is {}): it {}",
                ms(threshold),
                ms(largest),
                o.never()
            )
        } else {
            format!(
                "`{gate}` ({scope}): {source} have none at or below {} (the smallest is {}): it {}",
                ms(threshold),
                ms(smallest),
                o.never()
            )
        };
        let hint = if above {
            format!(
                "lower the threshold to {} or under, or add a bucket at {} to the histogram",
                ms(largest),
                ms(threshold)
            )
        } else {
            format!(
                "raise the threshold to {} or more, or add a bucket at {} to the histogram",
                ms(smallest),
                ms(threshold)
            )
        };
        return Some((message, hint));
    }
    let far = used
        .iter()
        .any(|(_, _, b)| b.is_some_and(|b| (b - threshold).abs() > TOLERANCE * threshold));
    if !far {
        return None;
    }
    // Judged at a bound above the threshold, the evidence is about more
    // slow requests than the quantile allows; at one below, about fewer.
    let parts: Vec<String> = used
        .iter()
        .filter_map(|&(o, above, b)| b.map(|b| (o, above, b)))
        .enumerate()
        .map(|(i, (o, above, b))| {
            format!(
                "{} only on evidence that {} than {share}{} are slower than {}",
                o.verb(),
                if above { "more" } else { "fewer" },
                if i == 0 { " of requests" } else { "" },
                ms(b)
            )
        })
        .collect();
    let bounds_used: Vec<String> = used.iter().filter_map(|(_, _, b)| b.map(ms)).collect();
    let message = format!(
        "`{gate}` ({scope}): {source} have none at {}; it is judged at {}: it {}",
        ms(threshold),
        bounds_used.join(" and "),
        parts.join(", and ")
    );
    let hint = format!(
        "write the threshold at a bound ({}), or add a bucket at {} to the histogram",
        bounds_used.join(" or "),
        ms(threshold)
    );
    Some((message, hint))
}

/// Every gate of `spec` with its reference, in file order (each step's
/// promotion gates, then the abort conditions, as `validate` reads them).
pub(super) fn gates(spec: &DeploySpec) -> Vec<(GateRef, &Gate, String)> {
    let mut out = Vec::new();
    for (step, s) in spec.strategy.steps.iter().enumerate() {
        for (index, g) in s.gates.iter().enumerate() {
            out.push((
                GateRef::Promotion { step, index },
                g,
                format!("step {}", step + 1),
            ));
        }
    }
    for (i, g) in spec.strategy.rollback.on.iter().enumerate() {
        out.push((GateRef::Abort(i), g, "rollback".to_string()));
    }
    out
}

/// `check`'s findings against the `le` bounds Prometheus returned now
/// (seconds, finite), for every latency gate judged on counts.
pub fn live(spec: &DeploySpec, bounds: &[f64]) -> Vec<Finding> {
    gates(spec)
        .into_iter()
        .filter_map(|(r, g, scope)| {
            let (message, hint) = judge(r, g, bounds, &scope, "the histogram's bounds")?;
            Some(Finding {
                gate: format!("{scope}: {g}"),
                message,
                hint,
            })
        })
        .collect()
}

/// `validate`'s warnings: each latency gate of `spec` against the bounds
/// its policy declares (`counts.latency_bounds`), at the threshold's
/// position in `text`.
pub fn declared(
    file: &str,
    text: &str,
    spec: &DeploySpec,
    policies: &PolicySet,
) -> Vec<Diagnostic> {
    let Some(policy) = policies.get(&spec.policy) else {
        return Vec::new();
    };
    let Some(bounds) = policy
        .counts
        .as_ref()
        .and_then(|c| c.latency_bounds.as_ref())
    else {
        return Vec::new();
    };
    let root = yaml::parse(text).ok();
    let positions = root.as_ref().map(threshold_nodes).unwrap_or_default();
    let mut out = Vec::new();
    for (r, g, scope) in gates(spec) {
        let source = format!("policy `{}`'s default histogram bounds", policy.name);
        let Some((message, hint)) = judge(r, g, bounds, &scope, &source) else {
            continue;
        };
        let node = positions.iter().find(|(p, _)| *p == r).map(|(_, n)| *n);
        let (pos, len) = node.map_or((yaml::Pos::UNKNOWN, 0), |n| (n.pos, scalar_len(n)));
        out.push(
            Diagnostic::warning(
                Code::CoarseHistogram,
                file,
                pos,
                message,
            )
            .hint(format!(
                "{hint}; if yours has other bounds, list them in a copy of the policy (`counts.latency_bounds`)"
            ))
            .len(len),
        );
    }
    out
}

fn scalar_len(n: &Node) -> usize {
    match &n.value {
        Value::Number(_, text) => text.chars().count(),
        Value::String(s) => s.chars().count(),
        _ => 1,
    }
}

/// The value under `key` of a map node.
fn get<'n>(n: &'n Node, key: &str) -> Option<&'n Node> {
    match &n.value {
        Value::Map(entries) => entries.iter().find(|(k, _)| k.name == key).map(|(_, v)| v),
        _ => None,
    }
}

/// The items of a list node (none for anything else).
fn items(n: Option<&Node>) -> &[Node] {
    match n.map(|n| &n.value) {
        Some(Value::Seq(items)) => items,
        _ => &[],
    }
}

/// A gate item's comparisons: the values of every key but `query`, in order.
fn comparisons(item: &Node) -> Vec<&Node> {
    match &item.value {
        Value::Map(entries) => entries
            .iter()
            .filter(|(k, _)| k.name != "query")
            .map(|(_, v)| v)
            .collect(),
        _ => Vec::new(),
    }
}

/// The threshold nodes of every gate in a deploy file's tree, keyed like
/// the spec's gates (the decoder's walk, which succeeded on this tree).
pub(super) fn threshold_nodes(root: &Node) -> Vec<(GateRef, &Node)> {
    let mut out = Vec::new();
    let Some(deploy) = get(root, "deploy") else {
        return out;
    };
    for (step, s) in items(get(deploy, "steps")).iter().enumerate() {
        let nodes = items(get(s, "metrics")).iter().flat_map(comparisons);
        for (index, n) in nodes.enumerate() {
            out.push((GateRef::Promotion { step, index }, n));
        }
    }
    let on = get(deploy, "rollback").and_then(|r| get(r, "on"));
    for (i, n) in items(on).iter().flat_map(comparisons).enumerate() {
        out.push((GateRef::Abort(i), n));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::units::Threshold;
    use std::time::Duration;

    fn latency(comparison: Comparison, ms: u64) -> Gate {
        Gate {
            metric: "latency_p99".into(),
            comparison,
            limit: Limit::Fixed(Threshold::Latency(Duration::from_millis(ms))),
            unit: Unit::Seconds,
            query: None,
            judged: Judged::Quantile { quantile: 0.99 },
        }
    }

    const SOURCE: &str = "the histogram's bounds";
    const PROMOTION: GateRef = GateRef::Promotion { step: 0, index: 0 };
    const GO_DEFAULTS: [f64; 11] = [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];

    #[test]
    fn a_threshold_at_a_bound_or_within_ten_percent_of_the_bounds_used_is_fine() {
        let g = latency(Comparison::LessThan, 500);
        assert_eq!(judge(PROMOTION, &g, &GO_DEFAULTS, "step 1", SOURCE), None);
        // 0.2 between 0.19 and 0.21: both within 10%.
        let fine = [0.19, 0.21];
        assert_eq!(
            judge(
                PROMOTION,
                &latency(Comparison::LessThan, 200),
                &fine,
                "step 1",
                SOURCE
            ),
            None
        );
    }

    #[test]
    fn a_promotion_gate_between_distant_bounds_says_where_it_passes_and_fails() {
        let (message, hint) = judge(
            PROMOTION,
            &latency(Comparison::LessThan, 200),
            &GO_DEFAULTS,
            "step 1",
            SOURCE,
        )
        .expect("warned");
        assert_eq!(
            message,
            "`latency_p99 < 200ms` (step 1): the histogram's bounds have none at 200ms; it is judged at 100ms and 250ms: it passes only on evidence that fewer than 1% of requests are slower than 100ms, and fails only on evidence that more than 1% are slower than 250ms"
        );
        assert!(hint.contains("100ms or 250ms"), "{hint}");
    }

    #[test]
    fn an_abort_condition_uses_only_the_bound_beyond_its_threshold() {
        let (message, _) = judge(
            GateRef::Abort(0),
            &latency(Comparison::GreaterThan, 600),
            &GO_DEFAULTS,
            "rollback",
            SOURCE,
        )
        .expect("warned");
        assert!(
            message.contains("judged at 1s: it breaches only on evidence that more than 1% of requests are slower than 1s"),
            "{message}"
        );
        // 520ms: the bound above (1s) is far, the one below is not used.
        assert!(
            judge(
                GateRef::Abort(0),
                &latency(Comparison::GreaterThan, 520),
                &GO_DEFAULTS,
                "rollback",
                SOURCE
            )
            .is_some()
        );
        // 990ms: 1s is within 10%.
        assert_eq!(
            judge(
                GateRef::Abort(0),
                &latency(Comparison::GreaterThan, 990),
                &GO_DEFAULTS,
                "rollback",
                SOURCE
            ),
            None
        );
    }

    #[test]
    fn no_bound_on_a_side_means_the_gate_can_never_pass_or_breach() {
        let (m, _) = judge(
            PROMOTION,
            &latency(Comparison::LessThan, 3),
            &GO_DEFAULTS,
            "step 1",
            SOURCE,
        )
        .expect("warned");
        assert!(
            m.contains("have none at or below 3ms (the smallest is 5ms): it can never pass"),
            "{m}"
        );
        let (m, _) = judge(
            PROMOTION,
            &latency(Comparison::LessThan, 20_000),
            &GO_DEFAULTS,
            "step 1",
            SOURCE,
        )
        .expect("warned");
        assert!(
            m.contains("have none at or above 20s (the largest is 10s): it can never fail"),
            "{m}"
        );
        let (m, _) = judge(
            GateRef::Abort(1),
            &latency(Comparison::GreaterThan, 20_000),
            &GO_DEFAULTS,
            "rollback",
            SOURCE,
        )
        .expect("warned");
        assert!(m.ends_with("it can never breach"), "{m}");
    }
}
