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

#[path = "cluster_support/replicas.rs"]
mod replicas;

use std::time::{Duration, Instant};

use canaryd::cluster::crd::{Rollout, RolloutPhase};
use canaryd::cluster::fake::FakeApiServer;
use canaryd::cluster::state::record::records;
use http::Method;
use receiver::Receiver;
use replicas::*;
use serde_json::json;

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
    assert_promoted_once_each_without_repeating_a_step(&all, last_seq);

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
    assert_alerts_once_in_order(
        &keys,
        &["started", "step_advanced", "step_advanced", "promoted"],
    );

    // The promotion finishes: the primary runs v2, traffic is back on it.
    until_primary_runs(&fake, "v2").await;

    // The delivery metrics read the decision log from the Rollout statuses.
    let metrics = reqwest::get(format!("{}/metrics", standby.api))
        .await
        .expect("/metrics answers")
        .text()
        .await
        .expect("a body");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("canaryd_delivery_finished_rollouts{")
                && l.contains("outcome=\"promoted\"")
                && l.ends_with(" 1.0")),
        "{metrics}"
    );

    let mut standby = standby;
    if let Some(stop) = standby.stop.take() {
        let _ = stop.send(());
    }
    let stopped = tokio::time::timeout(Duration::from_secs(20), standby.task).await;
    assert!(stopped.is_ok(), "the replica stops on shutdown");
}
