//! Flagger: a `Canary`'s analysis and its `MetricTemplate`s as a canaryd
//! deploy file.
//!
//! | Flagger | canaryd |
//! |---|---|
//! | `stepWeight` up to `maxWeight`, or `stepWeights` | one step per weight, then `deploy: 100%` |
//! | `interval` (one step per interval) | each step's `duration`, and `analysis.interval` |
//! | `threshold` | `failure_limit` (Flagger counts over the run, canaryd within each step) |
//! | `request-success-rate` `min: 99` | `error_rate_less_than: 1%` on every step |
//! | `request-duration` `max: 500` (ms, p99) | `latency_p99_less_than: 500ms` on every step |
//! | a metric's `interval` | `analysis.window` (the longest) |
//! | `templateRef` / `query` | a custom `query:` gate per bound (`min` → `_greater_than`, `max` → `_less_than`) |
//! | `provider` | the policy (istio, linkerd, nginx → nginx-ingress, contour/gloo/appmesh → envoy, else http-red) |

use std::time::Duration;

use crate::spec::units::{format_duration, parse_duration};
use crate::spec::yaml::Node;

use super::ImportError;
use super::doc::{Doc, at, get, items, key_line, line, number_of, str_of, text_of};
use super::draft::{Draft, Router, Step};
use super::gates::{Candidate, Role, resolve};

/// Flagger's default analysis interval.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

/// `spec` and `analysis` keys with no canaryd counterpart, and why.
const UNMAPPED: [(&str, &str); 14] = [
    (
        "progressDeadlineSeconds",
        "canaryd waits for a ready canary without a deadline (`inconclusive_limit` and `no_data` decide)",
    ),
    (
        "skipAnalysis",
        "canaryd always judges the gates; `canaryd promote` skips the steps by hand",
    ),
    ("suspend", "pause a rollout with `canaryd pause NAME`"),
    (
        "revertOnDeletion",
        "removing a deploy file stops managing the rollout, its state stays",
    ),
    ("autoscalerRef", "the autoscaler stays with the Deployment"),
    (
        "service",
        "canaryd creates no Services or routes: the router's backends must exist",
    ),
    (
        "match",
        "header and cookie matches (A/B testing) are not supported: canaryd splits traffic by weight",
    ),
    ("mirror", "traffic mirroring is not supported"),
    ("mirrorWeight", "traffic mirroring is not supported"),
    ("sessionAffinity", "sticky sessions are not supported"),
    ("stepWeightPromotion", "promotion shifts 100% at once"),
    (
        "primaryReadyThreshold",
        "readiness is the upstream's health check",
    ),
    (
        "canaryReadyThreshold",
        "readiness is the upstream's health check",
    ),
    (
        "alerts",
        "list chat sinks under `alerts:` in the deploy file (Slack, Teams, Discord, Google Chat, webhook)",
    ),
];

