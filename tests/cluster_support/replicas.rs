//! The two-replica cluster e2e's helpers: seeding the fake API server,
//! playing the Deployment controller, a stand-in Prometheus, starting a
//! cluster-mode replica, and reading what is stored.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use canaryd::cluster::crd::{Rollout, RolloutStatus};
use canaryd::cluster::fake::FakeApiServer;
use canaryd::daemon::DaemonConfig;
use canaryd::daemon::cluster::serve_with_client;
use canaryd::engine::{Action, DecisionRecord};
use http::Method;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const DEPLOY: &str = "/apis/apps/v1/namespaces/shop/deployments";
pub const ROUTES: &str = "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes";
pub const ROLLOUTS: &str = "/apis/canaryd.dev/v1alpha1/namespaces/shop/rollouts";
pub const LEASE_SECONDS: u64 = 2;
pub const WITHIN: Duration = Duration::from_secs(60);

pub fn call(fake: &FakeApiServer, method: Method, uri: &str, ct: &str, body: &Value) -> u16 {
    let response = fake.handle(
        &method,
        &uri.parse().expect("uri"),
        Some(ct),
        body.to_string().as_bytes(),
    );
    response.status().as_u16()
}

pub fn create(fake: &FakeApiServer, collection: &str, object: Value) {
    let code = call(
        fake,
        Method::POST,
        &format!("{collection}?fieldManager=kubectl-create"),
        "application/json",
        &object,
    );
    assert_eq!(code, 201, "create in {collection}");
}

pub fn template(version: &str) -> Value {
    json!({
        "metadata": { "labels": { "app": "checkout", "app.kubernetes.io/version": version } },
        "spec": { "containers": [{ "name": "app", "image": format!("shop/checkout:{version}") }] }
    })
}

/// A new pod template on the target (`kubectl set image`, as CI would).
pub fn release(fake: &FakeApiServer, version: &str) {
    let code = call(
        fake,
        Method::PATCH,
        &format!("{DEPLOY}/checkout?fieldManager=kubectl"),
        "application/merge-patch+json",
        &json!({ "spec": { "template": template(version) } }),
    );
    assert_eq!(code, 200, "the target gets a new template");
}

/// Stands in for Prometheus: every instant query answers one sample of a
/// steady 1000 (a healthy, busy canary); the steps carry no gates, so only
/// the traffic checks read it.
pub async fn steady_prometheus() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let addr = listener.local_addr().expect("an address");
    let app = axum::Router::new().fallback(|| async {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        axum::Json(json!({
            "status": "success",
            "data": { "resultType": "vector", "result": [{ "metric": {}, "value": [now, "1000"] }] }
        }))
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

/// The `checkout` Deployment at v1 and its HTTPRoute, all traffic on the
/// primary: what a team has before its first Rollout.
pub fn seed_workload(fake: &FakeApiServer) {
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
}

pub fn seed(fake: &FakeApiServer, alerts_file: &str, prometheus: &str) {
    seed_workload(fake);
    create(
        fake,
        ROLLOUTS,
        json!({
            "apiVersion": "canaryd.dev/v1alpha1", "kind": "Rollout",
            "metadata": { "name": "checkout" },
            "spec": {
                "targetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "checkout" },
                "router": { "kind": "gateway-api", "route": "checkout",
                            "stable_backend": "checkout-primary", "canary_backend": "checkout-canary" },
                "prometheus": prometheus,
                "deploy": {
                    "strategy": "canary",
                    "analysis": { "interval": "1s", "window": "2s" },
                    "steps": [
                        { "deploy": "20%", "duration": "1s" },
                        { "deploy": "50%", "duration": "8s" },
                        { "deploy": "100%" }
                    ]
                },
                "alerts": [{ "webhook": { "webhook_file": alerts_file } }]
            }
        }),
    );
}

/// A second Rollout, of Deployment `cart`, with a weight over 100%.
pub fn seed_invalid(fake: &FakeApiServer) {
    create(
        fake,
        DEPLOY,
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "cart", "labels": { "app": "cart" } },
            "spec": {
                "replicas": 1,
                "selector": { "matchLabels": { "app": "cart" } },
                "template": {
                    "metadata": { "labels": { "app": "cart", "app.kubernetes.io/version": "v1" } },
                    "spec": { "containers": [{ "name": "app", "image": "shop/cart:v1" }] }
                }
            }
        }),
    );
    create(
        fake,
        ROLLOUTS,
        json!({
            "apiVersion": "canaryd.dev/v1alpha1", "kind": "Rollout",
            "metadata": { "name": "cart" },
            "spec": {
                "targetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "cart" },
                "router": { "kind": "kubernetes-replicas", "replicas": 4 },
                "deploy": { "steps": [{ "deploy": "150%", "duration": "1m" }, { "deploy": "100%" }] }
            }
        }),
    );
}

/// The reasons of the Events about Rollout `name`.
pub async fn event_reasons(fake: &FakeApiServer, name: &str) -> Vec<String> {
    let events: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(fake.client(), "shop");
    let Ok(list) = events.list(&Default::default()).await else {
        return Vec::new();
    };
    list.items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter_map(|e| e.reason)
        .collect()
}

