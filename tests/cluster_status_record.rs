//! Cluster mode's status arithmetic (`src/cluster/state/record.rs`) and the
//! store's stale-write fence (`src/cluster/state/mod.rs`): what a committed
//! decision, a checkpoint or a delivery does to a Rollout's `status`, its
//! bounds (the latest 50 decisions, every undelivered alert and the latest
//! 50 finished ones, 512 KiB), which outbox alerts are due, and that a
//! change decided from an older state than the stored one is refused.
//! Pure: real engine decisions from the simulated seed rollout, `now`
//! passed in, no API server (but for the last test, on the fake one).

mod common;

use std::sync::Arc;
use std::time::Duration;

use canaryd::cluster::crd::{Rollout, RolloutStatus};
use canaryd::cluster::events::EventSink;
use canaryd::cluster::fake::FakeApiServer;
use canaryd::cluster::state::record::{
    self, MAX_DECISIONS, MAX_FINISHED_ALERTS, MAX_STATUS_BYTES, MIN_DECISIONS, apply_change,
    apply_checkpoint, apply_delivery, due, is_stale, outbox, records,
};
use canaryd::cluster::state::{ClusterStore, StatusBook};
use canaryd::engine::{AlertEvent, Timestamp};
use canaryd::notify::{self, Routing};
use canaryd::ports::{AlwaysLeader, Change, Checkpoint, Delivery, StateStore};
use canaryd::spec::model::{AlertSeverity, AlertSink, RolloutId, SecretRef, SinkKind};
use common::{SEED_FILE, Sim, World, spec};

fn sink(kind: SinkKind, env: &str) -> AlertSink {
    AlertSink {
        kind,
        webhook: SecretRef::Env(env.into()),
        secret: None,
        min_severity: AlertSeverity::Info,
    }
}

/// The seed rollout's first decision (its start), with one delivery to the
/// seed file's Slack sink and one to a daemon-wide Discord sink.
fn started() -> (Sim, Change) {
    let mut sim = Sim::new(spec(SEED_FILE));
    let before = sim.state.clone();
    let d = sim.tick(&World::healthy()).clone();
    let routing = Routing {
        defaults: vec![sink(SinkKind::Discord, "DISCORD_URL")],
        dashboard_base: None,
    };
    let deliveries = notify::outgoing(&routing, &sim.spec, &before, &d);
    let change = Change::of(&sim.spec.id, &d).with_deliveries(deliveries);
    assert_eq!(change.records.len(), 1, "a start is one record");
    assert_eq!(change.deliveries.len(), 2, "one per sink");
    (sim, change)
}

/// `template` renumbered as decision `seq`, its alert to its first sink only.
fn decision(template: &Change, seq: u64) -> Change {
    let mut c = template.clone();
    c.state.decisions = seq;
    for r in &mut c.records {
        r.seq = seq;
    }
    c.deliveries.truncate(1);
    for d in &mut c.deliveries {
        d.seq = seq;
    }
    c
}

