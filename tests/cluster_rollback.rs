//! Cluster mode end to end with real gates: two `canaryd run --cluster`
//! replicas against one fake API server, a real Prometheus scraping two real
//! sample apps (stable v1, canary v2, the `http-red` labels), and a webhook
//! receiver for the chat alerts. The test plays the mesh (it sends load to
//! the two apps split by the HTTPRoute's backendRef weights as the fake
//! holds them at each request) and the Deployment controller.
//!
//! The canary advances on a real promotion gate while healthy; then its
//! fault switch makes half its requests fail, and it must be rolled back:
//! the route's canary weight goes to 0 before the status says RolledBack,
//! the canary is scaled to zero, the primary untouched, the decision stored
//! with its evidence, an Event published and the alert sent once. Waits are
//! on conditions with bounded timeouts.

mod harness;

#[path = "cluster_support/rbac.rs"]
#[allow(dead_code)]
mod rbac;
#[path = "cluster_support/replicas.rs"]
#[allow(dead_code)]
mod replicas;

use std::net::SocketAddr;
use std::time::Duration;

use canaryd::cluster::crd::RolloutPhase;
use canaryd::cluster::fake::FakeApiServer;
use canaryd::cluster::state::record::{outbox, records};
use canaryd::engine::{Action, AlertEvent};
use futures::{StreamExt, TryStreamExt};
use harness::daemon::fast;
use harness::receiver::Receiver;
use harness::{Prometheus, sample_app};
use kube::api::{Api, ApiResource, DynamicObject, WatchEvent, WatchParams};
use replicas::*;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// Requests a second the mesh sends: 20 a second reach a canary at 20%.
const RPS: u32 = 100;

/// The Rollout of `checkout` with a promotion gate on step 1 and abort
/// conditions, judged by the `http-red` policy on the real Prometheus.
fn seed_gated(fake: &FakeApiServer, alerts_file: &str, prometheus: &str) {
    create(
        fake,
        DEPLOY,
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "checkout", "labels": { "app": "checkout" } },
            "spec": {
                "replicas": 2,
                "selector": { "matchLabels": { "app": "checkout" } },
                "template": template("v1")
            }
        }),
    );
    create(
        fake,
        ROUTES,
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": { "name": "checkout" },
            "spec": {
                "parentRefs": [{ "name": "public" }],
                "rules": [{ "backendRefs": [
                    { "name": "checkout-primary", "port": 8080, "weight": 100 },
                    { "name": "checkout-canary", "port": 8080, "weight": 0 }
                ] }]
            }
        }),
    );
    create(
        fake,
        ROLLOUTS,
        json!({
            "apiVersion": "canaryd.dev/v1alpha1", "kind": "Rollout",
            "metadata": { "name": "checkout" },
            "spec": {
                "targetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "checkout" },
                "policy": "http-red",
                "router": { "kind": "gateway-api", "route": "checkout",
                            "stable_backend": "checkout-primary", "canary_backend": "checkout-canary" },
                "prometheus": prometheus,
                "deploy": {
                    "strategy": "canary",
                    "steps": [
                        { "deploy": "20%", "duration": "3s",
                          "metrics": [{ "error_rate_less_than": "5%" }] },
                        { "deploy": "50%", "duration": "10m" },
                        { "deploy": "100%" }
                    ],
                    "rollback": { "auto": true, "on": [
                        { "error_rate_greater_than": "5%" },
                        { "latency_p99_greater_than": "400ms" }
                    ] },
                    "analysis": { "interval": "1s", "window": "5s", "min_requests": 5,
                                  "max_extension": "1m" }
                },
                "alerts": [{ "webhook": { "webhook_file": alerts_file } }]
            }
        }),
    );
}