/// Plays the Deployment controller: every Deployment's wanted pods are up
/// to date and available, its generation observed.
pub fn play_deployment_controller(fake: FakeApiServer) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(50));
        loop {
            every.tick().await;
            for name in ["checkout", "checkout-primary"] {
                let Some(d) = fake.object("apps/v1", "Deployment", "shop", name) else {
                    continue;
                };
                let wanted = d["spec"]["replicas"].as_i64().unwrap_or(1);
                let status = json!({
                    "observedGeneration": d["metadata"]["generation"],
                    "replicas": wanted,
                    "updatedReplicas": wanted,
                    "availableReplicas": wanted,
                    "readyReplicas": wanted,
                });
                if d["status"] != status {
                    let _ = fake.set_status("apps/v1", "Deployment", "shop", name, status);
                }
            }
        }
    })
}

/// One replica: its task, its API's address and its shutdown.
pub struct Replica {
    pub identity: String,
    pub api: String,
    pub task: JoinHandle<()>,
    pub stop: Option<oneshot::Sender<()>>,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub fn replica(fake: &FakeApiServer, identity: &str) -> Replica {
    let port = free_port();
    let config = DaemonConfig {
        cluster: true,
        listen: format!("127.0.0.1:{port}"),
        lease_namespace: Some("canaryd".into()),
        lease_duration: format!("{LEASE_SECONDS}s"),
        lease_grace: "1s".into(),
        ..DaemonConfig::default()
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
    };
    let client = fake.client();
    let id = identity.to_string();
    let task = tokio::spawn(async move {
        if let Err(e) = serve_with_client(config, client, id.clone(), shutdown).await {
            panic!("replica {id} failed: {e}");
        }
    });
    Replica {
        identity: identity.into(),
        api: format!("http://127.0.0.1:{port}"),
        task,
        stop: Some(stop),
    }
}

pub fn rollout(fake: &FakeApiServer) -> Rollout {
    let value = fake
        .object("canaryd.dev/v1alpha1", "Rollout", "shop", "checkout")
        .expect("the Rollout exists");
    serde_json::from_value(value).expect("a Rollout")
}

pub fn status(fake: &FakeApiServer) -> RolloutStatus {
    rollout(fake).status.unwrap_or_default()
}

/// The watched time in the current step, in milliseconds, as stored.
pub fn watched(fake: &FakeApiServer) -> u64 {
    status(fake)
        .engine_state
        .and_then(|s| s["step_elapsed"].as_u64())
        .unwrap_or(0)
}

pub fn holder(fake: &FakeApiServer) -> Option<String> {
    fake.object(
        "coordination.k8s.io/v1",
        "Lease",
        "canaryd",
        "canaryd-leader",
    )
    .and_then(|l| l["spec"]["holderIdentity"].as_str().map(String::from))
}

pub fn route_weights(fake: &FakeApiServer) -> BTreeMap<String, i64> {
    let route = fake
        .object(
            "gateway.networking.k8s.io/v1",
            "HTTPRoute",
            "shop",
            "checkout",
        )
        .expect("the HTTPRoute exists");
    route["spec"]["rules"][0]["backendRefs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            (
                b["name"].as_str().unwrap_or_default().to_string(),
                b["weight"].as_i64().unwrap_or(1),
            )
        })
        .collect()
}

/// Polls `probe` until it answers, for at most `limit`.
pub async fn until<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn get_json(url: &str) -> Option<Value> {
    let r = reqwest::get(url).await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

pub fn transitions(records: &[DecisionRecord]) -> Vec<Action> {
    records
        .iter()
        .map(|r| r.action)
        .filter(|a| *a != Action::Hold)
        .collect()
}

/// Each alert's idempotency key once, and their events in `expected` order.
pub fn assert_alerts_once_in_order(keys: &[String], expected: &[&str]) {
    let mut unique = keys.to_vec();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        keys.len(),
        "an alert was sent twice: {keys:?}"
    );
    let events: Vec<&str> = keys.iter().filter_map(|k| k.rsplit('/').next()).collect();
    assert_eq!(events, expected, "each alert once, in order: {keys:?}");
}

/// Waits until the promotion has finished: the primary runs `version` and
/// the HTTPRoute sends it all the traffic.
pub async fn until_primary_runs(fake: &FakeApiServer, version: &str) {
    until(
        "the primary on the new version with all traffic",
        WITHIN,
        || async {
            let primary = fake.object("apps/v1", "Deployment", "shop", "checkout-primary")?;
            let labels = &primary["spec"]["template"]["metadata"]["labels"];
            let weights = route_weights(fake);
            (labels["app.kubernetes.io/version"] == version
                && weights.get("checkout-canary") == Some(&0)
                && weights.get("checkout-primary") == Some(&100))
            .then_some(())
        },
    )
    .await;
}

/// Decisions numbered 1..n once each, start → advance → advance → promote,
/// and none after `last_seq` (the old leader's last) back on step 1.
pub fn assert_promoted_once_each_without_repeating_a_step(all: &[DecisionRecord], last_seq: u64) {
    let seqs: Vec<u64> = all.iter().map(|r| r.seq).collect();
    let expected: Vec<u64> = (1..=all.len() as u64).collect();
    assert_eq!(seqs, expected, "every decision once, in order");
    assert_eq!(
        transitions(all),
        [
            Action::Start,
            Action::Advance,
            Action::Advance,
            Action::Promote
        ],
        "{all:#?}"
    );
    assert!(
        all.iter().filter(|r| r.seq > last_seq).all(|r| r.step >= 2),
        "no step was repeated after the failover: {all:#?}"
    );
}
