//! The timer queue: rollouts ordered by when they are due to tick or to
//! have their idle router reconciled, so the loop sleeps until the first
//! one instead of scanning every rollout.
//!
//! Ticks fall on a grid: multiples of a rollout's interval counted from the
//! daemon's start. Rollouts with the same interval (or intervals that divide
//! each other, e.g. 5 s and 30 s) are due at the same instants, so one
//! grouped query per metric answers all of them. A new or changed rollout
//! ticks at once and then joins the grid: its next tick comes 0.5 to 1.5
//! intervals later, and every one after that exactly one interval apart.
//! A tick decided after its next grid point had passed (an overloaded
//! daemon) waits for the first point after it: missed ticks are skipped, so
//! the rollouts stay in one batch instead of splitting into many small ones.
//!
//! Entries are hints: the loop checks each popped entry against the
//! rollout's own `next_tick`/`next_reconcile`, so a rescheduled rollout's
//! old entry is simply dropped.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::engine::Timestamp;
use crate::spec::model::RolloutId;

/// Due ticks and due reconciles, earliest first.
#[derive(Debug)]
pub(super) struct Timers {
    /// The grid's origin.
    origin: Timestamp,
    ticks: BTreeSet<(Timestamp, RolloutId)>,
    reconciles: BTreeSet<(Timestamp, RolloutId)>,
}

impl Timers {
    pub fn new(origin: Timestamp) -> Timers {
        Timers {
            origin,
            ticks: BTreeSet::new(),
            reconciles: BTreeSet::new(),
        }
    }

    /// The next tick after one taken at `now`: the first grid point of
    /// `interval` more than half an interval after `now + interval / 2`.
    pub fn next_on_grid(&self, now: Timestamp, interval: Duration) -> Timestamp {
        let half = Duration::from_millis((interval.as_millis() as u64).max(1) / 2);
        self.first_after(now.plus(half), interval)
    }

    /// The first grid point of `interval` strictly after `t`.
    fn first_after(&self, t: Timestamp, interval: Duration) -> Timestamp {
        let every = (interval.as_millis() as u64).max(1);
        let since = t.millis().saturating_sub(self.origin.millis());
        Timestamp::from_millis(self.origin.millis() + (since / every + 1) * every)
    }

    /// The next tick of a rollout measured at `measured` and decided at
    /// `now`: [`Self::next_on_grid`] of the measurement, unless that point
    /// has passed already (a tick that ran late, on an overloaded daemon);
    /// then the first grid point after `now`. Every rollout decided late
    /// thus waits for the same point and is measured in one batch with the
    /// rest: a missed tick is skipped, not made up in many small batches
    /// (each with its own queries) that would load the daemon further.
    pub fn next_tick(&self, measured: Timestamp, now: Timestamp, interval: Duration) -> Timestamp {
        let next = self.next_on_grid(measured, interval);
        if next > now {
            return next;
        }
        self.first_after(now, interval)
    }

    /// Queues a tick of `id` at `at`.
    pub fn tick_at(&mut self, id: &RolloutId, at: Timestamp) {
        self.ticks.insert((at, id.clone()));
    }

    /// Queues a reconcile of `id` at `at`.
    pub fn reconcile_at(&mut self, id: &RolloutId, at: Timestamp) {
        self.reconciles.insert((at, id.clone()));
    }

    /// Takes every tick due by `now`.
    pub fn due_ticks(&mut self, now: Timestamp) -> Vec<RolloutId> {
        take_due(&mut self.ticks, now, usize::MAX)
    }

    /// Takes up to `limit` of the reconciles due by `now`, the earliest
    /// first; the rest stay due (the loop takes them on its next turns, so
    /// a wave of idle rollouts is reconciled a chunk per turn).
    pub fn due_reconciles(&mut self, now: Timestamp, limit: usize) -> Vec<RolloutId> {
        take_due(&mut self.reconciles, now, limit)
    }

