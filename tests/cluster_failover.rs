//! Cluster mode end to end, in process: two `canaryd run --cluster` replicas
//! (the daemon's own `serve_with_client`) against one fake API server, a
//! Rollout of a Deployment through Gateway API HTTPRoute weights, and a
//! webhook receiver for the alerts. No API server can run here: the fake
//! stands in for it, and the test plays the Deployment controller (every
//! Deployment's pods become available as soon as its spec changes).
//!
//! The lease is 2 s; kube-lease-manager compares lease times with the wall
//! clock, so this runs in real time and waits on conditions with bounded
//! timeouts. The steps carry no metric gates: no Prometheus runs here, and
//! what is under test is who acts and what is stored, not the judgement.

#[path = "harness/receiver.rs"]
#[allow(dead_code)]
mod receiver;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use canaryd::cluster::crd::{Rollout, RolloutPhase, RolloutStatus};
use canaryd::cluster::fake::FakeApiServer;
use canaryd::cluster::state::record::records;
use canaryd::daemon::DaemonConfig;
use canaryd::daemon::cluster::serve_with_client;
use canaryd::engine::{Action, DecisionRecord};
use http::Method;
use receiver::Receiver;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const DEPLOY: &str = "/apis/apps/v1/namespaces/shop/deployments";
const ROUTES: &str = "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes";
const ROLLOUTS: &str = "/apis/canaryd.dev/v1alpha1/namespaces/shop/rollouts";
const LEASE_SECONDS: u64 = 2;
const WITHIN: Duration = Duration::from_secs(60);

fn call(fake: &FakeApiServer, method: Method, uri: &str, ct: &str, body: &Value) -> u16 {
    let response = fake.handle(
        &method,
        &uri.parse().expect("uri"),
        Some(ct),
        body.to_string().as_bytes(),
    );
    response.status().as_u16()
}

fn create(fake: &FakeApiServer, collection: &str, object: Value) {
    let code = call(
        fake,
        Method::POST,
        &format!("{collection}?fieldManager=kubectl-create"),
        "application/json",
        &object,
    );
    assert_eq!(code, 201, "create in {collection}");
}

fn template(version: &str) -> Value {
    json!({
        "metadata": { "labels": { "app": "checkout", "app.kubernetes.io/version": version } },
        "spec": { "containers": [{ "name": "app", "image": format!("shop/checkout:{version}") }] }
    })
}

