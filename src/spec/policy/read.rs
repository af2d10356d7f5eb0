//! Reading a policy file: the YAML tree into a typed `Policy`, with a
//! positioned diagnostic for every problem.

use std::collections::BTreeMap;

use super::*;
use crate::spec::diagnostic::{Code, Diagnostic};
use crate::spec::reader::Reader;
use crate::spec::yaml::{self, Node, Pos};

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
    f: &crate::spec::reader::Fields<'_>,
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
        match crate::spec::promql::check_matchers(&text) {
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
        Ok(t) => match crate::spec::promql::check_template(&t) {
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
            let hint = match crate::spec::diagnostic::did_you_mean(&name, PLACEHOLDERS) {
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
