//! Gates found in a peer's analysis, resolved together once every one is
//! known: the policy is the one most recognised queries read, recognised
//! queries on it become its gates, every other query a custom `query:` gate.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::spec::model::Comparison;
use crate::spec::policy::{PolicySet, QueryTemplate, TemplateError};
use crate::spec::units::format_duration;

use super::draft::{Draft, Gate, Threshold};
use super::query::{Recognised, policy_metrics, recognise};
use super::snake;

/// Where a gate goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A promotion gate of the step with this index.
    Promotion(usize),
    /// An abort condition (`rollback.on`).
    Abort,
}

/// What a candidate gate measures.
#[derive(Clone, Debug)]
pub enum Measure {
    /// A policy metric, already in canaryd's terms (Flagger's builtin metrics).
    Builtin {
        /// The policy metric.
        metric: &'static str,
        /// The threshold.
        threshold: Threshold,
    },
    /// A peer's query: `query OP value` holds when the gate holds.
    Query {
        /// The query with canaryd placeholders (for a custom gate).
        query: String,
        /// The query with plain values, to recognise (None: do not try).
        probe: Option<String>,
        /// The number compared against, in the query's unit.
        value: f64,
    },
}

/// A gate found in the input, not yet resolved.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// Where it goes.
    pub role: Role,
    /// The peer's metric name.
    pub name: String,
    /// The comparison that must hold (promotion) or that breaches (abort).
    pub comparison: Comparison,
    /// What is measured.
    pub measure: Measure,
    /// Where it came from, for the comment.
    pub from: String,
    /// The input file.
    pub file: String,
    /// Its line there.
    pub line: u32,
}

/// Resolves `candidates` into the draft's gates and chooses its policy
/// (`fallback` when no query is recognised).
pub fn resolve(draft: &mut Draft, candidates: Vec<Candidate>, fallback: (String, String)) {
    let policies = PolicySet::builtin();
    let metrics = policy_metrics(&policies);
    let recognised: Vec<Option<Recognised>> = candidates
        .iter()
        .map(|c| match &c.measure {
            Measure::Query {
                probe: Some(probe), ..
            } => recognise(probe, &metrics),
            _ => None,
        })
        .collect();
    let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
    for r in recognised.iter().flatten() {
        *votes.entry(r.policy.as_str()).or_default() += 1;
    }
    let chosen = votes
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(p, _)| (*p).to_string());
    draft.policy = match chosen {
        Some(p) => {
            let why = format!("the analysis queries read {p}'s metrics");
            (p, why)
        }
        None => fallback,
    };
    let policy_name = draft.policy.0.clone();
    let defined: Vec<String> = policies
        .get(&policy_name)
        .map(|p| p.metrics.keys().cloned().collect())
        .unwrap_or_default();
    let mut window: Option<Duration> = None;
    for (c, r) in candidates.into_iter().zip(recognised) {
        let gate = match (&c.measure, r) {
            (Measure::Builtin { metric, threshold }, _) => Gate {
                metric: (*metric).to_string(),
                comparison: c.comparison,
                threshold: *threshold,
                query: None,
                from: c.from.clone(),
            },
            (Measure::Query { value, .. }, Some(r)) if r.policy == policy_name => {
                let (comparison, threshold) = r.gate(c.comparison, *value);
                window = window.max(r.window);
                Gate {
                    metric: r.metric.to_string(),
                    comparison,
                    threshold,
                    query: None,
                    from: c.from.clone(),
                }
            }
            (Measure::Query { query, value, .. }, _) => {
                let Some(gate) = custom(draft, &c, query, *value, &defined) else {
                    continue;
                };
                gate
            }
        };
        let list = match c.role {
            Role::Promotion(i) => match draft.steps.get_mut(i) {
                Some(step) => &mut step.gates,
                None => continue,
            },
            Role::Abort => &mut draft.rollback_on,
        };
        let same = |g: &Gate| {
            g.metric == gate.metric
                && g.comparison == gate.comparison
                && g.threshold == gate.threshold
                && g.query == gate.query
        };
        if !list.iter().any(same) {
            list.push(gate);
        }
    }
    if let Some(w) = window {
        draft.set(
            "window",
            format_duration(w),
            "the range of the analysis queries".to_string(),
        );
    }
}

/// A custom `query:` gate, or a note when the query cannot be one.
fn custom(
    draft: &mut Draft,
    c: &Candidate,
    query: &str,
    value: f64,
    defined: &[String],
) -> Option<Gate> {
    let checked = QueryTemplate::parse(query)
        .map_err(|e| match e {
            TemplateError::Unknown { name, .. } => {
                format!("`{{{{{name}}}}}` has no value here (an argument from `valueFrom`, or not passed)")
            }
            TemplateError::Misplaced { name, .. } => {
                format!("`{{{{{name}}}}}` stands where canaryd cannot escape its value")
            }
            TemplateError::Unclosed { .. } => "a `{{` is never closed".to_string(),
        })
        .and_then(|t| {
            crate::spec::promql::check_template(&t).map_err(|e| {
                let first = e.lines().next().unwrap_or_default().to_string();
                format!("not valid PromQL: {first}")
            })
        });
    if let Err(why) = checked {
        draft.note(
            &c.file,
            c.line,
            format!("metric `{}`", c.name),
            format!("its query cannot be a canaryd query: {why}; write this gate by hand"),
        );
        return None;
    }
    let mut metric = snake(&c.name);
    if metric.is_empty() || metric.starts_with(|ch: char| ch.is_ascii_digit()) {
        metric = format!("m_{metric}");
    }
    // A policy metric's name would make canaryd check the threshold's unit
    // against the policy's; a custom query has its own.
    if defined.contains(&metric) {
        metric.push_str("_query");
    }
    draft.note(
        &c.file,
        c.line,
        format!("metric `{}`", c.name),
        "kept as a custom `query:` gate: it is measured the same for canary and stable unless it selects the track (`version=\"{{version}}\"`), and `min_requests` (the policy's request count) still applies: set `deploy.analysis.min_requests: 0` if it is not about requests",
    );
    Some(Gate {
        metric,
        comparison: c.comparison,
        threshold: Threshold::Number(value),
        query: Some(query.to_string()),
        from: c.from.clone(),
    })
}
