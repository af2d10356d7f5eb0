//! The manifests in deploy/kubernetes: they parse, the kustomization lists
//! exactly the files there, the Deployment is what the README promises, and
//! the RBAC grants every request the cluster code makes — and nothing else.

mod cluster_support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use canaryd::cluster::crd::conditions::RolloutEvent;
use canaryd::cluster::crd::{Rollout, RolloutStatus};
use canaryd::cluster::fake::FakeApiServer;
use canaryd::cluster::leader::{LeaderConfig, start, write_status};
use canaryd::cluster::router::{GatewayApiRouter, ReplicasRouter, SmiRouter};
use canaryd::cluster::workload::Workload;
use canaryd::ports::TrafficRouter;
use canaryd::spec::units::Weight;
use cluster_support::rbac::{Grant, assert_granted, grants};
use cluster_support::{DEPLOY, create, deployment, roll_out};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::watcher;
use serde_json::{Value, json};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes");

fn documents(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(Path::new(DIR).join(file))
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    text.split("\n---")
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .map(|d| serde_saphyr::from_str::<Value>(d).unwrap_or_else(|e| panic!("{file}: {e}")))
        .collect()
}

#[test]
fn every_manifest_parses_and_the_kustomization_lists_exactly_the_files_there() {
    let kustomization = &documents("kustomization.yaml")[0];
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().expect("a path").to_string())
        .collect();
    let present: BTreeSet<String> = std::fs::read_dir(DIR)
        .expect("dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(listed, present);
    for file in &listed {
        for doc in documents(file) {
            assert!(
                doc["apiVersion"].is_string()
                    && doc["kind"].is_string()
                    && doc["metadata"]["name"].is_string(),
                "{file}: {doc}"
            );
        }
    }
}

#[test]
fn canaryd_runs_two_replicas_with_health_probes_and_its_metrics_are_scraped() {
    let d = &documents("deployment.yaml")[0];
    assert_eq!(d["spec"]["replicas"], 2);
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(
        d["spec"]["template"]["spec"]["serviceAccountName"],
        "canaryd"
    );
    let env: Vec<&str> = c["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(env.contains(&"POD_NAME"), "the leader identity");
    let args: Vec<&str> = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert_eq!(&args[..2], ["run", "--cluster"], "cluster mode: {args:?}");
    let service = &documents("service.yaml")[0];
    assert_eq!(service["spec"]["ports"][0]["name"], "http");
    let monitor = &documents("servicemonitor.yaml")[0];
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"],
        service["metadata"]["labels"]
    );
}

