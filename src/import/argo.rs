//! Argo Rollouts: a `Rollout`'s canary steps and its Prometheus
//! `AnalysisTemplate`s as a canaryd deploy file.
//!
//! | Argo | canaryd |
//! |---|---|
//! | `setWeight: N` | a step `deploy: N%` |
//! | `pause: {duration}` after it | that step's `duration` (pauses add up) |
//! | `pause: {}` (until promoted) | `duration: 1h` and a note (canaryd steps are timed) |
//! | `analysis` step | its metrics become the step's promotion gates; `count × interval` adds to the duration |
//! | background `analysis` | abort conditions (`rollback.on`) |
//! | a step analysis's `failureCondition` (with a `successCondition`) | an abort condition too |
//! | a recognised query and condition | the policy's gate (`result[0] >= 0.99` on a success ratio → `error_rate_less_than: 1%`) |
//! | any other Prometheus query | a custom `query:` gate |
//! | `failureLimit: N` | `failure_limit: N+1` (Argo fails when failures exceed the limit) |

use std::collections::BTreeMap;
use std::time::Duration;

use crate::spec::units::{format_duration, parse_duration};
use crate::spec::yaml::Node;

use super::ImportError;
use super::doc::{Doc, at, entries, get, items, key_line, line, number_of, str_of, text_of};
use super::draft::{Draft, Router, Step};
use super::gates::{Candidate, Role, resolve};

/// How long an indefinite `pause: {}` step is watched.
const INDEFINITE_PAUSE: Duration = Duration::from_secs(3600);

/// Canary keys that have no canaryd counterpart, and why.
const CANARY_UNMAPPED: [(&str, &str); 10] = [
    (
        "maxSurge",
        "canaryd sets the replica ratio from the step weight",
    ),
    (
        "maxUnavailable",
        "canaryd sets the replica ratio from the step weight",
    ),
    ("antiAffinity", "pod placement stays with the Deployment"),
    (
        "dynamicStableScale",
        "the stable version keeps its replicas until promotion",
    ),
    ("scaleDownDelaySeconds", "canaryd has no scale-down delay"),
    (
        "abortScaleDownDelaySeconds",
        "canaryd has no scale-down delay",
    ),
    ("canaryMetadata", "canaryd adds no ephemeral labels"),
    ("stableMetadata", "canaryd adds no ephemeral labels"),
    (
        "minPodsPerReplicaSet",
        "canaryd sets the replica ratio from the step weight",
    ),
    (
        "pingPong",
        "canaryd shifts weights between two fixed backends",
    ),
];

/// Rollout `spec` keys that have no canaryd counterpart, and why.
const SPEC_UNMAPPED: [(&str, &str); 4] = [
    (
        "progressDeadlineSeconds",
        "canaryd waits for a ready canary without a deadline (its gates stay inconclusive; `inconclusive_limit` and `no_data` decide)",
    ),
    ("progressDeadlineAbort", "see progressDeadlineSeconds"),
    (
        "rollbackWindow",
        "a rollback in canaryd always goes through the steps again",
    ),
    ("paused", "pause a rollout with `canaryd pause NAME`"),
];

