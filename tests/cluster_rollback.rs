//! Cluster mode end to end with real gates: two `canaryd run --cluster`
//! replicas against one fake API server, a real Prometheus scraping two real
//! sample apps (stable v1, canary v2, the `http-red` labels), and a webhook
//! receiver for the chat alerts. The test plays the mesh (it sends load to
//! the two apps split by the HTTPRoute's backendRef weights as the fake
//! holds them at each request) and the Deployment controller.
//!
//! The canary advances on a real promotion gate while healthy; then its
//! fault switch makes half its requests fail, and it must be rolled back:
//! the route's canary weight goes to 0 before the status says RolledBack,
//! the canary is scaled to zero, the primary untouched, the decision stored
//! with its evidence, an Event published and the alert sent once. Waits are
//! on conditions with bounded timeouts.

mod harness;

#[path = "cluster_support/gated.rs"]
#[allow(dead_code)]
mod gated;
#[path = "cluster_support/rbac.rs"]
#[allow(dead_code)]
mod rbac;
#[path = "cluster_support/replicas.rs"]
#[allow(dead_code)]
mod replicas;

use std::time::Duration;

use canaryd::cluster::crd::RolloutPhase;
use canaryd::cluster::state::record::{outbox, records};
use canaryd::engine::{Action, AlertEvent};
use gated::*;
use replicas::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulty_canary_is_cut_to_zero_then_rolled_back_with_its_evidence_event_and_one_alert() {
    let stack = GatedStack::start("10m").await;
    let (fake, canary, receiver) = (&stack.fake, &stack.canary, &stack.receiver);

    // Healthy: step 1's promotion gate passes on the canary's real traffic.
    let healthy = until(
        "step 2 reached on a passed gate",
        Duration::from_secs(90),
        || async {
            let s = status(fake);
            (s.step == Some(2) && s.phase == Some(RolloutPhase::Progressing)).then_some(s)
        },
    )
    .await;
    assert_step_1_gate_passed_on_the_canary(&healthy);
    until("the HTTPRoute at 50%", WITHIN, || async {
        (route_weights(fake).get("checkout-canary") == Some(&50)).then_some(())
    })
    .await;
    let primary_before = fake
        .object("apps/v1", "Deployment", "shop", "checkout-primary")
        .expect("the primary");

    // The fault: half the canary's requests fail from now on.
    let from = fake.resource_version();
    let route_cut = first_change(route_api(fake), from, canary_weight_zero);
    let marked = first_change(rollout_api(fake), from, status_rolled_back);
    reqwest::Client::new()
        .put(format!("http://{}/admin/behaviour", canary.addr()))
        .body(r#"{"error_rate": "50%"}"#)
        .send()
        .await
        .expect("the canary's fault switch")
        .error_for_status()
        .expect("the fault switch accepts");

    let rolled_back = until(
        "the status says RolledBack",
        Duration::from_secs(60),
        || async {
            let s = status(fake);
            (s.phase == Some(RolloutPhase::RolledBack)).then_some(s)
        },
    )
    .await;
    // Traffic first: the route's weight-0 write precedes the status write.
    let cut_at = tokio::time::timeout(WITHIN, route_cut)
        .await
        .expect("the route watch answers")
        .expect("the route watch runs")
        .expect("the canary weight went to 0");
    let marked_at = tokio::time::timeout(WITHIN, marked)
        .await
        .expect("the Rollout watch answers")
        .expect("the Rollout watch runs")
        .expect("the status said RolledBack");
    eprintln!(
        "the route's canary weight went to 0 at resourceVersion {cut_at}, the status said RolledBack at {marked_at}"
    );
    assert!(
        cut_at < marked_at,
        "the route was cut at resourceVersion {cut_at}, after the status said RolledBack at {marked_at}"
    );
    let weights = route_weights(fake);
    assert_eq!(weights.get("checkout-canary"), Some(&0), "{weights:?}");
    assert_eq!(weights.get("checkout-primary"), Some(&100), "{weights:?}");

    // The canary is scaled to zero; the primary is untouched.
    until("the canary at zero replicas", WITHIN, || async {
        let d = fake.object("apps/v1", "Deployment", "shop", "checkout")?;
        (d["spec"]["replicas"] == 0).then_some(())
    })
    .await;
    let primary_after = fake
        .object("apps/v1", "Deployment", "shop", "checkout-primary")
        .expect("the primary");
    assert_eq!(primary_after["spec"], primary_before["spec"]);
    assert_eq!(
        primary_after["metadata"]["generation"],
        primary_before["metadata"]["generation"]
    );
    assert_eq!(
        primary_after["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/version"],
        "v1"
    );

    // The status carries the decision and its evidence.
    let last = rolled_back.last_decision.clone().expect("a last decision");
    assert_eq!(last.action, Action::Rollback.to_string());
    assert!(last.reason.contains("error_rate"), "{}", last.reason);
    let rollback = records(&rolled_back)
        .into_iter()
        .rev()
        .find(|r| r.action == Action::Rollback)
        .expect("the rollback is recorded");
    let breached = rollback
        .gates
        .iter()
        .find(|g| g.failed())
        .expect("the breached gate is in the record");
    assert_eq!(breached.threshold, "5%");
    assert!(breached.value.is_some_and(|v| v > 0.05), "{breached:?}");
    assert!(breached.query.contains(r#"version="v2""#), "{breached:?}");
    let evidence = breached.evidence.as_ref().expect("the breach's evidence");
    assert!(
        evidence.requests > 0.0 && evidence.events > 0.0,
        "{evidence:?}"
    );
    assert!(
        rolled_back
            .conditions
            .iter()
            .any(|c| c.type_ == "RolledBack" && c.status == "True"),
        "{:?}",
        rolled_back.conditions
    );

    // A Warning Event for the decision.
    let published = until("the RolledBack Event", WITHIN, || async {
        let e = events(fake).await;
        e.iter()
            .any(|(_, reason)| reason == "RolledBack")
            .then_some(e)
    })
    .await;
    assert!(
        published
            .iter()
            .any(|(kind, reason)| kind == "Warning" && reason == "RolledBack"),
        "{published:?}"
    );

    // The rollback alert: delivered (as the outbox records), and once.
    until(
        "the rollback alert recorded as delivered",
        WITHIN,
        || async {
            outbox(&status(fake))
                .iter()
                .any(|e| e.event == AlertEvent::RolledBack && e.delivered_at.is_some())
                .then_some(())
        },
    )
    .await;
    let rollback_alerts: Vec<String> = receiver
        .accepted()
        .iter()
        .filter_map(|r| r.header("idempotency-key"))
        .filter(|k| k.ends_with("/rolled_back"))
        .collect();
    assert_eq!(rollback_alerts.len(), 1, "{rollback_alerts:?}");
    let body = receiver
        .accepted()
        .iter()
        .find(|r| {
            r.header("idempotency-key")
                .is_some_and(|k| k.ends_with("/rolled_back"))
        })
        .map(|r| r.json())
        .unwrap_or_default();
    assert!(body.to_string().contains("error_rate"), "{body}");

    // Every request the two replicas sent is granted by rbac.yaml (the
    // test's own reads and its `kubectl` writes are not canaryd's).
    let requests = fake.requests();
    let daemon: Vec<&String> = requests
        .iter()
        .filter(|r| !r.contains(BY_TEST) && !r.contains("fieldManager=kubectl"))
        .collect();
    let used = rbac::assert_granted(daemon.iter().copied());
    for (group, resource, verb) in [
        ("canaryd.dev", "rollouts/status", "update"),
        ("gateway.networking.k8s.io", "httproutes", "patch"),
        ("apps", "deployments", "patch"),
        ("events.k8s.io", "events", "create"),
        ("coordination.k8s.io", "leases", "patch"),
    ] {
        let grant = (group.to_string(), resource.to_string(), verb.to_string());
        assert!(used.contains(&grant), "the daemon used {grant:?}: {used:?}");
    }
}
