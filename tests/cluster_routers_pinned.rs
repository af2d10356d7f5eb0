//! Request pinning (controller-rs style): the exact method, URI (with
//! `fieldManager` and `force`) and body canaryd sends for each router and
//! workload operation, against a `tower-test` mock API server.

#[path = "cluster_support/verifier.rs"]
#[allow(dead_code)]
mod verifier;

use canaryd::cluster::crd::{Rollout, RolloutStatus};
use canaryd::cluster::leader::write_status;
use canaryd::cluster::router::{GatewayApiRouter, ReplicasRouter, SmiRouter, Tracks};
use canaryd::cluster::workload::Workload;
use canaryd::ports::TrafficRouter;
use canaryd::spec::units::Weight;
use kube::Client;
use kube::api::Api;
use serde_json::{Value, json};
use verifier::{Expect, expect};

/// The scenarios: which calls each operation makes.
enum Scenario {
    /// A route at 100/0 is set to 5%: read, then one guarded JSON patch.
    GatewayShiftsFivePercent,
    /// A route already at 5%: read only.
    GatewayAlreadyThere,
    /// No split yet: read (404), then a forced server-side apply of the whole split.
    SmiCreatesItsSplit,
    /// 10 replicas at 10 %: the canary is scaled first, then the primary.
    ReplicasScaleCanaryFirst,
    /// Rollback: the canary's replicas to zero, forced apply; the primary untouched.
    WorkloadRollback,
    /// A status write carries the resourceVersion it read.
    FencedStatusWrite,
}

const ROUTE: &str = "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/checkout";
const SPLIT: &str = "/apis/split.smi-spec.io/v1alpha2/namespaces/shop/trafficsplits/checkout";
const DEPLOY: &str = "/apis/apps/v1/namespaces/shop/deployments";

fn route(stable: i64, canary: i64) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": { "name": "checkout", "namespace": "shop", "resourceVersion": "7" },
        "spec": { "rules": [
            { "backendRefs": [{ "name": "static", "port": 80 }] },
            { "backendRefs": [
                { "name": "checkout-primary", "port": 80, "weight": stable },
                { "name": "checkout-canary", "port": 80, "weight": canary }
            ] }
        ] }
    })
}

fn deployment(name: &str, replicas: i64) -> Value {
    json!({ "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": name, "namespace": "shop" }, "spec": { "replicas": replicas, "selector": {}, "template": {} } })
}

fn not_found() -> Value {
    json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found" })
}

impl Scenario {
    fn calls(&self) -> Vec<Expect> {
        match self {
            Scenario::GatewayShiftsFivePercent => vec![
                expect("GET", ROUTE).answers(200, route(100, 0)),
                expect("PATCH", format!("{ROUTE}?&fieldManager=canaryd"))
                    .sends("application/json-patch+json", json!([
                        { "op": "test", "path": "/spec/rules/1/backendRefs/0/name", "value": "checkout-primary" },
                        { "op": "test", "path": "/spec/rules/1/backendRefs/1/name", "value": "checkout-canary" },
                        { "op": "add", "path": "/spec/rules/1/backendRefs/0/weight", "value": 95 },
                        { "op": "add", "path": "/spec/rules/1/backendRefs/1/weight", "value": 5 }
                    ]))
                    .answers(200, route(95, 5)),
            ],
            Scenario::GatewayAlreadyThere => vec![expect("GET", ROUTE).answers(200, route(95, 5))],
            Scenario::SmiCreatesItsSplit => vec![
                expect("GET", SPLIT).answers(404, not_found()),
                expect("PATCH", format!("{SPLIT}?&force=true&fieldManager=canaryd"))
                    .sends("application/apply-patch+yaml", json!({
                        "apiVersion": "split.smi-spec.io/v1alpha2", "kind": "TrafficSplit",
                        "metadata": { "name": "checkout" },
                        "spec": { "service": "checkout", "backends": [
                            { "service": "checkout-primary", "weight": 90 },
                            { "service": "checkout-canary", "weight": 10 }
                        ] }
                    }))
                    .answers(201, json!({ "apiVersion": "split.smi-spec.io/v1alpha2", "kind": "TrafficSplit", "metadata": { "name": "checkout" }, "spec": { "service": "checkout", "backends": [] } })),
            ],
            Scenario::ReplicasScaleCanaryFirst => vec![
                expect("GET", format!("{DEPLOY}/checkout")).answers(200, deployment("checkout", 0)),
                expect("PATCH", format!("{DEPLOY}/checkout?&force=true&fieldManager=canaryd"))
                    .sends("application/apply-patch+yaml", json!({ "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": "checkout" }, "spec": { "replicas": 1 } }))
                    .answers(200, deployment("checkout", 1)),
                expect("GET", format!("{DEPLOY}/checkout-primary")).answers(200, deployment("checkout-primary", 10)),
                expect("PATCH", format!("{DEPLOY}/checkout-primary?&force=true&fieldManager=canaryd"))
                    .sends("application/apply-patch+yaml", json!({ "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": "checkout-primary" }, "spec": { "replicas": 9 } }))
                    .answers(200, deployment("checkout-primary", 9)),
            ],
            Scenario::WorkloadRollback => vec![
                expect("PATCH", format!("{DEPLOY}/checkout?&force=true&fieldManager=canaryd"))
                    .sends("application/apply-patch+yaml", json!({ "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": "checkout" }, "spec": { "replicas": 0 } }))
                    .answers(200, deployment("checkout", 0)),
            ],
            Scenario::FencedStatusWrite => vec![
                expect("PUT", "/apis/canaryd.dev/v1alpha1/namespaces/shop/rollouts/checkout/status?&fieldManager=canaryd")
                    .sends("application/json", json!({
                        "apiVersion": "canaryd.dev/v1alpha1", "kind": "Rollout",
                        "metadata": { "name": "checkout", "namespace": "shop", "resourceVersion": "41" },
                        "spec": rollout_spec(),
                        "status": { "phase": "Progressing", "step": 1, "weight": 5.0 }
                    }))
                    .answers(200, json!({
                        "apiVersion": "canaryd.dev/v1alpha1", "kind": "Rollout",
                        "metadata": { "name": "checkout", "namespace": "shop", "resourceVersion": "42" },
                        "spec": rollout_spec(),
                        "status": { "phase": "Progressing", "step": 1, "weight": 5.0 }
                    })),
            ],
        }
    }
}

