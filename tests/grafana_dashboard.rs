//! The Grafana dashboard `deploy/grafana/canaryd.json`: every query is valid
//! PromQL that names only series canaryd exports, and every metric canaryd
//! exports is on it. The exported names are read from the real registries
//! (the daemon's own metrics, the notifier's alert counter, the built-in
//! router's, the delivery gauges), encoded as `/metrics` serves them — not
//! from a list kept here.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use canaryd::controller::metrics::{AlertLabels, LoopWork, Metrics};
use canaryd::delivery::gauges::DeliveryGauges;
use canaryd::engine::{Phase, RolloutState, Timestamp};
use canaryd::router::metrics::{RequestLabels, RouterMetrics, TrackLabels};
use canaryd::spec::promql::selectors;
use canaryd::store::{Change, SqliteStore};
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use serde_json::Value;

/// Family name → its type, from the `# TYPE` lines of the encoded registries,
/// registered exactly as `canaryd run` registers them. A labelled family with
/// no series is not encoded at all, so each gets what the daemon feeds it: the
/// decisions of a simulated rollout that is rolled back, an alert delivery,
/// and a request through the router.
fn exported_families() -> BTreeMap<String, String> {
    let mut registry = Registry::default();
    let own = Metrics::register(&mut registry);
    let router = RouterMetrics::register(&mut registry);

    let mut sim = common::Sim::new(common::spec(common::SEED_FILE));
    let healthy = common::World::healthy();
    sim.tick_until(&healthy, 10, |s| s.state.phase == Phase::Progressing);
    let failing = healthy.with("error_rate", 0.2);
    sim.tick_until(&failing, 10, |s| s.state.phase == Phase::RolledBack);
    for record in &sim.log {
        own.count_decision(&sim.spec.id, record);
        own.observe_state(&sim.spec.id, &sim.state, &record.gates);
    }
    own.observe_turn(LoopWork::Command, 0.002);
    own.alerts
        .get_or_create(&AlertLabels {
            sink: "slack".into(),
            result: "delivered".into(),
        })
        .inc();
    let track = |track: &str| TrackLabels {
        namespace: "default".into(),
        route: "checkout".into(),
        track: track.into(),
    };
    router
        .requests
        .get_or_create(&RequestLabels {
            namespace: "default".into(),
            route: "checkout".into(),
            track: "canary".into(),
            code: "200".into(),
        })
        .inc();
    router
        .durations
        .get_or_create(&track("canary"))
        .observe(0.01);

    registry.register_collector(Box::new(DeliveryGauges::new(delivery_log())));

    let mut text = String::new();
    encode(&mut text, &registry).expect("the registry encodes");
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_string(), kind.to_string()))
        .collect()
}

/// A decision log of the last day, for the delivery gauges: a version
/// promoted, then one rolled back.
fn delivery_log() -> Arc<SqliteStore> {
    let mut sim = common::Sim::new(common::spec(common::SEED_FILE));
    let now = Timestamp::from_system(std::time::SystemTime::now());
    sim.start = Timestamp::from_millis(now.millis() - 86_400_000);
    sim.now = sim.start;
    sim.state = RolloutState::new(&sim.spec, sim.start);
    let healthy = common::World::healthy();
    sim.tick_until(&healthy, 1000, |s| s.state.phase == Phase::Promoted);
    sim.spec.canary.version = "v3".into();
    let failing = healthy.with("error_rate", 0.2);
    sim.tick_until(&failing, 100, |s| s.state.phase == Phase::RolledBack);
    let store = SqliteStore::in_memory().expect("store");
    let change = Change {
        id: sim.spec.id.clone(),
        state: sim.state.clone(),
        records: sim.log.clone(),
        alerts: Vec::new(),
        deliveries: Vec::new(),
    };
    store.commit(&[change], sim.now).expect("commit");
    Arc::new(store)
}

/// The series names a family exposes: counters get `_total`, histograms
/// `_bucket`, `_sum` and `_count`.
fn series_names(families: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    for (family, kind) in families {
        let suffixes: &[&str] = match kind.as_str() {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            _ => &[""],
        };
        for s in suffixes {
            names.insert(format!("{family}{s}"), family.clone());
        }
    }
    names
}

fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/canaryd.json");
    let text = std::fs::read_to_string(&path).expect("deploy/grafana/canaryd.json exists");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Every `expr` in the dashboard (panel targets, nested rows, annotations),