/// Plays the mesh: `RPS` requests a second, each sent to the stable or the
/// canary app by the HTTPRoute's weights read at that moment (a running
/// credit, so the split is exact and not random).
fn play_mesh(fake: FakeApiServer, stable: SocketAddr, canary: SocketAddr) -> JoinHandle<()> {
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("an HTTP client");
        let mut every = tokio::time::interval(Duration::from_secs(1) / RPS);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut credit = 0.0;
        loop {
            every.tick().await;
            let weights = route_weights(&fake);
            let at = |name: &str| weights.get(name).copied().unwrap_or(0).max(0) as f64;
            let (s, c) = (at("checkout-primary"), at("checkout-canary"));
            if s + c <= 0.0 {
                continue;
            }
            credit += c / (s + c);
            let target = if credit >= 1.0 {
                credit -= 1.0;
                canary
            } else {
                stable
            };
            let request = client.get(format!("http://{target}/")).send();
            tokio::spawn(async move {
                let _ = request.await;
            });
        }
    })
}

/// The marker of the test's own requests in the fake's log.
const BY_TEST: &str = "by=test";

/// A client for the test's own reads: each request carries [`BY_TEST`] in
/// its query (the fake ignores it), so the log tells them from canaryd's.
fn test_client(fake: &FakeApiServer) -> kube::Client {
    let service = tower::ServiceBuilder::new()
        .map_request(|mut request: http::Request<kube::client::Body>| {
            let uri = request.uri().to_string();
            let sep = if uri.contains('?') { '&' } else { '?' };
            if let Ok(marked) = format!("{uri}{sep}{BY_TEST}").parse() {
                *request.uri_mut() = marked;
            }
            request
        })
        .service(fake.clone());
    kube::Client::new(service, "default")
}

fn route_api(fake: &FakeApiServer) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: "gateway.networking.k8s.io".into(),
        version: "v1".into(),
        api_version: "gateway.networking.k8s.io/v1".into(),
        kind: "HTTPRoute".into(),
        plural: "httproutes".into(),
    };
    Api::namespaced_with(test_client(fake), "shop", &resource)
}

fn rollout_api(fake: &FakeApiServer) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: "canaryd.dev".into(),
        version: "v1alpha1".into(),
        api_version: "canaryd.dev/v1alpha1".into(),
        kind: "Rollout".into(),
        plural: "rollouts".into(),
    };
    Api::namespaced_with(test_client(fake), "shop", &resource)
}

/// Watches `api` from resourceVersion `from` and answers the
/// resourceVersion of the first change of object `checkout` that `matches`
/// (the fake's resourceVersions are one global sequence, as etcd's).
fn first_change(
    api: Api<DynamicObject>,
    from: u64,
    matches: fn(&Value) -> bool,
) -> JoinHandle<Option<u64>> {
    tokio::spawn(async move {
        let params = WatchParams::default();
        let stream = api.watch(&params, &from.to_string()).await.ok()?;
        let mut stream = stream.boxed();
        while let Ok(Some(event)) = stream.try_next().await {
            let object = match event {
                WatchEvent::Added(o) | WatchEvent::Modified(o) => o,
                _ => continue,
            };
            let value = serde_json::to_value(&object).ok()?;
            if matches(&value) {
                return object.metadata.resource_version?.parse().ok();
            }
        }
        None
    })
}

fn canary_weight_zero(route: &Value) -> bool {
    route["spec"]["rules"][0]["backendRefs"]
        .as_array()
        .is_some_and(|refs| {
            refs.iter()
                .any(|b| b["name"] == "checkout-canary" && b["weight"] == 0)
        })
}

fn status_rolled_back(rollout: &Value) -> bool {
    rollout["status"]["phase"] == "RolledBack"
}