fn rollout_spec() -> Value {
    json!({
        "targetRef": { "kind": "Deployment", "name": "checkout" },
        "router": { "kind": "kubernetes-replicas", "replicas": 10 },
        "deploy": { "steps": [{ "deploy": "100%" }] }
    })
}

fn tracks(client: &Client) -> Tracks {
    Tracks {
        api: Api::namespaced(client.clone(), "shop"),
        stable: "checkout-primary".into(),
        canary: "checkout".into(),
    }
}

/// Runs `operation` on a client whose API server expects `scenario`'s calls,
/// then checks the scenario was served exactly (the operation drops every
/// clone of the client, so a call beyond the scenario's is seen).
async fn pinned<F, Fut>(scenario: Scenario, operation: F)
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    verifier::pinned(scenario.calls(), operation).await;
}

fn weight(text: &str) -> Weight {
    Weight::parse(text).expect("weight")
}

fn gateway(client: &Client) -> GatewayApiRouter {
    GatewayApiRouter::new(
        client.clone(),
        "shop",
        "checkout",
        "checkout-primary",
        "checkout-canary",
        tracks(client),
    )
}

#[tokio::test]
async fn the_gateway_router_patches_only_the_two_weights_guarded_by_their_names() {
    pinned(Scenario::GatewayShiftsFivePercent, |client| async move {
        gateway(&client)
            .set_weight(weight("5%"))
            .await
            .expect("set");
    })
    .await;
}

#[tokio::test]
async fn the_gateway_router_writes_nothing_when_the_route_already_has_the_weight() {
    pinned(Scenario::GatewayAlreadyThere, |client| async move {
        gateway(&client)
            .set_weight(weight("5%"))
            .await
            .expect("set");
    })
    .await;
}

#[tokio::test]
async fn the_smi_router_applies_its_whole_split_forced_as_canaryd() {
    pinned(Scenario::SmiCreatesItsSplit, |client| async move {
        let router = SmiRouter::new(
            client.clone(),
            "shop",
            "checkout",
            "checkout",
            "checkout-primary",
            "checkout-canary",
            tracks(&client),
        );
        router.set_weight(weight("10%")).await.expect("set");
    })
    .await;
}

#[tokio::test]
async fn the_replica_router_scales_the_canary_before_the_primary() {
    pinned(Scenario::ReplicasScaleCanaryFirst, |client| async move {
        ReplicasRouter::new(tracks(&client), 10)
            .set_weight(weight("10%"))
            .await
            .expect("set");
    })
    .await;
}

#[tokio::test]
async fn a_rollback_scales_only_the_canary_to_zero() {
    pinned(Scenario::WorkloadRollback, |client| async move {
        Workload::new(client, "shop", "checkout")
            .rollback()
            .await
            .expect("rollback");
    })
    .await;
}

#[tokio::test]
async fn a_status_write_carries_the_resource_version_it_read() {
    pinned(Scenario::FencedStatusWrite, |client| async move {
        let api: Api<Rollout> = Api::namespaced(client, "shop");
        let read: Rollout = serde_json::from_value(json!({
            "apiVersion": "canaryd.dev/v1alpha1", "kind": "Rollout",
            "metadata": { "name": "checkout", "namespace": "shop", "resourceVersion": "41" },
            "spec": rollout_spec()
        }))
        .expect("rollout");
        let status: RolloutStatus =
            serde_json::from_value(json!({ "phase": "Progressing", "step": 1, "weight": 5.0 }))
                .expect("status");
        let written = write_status(&api, &read, status).await.expect("written");
        assert_eq!(written.metadata.resource_version.as_deref(), Some("42"));
    })
    .await;
}