/// with where it is, for messages.
fn queries(node: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match node {
        Value::Object(map) => {
            let here = match map.get("title").and_then(Value::as_str) {
                Some(title) => format!("{at} / {title}"),
                None => at.to_string(),
            };
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", Value::String(expr)) => out.push((here.clone(), expr.clone())),
                    _ => queries(value, &here, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| queries(i, at, out)),
        _ => {}
    }
}

/// Grafana's variables replaced by what they become at query time; any
/// other `$` is an unknown variable.
fn substitute(expr: &str) -> String {
    let out = expr
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
        .replace("$rollout", ".*")
        .replace("$route", ".*");
    assert!(
        !out.contains('$'),
        "unknown Grafana variable in `{expr}` (known: $__rate_interval, $__interval, $__range, $rollout, $route)"
    );
    out
}

#[test]
fn the_registries_export_the_metrics_of_the_brief() {
    let families = exported_families();
    // Sanity of the reading itself: the brief's §7 names, with their types.
    for (name, kind) in [
        ("canaryd_rollout_phase", "gauge"),
        ("canaryd_canary_weight", "gauge"),
        ("canaryd_gate_value", "gauge"),
        ("canaryd_decisions", "counter"),
        ("canaryd_rollbacks", "counter"),
        ("canaryd_prometheus_query_duration_seconds", "histogram"),
        ("canaryd_tick_duration_seconds", "histogram"),
        ("canaryd_alerts", "counter"),
        ("canaryd_router_requests", "counter"),
        ("canaryd_router_request_duration_seconds", "histogram"),
        ("canaryd_delivery_deployments_per_day", "gauge"),
        ("canaryd_delivery_change_failure_ratio", "gauge"),
        ("canaryd_delivery_time_to_restore_seconds", "gauge"),
        ("canaryd_delivery_lead_time_seconds", "gauge"),
        ("canaryd_delivery_finished_rollouts", "gauge"),
    ] {
        assert_eq!(
            families.get(name).map(String::as_str),
            Some(kind),
            "{families:?}"
        );
    }
}

#[test]
fn every_dashboard_query_is_promql_naming_only_metrics_canaryd_exports() {
    let exported = series_names(&exported_families());
    let mut found = Vec::new();
    queries(&dashboard(), "dashboard", &mut found);
    assert!(found.len() >= 15, "too few queries found: {found:?}");
    for (panel, expr) in &found {
        let parsed = selectors(&substitute(expr))
            .unwrap_or_else(|e| panic!("{panel}: `{expr}` is not valid PromQL: {e}"));
        assert!(!parsed.is_empty(), "{panel}: `{expr}` selects no series");
        for s in parsed {
            let name = s.metric.unwrap_or_else(|| {
                panic!("{panel}: `{expr}` has a selector without a metric name")
            });
            assert!(
                exported.contains_key(&name),
                "{panel}: `{expr}` reads `{name}`, which canaryd does not export (it exports {:?})",
                exported.keys().collect::<Vec<_>>()
            );
        }
    }
}

#[test]
fn template_variables_read_label_values_of_exported_metrics() {
    let exported = series_names(&exported_families());
    let dash = dashboard();
    let vars = dash["templating"]["list"]
        .as_array()
        .expect("templating.list");
    let mut checked = 0;
    for var in vars.iter().filter(|v| v["type"] == "query") {
        let query = var["query"]["query"].as_str().expect("a query variable");
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| panic!("unexpected variable query `{query}`"));
        let (metric, label) = inner.split_once(',').expect("label_values(metric, label)");
        assert!(
            exported.contains_key(metric.trim()),
            "variable {}: `{metric}` is not exported",
            var["name"]
        );
        assert!(!label.trim().is_empty());
        checked += 1;
    }
    assert!(checked >= 1, "no query variable found");
}

#[test]
fn every_metric_canaryd_exports_has_a_panel() {
    let exported = series_names(&exported_families());
    let mut found = Vec::new();
    queries(&dashboard(), "dashboard", &mut found);
    let shown: BTreeSet<String> = found
        .iter()
        .flat_map(|(_, expr)| selectors(&substitute(expr)).unwrap_or_default())
        .filter_map(|s| s.metric)
        .filter_map(|name| exported.get(&name).cloned())
        .collect();
    let families: BTreeSet<String> = exported.values().cloned().collect();
    let missing: Vec<_> = families.difference(&shown).collect();
    assert!(missing.is_empty(), "not on the dashboard: {missing:?}");
}
