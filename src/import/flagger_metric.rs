//! One metric of a Flagger `Canary`'s analysis: a builtin metric as the
//! policy's gate, or a `MetricTemplate`'s query (Flagger's variables as
//! canaryd placeholders) as custom gates, one per bound.

use std::collections::BTreeMap;

use crate::spec::model::Comparison;
use crate::spec::yaml::Node;

use super::doc::{Doc, at, entries, get, line, number_of, str_of, text_of};
use super::draft::{Draft, Threshold};
use super::gates::{Candidate, Measure, Role};

/// The gates of one analysis metric (for one step; the caller copies them).
pub(super) fn metric(
    d: &mut Draft,
    file: &str,
    m: &Node,
    docs: &[Doc],
    provider: &str,
) -> Vec<Candidate> {
    let name = get(m, "name").and_then(str_of).unwrap_or("metric");
    let at_line = line(m);
    let what = format!("metric `{name}`");
    let range = get(m, "thresholdRange");
    let mut min = range.and_then(|r| get(r, "min")).and_then(number_of);
    let mut max = range.and_then(|r| get(r, "max")).and_then(number_of);
    if let Some(t) = get(m, "threshold").and_then(number_of) {
        // The deprecated scalar: a minimum for the success rate, a maximum otherwise.
        if name == "request-success-rate" {
            min = min.or(Some(t))
        } else {
            max = max.or(Some(t))
        }
    }
    let candidate = |comparison, measure, from: String| Candidate {
        role: Role::Promotion(0),
        name: name.to_string(),
        comparison,
        measure,
        from,
        file: file.to_string(),
        line: at_line,
    };
    let mut out = Vec::new();
    let builtin = get(m, "templateRef").is_none() && get(m, "query").is_none();
    match (name, builtin) {
        ("request-success-rate", true) => {
            if let Some(min) = min {
                let threshold = Threshold::Ratio((100.0 - min) / 100.0);
                out.push(candidate(
                    Comparison::LessThan,
                    Measure::Builtin {
                        metric: "error_rate",
                        threshold,
                    },
                    format!("request-success-rate min {min}% (line {at_line})"),
                ));
            }
            if max.is_some() {
                d.note(
                    file,
                    at_line,
                    format!("{what}: max"),
                    "an upper bound on the success rate has no canaryd counterpart",
                );
            }
        }
        ("request-duration", true) => {
            if let Some(max) = max {
                let threshold = Threshold::Seconds(max / 1000.0);
                out.push(candidate(
                    Comparison::LessThan,
                    Measure::Builtin {
                        metric: "latency_p99",
                        threshold,
                    },
                    format!("request-duration max {max}ms (line {at_line})"),
                ));
                if provider.starts_with("nginx") {
                    d.note(file, at_line, what.clone(), "Flagger's NGINX request-duration is the mean; canaryd's latency_p99 is the 99th percentile");
                }
            }
            if min.is_some() {
                d.note(
                    file,
                    at_line,
                    format!("{what}: min"),
                    "a lower bound on latency has no canaryd counterpart",
                );
            }
        }
        (_, true) => d.note(
            file,
            at_line,
            what,
            "neither a builtin metric nor a template: Flagger fails it every time; not imported",
        ),
        (_, false) => {
            let Some(query) = template_query(d, file, m, docs) else {
                return out;
            };
            let query = canaryd_placeholders(&query, m);
            for (bound, comparison, key) in [
                (min, Comparison::GreaterThan, "min"),
                (max, Comparison::LessThan, "max"),
            ] {
                if let Some(value) = bound {
                    let measure = Measure::Query {
                        query: query.clone(),
                        probe: None,
                        value,
                    };
                    out.push(candidate(
                        comparison,
                        measure,
                        format!("{name} {key} {value} (line {at_line})"),
                    ));
                }
            }
        }
    }
    out
}

/// The metric's own `query`, or its `templateRef`'s.
fn template_query(d: &mut Draft, file: &str, m: &Node, docs: &[Doc]) -> Option<String> {
    let name = get(m, "name").and_then(str_of).unwrap_or("metric");
    if let Some(q) = get(m, "query").and_then(str_of) {
        return Some(q.to_string());
    }
    let reference = get(m, "templateRef")?;
    let wanted = get(reference, "name").and_then(str_of).unwrap_or_default();
    let namespace = get(reference, "namespace").and_then(str_of);
    let found = docs.iter().find(|t| {
        t.kind() == Some("MetricTemplate")
            && t.name() == Some(wanted)
            && (namespace.is_none() || t.namespace().is_none() || t.namespace() == namespace)
    });
    let Some(t) = found else {
        d.note(
            file,
            line(reference),
            format!("metric `{name}`: template `{wanted}`"),
            "not given (pass it with `--template FILE`): its gate is missing",
        );
        return None;
    };
    let kind = at(&t.root, &["spec", "provider", "type"])
        .and_then(str_of)
        .unwrap_or("prometheus");
    if kind != "prometheus" {
        d.note(
            &t.file,
            line(&t.root),
            format!("template `{wanted}`"),
            format!("provider `{kind}` is not Prometheus: canaryd judges Prometheus queries only"),
        );
        return None;
    }
    if let Some(addr) = at(&t.root, &["spec", "provider", "address"]).and_then(str_of) {
        match &d.prometheus {
            None => {
                d.prometheus = Some((
                    addr.to_string(),
                    format!("template `{wanted}` ({}:{})", t.file, line(&t.root)),
                ))
            }
            Some((url, _)) if url != addr => d.note(
                &t.file,
                line(&t.root),
                "address",
                format!("a deploy file reads one Prometheus; `{url}` is used"),
            ),
            Some(_) => {}
        }
    }
    let query = at(&t.root, &["spec", "query"]).and_then(str_of);
    if query.is_none() {
        d.note(
            &t.file,
            line(&t.root),
            format!("template `{wanted}`"),
            "has no query: not imported",
        );
    }
    query.map(str::to_string)
}

/// Flagger's template variables as canaryd placeholders; `variables.X` from
/// the metric's `templateVariables`. Others are left for the caller to report.
fn canaryd_placeholders(query: &str, m: &Node) -> String {
    let vars: BTreeMap<String, String> = get(m, "templateVariables")
        .map(entries)
        .unwrap_or_default()
        .iter()
        .filter_map(|(k, v)| Some((k.name.clone(), text_of(v)?)))
        .collect();
    let mut out = String::new();
    let mut rest = query;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else {
            break;
        };
        out.push_str(&rest[..start]);
        let inner = rest[start + 2..start + len].trim();
        let replaced = match inner {
            "namespace" => "{{namespace}}".to_string(),
            "target" | "name" | "service" => "{{service}}".to_string(),
            "ingress" | "route" => "{{rollout}}".to_string(),
            "interval" => "{{window}}".to_string(),
            other => match other.strip_prefix("variables.").and_then(|v| vars.get(v)) {
                Some(value) => value.clone(),
                None => format!("{{{{{}}}}}", other.replace(' ', "")),
            },
        };
        out.push_str(&replaced);
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}
