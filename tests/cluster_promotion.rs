//! Cluster mode end to end with real gates, the healthy path: two
//! `canaryd run --cluster` replicas against one fake API server, a real
//! Prometheus scraping the sample app as stable v1 and canary v2, the test
//! playing the mesh and the Deployment controller (`cluster_support/gated.rs`).
//! The canary passes step 1's promotion gate on its real traffic, goes
//! through 50% and is promoted through the HTTPRoute's weights: the primary
//! then runs v2 with all the traffic, the canary is scaled to zero, a Normal
//! Event marks each decision and each alert reaches the receiver once.

mod harness;

#[path = "cluster_support/gated.rs"]
#[allow(dead_code)]
mod gated;
#[path = "cluster_support/replicas.rs"]
#[allow(dead_code)]
mod replicas;

use std::time::Duration;

use canaryd::cluster::crd::RolloutPhase;
use canaryd::cluster::state::record::{outbox, records};
use canaryd::engine::Action;
use gated::*;
use replicas::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_canary_is_promoted_on_real_gates_through_the_httproute_weights() {
    let stack = GatedStack::start("3s").await;
    let (fake, receiver) = (&stack.fake, &stack.receiver);

    let done = until("the promotion", Duration::from_secs(120), || async {
        let s = status(fake);
        (s.phase == Some(RolloutPhase::Promoted)).then_some(s)
    })
    .await;
    let all = records(&done);
    assert_eq!(
        transitions(&all),
        [
            Action::Start,
            Action::Advance,
            Action::Advance,
            Action::Promote
        ],
        "{all:#?}"
    );
    // Step 1 was left on its promotion gate, judged on the canary's traffic.
    let first_advance = all
        .iter()
        .find(|r| r.action == Action::Advance)
        .expect("an advance");
    assert!(
        first_advance.reason.contains("step 1 passed"),
        "{}",
        first_advance.reason
    );
    let gate = first_advance
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
    assert!(
        all.iter().all(|r| r.action != Action::Rollback),
        "a healthy canary is never rolled back"
    );
    assert_eq!(done.stable_version.as_deref(), Some("v2"));

    // The primary runs v2 with all the traffic; the canary is at zero.
    until("the primary on v2 with all traffic", WITHIN, || async {
        let primary = fake.object("apps/v1", "Deployment", "shop", "checkout-primary")?;
        let labels = &primary["spec"]["template"]["metadata"]["labels"];
        let weights = route_weights(fake);
        (labels["app.kubernetes.io/version"] == "v2"
            && weights.get("checkout-canary") == Some(&0)
            && weights.get("checkout-primary") == Some(&100))
        .then_some(())
    })
    .await;
    until("the canary at zero replicas", WITHIN, || async {
        let d = fake.object("apps/v1", "Deployment", "shop", "checkout")?;
        (d["spec"]["replicas"] == 0).then_some(())
    })
    .await;

    // A Normal Event per decision.
    let published = until("the Promoted Event", WITHIN, || async {
        let e = events(fake).await;
        e.iter().any(|(_, r)| r == "Promoted").then_some(e)
    })
    .await;
    for reason in ["Started", "Advanced", "Promoted"] {
        assert!(
            published
                .iter()
                .any(|(kind, r)| kind == "Normal" && r == reason),
            "{reason}: {published:?}"
        );
    }

    // Every alert delivered, as the outbox records, and each once.
    until("every alert recorded as delivered", WITHIN, || async {
        let entries = outbox(&status(fake));
        (entries.len() == 4 && entries.iter().all(|e| e.delivered_at.is_some())).then_some(())
    })
    .await;
    let events: Vec<String> = receiver
        .accepted()
        .iter()
        .filter_map(|r| r.header("idempotency-key"))
        .filter_map(|k| k.rsplit('/').next().map(String::from))
        .collect();
    assert_eq!(
        events,
        ["started", "step_advanced", "step_advanced", "promoted"],
        "each alert once, in order"
    );
}