/// Converts a `Canary`.
pub fn convert(canary: &Doc, docs: &[Doc]) -> Result<Draft, ImportError> {
    let file = canary.file.as_str();
    let unsupported = |line: u32, message: String| ImportError::Unsupported {
        file: file.to_string(),
        line,
        message,
    };
    let root = &canary.root;
    let name = canary
        .name()
        .ok_or_else(|| unsupported(line(root), "the Canary has no `metadata.name`".into()))?;
    let spec = get(root, "spec")
        .ok_or_else(|| unsupported(line(root), "the Canary has no `spec`".into()))?;
    let analysis = get(spec, "analysis")
        .or_else(|| get(spec, "canaryAnalysis"))
        .ok_or_else(|| unsupported(line(spec), "the Canary has no `analysis`".into()))?;
    let target = at(spec, &["targetRef", "name"])
        .and_then(str_of)
        .unwrap_or(name);

    let mut d = Draft {
        service: super::dns_name(name),
        namespace: canary.namespace().map(str::to_string),
        resource: format!("{}/{name}", canary.namespace().unwrap_or("default")),
        ..Draft::default()
    };
    d.note(file, line(root), "version", "a Canary does not name versions (its Deployment does): set `stable.version` to the running version's label");
    d.version = ("v1".to_string(), "set the running version".to_string());
    for node in [spec, analysis] {
        for (key, why) in UNMAPPED {
            if get(node, key).is_some() {
                d.note(file, key_line(node, key), key, why);
            }
        }
    }

    let interval = match get(analysis, "interval") {
        Some(n) => flagger_duration(n).ok_or_else(|| {
            unsupported(
                line(n),
                format!(
                    "`interval: {}` is not a duration",
                    text_of(n).unwrap_or_default()
                ),
            )
        })?,
        None => DEFAULT_INTERVAL,
    };
    let interval_line = key_line(analysis, "interval");
    d.set(
        "interval",
        format_duration(interval),
        format!("interval (line {interval_line})"),
    );
    let weights = weights(&mut d, file, analysis)?;
    for (w, from) in weights {
        d.steps.push(Step {
            weight: w,
            duration: Some(interval),
            from: vec![from, format!("one interval (line {interval_line})")],
            gates: Vec::new(),
        });
    }
    if d.steps.last().is_some_and(|s| s.weight < 100.0) {
        d.steps.push(Step {
            weight: 100.0,
            duration: None,
            from: vec!["Flagger promotes after the last step".into()],
            gates: Vec::new(),
        });
    }
    if let Some(t) = get(analysis, "threshold") {
        d.note(file, line(t), "threshold", "Flagger counts failed checks over the whole run; canaryd's `failure_limit` counts them within each step (the count restarts at each step)");
    }
    let threshold = get(analysis, "threshold")
        .and_then(number_of)
        .unwrap_or(1.0)
        .max(1.0);
    d.set(
        "failure_limit",
        (threshold as u32).to_string(),
        format!(
            "threshold (line {}); counted within each step",
            key_line(analysis, "threshold")
        ),
    );

    let provider = get(spec, "provider").and_then(str_of);
    if provider.is_none() {
        d.note(
            file,
            key_line(root, "spec"),
            "provider",
            "not set: Flagger's default mesh provider, istio, is assumed",
        );
    }
    let provider = provider.unwrap_or("istio");
    let fallback = (
        policy_for(provider).to_string(),
        format!("the Canary's provider, {provider}"),
    );
    if !KNOWN_PROVIDERS.iter().any(|p| provider.starts_with(p)) {
        d.note(file, key_line(spec, "provider"), format!("provider `{provider}`"), "no shipped policy reads its metrics: http-red is used; write a policy for it (`--policies DIR`)");
    }
    router(&mut d, file, spec, provider, target);

    let gated = d.steps.len().saturating_sub(1);
    let mut window: Option<(Duration, u32)> = None;
    let mut candidates = Vec::new();
    for m in get(analysis, "metrics").map(items).unwrap_or_default() {
        if let Some(w) = get(m, "interval").and_then(flagger_duration)
            && window.is_none_or(|(cur, _)| w > cur)
        {
            window = Some((w, key_line(m, "interval")));
        }
        for found in super::flagger_metric::metric(&mut d, file, m, docs, provider) {
            for step in 0..gated {
                candidates.push(Candidate {
                    role: Role::Promotion(step),
                    ..found.clone()
                });
            }
        }
    }
    resolve(&mut d, candidates, fallback);
    let (w, at_line) = window.unwrap_or((DEFAULT_INTERVAL, line(analysis)));
    d.set(
        "window",
        format_duration(w),
        format!("the metrics' interval (line {at_line})"),
    );
    for hook in get(analysis, "webhooks").map(items).unwrap_or_default() {
        webhook(&mut d, file, hook);
    }
    Ok(d)
}