    /// When the first entry is due.
    pub fn next(&self) -> Option<Timestamp> {
        let first = |set: &BTreeSet<(Timestamp, RolloutId)>| set.first().map(|(t, _)| *t);
        match (first(&self.ticks), first(&self.reconciles)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

fn take_due(
    set: &mut BTreeSet<(Timestamp, RolloutId)>,
    now: Timestamp,
    limit: usize,
) -> Vec<RolloutId> {
    let mut due = Vec::new();
    while let Some((t, _)) = set.first() {
        if *t > now || due.len() >= limit {
            break;
        }
        if let Some((_, id)) = set.pop_first() {
            due.push(id);
        }
    }
    due.sort();
    due.dedup();
    due
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> RolloutId {
        RolloutId {
            namespace: "default".into(),
            name: name.into(),
        }
    }

    #[test]
    fn rollouts_started_at_different_moments_tick_together_after_their_first_tick() {
        let origin = Timestamp::from_millis(1_000_000);
        let timers = Timers::new(origin);
        let every = Duration::from_secs(10);
        let a = timers.next_on_grid(origin.plus(Duration::from_millis(300)), every);
        let b = timers.next_on_grid(origin.plus(Duration::from_millis(4_200)), every);
        assert_eq!(a, b);
        assert_eq!(a, origin.plus(every));
        // One interval apart once on the grid.
        assert_eq!(timers.next_on_grid(a, every), a.plus(every));
        // Never sooner than half an interval.
        let late = timers.next_on_grid(origin.plus(Duration::from_millis(6_000)), every);
        assert_eq!(late, origin.plus(every * 2));
    }

    #[test]
    fn rollouts_decided_after_their_next_grid_point_all_wait_for_the_same_later_one() {
        let origin = Timestamp::from_millis(0);
        let timers = Timers::new(origin);
        let every = Duration::from_secs(10);
        let measured = Timestamp::from_millis(100_000);
        // Decided in time: the next grid point, one interval on.
        let on_time = timers.next_tick(measured, Timestamp::from_millis(104_000), every);
        assert_eq!(on_time, Timestamp::from_millis(110_000));
        // The tick's later parts were decided after 110 s (an overloaded
        // daemon): all of them at 120 s, none due at once.
        let late: Vec<Timestamp> = [110_000, 112_500, 119_999]
            .into_iter()
            .map(|ms| timers.next_tick(measured, Timestamp::from_millis(ms), every))
            .collect();
        assert_eq!(late, vec![Timestamp::from_millis(120_000); 3]);
        // Later still: the grid point after, never one already past.
        let later = timers.next_tick(measured, Timestamp::from_millis(125_000), every);
        assert_eq!(later, Timestamp::from_millis(130_000));
    }

    #[test]
    fn intervals_that_divide_each_other_share_grid_points() {
        let origin = Timestamp::from_millis(0);
        let timers = Timers::new(origin);
        let on_thirty =
            timers.next_on_grid(Timestamp::from_millis(30_000), Duration::from_secs(30));
        let on_five = timers.next_on_grid(Timestamp::from_millis(55_000), Duration::from_secs(5));
        assert_eq!(on_thirty, on_five);
    }

    #[test]
    fn a_wave_of_due_reconciles_comes_out_a_chunk_at_a_time_earliest_first() {
        let mut timers = Timers::new(Timestamp::from_millis(0));
        for (i, name) in ["e", "d", "c", "b", "a"].iter().enumerate() {
            timers.reconcile_at(&id(name), Timestamp::from_millis(i as u64));
        }
        let now = Timestamp::from_millis(100);
        assert_eq!(timers.due_reconciles(now, 2), vec![id("d"), id("e")]);
        // The rest stay due: the loop wakes at once for them.
        assert_eq!(timers.next(), Some(Timestamp::from_millis(2)));
        assert_eq!(timers.due_reconciles(now, 2), vec![id("b"), id("c")]);
        assert_eq!(timers.due_reconciles(now, 2), vec![id("a")]);
        assert!(timers.due_reconciles(now, 2).is_empty());
        assert_eq!(timers.next(), None);
    }

    #[test]
    fn due_entries_come_out_once_in_order_and_later_ones_stay() {
        let mut timers = Timers::new(Timestamp::from_millis(0));
        timers.tick_at(&id("b"), Timestamp::from_millis(5));
        timers.tick_at(&id("a"), Timestamp::from_millis(5));
        timers.tick_at(&id("a"), Timestamp::from_millis(3));
        timers.tick_at(&id("c"), Timestamp::from_millis(9));
        timers.reconcile_at(&id("d"), Timestamp::from_millis(7));
        assert_eq!(timers.next(), Some(Timestamp::from_millis(3)));
        assert_eq!(
            timers.due_ticks(Timestamp::from_millis(6)),
            vec![id("a"), id("b")]
        );
        assert_eq!(timers.next(), Some(Timestamp::from_millis(7)));
        assert!(
            timers
                .due_reconciles(Timestamp::from_millis(6), 10)
                .is_empty()
        );
        assert_eq!(
            timers.due_reconciles(Timestamp::from_millis(7), 10),
            vec![id("d")]
        );
        assert_eq!(timers.next(), Some(Timestamp::from_millis(9)));
    }
}