/// Converts a `Rollout`.
pub fn convert(rollout: &Doc, docs: &[Doc]) -> Result<Draft, ImportError> {
    let file = rollout.file.as_str();
    let unsupported = |line: u32, message: String| ImportError::Unsupported {
        file: file.to_string(),
        line,
        message,
    };
    let root = &rollout.root;
    let name = rollout
        .name()
        .ok_or_else(|| unsupported(line(root), "the Rollout has no `metadata.name`".into()))?;
    let strategy = at(root, &["spec", "strategy"])
        .ok_or_else(|| unsupported(line(root), "the Rollout has no `spec.strategy`".into()))?;
    if let Some(bg) = get(strategy, "blueGreen") {
        return Err(unsupported(
            line(bg),
            "the Rollout uses the blueGreen strategy; canaryd runs canaries (weighted steps)"
                .into(),
        ));
    }
    let canary = get(strategy, "canary").ok_or_else(|| {
        unsupported(
            line(strategy),
            "the Rollout has no `canary` strategy".into(),
        )
    })?;
    let steps = get(canary, "steps").map(items).unwrap_or_default();
    if steps.is_empty() {
        return Err(unsupported(
            line(canary),
            "the canary strategy has no `steps` (a rolling update): there is nothing to import"
                .into(),
        ));
    }

    let mut d = Draft {
        service: super::dns_name(name),
        namespace: rollout.namespace().map(str::to_string),
        resource: format!("{}/{name}", rollout.namespace().unwrap_or("default")),
        ..Draft::default()
    };
    d.version = version(&mut d, rollout);
    let router_policy = router(&mut d, rollout, canary);
    for (key, why) in CANARY_UNMAPPED {
        if get(canary, key).is_some() {
            d.note(file, key_line(canary, key), key, why);
        }
    }
    if let Some(spec) = get(root, "spec") {
        for (key, why) in SPEC_UNMAPPED {
            if get(spec, key).is_some() {
                d.note(file, key_line(spec, key), key, why);
            }
        }
    }

    let templates: BTreeMap<&str, &Doc> = docs
        .iter()
        .filter(|t| {
            matches!(
                t.kind(),
                Some("AnalysisTemplate" | "ClusterAnalysisTemplate")
            )
        })
        .filter_map(|t| Some((t.name()?, t)))
        .collect();
    let mut a = Analysis {
        templates,
        candidates: Vec::new(),
        interval: None,
        failure_limit: None,
    };
    for item in steps {
        walk_step(&mut d, &mut a, file, item);
    }
    if d.steps.is_empty() {
        return Err(unsupported(
            get(canary, "steps").map_or(0, line),
            "the canary steps set no weight (`setWeight`): there is nothing to import".into(),
        ));
    }
    if d.steps.last().is_some_and(|s| s.weight < 100.0) {
        d.steps.push(Step {
            weight: 100.0,
            duration: None,
            from: vec!["Argo promotes to 100% after the last step".into()],
            gates: Vec::new(),
        });
    }
    // An analysis before the first weight is checked on step 1.
    for c in a.candidates.iter_mut() {
        if c.role == Role::Promotion(usize::MAX) {
            c.role = Role::Promotion(0);
        }
    }
    let last = d.steps.len() - 1;
    for (i, step) in d.steps.iter_mut().enumerate() {
        if i < last && step.duration.is_none() {
            step.duration = Some(Duration::ZERO);
            step.from
                .push("no pause: Argo moves on once the weight is set".into());
        }
    }
    if let Some(bg) = get(canary, "analysis") {
        if let Some(start) = get(bg, "startingStep") {
            d.note(
                file,
                line(start),
                "startingStep",
                "abort conditions are watched from step 1",
            );
        }
        a.templates(&mut d, file, bg, Role::Abort);
    }
    if let Some((interval, from)) = a.interval.clone() {
        d.set("interval", format_duration(interval), from);
    }
    let limit = a.failure_limit.clone().unwrap_or((
        1,
        "Argo's default failureLimit 0: the first failed measurement fails".into(),
    ));
    d.set("failure_limit", limit.0.to_string(), limit.1);
    let fallback = router_policy.unwrap_or_else(|| {
        (
            "http-red".to_string(),
            "no analysis query names a policy's metrics: the RED contract (http_requests_total)"
                .to_string(),
        )
    });
    resolve(&mut d, a.candidates, fallback);
    Ok(d)
}

/// The image tag of the first container, as both versions.
fn version(d: &mut Draft, rollout: &Doc) -> (String, String) {
    let image = at(&rollout.root, &["spec", "template", "spec", "containers"])
        .and_then(|c| items(c).first())
        .and_then(|c| get(c, "image"));
    let tag = image.and_then(str_of).and_then(|i| {
        let last = i.rsplit('/').next().unwrap_or(i);
        last.split_once(':').map(|(_, t)| t.to_string())
    });
    match (image, tag) {
        (Some(node), Some(tag)) => (tag, format!("the image tag (line {})", line(node))),
        (node, _) => {
            let at_line = node.map_or(line(&rollout.root), line);
            d.note(
                &rollout.file,
                at_line,
                "version",
                "no image tag to take the version from (`workloadRef` or an untagged image): set `stable.version` to the running version",
            );
            ("v1".to_string(), "set the running version".to_string())
        }
    }
}

