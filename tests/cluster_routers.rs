//! The cluster routers against the fake API server: they set a weight, read
//! back what the API server holds (so a hand edit is seen and corrected),
//! and report health from the Deployments.

mod cluster_support;

use canaryd::cluster::fake::FakeApiServer;
use canaryd::cluster::router::{GatewayApiRouter, ReplicasRouter, SmiRouter, Tracks};
use canaryd::ports::TrafficRouter;
use canaryd::spec::units::Weight;
use cluster_support::{DEPLOY, call, create, deployment, get_deployment, roll_out};
use http::Method;
use kube::api::Api;
use serde_json::{Value, json};

const ROUTES: &str = "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes";
const SPLITS: &str = "/apis/split.smi-spec.io/v1alpha2/namespaces/shop/trafficsplits";

fn w(text: &str) -> Weight {
    Weight::parse(text).expect("weight")
}

fn setup() -> (FakeApiServer, Tracks) {
    let fake = FakeApiServer::new();
    create(&fake, DEPLOY, deployment("checkout-primary", 3, "app:v1"));
    create(&fake, DEPLOY, deployment("checkout", 3, "app:v2"));
    let tracks = Tracks {
        api: Api::namespaced(fake.client(), "shop"),
        stable: "checkout-primary".into(),
        canary: "checkout".into(),
    };
    (fake, tracks)
}

fn route() -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": { "name": "checkout" },
        "spec": {
            "parentRefs": [{ "name": "public" }],
            "hostnames": ["shop.example"],
            "rules": [
                { "matches": [{ "path": { "type": "PathPrefix", "value": "/static" } }], "backendRefs": [{ "name": "static", "port": 80 }] },
                { "backendRefs": [{ "name": "checkout-primary", "port": 8080 }, { "name": "checkout-canary", "port": 8080, "weight": 0 }] }
            ]
        }
    })
}

fn gateway(fake: &FakeApiServer, tracks: Tracks) -> GatewayApiRouter {
    GatewayApiRouter::new(
        fake.client(),
        "shop",
        "checkout",
        "checkout-primary",
        "checkout-canary",
        tracks,
    )
}

#[tokio::test]
async fn the_gateway_router_sets_the_weight_and_leaves_everything_else_of_the_route_alone() {
    let (fake, tracks) = setup();
    create(&fake, ROUTES, route());
    let router = gateway(&fake, tracks);
    assert_eq!(
        router.weight().await.expect("read"),
        Weight::ZERO,
        "an absent weight counts as 1 against 0"
    );
    router.set_weight(w("5%")).await.expect("set");
    assert_eq!(router.weight().await.expect("read"), w("5%"));
    let stored = fake
        .object(
            "gateway.networking.k8s.io/v1",
            "HTTPRoute",
            "shop",
            "checkout",
        )
        .expect("route");
    let mut expected = route()["spec"].clone();
    expected["rules"][1]["backendRefs"][0]["weight"] = json!(95);
    expected["rules"][1]["backendRefs"][1]["weight"] = json!(5);
    assert_eq!(stored["spec"], expected, "only the two weights changed");
    let rv = fake.resource_version();
    router.set_weight(w("5%")).await.expect("set again");
    assert_eq!(
        fake.resource_version(),
        rv,
        "setting the same weight writes nothing"
    );
}

#[tokio::test]
async fn a_hand_edit_of_the_route_is_read_back_and_corrected() {
    let (fake, tracks) = setup();
    create(&fake, ROUTES, route());
    let router = gateway(&fake, tracks);
    router.set_weight(w("5%")).await.expect("set");
    call(
        &fake,
        Method::PATCH,
        &format!("{ROUTES}/checkout?fieldManager=kubectl-edit"),
        "application/json-patch+json",
        &json!([
            { "op": "replace", "path": "/spec/rules/1/backendRefs/0/weight", "value": 50 },
            { "op": "replace", "path": "/spec/rules/1/backendRefs/1/weight", "value": 50 }
        ]),
        200,
    );
    assert_eq!(
        router.weight().await.expect("read"),
        w("50%"),
        "the edit is seen"
    );
    router.set_weight(w("5%")).await.expect("corrected");
    assert_eq!(router.weight().await.expect("read"), w("5%"));
}

#[tokio::test]
async fn a_route_without_both_backends_is_an_error_that_names_them() {
    let (fake, tracks) = setup();
    let mut r = route();
    r["spec"]["rules"][1]["backendRefs"][1]["name"] = json!("someone-else");
    create(&fake, ROUTES, r);
    let err = gateway(&fake, tracks)
        .set_weight(w("5%"))
        .await
        .expect_err("no rule to shift");
    let text = err.to_string();
    assert!(
        text.contains("checkout-primary") && text.contains("checkout-canary"),
        "{text}"
    );
}