/// Runs every cluster component against the fake, as the controller will.
async fn exercise(fake: &FakeApiServer) {
    let client = fake.client();
    let workload = Workload::new(client.clone(), "shop", "checkout");
    workload.ensure_primary().await.expect("primary");
    roll_out(fake, "checkout-primary", 3);
    workload.observe().await.expect("observe");
    workload.start_canary(3).await.expect("start");
    let tracks = workload.tracks();
    let gateway = GatewayApiRouter::new(
        client.clone(),
        "shop",
        "checkout",
        "checkout-primary",
        "checkout-canary",
        tracks.clone(),
    );
    let smi = SmiRouter::new(
        client.clone(),
        "shop",
        "checkout",
        "checkout",
        "checkout-primary",
        "checkout-canary",
        tracks.clone(),
    );
    let replicas = ReplicasRouter::new(tracks, 4);
    let five = Weight::parse("5%").expect("weight");
    for router in [&gateway as &dyn TrafficRouter, &smi, &replicas] {
        router.set_weight(five).await.expect("set");
        router.weight().await.expect("read");
        router.health().await;
    }
    workload.promote(3).await.expect("promote");
    roll_out(fake, "checkout-primary", 3);
    workload.promote(3).await.expect("promote");
    workload.rollback().await.expect("rollback");

    let mut leader = start(
        client.clone(),
        &LeaderConfig {
            namespace: "canaryd".into(),
            lease: "canaryd-leader".into(),
            identity: "pod-a".into(),
            duration_seconds: 2,
            grace_seconds: 1,
        },
    )
    .await
    .expect("election");
    tokio::time::timeout(Duration::from_secs(10), leader.is_leader.wait_for(|v| *v))
        .await
        .expect("leads in time")
        .expect("open");

    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), "shop");
    let read = rollouts.get("checkout").await.expect("rollout");
    write_status(&rollouts, &read, RolloutStatus::default())
        .await
        .expect("status");
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "canaryd".into(),
            instance: None,
        },
    );
    let event = RolloutEvent {
        warning: true,
        reason: "InvalidSpec".into(),
        note: "spec.deploy: bad".into(),
        action: "Validate".into(),
    }
    .to_kube();
    let reference = read.object_ref(&());
    recorder.publish(&event, &reference).await.expect("event");
    recorder
        .publish(&event, &reference)
        .await
        .expect("repeated event");

    // The controller's watches: a change after the initial list proves the watch.
    let deployments: Api<Deployment> = Api::all(client.clone());
    let mut rollout_events = Box::pin(watcher(
        Api::<Rollout>::all(client.clone()),
        watcher::Config::default(),
    ));
    let mut deployment_events = Box::pin(watcher(deployments, watcher::Config::default()));
    tokio::time::timeout(Duration::from_secs(5), async {
        while !matches!(
            rollout_events.next().await,
            Some(Ok(watcher::Event::InitDone))
        ) {}
        while !matches!(
            deployment_events.next().await,
            Some(Ok(watcher::Event::InitDone))
        ) {}
    })
    .await
    .expect("both lists done");
    rollouts
        .patch(
            "checkout",
            &PatchParams {
                field_manager: Some("test-user".into()),
                ..PatchParams::default()
            },
            &Patch::Merge(json!({ "metadata": { "labels": { "touched": "yes" } } })),
        )
        .await
        .expect("touch");
    let deploys: Api<Deployment> = Api::namespaced(client, "shop");
    deploys
        .patch(
            "checkout",
            &PatchParams {
                field_manager: Some("test-user".into()),
                ..PatchParams::default()
            },
            &Patch::Merge(json!({ "metadata": { "labels": { "touched": "yes" } } })),
        )
        .await
        .expect("touch");
    tokio::time::timeout(Duration::from_secs(5), rollout_events.next())
        .await
        .expect("watched");
    tokio::time::timeout(Duration::from_secs(5), deployment_events.next())
        .await
        .expect("watched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_grants_every_request_the_cluster_code_makes_and_nothing_more() {
    let fake = FakeApiServer::new();
    create(&fake, DEPLOY, deployment("checkout", 3, "app:v1"));
    create(
        &fake,
        "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes",
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": { "name": "checkout" },
            "spec": { "rules": [{ "backendRefs": [{ "name": "checkout-primary" }, { "name": "checkout-canary", "weight": 0 }] }] }
        }),
    );
    let rollouts: Api<Rollout> = Api::namespaced(fake.client(), "shop");
    let rollout: Rollout = serde_json::from_value(json!({
        "apiVersion": "canaryd.dev/v1alpha1", "kind": "Rollout", "metadata": { "name": "checkout" },
        "spec": { "targetRef": { "kind": "Deployment", "name": "checkout" }, "router": { "kind": "kubernetes-replicas", "replicas": 4 }, "deploy": { "steps": [{ "deploy": "100%" }] } }
    }))
    .expect("rollout");
    rollouts
        .create(&PostParams::default(), &rollout)
        .await
        .expect("created");
    let setup = fake.requests().len();

    exercise(&fake).await;

    let requests: Vec<String> = fake.requests().split_off(setup);
    // Requests the test makes to play a user are not canaryd's.
    let used = assert_granted(
        requests
            .iter()
            .filter(|r| !r.contains("fieldManager=test-user")),
    );
    let (cluster, namespaced) = (grants("ClusterRole"), grants("Role"));
    let all: BTreeSet<Grant> = cluster.union(&namespaced).cloned().collect();
    let unused: Vec<&Grant> = all.difference(&used).collect();
    assert!(
        unused.is_empty(),
        "rbac.yaml grants what no code uses: {unused:?}"
    );
}