/// The router, and a policy hint from the traffic router in use.
fn router(d: &mut Draft, rollout: &Doc, canary: &Node) -> Option<(String, String)> {
    let file = rollout.file.as_str();
    let service = |key: &str, suffix: &str| {
        get(canary, key)
            .and_then(str_of)
            .map_or_else(|| format!("{}-{suffix}", d.service), str::to_string)
    };
    let (stable, canary_svc) = (
        service("stableService", "stable"),
        service("canaryService", "canary"),
    );
    let Some(tr) = get(canary, "trafficRouting") else {
        let replicas = at(&rollout.root, &["spec", "replicas"]).and_then(number_of);
        let why = match replicas {
            Some(n) if n >= 2.0 => format!(
                "no trafficRouting: the replica ratio, as Argo does (spec.replicas, line {})",
                key_line(get(&rollout.root, "spec")?, "replicas")
            ),
            _ => {
                d.note(file, line(&rollout.root), "spec.replicas", "a replica ratio needs at least 2 replicas (Argo's default is 1): set `router.replicas` to the total you run");
                "no trafficRouting: the replica ratio; set the total".to_string()
            }
        };
        let replicas = replicas.map_or(2, |n| n.clamp(2.0, 10_000.0) as u32);
        d.router = Some((Router::KubernetesReplicas { replicas }, why));
        return None;
    };
    let mut hint = None;
    let mut route = d.service.clone();
    let mut why =
        "Gateway API HTTPRoute weights between the stable and canary Services".to_string();
    for (key, node) in entries(tr) {
        match key.name.as_str() {
            "plugins" => {
                for (plugin, cfg) in entries(node) {
                    if plugin.name.to_ascii_lowercase().contains("gatewayapi") {
                        let named = get(cfg, "httpRoute").and_then(str_of).or_else(|| {
                            get(cfg, "httpRoutes")
                                .and_then(|r| items(r).first())
                                .and_then(|r| get(r, "name"))
                                .and_then(str_of)
                        });
                        if let Some(r) = named {
                            route = r.to_string();
                            why = format!(
                                "the gatewayAPI plugin's HTTPRoute (line {})",
                                plugin.pos.line
                            );
                        }
                    } else {
                        d.note(
                            file,
                            plugin.pos.line,
                            format!("trafficRouting plugin `{}`", plugin.name),
                            "canaryd shifts traffic through Gateway API HTTPRoute weights only",
                        );
                    }
                }
            }
            "managedRoutes" => d.note(
                file,
                key.pos.line,
                "managedRoutes",
                "header and mirror routes are not supported: canaryd splits traffic by weight",
            ),
            "maxTrafficWeight" => d.note(
                file,
                key.pos.line,
                "maxTrafficWeight",
                "canaryd weights are percentages (0–100%)",
            ),
            other => {
                hint = match other {
                    "istio" => Some("istio"),
                    "nginx" => Some("nginx-ingress"),
                    _ => None,
                }
                .map(|p| {
                    (
                        p.to_string(),
                        format!("the Rollout routes traffic with {other}"),
                    )
                });
                d.note(file, key.pos.line, format!("trafficRouting.{other}"), format!("canaryd does not drive {other}: it sets Gateway API HTTPRoute weights (route `{route}`, backends `{stable}` / `{canary_svc}`); create that HTTPRoute, or change `router`"));
            }
        }
    }
    d.router = Some((
        Router::GatewayApi {
            route,
            stable_backend: stable,
            canary_backend: canary_svc,
        },
        why,
    ));
    hint
}

/// The analysis found so far.
pub(super) struct Analysis<'d> {
    /// Analysis templates by name.
    pub templates: BTreeMap<&'d str, &'d Doc>,
    /// Gates found.
    pub candidates: Vec<Candidate>,
    /// The shortest measurement interval, and where it came from.
    pub interval: Option<(Duration, String)>,
    /// The strictest failure limit of the step analyses.
    pub failure_limit: Option<(u32, String)>,
}

