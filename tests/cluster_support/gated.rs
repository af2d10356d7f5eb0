//! The cluster e2e stack with real gates, shared by `tests/cluster_rollback.rs`,
//! `tests/cluster_promotion.rs` and `tests/cluster_failover_gated.rs`: a real
//! Prometheus scraping two sample apps (stable v1, canary v2, the `http-red`
//! labels), a webhook receiver,
//! the fake API server with a gated Rollout of `checkout`, the test playing
//! the mesh and the Deployment controller, and two cluster-mode replicas.
//! The including test declares `mod harness` and `mod replicas` at its root.

use std::net::SocketAddr;
use std::time::Duration;

use canaryd::cluster::crd::RolloutStatus;
use canaryd::cluster::fake::FakeApiServer;
use canaryd::cluster::state::record::records;
use canaryd::engine::Action;
use canaryd::sample::SampleApp;
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, ApiResource, DynamicObject, WatchEvent, WatchParams};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::harness::daemon::fast;
use crate::harness::receiver::Receiver;
use crate::harness::{Prometheus, sample_app};
use crate::replicas::*;

/// Requests a second the mesh sends: 20 a second reach a canary at 20%.
pub const RPS: u32 = 100;

/// The Rollout of `checkout` with a promotion gate on step 1 (20%, 3 s),
/// step 2 at 50% for `step_2`, and abort conditions, judged by the `http-red` policy on the real Prometheus.
pub fn seed_gated(fake: &FakeApiServer, alerts_file: &str, prometheus: &str, step_2: &str) {
    seed_workload(fake);
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
                        { "deploy": "50%", "duration": step_2 },
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
pub fn play_mesh(fake: FakeApiServer, stable: SocketAddr, canary: SocketAddr) -> JoinHandle<()> {
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
pub const BY_TEST: &str = "by=test";

/// A client for the test's own reads: each request carries [`BY_TEST`] in
/// its query (the fake ignores it), so the log tells them from canaryd's.
pub fn test_client(fake: &FakeApiServer) -> kube::Client {
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

pub fn route_api(fake: &FakeApiServer) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: "gateway.networking.k8s.io".into(),
        version: "v1".into(),
        api_version: "gateway.networking.k8s.io/v1".into(),
        kind: "HTTPRoute".into(),
        plural: "httproutes".into(),
    };
    Api::namespaced_with(test_client(fake), "shop", &resource)
}

pub fn rollout_api(fake: &FakeApiServer) -> Api<DynamicObject> {
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
pub fn first_change(
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

pub fn canary_weight_zero(route: &Value) -> bool {
    route["spec"]["rules"][0]["backendRefs"]
        .as_array()
        .is_some_and(|refs| {
            refs.iter()
                .any(|b| b["name"] == "checkout-canary" && b["weight"] == 0)
        })
}

pub fn status_rolled_back(rollout: &Value) -> bool {
    rollout["status"]["phase"] == "RolledBack"
}

/// The Events about Rollout `checkout`: (type, reason).
pub async fn events(fake: &FakeApiServer) -> Vec<(String, String)> {
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

/// Everything one gated cluster e2e runs against; dropping it stops it all.
pub struct GatedStack {
    /// The fake API server.
    pub fake: FakeApiServer,
    /// The canary's sample app (its fault switch: `/admin/behaviour`).
    pub canary: SampleApp,
    /// The chat receiver stand-in.
    pub receiver: Receiver,
    /// The real Prometheus.
    pub prom: Prometheus,
    _stable: SampleApp,
    _dir: tempfile::TempDir,
    _tasks: Vec<JoinHandle<()>>,
    /// The two cluster-mode replicas (a test may kill one).
    pub replicas: Vec<Replica>,
}

impl GatedStack {
    /// Starts everything, with step 2 lasting `step_2`, and releases v2
    /// once the leader has created the primary.
    pub async fn start(step_2: &str) -> GatedStack {
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
        seed_gated(&fake, &url_file.display().to_string(), prom.url(), step_2);
        let tasks = vec![
            play_deployment_controller(fake.clone()),
            play_mesh(fake.clone(), stable.addr(), canary.addr()),
        ];
        let replicas = vec![replica(&fake, "pod-a"), replica(&fake, "pod-b")];
        until("a leader", WITHIN, || async { holder(&fake) }).await;
        until("the primary", WITHIN, || async {
            fake.object("apps/v1", "Deployment", "shop", "checkout-primary")
        })
        .await;
        release(&fake, "v2");
        GatedStack {
            fake,
            canary,
            receiver,
            prom,
            _stable: stable,
            _dir: dir,
            _tasks: tasks,
            replicas,
        }
    }
}

impl Drop for GatedStack {
    fn drop(&mut self) {
        for task in &self._tasks {
            task.abort();
        }
        for r in &self.replicas {
            r.task.abort();
        }
    }
}

/// Step 1's advance is recorded with its promotion gate `error_rate < 5%`
/// passed, judged on the canary's (v2's) series.
pub fn assert_step_1_gate_passed_on_the_canary(status: &RolloutStatus) {
    let advance = records(status)
        .into_iter()
        .find(|r| r.action == Action::Advance)
        .expect("an advance is recorded");
    let gate = advance
        .gates
        .iter()
        .find(|g| g.name == "error_rate < 5%")
        .expect("step 1's promotion gate is in the record");
    assert_eq!(
        serde_json::to_value(gate).expect("a gate")["verdict"],
        "pass",
        "{gate:?}"
    );
    assert!(gate.query.contains(r#"version="v2""#), "{}", gate.query);
}
