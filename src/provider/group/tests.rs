//! Which templates are grouped, how, and how answers are split back.

use std::time::Duration;

use super::*;
use crate::spec::policy::{PolicySet, TemplateVars};

fn sentinel_render(template: &crate::spec::policy::QueryTemplate) -> String {
    template.render(&TemplateVars {
        service: Var::Service.sentinel(),
        namespace: Var::Namespace.sentinel(),
        version: Var::Version.sentinel(),
        track: "canary",
        window: Duration::from_secs(60),
        track_selector: "",
    })
}

fn http_red(metric: &str) -> Result<Shape, Ungroupable> {
    let policies = PolicySet::builtin();
    let policy = policies.get("http-red").expect("built in");
    let template = match metric {
        "requests" => &policy.requests,
        "counts.requests" => &policy.counts.as_ref().expect("counts").requests,
        "counts.errors" => policy
            .counts
            .as_ref()
            .and_then(|c| c.errors.as_ref())
            .expect("errors"),
        "counts.buckets" => policy
            .counts
            .as_ref()
            .and_then(|c| c.latency_buckets.as_ref())
            .expect("buckets"),
        other => &policy.metrics.get(other).expect("metric").query,
    };
    shape(&sentinel_render(template))
}

fn key(values: &[&str]) -> Key {
    values.iter().map(|v| v.to_string()).collect()
}

fn series(labels: &[(&str, &str)], value: f64) -> Series {
    Series {
        labels: labels.iter().map(|(k, v)| (*k, *v)).collect(),
        value,
    }
}

#[test]
fn a_sum_is_grouped_by_the_labels_the_rollout_is_selected_by() {
    let s = http_red("counts.requests").expect("groupable");
    assert_eq!(
        s.keys(),
        &[
            ("service".to_string(), Var::Service),
            ("version".to_string(), Var::Version)
        ]
    );
    let members = [
        key(&["checkout", "v1"]),
        key(&["checkout", "v2"]),
        key(&["cart", "v1"]),
    ];
    assert_eq!(
        s.render(&members),
        r#"sum by (service, version) (http_requests_total{service=~"cart|checkout",version=~"v1|v2"})"#
    );
}