/// The weights of the steps, each with where it came from.
fn weights(d: &mut Draft, file: &str, analysis: &Node) -> Result<Vec<(f64, String)>, ImportError> {
    let max_weight = get(analysis, "maxWeight")
        .and_then(number_of)
        .unwrap_or(100.0)
        .clamp(1.0, 100.0);
    let step = get(analysis, "stepWeight")
        .and_then(number_of)
        .filter(|s| *s > 0.0);
    let list = get(analysis, "stepWeights").map(items).unwrap_or_default();
    let mut out = Vec::new();
    if let Some(s) = step {
        let at_line = key_line(analysis, "stepWeight");
        if !list.is_empty() {
            d.note(
                file,
                key_line(analysis, "stepWeights"),
                "stepWeights",
                "`stepWeight` is set too and wins, as in Flagger",
            );
        }
        // Flagger advances while the weight is below maxWeight, so the last
        // step may pass it (max 50, step 20: 20, 40, 60).
        let mut w = s;
        loop {
            out.push((w.min(100.0), format!("stepWeight {s} (line {at_line})")));
            if w >= max_weight || w >= 100.0 {
                break;
            }
            w += s;
        }
    } else if !list.is_empty() {
        let mut previous = 0.0;
        for item in list {
            match number_of(item) {
                Some(w) if w > previous && w <= 100.0 => {
                    out.push((w, format!("stepWeights (line {})", line(item))));
                    previous = w;
                }
                _ => d.note(
                    file,
                    line(item),
                    "stepWeights item",
                    "not a weight above the previous one and at most 100: skipped",
                ),
            }
        }
    }
    if out.is_empty() {
        let what = if get(analysis, "iterations").is_some() {
            "uses `iterations` (A/B testing or blue/green), not weighted steps; canaryd runs weighted canaries"
        } else {
            "has no `stepWeight` or `stepWeights`: there are no steps to import"
        };
        return Err(ImportError::Unsupported {
            file: file.to_string(),
            line: line(analysis),
            message: format!("the Canary's analysis {what}"),
        });
    }
    Ok(out)
}

/// Providers with a shipped policy (prefixes: `gatewayapi:v1`, `appmesh:v1beta2`).
const KNOWN_PROVIDERS: [&str; 8] = [
    "istio",
    "linkerd",
    "nginx",
    "contour",
    "gloo",
    "appmesh",
    "kubernetes",
    "gatewayapi",
];

fn policy_for(provider: &str) -> &'static str {
    match provider.split(':').next().unwrap_or(provider) {
        "istio" => "istio",
        "linkerd" => "linkerd",
        "nginx" => "nginx-ingress",
        "contour" | "gloo" | "appmesh" => "envoy",
        _ => "http-red",
    }
}

/// Gateway API weights between the Services Flagger creates.
fn router(d: &mut Draft, file: &str, spec: &Node, provider: &str, target: &str) {
    let route = d.service.clone();
    let (stable, canary) = (format!("{target}-primary"), format!("{target}-canary"));
    let why = if provider.starts_with("gatewayapi") {
        "Flagger's HTTPRoute and its primary/canary Services".to_string()
    } else {
        d.note(file, key_line(spec, "provider"), format!("provider `{provider}`"), format!("canaryd does not drive {provider} routing: it sets Gateway API HTTPRoute weights (route `{route}`, backends `{stable}` / `{canary}`, the Services Flagger creates); create that HTTPRoute, or change `router`"));
        "Gateway API HTTPRoute weights between Flagger's primary/canary Services".to_string()
    };
    d.router = Some((
        Router::GatewayApi {
            route,
            stable_backend: stable,
            canary_backend: canary,
        },
        why,
    ));
}

fn webhook(d: &mut Draft, file: &str, hook: &Node) {
    let name = get(hook, "name").and_then(str_of).unwrap_or("webhook");
    let kind = get(hook, "type").and_then(str_of).unwrap_or("rollout");
    let why = match kind {
        "confirm-rollout" | "confirm-promotion" | "confirm-traffic-increase" => {
            "canaryd has no approval hooks: `canaryd pause` / `resume` / `promote` the rollout by hand or from the pipeline"
        }
        "rollback" => "canaryd polls no rollback hook: `canaryd abort NAME` rolls back by hand",
        "event" => {
            "canaryd posts its events to the `alerts:` sinks (a generic `webhook` sink is signed JSON)"
        }
        _ => {
            "canaryd calls no webhooks: run load and acceptance tests from the pipeline (`canaryd load` sends load)"
        }
    };
    d.note(file, line(hook), format!("webhook `{name}` ({kind})"), why);
}

/// Flagger durations: `1m`, `30s`, or a bare number of seconds.
fn flagger_duration(node: &Node) -> Option<Duration> {
    if let Some(n) = number_of(node) {
        return (n > 0.0).then(|| Duration::from_secs_f64(n));
    }
    parse_duration(&text_of(node)?).ok()
}