/// A new pod template on the target (`kubectl set image`, as CI would).
fn release(fake: &FakeApiServer, version: &str) {
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
async fn steady_prometheus() -> String {
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

fn seed(fake: &FakeApiServer, alerts_file: &str, prometheus: &str) {
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
fn seed_invalid(fake: &FakeApiServer) {
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
async fn event_reasons(fake: &FakeApiServer, name: &str) -> Vec<String> {
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
fn play_deployment_controller(fake: FakeApiServer) -> JoinHandle<()> {
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
struct Replica {
    identity: String,
    api: String,
    task: JoinHandle<()>,
    stop: Option<oneshot::Sender<()>>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn replica(fake: &FakeApiServer, identity: &str) -> Replica {
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

fn rollout(fake: &FakeApiServer) -> Rollout {
    let value = fake
        .object("canaryd.dev/v1alpha1", "Rollout", "shop", "checkout")
        .expect("the Rollout exists");
    serde_json::from_value(value).expect("a Rollout")
}

fn status(fake: &FakeApiServer) -> RolloutStatus {
    rollout(fake).status.unwrap_or_default()
}

/// The watched time in the current step, in milliseconds, as stored.
fn watched(fake: &FakeApiServer) -> u64 {
    status(fake)
        .engine_state
        .and_then(|s| s["step_elapsed"].as_u64())
        .unwrap_or(0)
}

fn holder(fake: &FakeApiServer) -> Option<String> {
    fake.object(
        "coordination.k8s.io/v1",
        "Lease",
        "canaryd",
        "canaryd-leader",
    )
    .and_then(|l| l["spec"]["holderIdentity"].as_str().map(String::from))
}

fn route_weights(fake: &FakeApiServer) -> BTreeMap<String, i64> {
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
async fn until<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
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

async fn get_json(url: &str) -> Option<Value> {
    let r = reqwest::get(url).await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

fn transitions(records: &[DecisionRecord]) -> Vec<Action> {
    records
        .iter()
        .map(|r| r.action)
        .filter(|a| *a != Action::Hold)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_takes_over_a_killed_leader_mid_step_and_nothing_is_lost_or_doubled() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let fake = FakeApiServer::new();
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let url_file = dir.path().join("webhook-url");
    std::fs::write(&url_file, format!("{}/hook", receiver.base)).expect("write");
    let prometheus = steady_prometheus().await;
    seed(&fake, &url_file.display().to_string(), &prometheus);
    seed_invalid(&fake);
    let _deployments = play_deployment_controller(fake.clone());

    let mut replicas = vec![replica(&fake, "pod-a"), replica(&fake, "pod-b")];
    let leader_id = until("a leader", WITHIN, || async { holder(&fake) }).await;
    // The leader creates the primary from the target; v1 is then stable.
    until("the primary", WITHIN, || async {
        fake.object("apps/v1", "Deployment", "shop", "checkout-primary")
    })
    .await;
    release(&fake, "v2");

    // The rollout reaches step 2 (8 s at 50%) under the first leader.
    let reached = tokio::time::timeout(WITHIN, async {
        loop {
            let s = status(&fake);
            if s.step == Some(2) && s.phase == Some(RolloutPhase::Progressing) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        reached.is_ok(),
        "step 2 not reached: {:?}\n{}\n{}\n{:#?}",
        status(&fake).engine_state,
        fake.object("apps/v1", "Deployment", "shop", "checkout")
            .map(|d| json!([
                d["spec"]["replicas"],
                d["status"],
                d["metadata"]["generation"]
            ]))
            .unwrap_or_default(),
        route_weights(&fake).len(),
        fake.requests()
            .iter()
            .filter(|r| !r.contains("leases") && !r.contains("watch=true"))
            .rev()
            .take(30)
            .collect::<Vec<_>>()
    );
    until("the HTTPRoute at 50%", WITHIN, || async {
        (route_weights(&fake).get("checkout-canary") == Some(&50)).then_some(())
    })
    .await;

    // The standby serves reads from its watch cache: the same step.
    let (leader_at, standby_at) = if replicas[0].identity == leader_id {
        (0, 1)
    } else {
        (1, 0)
    };
    let standby_api = replicas[standby_at].api.clone();
    let seen = until("the standby's view of step 2", WITHIN, || {
        let url = format!("{standby_api}/api/v1/rollouts/shop/checkout");
        async move { get_json(&url).await.filter(|r| r["step"] == 2) }
    })
    .await;
    assert_eq!(seen["phase"], "Progressing", "{seen}");
    assert_eq!(seen["canary_version"], "v2", "{seen}");

    // A hand edit of the HTTPRoute is corrected on the leader's next tick.
    let code = call(
        &fake,
        Method::PATCH,
        &format!("{ROUTES}/checkout?fieldManager=kubectl-edit"),
        "application/json-patch+json",
        &json!([
            { "op": "replace", "path": "/spec/rules/0/backendRefs/0/weight", "value": 100 },
            { "op": "replace", "path": "/spec/rules/0/backendRefs/1/weight", "value": 0 }
        ]),
    );
    assert_eq!(code, 200, "the hand edit is accepted");
    until("the hand edit corrected", WITHIN, || async {
        (route_weights(&fake).get("checkout-canary") == Some(&50)).then_some(())
    })
    .await;

    // The invalid Rollout is refused with a condition and an Event, and
    // nothing of its Deployment changes.
    let cart = until("cart's InvalidSpec condition", WITHIN, || async {
        let value = fake.object("canaryd.dev/v1alpha1", "Rollout", "shop", "cart")?;
        let cart: Rollout = serde_json::from_value(value).ok()?;
        let status = cart.status?;
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "InvalidSpec" && c.status == "True")
            .then_some(status)
    })
    .await;
    assert!(
        cart.message
            .as_deref()
            .is_some_and(|m| m.contains("spec.deploy.steps[0]")),
        "{:?}",
        cart.message
    );
    assert!(
        cart.engine_state.is_none(),
        "an invalid Rollout never starts"
    );
    assert!(
        fake.object("apps/v1", "Deployment", "shop", "cart-primary")
            .is_none(),
        "no primary for an invalid Rollout"
    );
    let reasons = until("cart's Warning Event", WITHIN, || async {
        let r = event_reasons(&fake, "cart").await;
        (!r.is_empty()).then_some(r)
    })
    .await;
    assert!(reasons.iter().any(|r| r == "InvalidSpec"), "{reasons:?}");

    // The leader dies mid-step: no shutdown, the Lease is not released.
    let before = records(&status(&fake));
    let last_seq = before.last().map_or(0, |r| r.seq);
    let killed = replicas.remove(leader_at);
    killed.task.abort();
    let _ = killed.task.await;
    let killed_at = Instant::now();
    let killed_wall = k8s_openapi::jiff::Timestamp::now();
    let standby = replicas.pop().expect("the standby");
    let elapsed_before = watched(&fake);

    // The standby takes over within the lease time: its first tick resumes
    // step 2 with the watched time the old leader stored (not from zero).
    let (first_tick, elapsed_after) = until("the standby's first tick", WITHIN, || async {
        let state = status(&fake).engine_state?;
        let at: k8s_openapi::jiff::Timestamp = state["last_tick"].as_str()?.parse().ok()?;
        (at > killed_wall && state["step"] == 1).then(|| (killed_at.elapsed(), watched(&fake)))
    })
    .await;
    assert_eq!(holder(&fake).as_deref(), Some(standby.identity.as_str()));
    assert!(
        elapsed_after >= elapsed_before,
        "watched time kept: {elapsed_before} ms stored, {elapsed_after} ms after the takeover"
    );

    // The standby takes over within the lease time and decides next.
    let took_over = until("the standby's first decision", WITHIN, || async {
        let r = records(&status(&fake));
        r.into_iter().find(|r| r.seq > last_seq)
    })
    .await;
    let failover = killed_at.elapsed();
    assert_eq!(holder(&fake).as_deref(), Some(standby.identity.as_str()));
    eprintln!(
        "failover: leader killed -> the other replica's first tick in {:.2}s, its first decision (step 2's 8 s done) in {:.2}s (lease {LEASE_SECONDS}s)",
        first_tick.as_secs_f64(),
        failover.as_secs_f64()
    );
    assert!(
        first_tick < Duration::from_secs(3 * LEASE_SECONDS + 2),
        "took over in {first_tick:?}"
    );
    assert!(
        failover < Duration::from_secs(4 * LEASE_SECONDS + 8),
        "took over in {failover:?}"
    );
    // It continued the same step: the next transition advances from step 2,
    // with the step's watched time kept (no restart at step 1).
    assert_eq!(took_over.from, before.last().expect("decisions").to);

    let done = until("the promotion", WITHIN, || async {
        let s = status(&fake);
        (s.phase == Some(RolloutPhase::Promoted)).then_some(s)
    })
    .await;
    let all = records(&done);
    let seqs: Vec<u64> = all.iter().map(|r| r.seq).collect();
    let expected: Vec<u64> = (1..=all.len() as u64).collect();
    assert_eq!(seqs, expected, "every decision once, in order");
    assert_eq!(
        transitions(&all),
        [
            Action::Start,
            Action::Advance,
            Action::Advance,
            Action::Promote
        ],
        "{all:?}"
    );
    assert!(
        all.iter().filter(|r| r.seq > last_seq).all(|r| r.step >= 2),
        "no step was repeated after the failover"
    );

    // Every alert reaches the receiver once: one per decision and event.
    let keys = until("four alerts", WITHIN, || async {
        let keys: Vec<String> = receiver
            .accepted()
            .iter()
            .filter_map(|r| r.header("idempotency-key"))
            .collect();
        (keys.len() >= 4).then_some(keys)
    })
    .await;
    let mut unique = keys.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        keys.len(),
        "an alert was sent twice: {keys:?}"
    );
    let events: Vec<&str> = keys.iter().filter_map(|k| k.rsplit('/').next()).collect();
    assert_eq!(
        events,
        ["started", "step_advanced", "step_advanced", "promoted"],
        "{keys:?}"
    );

    // The promotion finishes: the primary runs v2, traffic is back on it.
    until("the primary on v2 with all traffic", WITHIN, || async {
        let primary = fake.object("apps/v1", "Deployment", "shop", "checkout-primary")?;
        let labels = &primary["spec"]["template"]["metadata"]["labels"];
        let weights = route_weights(&fake);
        (labels["app.kubernetes.io/version"] == "v2"
            && weights.get("checkout-canary") == Some(&0)
            && weights.get("checkout-primary") == Some(&100))
        .then_some(())
    })
    .await;

    let mut standby = standby;
    if let Some(stop) = standby.stop.take() {
        let _ = stop.send(());
    }
    let stopped = tokio::time::timeout(Duration::from_secs(20), standby.task).await;
    assert!(stopped.is_ok(), "the replica stops on shutdown");
}
