//! Cluster mode end to end with real gates, the failover: two `canaryd run
//! --cluster` replicas against one fake API server, a real Prometheus
//! scraping the sample app as stable v1 and canary v2, the test playing the
//! mesh and the Deployment controller (`cluster_support/gated.rs`). A healthy
//! canary passes step 1's promotion gate on its real traffic; a few seconds
//! into step 2 the leader is killed (its task aborted, the Lease not
//! released). The standby takes the Lease once it expires, resumes step 2
//! with the watched time the old leader stored, and promotes: every decision
//! is numbered once and every alert reaches the receiver once.
//!
//! The lease is 2 s and lease times are wall-clock times, so this runs in
//! real time and waits on conditions with bounded timeouts, no fixed sleeps.
//! `tests/cluster_failover.rs` covers the same kill without gates, with the
//! invalid Rollout and the hand edit of the HTTPRoute.

mod harness;

#[path = "cluster_support/gated.rs"]
#[allow(dead_code)]
mod gated;
#[path = "cluster_support/replicas.rs"]
#[allow(dead_code)]
mod replicas;

use std::time::{Duration, Instant};

use canaryd::cluster::crd::RolloutPhase;
use canaryd::cluster::state::record::{outbox, records};
use canaryd::engine::Action;
use gated::*;
use replicas::*;

/// The Rollout's analysis interval (`seed_gated`), in milliseconds.
const INTERVAL_MS: u64 = 1000;

/// Watched time in step 2 before the leader is killed, in milliseconds.
const KILL_AFTER_MS: u64 = 3000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_mid_step_on_real_gates_is_replaced_within_the_lease_and_its_step_continues()
 {
    let mut stack = GatedStack::start("10s").await;
    let fake = stack.fake.clone();

    // Step 1's promotion gate passes on the canary's real traffic, and the
    // first leader watches step 2 (50%, 10 s) for a few seconds.
    let reached = until(
        "step 2 watched for 3 s",
        Duration::from_secs(90),
        || async {
            let s = status(&fake);
            (s.step == Some(2)
                && s.phase == Some(RolloutPhase::Progressing)
                && watched(&fake) >= KILL_AFTER_MS)
                .then_some(s)
        },
    )
    .await;
    assert_step_1_gate_passed_on_the_canary(&reached);

    // The standby serves reads from its watch cache: the same step.
    let leader_id = holder(&fake).expect("a leader");
    let leader_at = stack
        .replicas
        .iter()
        .position(|r| r.identity == leader_id)
        .expect("the leader is one of the replicas");
    let standby_api = stack.replicas[1 - leader_at].api.clone();
    let seen = until("the standby's view of step 2", WITHIN, || {
        let url = format!("{standby_api}/api/v1/rollouts/shop/checkout");
        async move { get_json(&url).await.filter(|r| r["step"] == 2) }
    })
    .await;
    assert_eq!(seen["phase"], "Progressing", "{seen}");
    assert_eq!(seen["canary_version"], "v2", "{seen}");

    // The leader dies mid-step: no shutdown, the Lease is not released.
    let killed = stack.replicas.remove(leader_at);
    let before = records(&status(&fake));
    let last_seq = before.last().map_or(0, |r| r.seq);
    let step_before = status(&fake).engine_state.expect("an engine state")["step"].clone();
    let elapsed_before = watched(&fake);
    killed.task.abort();
    let _ = killed.task.await;
    let killed_at = Instant::now();
    let killed_wall = k8s_openapi::jiff::Timestamp::now();
    let standby = stack.replicas[0].identity.clone();

    // The standby takes the Lease once it expires.
    let lease_taken = until("the standby holding the Lease", WITHIN, || async {
        (holder(&fake).as_deref() == Some(standby.as_str())).then(|| killed_at.elapsed())
    })
    .await;

    // Its first tick resumes the same step with the stored watched time.
    let (first_tick, step_after, elapsed_after) =
        until("the standby's first tick", WITHIN, || async {
            let s = status(&fake);
            let state = s.engine_state?;
            let at: k8s_openapi::jiff::Timestamp = state["last_tick"].as_str()?.parse().ok()?;
            (at > killed_wall).then(|| {
                (
                    killed_at.elapsed(),
                    (s.step, state["step"].clone()),
                    watched(&fake),
                )
            })
        })
        .await;
    assert_eq!(
        step_after,
        (Some(2), step_before),
        "the standby continues step 2"
    );
    assert!(
        elapsed_after + INTERVAL_MS >= elapsed_before,
        "watched time kept: {elapsed_before} ms stored, {elapsed_after} ms after the takeover"
    );

    // Its first decision ends step 2, from where the old leader left it.
    let took_over = until("the standby's first decision", WITHIN, || async {
        records(&status(&fake))
            .into_iter()
            .find(|r| r.seq > last_seq)
    })
    .await;
    let first_decision = killed_at.elapsed();
    assert_eq!(holder(&fake).as_deref(), Some(standby.as_str()));
    eprintln!(
        "failover: leader killed -> the Lease taken in {:.2}s, the other replica's first tick in {:.2}s, its first decision (step 2's 10 s done, {:.1}s watched before the kill) in {:.2}s (lease {LEASE_SECONDS}s, real gates)",
        lease_taken.as_secs_f64(),
        first_tick.as_secs_f64(),
        elapsed_before as f64 / 1000.0,
        first_decision.as_secs_f64()
    );
    assert!(
        lease_taken < Duration::from_secs(2 * LEASE_SECONDS + 2),
        "the Lease taken in {lease_taken:?}"
    );
    assert!(
        first_tick < Duration::from_secs(3 * LEASE_SECONDS + 2),
        "took over in {first_tick:?}"
    );
    assert_eq!(took_over.from, before.last().expect("decisions").to);
    assert_eq!(took_over.action, Action::Advance, "{took_over:?}");
    assert!(
        took_over.step >= 2,
        "no step repeated after the failover: {took_over:?}"
    );

    // Promoted; every decision once, in order.
    let done = until("the promotion", Duration::from_secs(90), || async {
        let s = status(&fake);
        (s.phase == Some(RolloutPhase::Promoted)).then_some(s)
    })
    .await;
    let all = records(&done);
    assert_promoted_once_each_without_repeating_a_step(&all, last_seq);
    assert!(
        all.iter().all(|r| r.action != Action::Rollback),
        "a healthy canary is never rolled back"
    );

    // Every alert delivered, as the outbox records, and each exactly once.
    until("every alert recorded as delivered", WITHIN, || async {
        let entries = outbox(&status(&fake));
        (entries.len() == 4 && entries.iter().all(|e| e.delivered_at.is_some())).then_some(())
    })
    .await;
    let keys: Vec<String> = stack
        .receiver
        .accepted()
        .iter()
        .filter_map(|r| r.header("idempotency-key"))
        .collect();
    assert_alerts_once_in_order(
        &keys,
        &["started", "step_advanced", "step_advanced", "promoted"],
    );

    // The promotion finishes: the primary runs v2 with all the traffic.
    until_primary_runs(&fake, "v2").await;
}
