//! The SQLite store: what is committed survives a restart exactly, a decision
//! committed twice is stored once, and the outbox hands out each alert until
//! it is delivered or given up.

mod common;

use canaryd::engine::{Decision, Phase, Timestamp};
use canaryd::store::{Change, Delivery, SqliteStore};
use common::{SEED_FILE, Sim, World, spec};

/// The store change a decision makes.
fn change(sim: &Sim, d: &Decision) -> Change {
    Change::of(&sim.spec.id, d)
}

/// Ticks the seed rollout `n` times, committing each decision.
fn run(store: &SqliteStore, sim: &mut Sim, world: &World, n: usize) {
    for _ in 0..n {
        let d = sim.tick(world).clone();
        store.commit(&[change(sim, &d)], sim.now).expect("commit");
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
    let d = sim.tick(&World::healthy()).clone();
    let c = change(&sim, &d);
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
    let pending = store.pending_alerts(sim.now, 100).expect("outbox");
    assert_eq!(pending.len(), c.alerts.len());
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
fn the_outbox_hands_out_an_alert_until_it_is_delivered_or_given_up() {
    let store = SqliteStore::in_memory().expect("store");
    let mut sim = Sim::new(spec(SEED_FILE));
    run(&store, &mut sim, &World::healthy(), 1);
    let now = sim.now;
    let pending = store.pending_alerts(now, 10).expect("outbox");
    assert_eq!(pending.len(), 1);
    let id = pending[0].id;

    let later = Timestamp::from_millis(now.millis() + 30_000);
    let retry = Delivery::Retry {
        retry_at: later,
        error: "HTTP 503".into(),
    };
    store.record_delivery(id, &retry, now).expect("retry");
    assert!(
        store.pending_alerts(now, 10).expect("outbox").is_empty(),
        "not before its time"
    );
    let again = store.pending_alerts(later, 10).expect("outbox");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 1);

    store
        .record_delivery(id, &Delivery::Delivered, later)
        .expect("delivered");
    assert!(store.pending_alerts(later, 10).expect("outbox").is_empty());

    // A later alert that is given up is not handed out again either.
    let mut bad = sim;
    let d = bad.tick(&World::healthy().with("error_rate", 0.5)).clone();
    store
        .commit(&[change(&bad, &d)], bad.now)
        .expect("commit rollback");
    let rollback = store.pending_alerts(bad.now, 10).expect("outbox");
    assert_eq!(rollback.len(), 1, "{rollback:#?}");
    let gave_up = Delivery::GaveUp {
        error: "HTTP 404".into(),
    };
    store
        .record_delivery(rollback[0].id, &gave_up, bad.now)
        .expect("gave up");
    assert!(
        store
            .pending_alerts(bad.now, 10)
            .expect("outbox")
            .is_empty()
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