#[test]
fn one_member_is_selected_exactly() {
    let s = http_red("counts.errors").expect("groupable");
    let q = s.render(&[key(&["checkout", "v2"])]);
    assert!(q.contains(r#"service="checkout""#), "{q}");
    assert!(q.contains(r#"version="v2""#), "{q}");
    assert!(q.contains(r#"code=~"5..""#), "{q}");
}

#[test]
fn an_existing_by_clause_keeps_its_labels_and_gains_the_rollouts() {
    let s = http_red("counts.buckets").expect("groupable");
    assert!(
        s.template().starts_with("sum by (le, service, version) ("),
        "{}",
        s.template()
    );
    let p99 = http_red("latency_p99").expect("groupable");
    assert!(
        p99.template()
            .starts_with("histogram_quantile(0.99, sum by (le, service, version) (rate("),
        "{}",
        p99.template()
    );
}

#[test]
fn a_query_with_vector_or_scalar_is_asked_per_rollout() {
    // `or vector(0)`: the labelless 0 would match no rollout once grouped.
    let or_vector = r#"(sum(rate(e{service="__canaryd_group_service__"}[1m])) or vector(0)) / sum(rate(r{service="__canaryd_group_service__"}[1m]))"#;
    assert!(matches!(
        shape(or_vector),
        Err(Ungroupable::Unsupported(why)) if why.contains("vector()")
    ));
    for q in [
        r#"scalar(sum(up{service="__canaryd_group_service__"}))"#,
        r#"absent(up{service="__canaryd_group_service__"})"#,
        r#"label_replace(up{service="__canaryd_group_service__"}, "a", "$1", "b", "(.*)")"#,
        r#"topk(1, up{service="__canaryd_group_service__"})"#,
    ] {
        assert!(matches!(shape(q), Err(Ungroupable::Unsupported(_))), "{q}");
    }
}

#[test]
fn the_shipped_error_rate_falls_back_to_zero_per_series_and_so_is_grouped() {
    let s = http_red("error_rate").expect("groupable");
    assert!(s.template().contains(" or rate("), "{}", s.template());
    assert!(
        s.template().starts_with("sum by (service, version) ("),
        "{}",
        s.template()
    );
}

#[test]
fn a_placeholder_outside_an_exact_matcher_is_asked_per_rollout() {
    for q in [
        r#"sum(up{service=~"__canaryd_group_service__-.*"})"#,
        r#"sum(up{service!="__canaryd_group_service__"})"#,
        r#"sum(up{service="x-__canaryd_group_service__"})"#,
    ] {
        assert!(matches!(shape(q), Err(Ungroupable::Unsupported(_))), "{q}");
    }
}

#[test]
fn a_selector_not_selecting_the_rollout_is_asked_per_rollout() {
    let q = r#"sum(rate(a{service="__canaryd_group_service__"}[1m])) / sum(rate(b[1m]))"#;
    assert!(matches!(shape(q), Err(Ungroupable::Unsupported(_))), "{q}");
}

#[test]
fn without_or_ignoring_a_grouping_label_is_asked_per_rollout() {
    let q = r#"sum without (service) (up{service="__canaryd_group_service__"})"#;
    assert!(matches!(shape(q), Err(Ungroupable::Unsupported(_))));
    let fine = r#"sum without (pod) (up{service="__canaryd_group_service__"})"#;
    assert!(shape(fine).is_ok());
}

#[test]
fn vector_matching_on_labels_gains_the_grouping_labels() {
    let q = r#"sum by (code) (a{service="__canaryd_group_service__"}) / on (code) sum by (code) (b{service="__canaryd_group_service__"})"#;
    let s = shape(q).expect("groupable");
    assert!(
        s.template().contains("on (code, service)"),
        "{}",
        s.template()
    );
}

#[test]
fn a_query_without_placeholders_is_not_grouped() {
    assert_eq!(shape("sum(up)"), Err(Ungroupable::NoPlaceholder));
}

#[test]
fn values_are_escaped_in_the_set() {
    let s = http_red("counts.requests").expect("groupable");
    let q = s.render(&[key(&["a.b", "v\"1"]), key(&["c|d", "v2"])]);
    assert!(q.contains(r#"service=~"a\\.b|c\\|d""#), "{q}");
    assert!(q.contains(r#"version=~"v\"1|v2""#), "{q}");
}

#[test]
fn a_split_gives_each_member_its_own_series_and_nothing_for_a_missing_one() {
    let s = http_red("counts.buckets").expect("groupable");
    let answer: Answer = Ok(QueryValue::Vector(vec![
        series(&[("service", "a"), ("version", "v1"), ("le", "0.1")], 3.0),
        series(&[("service", "a"), ("version", "v1"), ("le", "+Inf")], 4.0),
        series(&[("service", "b"), ("version", "v2"), ("le", "+Inf")], 9.0),
        series(&[("le", "+Inf")], 1.0),
    ]));
    let split = s.split(answer).expect("a vector");
    let len = |k: &[&str]| match split.get(&key(k)) {
        Some(Ok(QueryValue::Vector(v))) => Some(v.len()),
        _ => None,
    };
    assert_eq!(len(&["a", "v1"]), Some(2));
    // What a member reads: its series' other labels, without the key's.
    let Some(Ok(QueryValue::Vector(a))) = split.get(&key(&["a", "v1"])) else {
        panic!("a's answer");
    };
    let les: Vec<Option<&str>> = a.iter().map(|s| s.labels.get("le")).collect();
    assert_eq!(les, [Some("0.1"), Some("+Inf")]);
    assert!(a.iter().all(|s| s.labels.len() == 1), "{a:?}");
    assert_eq!(len(&["b", "v2"]), Some(1));
    assert!(!split.contains_key(&key(&["a", "v2"])));
    let failed: Answer = Err(Inconclusive::NotMeasured);
    assert_eq!(s.split(failed), Err(Inconclusive::NotMeasured));
}
