//! The deploy-file model: defaults, typed values, and the JSON carrier of cluster mode.

use std::time::Duration;

use canaryd::spec::decode::{decode, decode_node};
use canaryd::spec::model::{
    AlertSeverity, Comparison, Judged, Limit, NoDataPolicy, RouterSpec, SecretRef, SinkKind,
};
use canaryd::spec::policy::{PolicySet, Unit};
use canaryd::spec::units::{Threshold, Weight};
use canaryd::spec::yaml::from_json;

const SEED_FILE: &str = include_str!("../deploy/checkout.yaml");

#[test]
fn the_seed_file_reads_into_typed_values_with_documented_defaults() {
    let spec = decode("checkout.yaml", SEED_FILE, &PolicySet::builtin())
        .spec
        .expect("valid");
    assert_eq!(spec.id.to_string(), "default/checkout");
    assert_eq!(
        spec.router,
        RouterSpec::Builtin {
            listen: "127.0.0.1:8080".into()
        }
    );
    let s = &spec.strategy;
    let weights: Vec<u16> = s.steps.iter().map(|st| st.weight.basis_points()).collect();
    assert_eq!(weights, [500, 5000, 10000]);
    assert_eq!(s.steps[0].duration, Some(Duration::from_secs(600)));
    assert_eq!(s.steps[2].duration, None);
    let g = &s.steps[0].gates[1];
    assert_eq!(
        (g.metric.as_str(), g.comparison, g.unit),
        ("latency_p99", Comparison::LessThan, Unit::Seconds)
    );
    assert_eq!(
        g.limit,
        Limit::Fixed(Threshold::Latency(Duration::from_millis(200)))
    );
    assert_eq!(g.judged, Judged::Quantile { quantile: 0.99 });
    assert!(s.rollback.auto);
    assert_eq!(s.rollback.on[0].limit, Limit::Fixed(Threshold::Ratio(0.02)));
    assert_eq!(s.rollback.on[0].judged, Judged::Errors);
    // Documented defaults of `deploy.analysis`.
    let a = &s.analysis;
    assert_eq!(
        (a.interval, a.window),
        (Duration::from_secs(10), Duration::from_secs(60))
    );
    assert_eq!(
        (
            a.min_requests,
            a.consecutive_breaches,
            a.failure_limit,
            a.inconclusive_limit
        ),
        (20, 1, None, 6)
    );
    assert_eq!(a.failure_limit_for(Judged::Errors), 1);
    assert_eq!(a.failure_limit_for(Judged::Reading), 3);
    assert_eq!((a.confidence, a.max_extension), (0.99, None));
    assert_eq!(a.no_data, NoDataPolicy::Hold);
    assert_eq!(spec.alerts[0].kind, SinkKind::Slack);
    assert_eq!(
        spec.alerts[0].webhook,
        SecretRef::Env("SLACK_WEBHOOK_URL".into())
    );
}

#[test]
fn the_same_spec_reads_from_json_as_the_custom_resource_carries_it() {
    let json = serde_json::json!({
        "service": "checkout",
        "router": {"kind": "builtin", "listen": "127.0.0.1:8080"},
        "stable": {"version": "v1", "address": "127.0.0.1:9001"},
        "canary": {"version": "v2", "address": "127.0.0.1:9002"},
        "deploy": {
            "strategy": "canary",
            "steps": [
                {"deploy": "5%", "duration": "10m", "metrics": [{"error_rate_less_than": "1%"}, {"latency_p99_less_than": "200ms"}]},
                {"deploy": "50%", "duration": "20m"},
                {"deploy": "100%"}
            ],
            "rollback": {"auto": true, "on": [{"error_rate_greater_than": "2%"}, {"latency_p99_greater_than": "500ms"}]}
        },
        "alerts": [{"slack": {"webhook_env": "SLACK_WEBHOOK_URL"}}]
    });
    let policies = PolicySet::builtin();
    let from_json = decode_node("crd", &from_json(&json), &policies)
        .spec
        .expect("valid JSON spec");
    let mut from_yaml = decode("checkout.yaml", SEED_FILE, &policies)
        .spec
        .expect("valid");
    from_yaml.prometheus = None; // the JSON above leaves it to the daemon default
    assert_eq!(from_json, from_yaml);
}

#[test]
fn json_errors_are_reported_without_positions() {
    let json =
        serde_json::json!({"service": "checkout", "deploy": {"steps": [{"deploy": "150%"}]}});
    let decoded = decode_node("rollout/checkout", &from_json(&json), &PolicySet::builtin());
    assert!(decoded.spec.is_none());
    let d = decoded
        .diagnostics
        .iter()
        .find(|d| d.message.contains("150%"))
        .expect("reported");
    assert_eq!((d.line, d.column), (0, 0));
    assert!(
        d.render(None)
            .starts_with("error: weight 150% is outside 0%–100%\n  --> rollout/checkout\n")
    );
}

#[test]
fn weights_display_as_written() {
    for text in ["5%", "0.5%", "12.25%", "100%"] {
        assert_eq!(Weight::parse(text).expect("valid").to_string(), text);
    }
}

#[test]
fn an_alert_sinks_empty_severity_means_info_and_a_named_one_is_its_minimum() {
    let text = SEED_FILE.replace(
        "  - slack: { webhook_env: SLACK_WEBHOOK_URL }",
        "  - slack: { webhook_env: SLACK_WEBHOOK_URL, severity: }\n  - teams: { webhook_file: /run/secrets/teams, severity: error }",
    );
    let s = decode("checkout.yaml", &text, &PolicySet::builtin())
        .spec
        .expect("valid");
    assert_eq!(s.alerts.len(), 2);
    assert_eq!(s.alerts[0].min_severity, AlertSeverity::Info);
    assert_eq!(s.alerts[1].min_severity, AlertSeverity::Error);
    assert_eq!(
        s.alerts[1].webhook,
        SecretRef::File("/run/secrets/teams".into())
    );
}
