//! A tick's deferred writes: the periodic state write, and watched time
//! written at the end of the tick, around a command between two chunks and
//! a stop mid-tick, and a lease lost before the tick's end.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;

use super::fakes::{FakeRouter, FakeStore};
use super::{Rig, built, id, paused, spec};
use crate::controller::{Controller, Settings};
use crate::engine::{Phase, RolloutState, Timestamp};
use crate::ports::Checkpoint;

#[tokio::test(start_paused = true)]
async fn a_quiet_rollouts_evidence_is_written_once_per_checkpoint_period() {
    let settings = Settings {
        checkpoint_every: Duration::from_secs(5),
        ..Settings::default()
    };
    let store = Arc::new(FakeStore::default());
    let rig = Rig::start_with(store, spec(), settings, FakeRouter::default()).await;
    rig.until(Duration::from_secs(5), |r| {
        r.phase() == Some(Phase::Progressing)
    })
    .await;
    let stored_requests = |rig: &Rig| {
        rig.store
            .states
            .lock()
            .expect("lock")
            .get(&id())
            .map_or(0.0, |s| s.state.evidence.step_canary.requests)
    };
    let before = (
        rig.store.commits.load(Ordering::SeqCst),
        stored_requests(&rig),
    );
    // 25 ticks with nothing material changing: about five periodic writes.
    tokio::time::sleep(Duration::from_secs(25)).await;
    let commits = rig.store.commits.load(Ordering::SeqCst) - before.0;
    assert!((4..=7).contains(&commits), "{commits} commits in 25 ticks");
    let after = stored_requests(&rig);
    assert!(
        after > before.1,
        "the stored evidence grew: {} → {after}",
        before.1
    );
}

/// A controller restarted on a store holding the rollout early in step 1.
async fn restarted(store: &Arc<FakeStore>) -> Controller {
    {
        let rig = Rig::start(store.clone()).await;
        rig.until(Duration::from_secs(5), |r| {
            r.phase() == Some(Phase::Progressing)
        })
        .await;
    }
    let settings = Settings::default();
    built(store.clone(), spec(), settings, FakeRouter::default())
        .await
        .0
}

/// A tick at `at` found the rollout `watched` into its step (its
/// checkpoint waits for the end of the tick).
fn watched_until(c: &mut Controller, at: Timestamp, watched: Duration) {
    let mark = Checkpoint {
        id: id(),
        step_elapsed: watched,
        last_tick: at,
    };
    c.deferred.mark(at, mark);
}

fn stored(store: &FakeStore) -> RolloutState {
    store.states.lock().expect("lock")[&id()].state.clone()
}

#[tokio::test(start_paused = true)]
async fn a_command_between_two_chunks_of_a_tick_is_not_undone_by_the_ticks_checkpoint() {
    let store = Arc::new(FakeStore::default());
    let mut c = restarted(&store).await;
    // A tick's first chunk decided the rollout 30 s into its step…
    tokio::time::advance(Duration::from_secs(1)).await;
    let tick = c.now();
    watched_until(&mut c, tick, Duration::from_secs(30));
    // …then a person paused it, before the tick's last chunk.
    tokio::time::advance(Duration::from_millis(10)).await;
    let now = c.now();
    let d = paused(&c, now);
    let paused = d.state.clone();
    c.execute(vec![(id(), d)], now).await.expect("carried out");
    c.write_deferred().await; // the tick's last chunk
    let s = stored(&store);
    assert_eq!(s.phase, Phase::Paused);
    assert_eq!(
        s.step_elapsed, paused.step_elapsed,
        "the command's state stands, not the older checkpoint's 30 s"
    );
}

#[tokio::test(start_paused = true)]
async fn a_ticks_deferred_writes_are_kept_when_the_controller_stops_mid_tick() {
    let store = Arc::new(FakeStore::default());
    let mut c = restarted(&store).await;
    tokio::time::advance(Duration::from_secs(1)).await;
    let tick = c.now();
    let watched = c.rollouts[&id()].state.step_elapsed + Duration::from_secs(7);
    watched_until(&mut c, tick, watched);
    let (_commands, requests) = mpsc::channel(1);
    c.run(requests, async {}).await;
    assert_eq!(stored(&store).step_elapsed, watched);
}

#[tokio::test(start_paused = true)]
async fn a_ticks_deferred_writes_are_dropped_when_leadership_is_lost_before_the_tick_ends() {
    let store = Arc::new(FakeStore::default());
    let mut c = restarted(&store).await;
    let before = stored(&store);
    let commits = store.commits.load(Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(1)).await;
    let tick = c.now();
    watched_until(&mut c, tick, before.step_elapsed + Duration::from_secs(7));
    let mut due = c.rollouts[&id()].state.clone();
    due.step_elapsed += Duration::from_secs(7);
    c.deferred.periodic(&id(), tick, due);
    // The lease is lost (another replica acts now) before the tick's end.
    let (_lease, leading) = tokio::sync::watch::channel(false);
    c.leadership = Arc::new(leading);
    c.write_deferred().await;
    assert_eq!(
        store.commits.load(Ordering::SeqCst),
        commits,
        "no periodic state written by a replica that lost the lease"
    );
    assert_eq!(
        stored(&store).step_elapsed,
        before.step_elapsed,
        "no watched time written by a replica that lost the lease"
    );
    // Leading again later, it does not write them over the state the other
    // replica wrote meanwhile.
    let (_lease, leading) = tokio::sync::watch::channel(true);
    c.leadership = Arc::new(leading);
    c.write_deferred().await;
    assert_eq!(store.commits.load(Ordering::SeqCst), commits);
    assert_eq!(stored(&store).step_elapsed, before.step_elapsed);
}
