//! `GET /api/v1/delivery` and the delivery gauges on `/metrics`, through the
//! API's router in process (`tower::ServiceExt::oneshot`), on a decision log
//! written by the real engine: v2 promoted, then v3 rolled back.

mod common;
mod harness;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use canaryd::api::ReadAccess;
use canaryd::delivery::gauges::DeliveryGauges;
use canaryd::engine::{Phase, Timestamp};
use canaryd::store::{Change, SqliteStore};
use common::{Sim, World};
use harness::api::{Api, access};
use prometheus_client::registry::Registry;

/// A log of two rollouts of `checkout`, starting `ago` before now: v2
/// promoted, then v3 (30% errors) rolled back.
fn logged_store(ago: Duration) -> (Arc<SqliteStore>, Sim) {
    let mut sim = Sim::new(common::spec(common::SEED_FILE));
    let now = Timestamp::from_system(SystemTime::now());
    sim.start = Timestamp::from_millis(now.millis() - ago.as_millis() as u64);
    sim.now = sim.start;
    sim.state = canaryd::engine::RolloutState::new(&sim.spec, sim.start);
    let healthy = World::healthy();
    sim.tick_until(&healthy, 1000, |s| s.state.phase == Phase::Promoted);
    sim.spec.canary.version = "v3".into();
    sim.tick_until(&healthy, 100, |s| {
        s.state.canary_version.as_deref() == Some("v3")
    });
    sim.tick_until(&healthy.clone().with("error_rate", 0.3), 100, |s| {
        s.state.phase == Phase::RolledBack
    });
    let store = SqliteStore::in_memory().expect("store");
    let change = Change {
        id: sim.spec.id.clone(),
        state: sim.state.clone(),
        records: sim.log.clone(),
        alerts: Vec::new(),
        deliveries: Vec::new(),
    };
    store.commit(&[change], sim.now).expect("commit");
    (Arc::new(store), sim)
}

