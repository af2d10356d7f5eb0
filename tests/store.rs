//! The SQLite store: what is committed survives a restart exactly, a decision
//! committed twice is stored once, and the outbox hands out each alert to each
//! sink, in order per sink, until it is delivered or given up.

mod common;

use canaryd::engine::{Decision, Phase, RolloutState, Timestamp};
use canaryd::notify::{self, Routing};
use canaryd::spec::model::{AlertSeverity, AlertSink, SecretRef, SinkKind};
use canaryd::store::{Change, Delivery, DeliveryState, SqliteStore};
use common::{SEED_FILE, Sim, World, spec};

fn sink(kind: SinkKind, env: &str) -> AlertSink {
    AlertSink {
        kind,
        webhook: SecretRef::Env(env.into()),
        secret: None,
        min_severity: AlertSeverity::Info,
    }
}

/// Besides the seed file's own Slack sink, a daemon-wide Discord one.
fn routing() -> Routing {
    Routing {
        defaults: vec![sink(SinkKind::Discord, "DISCORD_URL")],
        dashboard_base: Some("http://canaryd.example:9900".into()),
    }
}

/// The store change a decision taken from `before` makes, alerts routed.
fn change(sim: &Sim, before: &RolloutState, d: &Decision) -> Change {
    Change::of(&sim.spec.id, d).with_deliveries(notify::outgoing(&routing(), &sim.spec, before, d))
}

/// Ticks the seed rollout `n` times, committing each decision.
fn run(store: &SqliteStore, sim: &mut Sim, world: &World, n: usize) {
    for _ in 0..n {
        let before = sim.state.clone();
        let d = sim.tick(world).clone();
        store
            .commit(&[change(sim, &before, &d)], sim.now)
            .expect("commit");
    }
}

#[test]
fn a_reopened_store_resumes_the_same_step_with_the_same_elapsed_time_and_log() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("canaryd.db");
    let mut sim = Sim::new(spec(SEED_FILE));
    {
        let store = SqliteStore::open(&path).expect("open");
        run(&store, &mut sim, &World::healthy(), 40);
    }
    assert_eq!(sim.state.phase, Phase::Progressing);
    assert!(sim.state.step_elapsed.as_secs() > 0);

    let store = SqliteStore::open(&path).expect("reopen");
    let stored = store.load().expect("load");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].id, sim.spec.id);
    assert_eq!(stored[0].state, sim.state, "state round-trips exactly");
    assert_eq!(stored[0].updated_at, sim.now);
    assert_eq!(store.decisions(&sim.spec.id, 100).expect("log"), sim.log);
}

#[test]
fn a_decision_committed_twice_is_recorded_and_queued_once() {
    let store = SqliteStore::in_memory().expect("store");
    let mut sim = Sim::new(spec(SEED_FILE));
    let before = sim.state.clone();
    let d = sim.tick(&World::healthy()).clone();
    let c = change(&sim, &before, &d);
    assert!(
        !c.records.is_empty() && !c.alerts.is_empty(),
        "the start records and alerts"
    );
    // As after a crash between committing and acknowledging: the same again.
    store
        .commit(std::slice::from_ref(&c), sim.now)
        .expect("commit");
    store
        .commit(std::slice::from_ref(&c), sim.now)
        .expect("commit again");
    assert_eq!(
        store.decisions(&sim.spec.id, 100).expect("log").len(),
        c.records.len()
    );
    assert_eq!(c.deliveries.len(), 2 * c.alerts.len(), "to both sinks");
    let queued = store.deliveries(&sim.spec.id, 100).expect("outbox");
    assert_eq!(queued.len(), c.deliveries.len());
}

#[test]
fn the_log_is_returned_oldest_first_and_limited_to_the_latest() {
    let store = SqliteStore::in_memory().expect("store");
    let mut sim = Sim::new(spec(SEED_FILE));
    // Healthy through the first two steps: start, advance, advance.
    run(&store, &mut sim, &World::healthy(), 200);
    let all = store.decisions(&sim.spec.id, 1000).expect("log");
    assert!(all.len() >= 3, "{all:#?}");
    let seqs: Vec<u64> = all.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=all.len() as u64).collect::<Vec<_>>());
    let last_two = store.decisions(&sim.spec.id, 2).expect("log");
    assert_eq!(last_two, all[all.len() - 2..]);
    assert_eq!(
        store.last_decision(&sim.spec.id).expect("last").as_ref(),
        all.last()
    );
}

