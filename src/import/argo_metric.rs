//! One metric of an Argo `AnalysisTemplate`: its Prometheus query with the
//! template's arguments filled in, its conditions as canaryd comparisons,
//! its limits as analysis settings.

use std::collections::BTreeMap;
use std::time::Duration;

use super::argo::{Analysis, argo_duration};
use super::doc::{Doc, at, entries, get, key_line, line, number_of, str_of};
use super::draft::Draft;
use super::gates::{Candidate, Measure, Role};
use super::query::{Condition, condition, flip};

/// Metric keys with no canaryd counterpart, and why.
const METRIC_UNMAPPED: [(&str, &str); 4] = [
    (
        "initialDelay",
        "canaryd measures from the first tick; `min_requests` keeps a young canary inconclusive",
    ),
    (
        "consecutiveErrorLimit",
        "a Prometheus error is inconclusive in canaryd: `inconclusive_limit` and `no_data` decide",
    ),
    (
        "inconclusiveLimit",
        "in canaryd only missing data is inconclusive: `inconclusive_limit` and `no_data` decide",
    ),
    (
        "consecutiveSuccessLimit",
        "a canaryd step ends when its duration is over and a tick passes every gate",
    ),
];

impl Analysis<'_> {
    /// Adds the gates of one template metric; returns how long it runs
    /// (`interval × count`) when it has a count.
    pub(super) fn metric(
        &mut self,
        d: &mut Draft,
        doc: &Doc,
        template: &str,
        metric: &crate::spec::yaml::Node,
        args: &BTreeMap<String, Option<String>>,
        role: Role,
    ) -> Option<Duration> {
        let file = doc.file.as_str();
        let name = get(metric, "name").and_then(str_of).unwrap_or("metric");
        let at_line = line(metric);
        let what = format!("metric `{name}`");
        let label = if name == template {
            name.to_string()
        } else {
            format!("{template}/{name}")
        };
        for (key, why) in METRIC_UNMAPPED {
            if get(metric, key).is_some() {
                d.note(file, key_line(metric, key), format!("{what}: {key}"), why);
            }
        }
        if let Some(dry) = at(&doc.root, &["spec", "dryRun"]) {
            d.note(
                file,
                line(dry),
                "dryRun",
                "canaryd has no dry-run gates: every gate acts",
            );
        }
        let interval = get(metric, "interval").and_then(argo_duration);
        let count = get(metric, "count").and_then(number_of);
        let run = match (interval, count) {
            (Some(i), Some(c)) if c >= 1.0 => i.checked_mul(c as u32),
            _ => None,
        };
        if let Some(i) = interval.filter(|i| !i.is_zero())
            && self.interval.as_ref().is_none_or(|(cur, _)| i < *cur)
        {
            let from = format!("the shortest measurement interval ({label}, {file}:{at_line})");
            self.interval = Some((i, from));
        }
        let Some(prom) = at(metric, &["provider", "prometheus"]) else {
            let provider = get(metric, "provider")
                .and_then(|p| entries(p).first())
                .map_or_else(|| "none".to_string(), |(k, _)| k.name.clone());
            d.note(file, at_line, what, format!("provider `{provider}` is not Prometheus: canaryd judges Prometheus queries only"));
            return run;
        };
        if let Some(addr) = get(prom, "address").and_then(str_of) {
            match &d.prometheus {
                None => {
                    d.prometheus = Some((
                        addr.to_string(),
                        format!("`{template}` ({file}:{})", key_line(prom, "address")),
                    ))
                }
                Some((url, _)) if url != addr => d.note(
                    file,
                    key_line(prom, "address"),
                    "address",
                    format!("a deploy file reads one Prometheus; `{url}` is used"),
                ),
                Some(_) => {}
            }
        }
        if get(prom, "rangeQuery").is_some() {
            d.note(
                file,
                key_line(prom, "rangeQuery"),
                what,
                "a range query has no instant value to compare: not imported",
            );
            return run;
        }
        let Some(query) = get(prom, "query").and_then(str_of) else {
            d.note(file, at_line, what, "has no query: not imported");
            return run;
        };
        let (resolved, probe) = fill_args(query, args);
        let limit = get(metric, "failureLimit")
            .and_then(number_of)
            .unwrap_or(0.0);
        let from_limit = format!("failureLimit {limit} + 1 ({label}, {file}:{at_line})");
        match role {
            Role::Promotion(_) if limit >= 0.0 => {
                let n = limit as u32 + 1;
                if self.failure_limit.as_ref().is_none_or(|(cur, _)| n < *cur) {
                    self.failure_limit = Some((n, from_limit));
                }
            }
            Role::Abort if limit >= 1.0 => {
                d.set(
                    "consecutive_breaches",
                    (limit as u32 + 1).to_string(),
                    from_limit,
                );
                d.note(file, key_line(metric, "failureLimit"), format!("{what}: failureLimit"), "Argo counts every failure of a background analysis; canaryd counts breaches in a row (`consecutive_breaches`)");
            }
            _ if limit < 0.0 => d.note(
                file,
                key_line(metric, "failureLimit"),
                format!("{what}: failureLimit {limit}"),
                "a metric that never fails has no canaryd counterpart: canaryd's limit applies",
            ),
            _ => {}
        }
        let read = |d: &mut Draft, key: &str| -> Option<(Condition, String, u32)> {
            let text = get(metric, key).and_then(str_of)?;
            match condition(text) {
                Some(c) => {
                    if c.passes_no_data {
                        d.note(file, key_line(metric, key), format!("{what}: {key}"), "lets an empty result pass; canaryd never passes missing data (`no_data` decides)");
                    }
                    Some((c, text.trim().to_string(), key_line(metric, key)))
                }
                None => {
                    d.note(file, key_line(metric, key), format!("{what}: {key}"), format!("`{text}` is not a comparison canaryd reads (`result[0] < N`): not imported"));
                    None
                }
            }
        };
        let success = read(d, "successCondition");
        let failure = read(d, "failureCondition");
        // (role, comparison, condition): promotion gates pass when the
        // comparison holds, abort conditions breach when it holds.
        let mut gates = Vec::new();
        match (role, &success, &failure) {
            (Role::Promotion(_), Some(s), f) => {
                gates.push((role, s.0.comparison, s.clone()));
                if let Some(f) = f {
                    gates.push((Role::Abort, f.0.comparison, f.clone()));
                    d.note(file, key_line(metric, "failureCondition"), format!("{what}: failureCondition"), "Argo checks it while this analysis runs; canaryd watches it on every step, as an abort condition");
                }
            }
            (Role::Promotion(_), None, Some(f)) => {
                gates.push((role, flip(f.0.comparison), f.clone()))
            }
            (Role::Abort, _, Some(f)) => gates.push((role, f.0.comparison, f.clone())),
            (Role::Abort, Some(s), None) => gates.push((role, flip(s.0.comparison), s.clone())),
            (_, None, None) => {
                let written = get(metric, "successCondition").is_some()
                    || get(metric, "failureCondition").is_some();
                if !written {
                    d.note(file, at_line, what, "no condition: Argo counts every measurement as successful, there is nothing to judge");
                }
            }
        }
        for (role, comparison, (cond, text, cond_line)) in gates {
            self.candidates.push(Candidate {
                role,
                name: name.to_string(),
                comparison,
                measure: Measure::Query {
                    query: resolved.clone(),
                    probe: Some(probe.clone()),
                    value: cond.value,
                },
                from: format!("{label}: {text} ({file}:{cond_line})"),
                file: file.to_string(),
                line: at_line,
            });
        }
        run
    }
}

