//! Leader election on a Lease against the fake API server, and the fenced
//! status write. kube-lease-manager compares lease times with the wall clock
//! (SystemTime), so these run in real time with a 2 s lease and wait on
//! conditions with bounded timeouts.

use std::time::{Duration, Instant};

use canaryd::cluster::ClusterError;
use canaryd::cluster::crd::{Rollout, RolloutPhase, RolloutStatus};
use canaryd::cluster::fake::FakeApiServer;
use canaryd::cluster::leader::{
    LeaderConfig, Leadership, start, write_status, write_status_as_leader,
};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use kube::runtime::wait::await_condition;
use serde_json::json;
use tokio::sync::watch;

const LEASE_SECONDS: u64 = 2;

fn config(identity: &str) -> LeaderConfig {
    LeaderConfig {
        namespace: "canaryd".into(),
        lease: "canaryd-leader".into(),
        identity: identity.into(),
        duration_seconds: LEASE_SECONDS,
        grace_seconds: 1,
    }
}

/// Waits until `rx` reads `want`.
async fn until(rx: &mut watch::Receiver<bool>, want: bool, within: Duration) -> bool {
    tokio::time::timeout(within, rx.wait_for(|v| *v == want))
        .await
        .is_ok_and(|r| r.is_ok())
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

fn renew_time(fake: &FakeApiServer) -> Option<String> {
    fake.object(
        "coordination.k8s.io/v1",
        "Lease",
        "canaryd",
        "canaryd-leader",
    )
    .and_then(|l| l["spec"]["renewTime"].as_str().map(String::from))
}

/// Two candidates; returns (leader, follower) once one holds the lease.
async fn elect(fake: &FakeApiServer) -> (Leadership, Leadership) {
    let a = start(fake.client(), &config("pod-a"))
        .await
        .expect("a starts");
    let b = start(fake.client(), &config("pod-b"))
        .await
        .expect("b starts");
    let (mut a_rx, mut b_rx) = (a.is_leader.clone(), b.is_leader.clone());
    let a_won = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::select! {
            _ = a_rx.wait_for(|v| *v) => true,
            _ = b_rx.wait_for(|v| *v) => false,
        }
    })
    .await
    .expect("somebody becomes leader within 10 s");
    if a_won { (a, b) } else { (b, a) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_candidates_exactly_one_leads_and_keeps_renewing() {
    let fake = FakeApiServer::new();
    let (leader, follower) = elect(&fake).await;
    assert_eq!(holder(&fake).as_deref(), Some(leader.identity.as_str()));
    // Across a renewal (the follower had its chances meanwhile), still one leader.
    let first: Option<k8s_openapi::jiff::Timestamp> =
        renew_time(&fake).map(|t| t.parse().expect("a timestamp"));
    assert!(first.is_some(), "the leader wrote its renewTime");
    let leases: Api<Lease> = Api::namespaced(fake.client(), "canaryd");
    let renewed = tokio::time::timeout(
        Duration::from_secs(10),
        await_condition(leases, "canaryd-leader", move |l: Option<&Lease>| {
            l.and_then(|l| l.spec.as_ref())
                .and_then(|s| s.renew_time.as_ref())
                .map(|t| t.0)
                != first
        }),
    )
    .await;
    assert!(renewed.is_ok(), "the leader renews its lease");
    assert!(*leader.is_leader.borrow());
    assert!(!*follower.is_leader.borrow());
    assert_eq!(holder(&fake).as_deref(), Some(leader.identity.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_leader_stops_renewing_the_other_takes_over_after_the_lease_expires() {
    let fake = FakeApiServer::new();
    let (leader, mut follower) = elect(&fake).await;
    // A crash: renewals stop, the lease is not released.
    leader.task.abort();
    let stopped = Instant::now();
    let last_renewal = renew_time(&fake);
    assert!(
        until(
            &mut follower.is_leader,
            true,
            Duration::from_secs(4 * LEASE_SECONDS)
        )
        .await,
        "the follower takes over"
    );
    let took = stopped.elapsed();
    assert_eq!(holder(&fake).as_deref(), Some(follower.identity.as_str()));
    assert_ne!(renew_time(&fake), last_renewal);
    // Not before the old lease ran out, and within the lease plus the
    // follower's retry (up to 1 s of random back-off before it locks).
    assert!(
        took <= Duration::from_secs(LEASE_SECONDS + 2),
        "took {took:?}"
    );
}

fn rollout() -> Rollout {
    serde_json::from_value(json!({
        "apiVersion": "canaryd.dev/v1alpha1", "kind": "Rollout",
        "metadata": { "name": "checkout", "namespace": "shop" },
        "spec": {
            "targetRef": { "kind": "Deployment", "name": "checkout" },
            "router": { "kind": "kubernetes-replicas", "replicas": 10 },
            "deploy": { "steps": [{ "deploy": "100%" }] }
        }
    }))
    .expect("rollout")
}

fn status(phase: RolloutPhase, step: u32) -> RolloutStatus {
    RolloutStatus {
        phase: Some(phase),
        step: Some(step),
        ..RolloutStatus::default()
    }
}

#[tokio::test]
async fn a_stale_writer_gets_a_conflict_instead_of_overwriting_the_new_leaders_status() {
    let fake = FakeApiServer::new();
    let api: Api<Rollout> = Api::namespaced(fake.client(), "shop");
    api.create(&PostParams::default(), &rollout())
        .await
        .expect("created");
    // Both replicas read the same object.
    let old_leader_read = api.get("checkout").await.expect("read");
    let new_leader_read = api.get("checkout").await.expect("read");
    let written = write_status(&api, &new_leader_read, status(RolloutPhase::Progressing, 2))
        .await
        .expect("the new leader writes");
    let err = write_status(&api, &old_leader_read, status(RolloutPhase::Progressing, 1))
        .await
        .expect_err("the old one is fenced off");
    assert!(matches!(err, ClusterError::Stale { .. }), "{err}");
    let now = api.get("checkout").await.expect("read");
    assert_eq!(now.status, Some(status(RolloutPhase::Progressing, 2)));
    assert_eq!(
        now.metadata.resource_version,
        written.metadata.resource_version
    );
    assert_eq!(
        now.metadata.generation,
        Some(1),
        "a status write is not a new generation"
    );
}

#[tokio::test]
async fn only_the_leader_writes() {
    let fake = FakeApiServer::new();
    let api: Api<Rollout> = Api::namespaced(fake.client(), "shop");
    api.create(&PostParams::default(), &rollout())
        .await
        .expect("created");
    let read = api.get("checkout").await.expect("read");
    let (tx, rx) = watch::channel(false);
    let skipped = write_status_as_leader(&rx, &api, &read, status(RolloutPhase::Paused, 1))
        .await
        .expect("no error");
    assert!(skipped.is_none());
    assert_eq!(api.get("checkout").await.expect("read").status, None);
    tx.send(true).expect("send");
    let written = write_status_as_leader(&rx, &api, &read, status(RolloutPhase::Paused, 1))
        .await
        .expect("written");
    assert!(written.is_some());
}

#[tokio::test]
async fn a_field_manager_conflict_is_not_mistaken_for_a_stale_write() {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{Patch, PatchParams};
    let fake = FakeApiServer::new();
    let api: Api<Deployment> = Api::namespaced(fake.client(), "shop");
    let apply = |manager: &str, replicas: i64| {
        let api = api.clone();
        let params = PatchParams::apply(manager);
        let body = json!({ "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": "web" }, "spec": { "replicas": replicas } });
        async move { api.patch("web", &params, &Patch::Apply(body)).await }
    };
    apply("someone", 2).await.expect("created by someone");
    let err = ClusterError::api("apply", apply("canaryd", 3).await.expect_err("conflict"));
    assert!(matches!(err, ClusterError::Api { .. }), "{err}");
    assert_eq!(err.code(), Some(409));
}