fn walk_step(d: &mut Draft, a: &mut Analysis<'_>, file: &str, item: &Node) {
    let Some((key, value)) = entries(item).first() else {
        d.note(file, line(item), "step", "not a map: skipped");
        return;
    };
    let at_line = key.pos.line;
    let current = d.steps.len().checked_sub(1);
    match key.name.as_str() {
        "setWeight" => {
            let Some(w) = number_of(value).filter(|w| *w > 0.0 && *w <= 100.0) else {
                d.note(file, at_line, "setWeight", "not a weight above 0 and at most 100: skipped");
                return;
            };
            let previous = d.steps.last().map_or(0.0, |s| s.weight);
            if w < previous {
                d.note(file, at_line, format!("setWeight: {w}"), "canaryd weights only go up: skipped");
                return;
            }
            if w > previous {
                d.steps.push(Step {
                    weight: w,
                    duration: None,
                    from: vec![format!("setWeight: {w} (line {at_line})")],
                    gates: Vec::new(),
                });
            }
        }
        "pause" => {
            let Some(i) = current else {
                d.note(file, at_line, "pause", "a pause before any setWeight measures nothing at 0%: skipped");
                return;
            };
            let step = &mut d.steps[i];
            let length = match get(value, "duration").map(argo_duration) {
                Some(Some(length)) => {
                    step.from.push(format!("pause {} (line {at_line})", format_duration(length)));
                    length
                }
                Some(None) => {
                    d.note(file, at_line, "pause", "its duration is not a duration: skipped");
                    return;
                }
                None => {
                    step.from.push(format!("pause until promoted (line {at_line})"));
                    let why = format!("an indefinite pause waits for `kubectl argo rollouts promote`; canaryd steps are timed: this step is watched for {}. To decide by hand, `canaryd pause` the rollout during it, then `resume` or `promote`", format_duration(INDEFINITE_PAUSE));
                    d.note(file, at_line, "pause without a duration", why);
                    INDEFINITE_PAUSE
                }
            };
            let step = &mut d.steps[i];
            step.duration = Some(step.duration.unwrap_or_default() + length);
        }
        "analysis" => {
            let target = current.unwrap_or(usize::MAX);
            let length = a.templates(d, file, value, Role::Promotion(target));
            if let (Some(i), Some(length)) = (current, length) {
                let step = &mut d.steps[i];
                step.duration = Some(step.duration.unwrap_or_default() + length);
                step.from.push(format!("analysis {} (line {at_line})", format_duration(length)));
            }
        }
        "experiment" => d.note(file, at_line, "experiment", "canaryd runs no side-by-side experiment ReplicaSets: the canary is judged against the stable version on live traffic"),
        "setCanaryScale" => d.note(file, at_line, "setCanaryScale", "canaryd sizes the canary by the step weight only"),
        "setHeaderRoute" => d.note(file, at_line, "setHeaderRoute", "header-based routes are not supported: canaryd splits traffic by weight"),
        "setMirrorRoute" => d.note(file, at_line, "setMirrorRoute", "traffic mirroring is not supported"),
        "plugin" => d.note(file, at_line, "plugin", "step plugins are not supported"),
        other => d.note(file, at_line, other, "unknown step: skipped"),
    }
}

/// Argo durations: `30s`, `10m`, `1h`, or a bare number of seconds.
pub(super) fn argo_duration(node: &Node) -> Option<Duration> {
    if let Some(n) = number_of(node) {
        return (n >= 0.0).then(|| Duration::from_secs_f64(n));
    }
    parse_duration(&text_of(node)?).ok()
}

impl Analysis<'_> {
    /// Adds the gates of an `analysis` block's templates; returns how long a
    /// step analysis runs (the longest `interval × count`).
    fn templates(
        &mut self,
        d: &mut Draft,
        file: &str,
        block: &Node,
        role: Role,
    ) -> Option<Duration> {
        let mut args: BTreeMap<String, Option<String>> = BTreeMap::new();
        for arg in get(block, "args").map(items).unwrap_or_default() {
            if let Some(name) = get(arg, "name").and_then(str_of) {
                args.insert(name.to_string(), get(arg, "value").and_then(text_of));
            }
        }
        let mut longest: Option<Duration> = None;
        for t in get(block, "templates").map(items).unwrap_or_default() {
            let Some(name) = get(t, "templateName").and_then(str_of) else {
                d.note(
                    file,
                    line(t),
                    "analysis template",
                    "has no `templateName`: skipped",
                );
                continue;
            };
            let Some(doc) = self.templates.get(name).copied() else {
                d.note(
                    file,
                    line(t),
                    format!("analysis template `{name}`"),
                    "not given (pass it with `--template FILE`): its gates are missing",
                );
                continue;
            };
            let mut values = args.clone();
            for arg in at(&doc.root, &["spec", "args"])
                .map(items)
                .unwrap_or_default()
            {
                if let Some(arg_name) = get(arg, "name").and_then(str_of) {
                    let default = get(arg, "value").and_then(text_of);
                    let slot = values.entry(arg_name.to_string()).or_insert(None);
                    if slot.is_none() {
                        *slot = default;
                    }
                }
            }
            for metric in at(&doc.root, &["spec", "metrics"])
                .map(items)
                .unwrap_or_default()
            {
                if let Some(run) = self.metric(d, doc, name, metric, &values, role) {
                    longest = longest.max(Some(run));
                }
            }
        }
        longest
    }
}