/// The query with `{{args.NAME}}` replaced by the arguments' values, and a
/// probe where an argument without a value is a plain word (to recognise it).
fn fill_args(query: &str, args: &BTreeMap<String, Option<String>>) -> (String, String) {
    let mut resolved = String::new();
    let mut probe = String::new();
    let mut rest = query;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else {
            break;
        };
        resolved.push_str(&rest[..start]);
        probe.push_str(&rest[..start]);
        let inner = rest[start + 2..start + len].trim();
        let whole = &rest[start..start + len + 2];
        match inner.strip_prefix("args.").and_then(|n| args.get(n)) {
            Some(Some(value)) => {
                resolved.push_str(value);
                probe.push_str(value);
            }
            _ => {
                resolved.push_str(whole);
                probe.push_str("arg");
            }
        }
        rest = &rest[start + len + 2..];
    }
    resolved.push_str(rest);
    probe.push_str(rest);
    (resolved, probe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_with_values_are_filled_and_the_others_kept() {
        let mut args = BTreeMap::new();
        args.insert("service".to_string(), Some("checkout".to_string()));
        args.insert("hash".to_string(), None);
        let (resolved, probe) = fill_args(
            r#"x{service="{{args.service}}", h="{{ args.hash }}"}"#,
            &args,
        );
        assert_eq!(resolved, r#"x{service="checkout", h="{{ args.hash }}"}"#);
        assert_eq!(probe, r#"x{service="checkout", h="arg"}"#);
    }
}