#[test]
fn the_outbox_hands_out_each_sinks_oldest_alert_until_it_is_delivered_or_given_up() {
    let store = SqliteStore::in_memory().expect("store");
    let mut sim = Sim::new(spec(SEED_FILE));
    // Start, then an advance: two alerts for each of the two sinks.
    while sim.state.step < 1 {
        run(&store, &mut sim, &World::healthy(), 1);
    }
    let now = sim.now;
    let due = store.due_deliveries(now, 10).expect("outbox");
    assert_eq!(due.len(), 2, "one per sink: {due:#?}");
    assert!(
        due.iter()
            .all(|d| d.message.title.contains("canary v2 started"))
    );
    assert_ne!(due[0].sink_key, due[1].sink_key);
    let (slack, discord) = (due[0].id, due[1].id);

    // Slack fails: nothing later for Slack overtakes it, Discord moves on.
    let later = Timestamp::from_millis(now.millis() + 30_000);
    let retry = Delivery::Retry {
        retry_at: later,
        error: "HTTP 503".into(),
    };
    store.record_delivery(slack, &retry, now).expect("retry");
    store
        .record_delivery(discord, &Delivery::Delivered, now)
        .expect("delivered");
    let due = store.due_deliveries(now, 10).expect("outbox");
    assert_eq!(due.len(), 1, "{due:#?}");
    assert!(due[0].sink_key.starts_with("discord:"));
    assert_ne!(due[0].message.title, "", "the next Discord alert");

    let again = store.due_deliveries(later, 10).expect("outbox");
    let slack_again = again
        .iter()
        .find(|d| d.id == slack)
        .expect("Slack's first alert again once due");
    assert_eq!(slack_again.attempts, 1);

    let gave_up = Delivery::GaveUp {
        error: "HTTP 404".into(),
    };
    store
        .record_delivery(slack, &gave_up, later)
        .expect("gave up");
    let statuses = store.deliveries(&sim.spec.id, 100).expect("statuses");
    let first = statuses
        .iter()
        .find(|s| s.sink.starts_with("slack:"))
        .expect("slack");
    assert_eq!(first.state, DeliveryState::GaveUp);
    assert_eq!(first.last_error.as_deref(), Some("HTTP 404"));
    assert!(
        store
            .due_deliveries(later, 10)
            .expect("outbox")
            .iter()
            .all(|d| d.id != slack),
        "a given-up alert is not handed out again"
    );
}

#[test]
fn a_file_from_a_newer_canaryd_is_refused_not_overwritten() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("canaryd.db");
    drop(SqliteStore::open(&path).expect("create"));
    let conn = rusqlite::Connection::open(&path).expect("raw open");
    conn.pragma_update(None, "user_version", 99).expect("bump");
    drop(conn);
    let err = SqliteStore::open(&path).err().expect("refused");
    assert!(err.to_string().contains("schema version 99"), "{err}");
}

#[test]
fn an_unreadable_delivery_is_given_up_and_does_not_stop_the_others() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("canaryd.db");
    let store = SqliteStore::open(&path).expect("open");
    let mut sim = Sim::new(spec(SEED_FILE));
    run(&store, &mut sim, &World::healthy(), 1);
    let due = store.due_deliveries(sim.now, 10).expect("outbox");
    assert_eq!(due.len(), 2, "{due:#?}");
    // As if written by another build: the Slack row's message is unreadable.
    let raw = rusqlite::Connection::open(&path).expect("raw open");
    raw.execute(
        "UPDATE deliveries SET message = '{\"not\": \"a message\"}' WHERE id = ?1",
        [due[0].id],
    )
    .expect("corrupt");
    drop(raw);
    let due_now = store.due_deliveries(sim.now, 10).expect("the others still");
    assert_eq!(due_now.len(), 1);
    assert_eq!(due_now[0].id, due[1].id);
    let statuses = store
        .deliveries(&sim.spec.id, 10)
        .expect("the readable ones");
    assert_eq!(statuses.len(), 1, "{statuses:#?}");
    assert!(
        store
            .due_deliveries(sim.now, 10)
            .expect("outbox")
            .iter()
            .all(|d| d.id != due[0].id),
        "given up, not retried"
    );
}

#[test]
fn a_watched_time_checkpoint_is_restored_until_the_next_whole_state_write() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("canaryd.db");
    let mut sim = Sim::new(spec(SEED_FILE));
    let store = SqliteStore::open(&path).expect("open");
    run(&store, &mut sim, &World::healthy(), 3);
    let written = store.load().expect("load")[0].state.clone();
    // Ticks that change nothing material: only their watched time is kept.
    let later = sim.now.plus(std::time::Duration::from_secs(40));
    let mark = canaryd::ports::Checkpoint {
        id: sim.spec.id.clone(),
        step_elapsed: written.step_elapsed + std::time::Duration::from_secs(40),
        last_tick: later,
    };
    store.checkpoint(&[mark]).expect("checkpoint");
    let reopened = SqliteStore::open(&path).expect("reopen");
    let loaded = reopened.load().expect("load")[0].state.clone();
    assert_eq!(
        loaded.step_elapsed,
        written.step_elapsed + std::time::Duration::from_secs(40)
    );
    assert_eq!(loaded.last_tick, Some(later));
    assert_eq!(
        (loaded.step, loaded.phase, loaded.decisions),
        (written.step, written.phase, written.decisions)
    );
    // The next whole write supersedes the checkpoint.
    run(&reopened, &mut sim, &World::healthy(), 1);
    assert_eq!(reopened.load().expect("load")[0].state, sim.state);
}
