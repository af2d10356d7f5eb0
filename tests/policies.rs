//! The shipped metric policies, rendered and parsed (promql-parser): every
//! query selects only metric names and labels its stack publishes, and every
//! placeholder value arrives in its label matcher exactly, however hostile.

use std::time::Duration;

use canaryd::spec::policy::{PolicySet, TemplateVars, Unit};
use canaryd::spec::promql::{Selector, selectors};

/// What each stack publishes: metric names and the labels a policy may match on.
/// Sources: the stacks' metric references (Istio "Standard Metrics", Linkerd
/// "Proxy Metrics", ingress-nginx "Monitoring", Envoy cluster statistics).
struct Stack {
    policy: &'static str,
    metrics: &'static [&'static str],
    labels: &'static [&'static str],
    /// Whether a selector picks the measured track's series (and only them).
    selects_track: fn(&Selector, &TemplateVars<'_>) -> bool,
}

const STACKS: &[Stack] = &[
    Stack {
        policy: "http-red",
        metrics: &[
            "http_requests_total",
            "http_request_duration_seconds_bucket",
        ],
        labels: &["service", "version", "code", "le"],
        selects_track: |s, v| s.equals("version") == Some(v.version),
    },
    Stack {
        policy: "canaryd-router",
        metrics: &[
            "canaryd_router_requests_total",
            "canaryd_router_request_duration_seconds_bucket",
        ],
        labels: &["namespace", "route", "track", "code", "le"],
        selects_track: |s, v| {
            s.equals("track") == Some(v.track) && s.equals("route") == Some(v.service)
        },
    },
    Stack {
        policy: "istio",
        metrics: &[
            "istio_requests_total",
            "istio_request_duration_milliseconds_bucket",
        ],
        labels: &[
            "reporter",
            "destination_workload_namespace",
            "destination_canonical_service",
            "destination_canonical_revision",
            "response_code",
            "le",
        ],
        selects_track: |s, v| s.equals("destination_canonical_revision") == Some(v.version),
    },
    Stack {
        policy: "linkerd",
        metrics: &[
            "request_total",
            "response_total",
            "response_latency_ms_bucket",
        ],
        labels: &[
            "direction",
            "namespace",
            "deployment",
            "classification",
            "le",
        ],
        selects_track: |s, v| s.equals("deployment") == Some(&format!("{}-{}", v.service, v.track)),
    },
    Stack {
        policy: "nginx-ingress",
        metrics: &[
            "nginx_ingress_controller_requests",
            "nginx_ingress_controller_request_duration_seconds_bucket",
        ],
        labels: &["namespace", "ingress", "service", "status", "canary", "le"],
        selects_track: |s, v| {
            let canary = s.matchers.iter().find(|(l, _, _)| l == "canary");
            let wanted = if v.track == "canary" { "!=" } else { "=" };
            s.equals("ingress") == Some(v.service)
                && canary.is_some_and(|(_, op, value)| op == wanted && value.is_empty())
        },
    },
    Stack {
        policy: "envoy",
        metrics: &[
            "envoy_cluster_upstream_rq_total",
            "envoy_cluster_upstream_rq_xx",
            "envoy_cluster_upstream_rq_time_bucket",
        ],
        labels: &["envoy_cluster_name", "envoy_response_code_class", "le"],
        selects_track: |s, v| {
            s.equals("envoy_cluster_name") == Some(&format!("{}-{}", v.service, v.track))
        },
    },
];

fn hostile<'a>(track: &'a str, track_selector: &'a str) -> TemplateVars<'a> {
    TemplateVars {
        service: "web\"} or vector(1) #",
        namespace: "prod\\",
        version: "1.2\n\"3",
        track,
        window: Duration::from_secs(90),
        track_selector,
    }
}

#[test]
fn every_shipped_policy_has_a_stack_table_here() {
    let policies = PolicySet::builtin();
    let names: Vec<&str> = policies.names().collect();
    let mut tested: Vec<&str> = STACKS.iter().map(|s| s.policy).collect();
    tested.sort_unstable();
    assert_eq!(names, tested);
}

#[test]
fn every_policy_defines_error_rate_latency_p99_and_request_rate_in_their_units() {
    let policies = PolicySet::builtin();
    for name in policies.names() {
        let p = policies.get(name).expect("listed");
        for (metric, unit) in [
            ("error_rate", Unit::Ratio),
            ("latency_p50", Unit::Seconds),
            ("latency_p95", Unit::Seconds),
            ("latency_p99", Unit::Seconds),
            ("request_rate", Unit::PerSecond),
        ] {
            let def = p
                .metrics
                .get(metric)
                .unwrap_or_else(|| panic!("{name}: no {metric}"));
            assert_eq!(def.unit, unit, "{name} {metric}");
        }
    }
}

#[test]
fn rendered_queries_select_only_published_metrics_and_labels_of_their_track() {
    let policies = PolicySet::builtin();
    for stack in STACKS {
        let p = policies.get(stack.policy).expect("shipped");
        for track in ["canary", "stable"] {
            let vars = hostile(track, p.track_selectors.of(track));
            let rendered = std::iter::once(("requests".to_string(), p.requests.render(&vars)))
                .chain(
                    p.metrics
                        .iter()
                        .map(|(m, d)| (m.clone(), d.query.render(&vars))),
                );
            for (what, query) in rendered {
                let what = format!("{} {what} ({track})", stack.policy);
                let sels = selectors(&query).unwrap_or_else(|e| panic!("{what}: {e}\n{query}"));
                assert!(!sels.is_empty(), "{what} selects nothing");
                for s in sels {
                    let metric = s.metric.as_deref().unwrap_or("<none>");
                    assert!(
                        stack.metrics.contains(&metric),
                        "{what}: `{metric}` is not published by the stack"
                    );
                    for (label, _, _) in &s.matchers {
                        assert!(
                            stack.labels.contains(&label.as_str()),
                            "{what}: label `{label}` is not on `{metric}`"
                        );
                    }
                    // The track's own series, selected by the exact (hostile) value.
                    assert!((stack.selects_track)(&s, &vars), "{what}: {s:?}\n{query}");
                }
            }
        }
    }
}

#[test]
fn error_rates_count_zero_errors_as_zero_and_no_requests_as_no_data() {
    // `sum(errors or total * 0) / sum(total)` (or the older
    // `(errors or vector(0)) / total`): the numerator may be absent, the
    // denominator may not.
    let policies = PolicySet::builtin();
    for stack in STACKS {
        let q = policies.get(stack.policy).expect("shipped").metrics["error_rate"]
            .query
            .render(&hostile("canary", ""));
        let (numerator, denominator) = q
            .split_once("\n/ ")
            .or_else(|| q.split_once(" / "))
            .expect("a ratio");
        let falls_back_to_zero = numerator.trim_end().ends_with("or vector(0))")
            || numerator.trim_end().ends_with(" * 0)");
        assert!(falls_back_to_zero, "{}: {q}", stack.policy);
        assert!(!denominator.contains("vector(0)"), "{}: {q}", stack.policy);
    }
}
