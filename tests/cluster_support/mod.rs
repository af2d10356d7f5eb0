//! Helpers shared by the cluster-mode tests: seeding the fake API server
//! and playing the Deployment controller.
#![allow(dead_code)]

use canaryd::cluster::fake::FakeApiServer;
use http::Method;
use serde_json::{Value, json};

pub mod rbac;

/// Deployments in the test namespace.
pub const DEPLOY: &str = "/apis/apps/v1/namespaces/shop/deployments";

/// A request to the fake; panics unless the answer is `code`.
pub fn call(fake: &FakeApiServer, method: Method, uri: &str, ct: &str, body: &Value, code: u16) {
    let response = fake.handle(
        &method,
        &uri.parse().expect("uri"),
        Some(ct),
        body.to_string().as_bytes(),
    );
    assert_eq!(response.status().as_u16(), code, "{method} {uri}");
}

/// Creates an object (as `kubectl create`).
pub fn create(fake: &FakeApiServer, collection: &str, object: Value) {
    call(
        fake,
        Method::POST,
        &format!("{collection}?fieldManager=kubectl-create"),
        "application/json",
        &object,
        201,
    );
}

/// A Deployment of `image` with `replicas`, selecting `app: <name>`.
pub fn deployment(name: &str, replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": name, "labels": { "app": name } },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name, "app.kubernetes.io/part-of": name } },
                "spec": { "containers": [{ "name": "app", "image": image }] }
            }
        }
    })
}

/// A Deployment object as the fake holds it.
pub fn get_deployment(fake: &FakeApiServer, name: &str) -> Value {
    fake.object("apps/v1", "Deployment", "shop", name)
        .unwrap_or_else(|| panic!("Deployment {name} exists"))
}

/// Plays the Deployment controller: `available` of the wanted pods are
/// up to date and available, and the current generation is observed.
pub fn roll_out(fake: &FakeApiServer, name: &str, available: i64) {
    let d = get_deployment(fake, name);
    let wanted = d["spec"]["replicas"].as_i64().unwrap_or(1);
    fake.set_status(
        "apps/v1",
        "Deployment",
        "shop",
        name,
        json!({
            "observedGeneration": d["metadata"]["generation"],
            "replicas": wanted,
            "updatedReplicas": wanted,
            "availableReplicas": available,
            "readyReplicas": available,
        }),
    )
    .expect("status set");
}

/// The image of a Deployment's first container.
pub fn image(d: &Value) -> String {
    d["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}