/// The Events about Rollout `checkout`: (type, reason).
async fn events(fake: &FakeApiServer) -> Vec<(String, String)> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(test_client(fake), "shop");
    let Ok(list) = api.list(&Default::default()).await else {
        return Vec::new();
    };
    list.items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("checkout"))
        .map(|e| (e.type_.unwrap_or_default(), e.reason.unwrap_or_default()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulty_canary_is_cut_to_zero_then_rolled_back_with_its_evidence_event_and_one_alert() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let stable = sample_app("checkout", "v1", fast()).await;
    let canary = sample_app("checkout", "v2", fast()).await;
    let prom = Prometheus::start(&[stable.addr(), canary.addr()]).await;
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let url_file = dir.path().join("webhook-url");
    std::fs::write(&url_file, format!("{}/hook", receiver.base)).expect("write");

    let fake = FakeApiServer::new();
    seed_gated(&fake, &url_file.display().to_string(), prom.url());
    let _deployments = play_deployment_controller(fake.clone());
    let _mesh = play_mesh(fake.clone(), stable.addr(), canary.addr());
    let _replicas = [replica(&fake, "pod-a"), replica(&fake, "pod-b")];
    until("a leader", WITHIN, || async { holder(&fake) }).await;
    until("the primary", WITHIN, || async {
        fake.object("apps/v1", "Deployment", "shop", "checkout-primary")
    })
    .await;
    release(&fake, "v2");

    // Healthy: step 1's promotion gate passes on the canary's real traffic.
    let healthy = until(
        "step 2 reached on a passed gate",
        Duration::from_secs(90),
        || async {
            let s = status(&fake);
            (s.step == Some(2) && s.phase == Some(RolloutPhase::Progressing)).then_some(s)
        },
    )
    .await;
    let advance = records(&healthy)
        .into_iter()
        .find(|r| r.action == Action::Advance)
        .expect("an advance is recorded");
    let gate = advance.gates.first().expect("the advance names its gate");
    assert_eq!(
        serde_json::to_value(gate).expect("a gate")["verdict"],
        "pass",
        "{gate:?}"
    );
    assert!(gate.query.contains(r#"version="v2""#), "{}", gate.query);
    until("the HTTPRoute at 50%", WITHIN, || async {
        (route_weights(&fake).get("checkout-canary") == Some(&50)).then_some(())
    })
    .await;
    let primary_before = fake
        .object("apps/v1", "Deployment", "shop", "checkout-primary")
        .expect("the primary");

    // The fault: half the canary's requests fail from now on.
    let from = fake.resource_version();
    let route_cut = first_change(route_api(&fake), from, canary_weight_zero);
    let marked = first_change(rollout_api(&fake), from, status_rolled_back);
    reqwest::Client::new()
        .put(format!("http://{}/admin/behaviour", canary.addr()))
        .body(r#"{"error_rate": "50%"}"#)
        .send()
        .await
        .expect("the canary's fault switch")
        .error_for_status()
        .expect("the fault switch accepts");

    let rolled_back = until(
        "the status says RolledBack",
        Duration::from_secs(60),
        || async {
            let s = status(&fake);
            (s.phase == Some(RolloutPhase::RolledBack)).then_some(s)
        },
    )
    .await;
    // Traffic first: the route's weight-0 write precedes the status write.
    let cut_at = tokio::time::timeout(WITHIN, route_cut)
        .await
        .expect("the route watch answers")
        .expect("the route watch runs")
        .expect("the canary weight went to 0");
    let marked_at = tokio::time::timeout(WITHIN, marked)
        .await
        .expect("the Rollout watch answers")
        .expect("the Rollout watch runs")
        .expect("the status said RolledBack");
    eprintln!(
        "the route's canary weight went to 0 at resourceVersion {cut_at}, the status said RolledBack at {marked_at}"
    );
    assert!(
        cut_at < marked_at,
        "the route was cut at resourceVersion {cut_at}, after the status said RolledBack at {marked_at}"
    );
    let weights = route_weights(&fake);
    assert_eq!(weights.get("checkout-canary"), Some(&0), "{weights:?}");
    assert_eq!(weights.get("checkout-primary"), Some(&100), "{weights:?}");

    // The canary is scaled to zero; the primary is untouched.
    until("the canary at zero replicas", WITHIN, || async {
        let d = fake.object("apps/v1", "Deployment", "shop", "checkout")?;
        (d["spec"]["replicas"] == 0).then_some(())
    })
    .await;
    let primary_after = fake
        .object("apps/v1", "Deployment", "shop", "checkout-primary")
        .expect("the primary");
    assert_eq!(primary_after["spec"], primary_before["spec"]);
    assert_eq!(
        primary_after["metadata"]["generation"],
        primary_before["metadata"]["generation"]
    );
    assert_eq!(
        primary_after["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/version"],
        "v1"
    );

    // The status carries the decision and its evidence.
    let last = rolled_back.last_decision.clone().expect("a last decision");
    assert_eq!(last.action, Action::Rollback.to_string());
    assert!(last.reason.contains("error_rate"), "{}", last.reason);
    let rollback = records(&rolled_back)
        .into_iter()
        .rev()
        .find(|r| r.action == Action::Rollback)
        .expect("the rollback is recorded");
    let breached = rollback
        .gates
        .iter()
        .find(|g| g.failed())
        .expect("the breached gate is in the record");
    assert_eq!(breached.threshold, "5%");
    assert!(breached.value.is_some_and(|v| v > 0.05), "{breached:?}");
    assert!(breached.query.contains(r#"version="v2""#), "{breached:?}");
    assert!(
        rolled_back
            .conditions
            .iter()
            .any(|c| c.type_ == "RolledBack" && c.status == "True"),
        "{:?}",
        rolled_back.conditions
    );

    // A Warning Event for the decision.
    let published = until("the RolledBack Event", WITHIN, || async {
        let e = events(&fake).await;
        e.iter()
            .any(|(_, reason)| reason == "RolledBack")
            .then_some(e)
    })
    .await;
    assert!(
        published
            .iter()
            .any(|(kind, reason)| kind == "Warning" && reason == "RolledBack"),
        "{published:?}"
    );

    // The rollback alert: delivered (as the outbox records), and once.
    until(
        "the rollback alert recorded as delivered",
        WITHIN,
        || async {
            outbox(&status(&fake))
                .iter()
                .any(|e| e.event == AlertEvent::RolledBack && e.delivered_at.is_some())
                .then_some(())
        },
    )
    .await;
    let rollback_alerts: Vec<String> = receiver
        .accepted()
        .iter()
        .filter_map(|r| r.header("idempotency-key"))
        .filter(|k| k.ends_with("/rolled_back"))
        .collect();
    assert_eq!(rollback_alerts.len(), 1, "{rollback_alerts:?}");
    let body = receiver
        .accepted()
        .iter()
        .find(|r| {
            r.header("idempotency-key")
                .is_some_and(|k| k.ends_with("/rolled_back"))
        })
        .map(|r| r.json())
        .unwrap_or_default();
    assert!(body.to_string().contains("error_rate"), "{body}");

    // Every request the two replicas sent is granted by rbac.yaml (the
    // test's own reads and its `kubectl` writes are not canaryd's).
    let requests = fake.requests();
    let daemon: Vec<&String> = requests
        .iter()
        .filter(|r| !r.contains(BY_TEST) && !r.contains("fieldManager=kubectl"))
        .collect();
    let used = rbac::assert_granted(daemon.iter().copied());
    for (group, resource, verb) in [
        ("canaryd.dev", "rollouts/status", "update"),
        ("gateway.networking.k8s.io", "httproutes", "patch"),
        ("apps", "deployments", "patch"),
        ("events.k8s.io", "events", "create"),
        ("coordination.k8s.io", "leases", "patch"),
    ] {
        let grant = (group.to_string(), resource.to_string(), verb.to_string());
        assert!(used.contains(&grant), "the daemon used {grant:?}: {used:?}");
    }
    drop(prom);
}