fn at(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn seqs(status: &RolloutStatus) -> Vec<u64> {
    records(status).iter().map(|r| r.seq).collect()
}

#[test]
fn a_status_keeps_the_latest_fifty_decisions_and_names_the_last() {
    let (_, start) = started();
    let mut status = RolloutStatus::default();
    for seq in 1..=60 {
        apply_change(&mut status, &decision(&start, seq), at(seq * 1000)).expect("applied");
    }
    let expected: Vec<u64> = (61 - MAX_DECISIONS as u64..=60).collect();
    assert_eq!(seqs(&status), expected);
    let last = status.last_decision.expect("the last decision");
    assert_eq!(last.reason, start.records[0].reason);
    assert_eq!(status.step, Some(1));
    assert!(status.engine_state.is_some());
}

#[test]
fn a_decision_applied_twice_is_recorded_and_queued_once() {
    let (_, start) = started();
    let mut status = RolloutStatus::default();
    apply_change(&mut status, &start, at(1000)).expect("applied");
    apply_change(&mut status, &start, at(2000)).expect("applied again");
    assert_eq!(seqs(&status), [1]);
    let queued = outbox(&status);
    assert_eq!(queued.len(), 2, "{queued:#?}");
    assert!(
        queued.iter().all(|e| e.queued_at == at(1000)),
        "the first queueing stands"
    );
}

#[test]
fn a_status_past_its_size_bound_drops_its_oldest_records_but_keeps_the_minimum() {
    let (_, start) = started();
    let mut status = RolloutStatus::default();
    // 40 records of ~20 KiB each: ~800 KiB, past the 512 KiB bound.
    for seq in 1..=40 {
        let mut c = decision(&start, seq);
        c.records[0].reason = format!("{seq}: {}", "x".repeat(20 * 1024));
        apply_change(&mut status, &c, at(seq * 1000)).expect("applied");
    }
    let size = serde_json::to_vec(&status).expect("serializes").len();
    assert!(size <= MAX_STATUS_BYTES, "{size} bytes");
    let kept = seqs(&status);
    assert!(kept.len() >= MIN_DECISIONS, "{kept:?}");
    assert!(kept.len() < 40, "something was dropped: {kept:?}");
    assert_eq!(kept.last(), Some(&40), "the latest is kept");
    let expected: Vec<u64> = (41 - kept.len() as u64..=40).collect();
    assert_eq!(kept, expected, "the oldest go first");
}

#[test]
fn every_undelivered_alert_is_kept_and_only_the_latest_fifty_finished_ones() {
    let (sim, start) = started();
    let id = sim.spec.id.clone();
    let mut status = RolloutStatus::default();
    for seq in 1..=60 {
        apply_change(&mut status, &decision(&start, seq), at(seq)).expect("applied");
    }
    assert_eq!(outbox(&status).len(), 60, "nothing open is dropped");
    // The first 55 are delivered, the last 5 still open.
    for entry in outbox(&status).iter().take(55) {
        let handle = entry.handle(&id);
        let found = apply_delivery(&mut status, &id, handle, &Delivery::Delivered, at(100))
            .expect("recorded");
        assert!(found);
    }
    let left = outbox(&status);
    let open: Vec<u64> = left.iter().filter(|e| e.open()).map(|e| e.seq).collect();
    let finished: Vec<u64> = left.iter().filter(|e| !e.open()).map(|e| e.seq).collect();
    assert_eq!(open, [56, 57, 58, 59, 60]);
    assert_eq!(finished.len(), MAX_FINISHED_ALERTS);
    assert_eq!(finished.first(), Some(&6), "the oldest finished go first");
    // A delivery the status no longer holds changes nothing.
    assert!(
        !apply_delivery(&mut status, &id, -1, &Delivery::Delivered, at(200)).expect("no error")
    );
}

#[test]
fn a_change_numbering_a_stored_decision_again_is_stale() {
    let (_, start) = started();
    let mut stored = start.state.clone();
    stored.decisions = 5;
    assert!(
        is_stale(Some(&stored), &decision(&start, 5)),
        "decision 5 is stored"
    );
    assert!(is_stale(Some(&stored), &decision(&start, 3)));
    assert!(
        !is_stale(Some(&stored), &decision(&start, 6)),
        "the next one"
    );
    assert!(!is_stale(None, &decision(&start, 1)), "nothing stored yet");
    // Without records (a state-only change), its state must not be older.
    let mut quiet = decision(&start, 5);
    quiet.records.clear();
    assert!(!is_stale(Some(&stored), &quiet));
    quiet.state.decisions = 4;
    assert!(is_stale(Some(&stored), &quiet));
}

#[test]
fn a_checkpoint_writes_watched_time_only_when_newer_than_the_stored_tick() {
    let (sim, start) = started();
    let mut status = RolloutStatus::default();
    let mark = |ms: u64, elapsed: u64| Checkpoint {
        id: sim.spec.id.clone(),
        step_elapsed: Duration::from_millis(elapsed),
        last_tick: at(ms),
    };
    assert!(
        !apply_checkpoint(&mut status, &mark(5_000, 1)).expect("ok"),
        "no state yet"
    );
    apply_change(&mut status, &start, sim.now).expect("applied");
    let later = sim.now.millis() + 10_000;
    assert!(apply_checkpoint(&mut status, &mark(later, 7_000)).expect("ok"));
    let state = record::engine_state(&status)
        .expect("readable")
        .expect("a state");
    assert_eq!(state.step_elapsed, Duration::from_millis(7_000));
    assert_eq!(state.last_tick, Some(at(later)));
    assert!(
        !apply_checkpoint(&mut status, &mark(later, 9_000)).expect("ok"),
        "same tick"
    );
    assert!(
        !apply_checkpoint(&mut status, &mark(later - 1, 9_000)).expect("ok"),
        "older"
    );
}

#[test]
fn only_each_sinks_oldest_open_alert_is_due_and_only_once_its_time_has_come() {
    let (sim, start) = started();
    let id = sim.spec.id.clone();
    let other = RolloutId {
        namespace: "shop".into(),
        name: "cart".into(),
    };
    // checkout: decisions 1 (both sinks) and 2 (Slack); cart: decision 1 (Slack), later.
    let mut checkout = RolloutStatus::default();
    apply_change(&mut checkout, &start, at(1_000)).expect("applied");
    apply_change(&mut checkout, &decision(&start, 2), at(2_000)).expect("applied");
    let mut cart = RolloutStatus::default();
    apply_change(&mut cart, &decision(&start, 1), at(3_000)).expect("applied");
    let both = |c: &RolloutStatus, k: &RolloutStatus, now: u64, limit: usize| {
        due(
            [(id.clone(), c), (other.clone(), k)].into_iter(),
            at(now),
            limit,
        )
    };

    let now = both(&checkout, &cart, 5_000, 10);
    assert_eq!(now.len(), 2, "one per sink: {now:#?}");
    let slack_first = now
        .iter()
        .find(|d| d.sink_key.starts_with("slack:"))
        .expect("Slack's");
    let entries = outbox(&checkout);
    assert_eq!(
        slack_first.id,
        entries[0].handle(&id),
        "checkout's decision 1 first"
    );
    assert_eq!(both(&checkout, &cart, 5_000, 1).len(), 1, "the limit holds");
    assert!(
        both(&checkout, &cart, 500, 10).is_empty(),
        "nothing queued before 1 s is due at 0.5 s"
    );

    // Slack's first attempt fails until 60 s: nothing later overtakes it.
    let retry = Delivery::Retry {
        retry_at: at(60_000),
        error: "HTTP 503".into(),
    };
    assert!(apply_delivery(&mut checkout, &id, slack_first.id, &retry, at(5_000)).expect("ok"));
    let now = both(&checkout, &cart, 6_000, 10);
    assert!(
        now.iter().all(|d| !d.sink_key.starts_with("slack:")),
        "{now:#?}"
    );
    let again = both(&checkout, &cart, 60_000, 10);
    let slack = again
        .iter()
        .find(|d| d.sink_key.starts_with("slack:"))
        .expect("due again at 60 s");
    assert_eq!((slack.id, slack.attempts), (slack_first.id, 1));

    // Delivered: the next Slack alert is checkout's decision 2, then cart's.
    assert!(
        apply_delivery(
            &mut checkout,
            &id,
            slack.id,
            &Delivery::Delivered,
            at(60_000)
        )
        .expect("ok")
    );
    let next = both(&checkout, &cart, 60_000, 10);
    let slack = next
        .iter()
        .find(|d| d.sink_key.starts_with("slack:"))
        .expect("the next Slack alert");
    assert_eq!(slack.id, outbox(&checkout)[2].handle(&id));
    assert_eq!(outbox(&checkout)[2].seq, 2);
    let gave_up = Delivery::GaveUp {
        error: "HTTP 404".into(),
    };
    assert!(apply_delivery(&mut checkout, &id, slack.id, &gave_up, at(61_000)).expect("ok"));
    let last = both(&checkout, &cart, 61_000, 10);
    let slack = last
        .iter()
        .find(|d| d.sink_key.starts_with("slack:"))
        .expect("cart's Slack alert");
    assert_eq!(slack.id, outbox(&cart)[0].handle(&other));
    assert!(
        outbox(&checkout)
            .iter()
            .any(|e| e.event == AlertEvent::Started && !e.open())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_refuses_a_decision_older_than_the_stored_one_and_raises_the_fence() {
    let (_, start) = started();
    let fake = FakeApiServer::new();
    let client = fake.client();
    let api: kube::Api<Rollout> = kube::Api::namespaced(client.clone(), "shop");
    let rollout: Rollout = serde_json::from_value(serde_json::json!({
        "apiVersion": "canaryd.dev/v1alpha1", "kind": "Rollout",
        "metadata": { "name": "checkout", "namespace": "shop" },
        "spec": {
            "targetRef": { "kind": "Deployment", "name": "checkout" },
            "router": { "kind": "kubernetes-replicas", "replicas": 10 },
            "deploy": { "steps": [{ "deploy": "100%" }] }
        }
    }))
    .expect("a Rollout");
    let created = api
        .create(&Default::default(), &rollout)
        .await
        .expect("created");
    // Another writer stored decision 5 already.
    let mut stored = RolloutStatus::default();
    let mut five = decision(&start, 5);
    five.id = RolloutId {
        namespace: "shop".into(),
        name: "checkout".into(),
    };
    apply_change(&mut stored, &five, at(5_000)).expect("applied");
    let mut with_status = created.clone();
    with_status.status = Some(stored.clone());
    api.replace_status("checkout", &Default::default(), &with_status)
        .await
        .expect("stored");

    let book = Arc::new(StatusBook::new(client.clone(), Arc::new(AlwaysLeader)));
    let (cache, _writer) = kube::runtime::reflector::store::<Rollout>();
    let store = ClusterStore::new(book.clone(), cache, EventSink::new(client, "pod-a"));
    let mut three = decision(&start, 3);
    three.id = five.id.clone();
    let refused = store.commit(vec![three], at(6_000)).await;
    assert!(refused.is_err(), "a stale decision is refused");
    let fenced = tokio::time::timeout(Duration::from_secs(1), book.fenced()).await;
    assert!(fenced.is_ok(), "and raises the fence");
    let now = api.get("checkout").await.expect("read");
    assert_eq!(
        now.status.as_ref().map(seqs),
        Some(vec![5]),
        "not overwritten"
    );

    // The next decision is accepted on top of the stored one.
    let mut six = decision(&start, 6);
    six.id = five.id.clone();
    store.commit(vec![six], at(7_000)).await.expect("committed");
    let now = api.get("checkout").await.expect("read");
    assert_eq!(now.status.as_ref().map(seqs), Some(vec![5, 6]));
}