#[tokio::test]
async fn the_delivery_endpoint_reports_the_period_asked_for() {
    let (store, sim) = logged_store(Duration::from_secs(2 * 86_400));
    let api = Api::with_parts(access(ReadAccess::Open), store, Registry::default());
    let since = Timestamp::from_millis(sim.start.millis() - 3_600_000);
    let until = sim.now.plus(Duration::from_secs(1));
    let reply = api
        .get(&format!("/api/v1/delivery?since={since}&until={until}"))
        .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(
        reply
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let body = reply.json();
    let o = &body["overall"];
    assert_eq!(
        (
            o["promoted"].as_u64(),
            o["rolled_back"].as_u64(),
            o["finished"].as_u64()
        ),
        (Some(1), Some(1), Some(2)),
        "{body}"
    );
    assert_eq!(o["change_failure_rate"], 0.5);
    assert_eq!(body["rollouts"][0]["rollout"], "default/checkout");
    // Lead time: v2's start to its promotion, as logged.
    let start = sim
        .log
        .iter()
        .find(|r| r.action == canaryd::engine::Action::Start)
        .expect("a start");
    let promote = sim
        .log
        .iter()
        .find(|r| r.action == canaryd::engine::Action::Promote)
        .expect("a promotion");
    let lead = promote.at.since(start.at).as_secs_f64();
    assert_eq!(o["lead_time"]["median_seconds"].as_f64(), Some(lead));
    // Time to restore: from the detector's evidence to the rollback.
    let rollback = sim.log.last().expect("the rollback");
    let restore = o["time_to_restore"]["median_seconds"]
        .as_f64()
        .expect("a time to restore");
    assert!(restore > 0.0 && restore <= 120.0, "{restore}");
    let evidence_since = rollback
        .gates
        .iter()
        .filter(|g| g.failed())
        .filter_map(|g| g.evidence.as_ref().map(|e| e.since))
        .min()
        .expect("the breach's evidence");
    assert_eq!(restore, rollback.at.since(evidence_since).as_secs_f64());
    assert_eq!(body["attempts"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn without_a_period_it_reports_the_last_30_days() {
    let api = Api::new(access(ReadAccess::Open));
    let body = api.get("/api/v1/delivery").await.json();
    assert_eq!(body["days"], 30.0, "{body}");
    assert_eq!(
        body["overall"]["change_failure_rate"],
        serde_json::Value::Null
    );
    assert_eq!(body["daily"].as_array().map(|d| d.len() >= 30), Some(true));
    let relative = api.get("/api/v1/delivery?since=-7d&until=now").await.json();
    assert_eq!(relative["days"], 7.0, "{relative}");
    let empty = api.get("/api/v1/delivery?since=&until=").await.json();
    assert_eq!(empty["days"], 30.0, "{empty}");
    // A long period is reported whole; its daily series keeps the last 400 days.
    let long = api.get("/api/v1/delivery?since=-1000d").await.json();
    assert_eq!(long["days"], 1000.0, "{long}");
    assert_eq!(long["daily"].as_array().map(Vec::len), Some(400));
}

#[tokio::test]
async fn a_period_that_does_not_parse_or_runs_backwards_is_a_json_400() {
    let api = Api::new(access(ReadAccess::Open));
    for (query, says) in [
        ("since=last%20week", "since: `last week` is not a time"),
        ("until=2026-13-01T00:00:00Z", "until: "),
        ("since=-1d&until=-2d", "must be after since"),
        ("since=now", "must be after since"),
    ] {
        let reply = api.get(&format!("/api/v1/delivery?{query}")).await;
        assert_eq!(reply.status, 400, "{query}");
        assert_eq!(reply.error_code(), "bad_request", "{query}");
        let message = reply.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(message.contains(says), "{query}: {message}");
    }
}

#[tokio::test]
async fn metrics_carry_the_trailing_30_days_figures_per_rollout() {
    let (store, _) = logged_store(Duration::from_secs(86_400));
    let mut registry = Registry::default();
    registry.register_collector(Box::new(DeliveryGauges::new(store.clone())));
    let api = Api::with_parts(access(ReadAccess::Open), store, registry);
    let reply = api.get("/metrics").await;
    assert_eq!(reply.status, 200);
    let text = String::from_utf8_lossy(&reply.body).into_owned();
    for line in [
        r#"canaryd_delivery_change_failure_ratio{rollout="default/checkout"} 0.5"#,
        r#"canaryd_delivery_finished_rollouts{rollout="default/checkout",outcome="promoted"} 1"#,
        r#"canaryd_delivery_finished_rollouts{rollout="default/checkout",outcome="rolled_back"} 1"#,
        r#"canaryd_delivery_finished_rollouts{rollout="default/checkout",outcome="aborted"} 0"#,
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(line)),
            "`{line}` missing:\n{text}"
        );
    }
    let value = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name}{{rollout=\"default/checkout\"}}")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
    };
    assert!((value("canaryd_delivery_deployments_per_day") - 1.0 / 30.0).abs() < 1e-9);
    assert!(value("canaryd_delivery_lead_time_seconds") > 0.0);
    assert!(value("canaryd_delivery_time_to_restore_seconds") > 0.0);
    assert!(
        text.contains("# TYPE canaryd_delivery_change_failure_ratio gauge"),
        "{text}"
    );
}

#[tokio::test]
async fn the_openapi_document_describes_the_delivery_endpoint() {
    let api = Api::new(access(ReadAccess::Open));
    let doc = api.get("/api/v1/openapi.json").await.json();
    let get = &doc["paths"]["/api/v1/delivery"]["get"];
    let params: Vec<&str> = get["parameters"]
        .as_array()
        .map(|p| p.iter().filter_map(|p| p["$ref"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        params,
        [
            "#/components/parameters/since",
            "#/components/parameters/until"
        ]
    );
    for status in ["200", "400", "503"] {
        assert!(get["responses"][status].is_object(), "{status}: {get}");
    }
    let schema = &doc["components"]["schemas"]["Delivery"];
    for field in ["overall", "rollouts", "daily", "attempts"] {
        assert!(schema["properties"][field].is_object(), "{field}");
    }
}