#[tokio::test]
async fn the_smi_router_creates_its_split_and_takes_a_hand_edit_back() {
    let (fake, tracks) = setup();
    let router = SmiRouter::new(
        fake.client(),
        "shop",
        "checkout",
        "checkout",
        "checkout-primary",
        "checkout-canary",
        tracks,
    );
    assert!(router.weight().await.is_err(), "no split yet");
    router.set_weight(w("10%")).await.expect("created");
    assert_eq!(router.weight().await.expect("read"), w("10%"));
    let split = fake
        .object(
            "split.smi-spec.io/v1alpha2",
            "TrafficSplit",
            "shop",
            "checkout",
        )
        .expect("split");
    assert_eq!(split["spec"]["service"], "checkout");
    call(
        &fake,
        Method::PATCH,
        &format!("{SPLITS}/checkout?fieldManager=kubectl-edit"),
        "application/merge-patch+json",
        &json!({
            "spec": { "backends": [{ "service": "checkout-primary", "weight": 1 }, { "service": "checkout-canary", "weight": 1 }] }
        }),
        200,
    );
    assert_eq!(router.weight().await.expect("read"), w("50%"));
    router.set_weight(w("10%")).await.expect("forced back");
    assert_eq!(router.weight().await.expect("read"), w("10%"));
    let split = fake
        .object(
            "split.smi-spec.io/v1alpha2",
            "TrafficSplit",
            "shop",
            "checkout",
        )
        .expect("split");
    let owners: Vec<&str> = split["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["fieldsV1"]["f:spec"]["f:backends"].is_object())
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert_eq!(owners, ["canaryd"], "canaryd owns the backends again");
}

#[tokio::test]
async fn the_replica_router_shares_the_replicas_at_a_resolution_of_one_pod() {
    let (fake, tracks) = setup();
    let router = ReplicasRouter::new(tracks, 10);
    router.set_weight(w("5%")).await.expect("set");
    let replicas = |name: &str| get_deployment(&fake, name)["spec"]["replicas"].as_i64();
    assert_eq!(
        (replicas("checkout-primary"), replicas("checkout")),
        (Some(9), Some(1)),
        "5% of 10 pods rounds to one"
    );
    assert_eq!(
        router.weight().await.expect("read"),
        w("10%"),
        "read back at the resolution"
    );
    assert!(router.same_weight(w("5%"), w("10%")));
    assert!(!router.same_weight(w("5%"), w("20%")));
    router.set_weight(w("50%")).await.expect("set");
    assert_eq!(
        (replicas("checkout-primary"), replicas("checkout")),
        (Some(5), Some(5))
    );
    router.set_weight(Weight::ZERO).await.expect("cut");
    assert_eq!(
        (replicas("checkout-primary"), replicas("checkout")),
        (Some(10), Some(0))
    );
    assert_eq!(router.weight().await.expect("read"), Weight::ZERO);
}

#[tokio::test]
async fn health_calls_a_track_ready_only_when_every_wanted_pod_is_updated_and_available() {
    let (fake, tracks) = setup();
    roll_out(&fake, "checkout-primary", 3);
    let health = tracks.health().await;
    assert!(health.stable);
    assert!(
        !health.canary,
        "no status yet: the Deployment controller has not seen it"
    );
    roll_out(&fake, "checkout", 2);
    assert!(!tracks.health().await.canary, "2 of 3 pods available");
    roll_out(&fake, "checkout", 3);
    assert!(tracks.health().await.canary);
    // A new template: generation moves on, the controller has not observed it yet.
    call(
        &fake,
        Method::PATCH,
        &format!("{DEPLOY}/checkout"),
        "application/merge-patch+json",
        &json!({
            "spec": { "template": { "spec": { "containers": [{ "name": "app", "image": "app:v3" }] } } }
        }),
        200,
    );
    assert!(
        !tracks.health().await.canary,
        "a canary rolling out a new template is not ready"
    );
    roll_out(&fake, "checkout", 3);
    assert!(tracks.health().await.canary);
    call(
        &fake,
        Method::PATCH,
        &format!("{DEPLOY}/checkout"),
        "application/merge-patch+json",
        &json!({ "spec": { "replicas": 0 } }),
        200,
    );
    roll_out(&fake, "checkout", 0);
    assert!(
        !tracks.health().await.canary,
        "a canary scaled to zero is not ready"
    );
}
