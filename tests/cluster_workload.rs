//! The primary/canary workload against the fake API server.

mod cluster_support;

use canaryd::cluster::fake::FakeApiServer;
use canaryd::cluster::workload::{Promotion, Workload};
use cluster_support::{DEPLOY, call, create, deployment, get_deployment, image, roll_out};
use http::Method;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::json;

fn setup() -> (FakeApiServer, Workload) {
    let fake = FakeApiServer::new();
    create(&fake, DEPLOY, deployment("checkout", 3, "app:v1"));
    let owner = OwnerReference {
        api_version: "canaryd.dev/v1alpha1".into(),
        kind: "Rollout".into(),
        name: "checkout".into(),
        uid: "rollout-uid".into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let workload = Workload::new(fake.client(), "shop", "checkout").with_owner(owner);
    (fake, workload)
}

fn new_image(fake: &FakeApiServer, image: &str) {
    call(
        fake,
        Method::PATCH,
        &format!("{DEPLOY}/checkout?fieldManager=kubectl"),
        "application/merge-patch+json",
        &json!({
            "spec": { "template": { "spec": { "containers": [{ "name": "app", "image": image }] } } }
        }),
        200,
    );
}

#[tokio::test]
async fn the_primary_is_a_clone_of_the_target_with_its_own_selector() {
    let (fake, workload) = setup();
    workload.ensure_primary().await.expect("created");
    let primary = get_deployment(&fake, "checkout-primary");
    assert_eq!(
        primary["spec"]["selector"]["matchLabels"],
        json!({ "app": "checkout-primary" })
    );
    let labels = &primary["spec"]["template"]["metadata"]["labels"];
    assert_eq!(
        labels["app"], "checkout-primary",
        "pods match the primary's selector only"
    );
    assert_eq!(
        labels["app.kubernetes.io/part-of"], "checkout",
        "labels outside the selector are kept"
    );
    assert_eq!(image(&primary), "app:v1");
    assert_eq!(primary["spec"]["replicas"], 3);
    assert_eq!(primary["metadata"]["ownerReferences"][0]["kind"], "Rollout");
    assert_eq!(
        primary["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "canaryd"
    );
    let observed = workload.observe().await.expect("observed");
    assert!(
        !observed.new_canary(),
        "the running version is the stable one"
    );
    assert_eq!(
        observed.stable_version,
        Some(observed.canary_version.clone())
    );
    let rv = fake.resource_version();
    workload.ensure_primary().await.expect("again");
    assert_eq!(
        fake.resource_version(),
        rv,
        "an existing primary is left alone"
    );
}

#[tokio::test]
async fn a_new_pod_template_on_the_target_is_a_new_canary() {
    let (fake, workload) = setup();
    workload.ensure_primary().await.expect("created");
    let before = workload.observe().await.expect("observed");
    // A change outside the template (scaling) is not a new version.
    call(
        &fake,
        Method::PATCH,
        &format!("{DEPLOY}/checkout"),
        "application/merge-patch+json",
        &json!({ "spec": { "replicas": 4 } }),
        200,
    );
    assert!(!workload.observe().await.expect("observed").new_canary());
    new_image(&fake, "app:v2");
    let after = workload.observe().await.expect("observed");
    assert!(after.new_canary());
    assert_ne!(after.canary_hash, before.canary_hash);
    assert_eq!(after.stable_hash, before.stable_hash);
    // The version label, when the template has one, is the version.
    call(
        &fake,
        Method::PATCH,
        &format!("{DEPLOY}/checkout"),
        "application/merge-patch+json",
        &json!({
            "spec": { "template": { "metadata": { "labels": { "app.kubernetes.io/version": "2.0.1" } } } }
        }),
        200,
    );
    assert_eq!(
        workload.observe().await.expect("observed").canary_version,
        "2.0.1"
    );
}

#[tokio::test]
async fn promotion_copies_the_canary_template_waits_for_the_primary_then_scales_the_canary_down() {
    let (fake, workload) = setup();
    workload.ensure_primary().await.expect("created");
    roll_out(&fake, "checkout-primary", 3);
    new_image(&fake, "app:v2");
    assert_eq!(
        workload.promote(3).await.expect("promote"),
        Promotion::Waiting
    );
    let primary = get_deployment(&fake, "checkout-primary");
    assert_eq!(
        image(&primary),
        "app:v2",
        "the canary's template is in the primary"
    );
    assert_eq!(
        get_deployment(&fake, "checkout")["spec"]["replicas"],
        3,
        "the canary serves until the primary is available"
    );
    assert_eq!(
        workload.promote(3).await.expect("promote"),
        Promotion::Waiting,
        "the Deployment controller has not rolled the primary yet"
    );
    roll_out(&fake, "checkout-primary", 3);
    assert_eq!(workload.promote(3).await.expect("promote"), Promotion::Done);
    assert_eq!(get_deployment(&fake, "checkout")["spec"]["replicas"], 0);
    let observed = workload.observe().await.expect("observed");
    assert!(
        !observed.new_canary(),
        "the promoted template is the stable one"
    );
    assert!(observed.stable_ready);
}

#[tokio::test]
async fn a_rollback_scales_the_canary_to_zero_and_leaves_the_primary_untouched() {
    let (fake, workload) = setup();
    workload.ensure_primary().await.expect("created");
    new_image(&fake, "app:v2");
    let primary_before = get_deployment(&fake, "checkout-primary");
    workload.rollback().await.expect("rollback");
    assert_eq!(get_deployment(&fake, "checkout")["spec"]["replicas"], 0);
    assert_eq!(
        image(&get_deployment(&fake, "checkout")),
        "app:v2",
        "the canary's template stays for a retry"
    );
    assert_eq!(get_deployment(&fake, "checkout-primary"), primary_before);
    let observed = workload.observe().await.expect("observed");
    assert!(!observed.canary_ready);
    // Starting it again scales it back up.
    workload.start_canary(3).await.expect("start");
    assert_eq!(get_deployment(&fake, "checkout")["spec"]["replicas"], 3);
}
