//! Delivery metrics in cluster mode: the decision log over a period, read
//! from the Rollout statuses (the leader's book, else the watch cache).
//!
//! A status keeps the latest [`super::record::MAX_DECISIONS`] records, so
//! the delivery figures of a cluster cover at most that much history per
//! Rollout; standalone mode's SQLite log keeps everything.

use super::{ClusterStore, id_of, record};
use crate::engine::{Action, DecisionRecord, Timestamp};
use crate::ports::StoreError;
use crate::ports::store::PeriodLog;
use crate::spec::model::RolloutId;

/// The records of `[since, until)` of one rollout (oldest first), plus
/// those of the attempt in flight at `since` from its start (or retry): the
/// same selection as the SQLite log's.
pub fn records_between(
    records: &[DecisionRecord],
    since: Timestamp,
    until: Timestamp,
) -> Vec<DecisionRecord> {
    let started = |r: &&DecisionRecord| matches!(r.action, Action::Start | Action::Retry);
    let ended = |r: &DecisionRecord| {
        matches!(
            r.action,
            Action::Promote | Action::Rollback | Action::Abort | Action::Supersede
        )
    };
    let open = records
        .iter()
        .filter(|r| r.at < since)
        .filter(started)
        .map(|r| r.seq)
        .max()
        .filter(|&start| {
            !records
                .iter()
                .any(|r| r.seq > start && r.at < since && ended(r))
        });
    records
        .iter()
        .filter(|r| r.at < until && (r.at >= since || open.is_some_and(|s| r.seq >= s)))
        .cloned()
        .collect()
}

impl PeriodLog for ClusterStore {
    fn decisions_between(
        &self,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<(RolloutId, DecisionRecord)>, StoreError> {
        // The leader's book is the freshest; the cache has every Rollout.
        let mut ids: Vec<RolloutId> = self.cache.state().iter().map(|r| id_of(r)).collect();
        ids.extend(self.book.all().into_iter().map(|(id, _)| id));
        ids.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        ids.dedup();
        let mut out = Vec::new();
        for id in ids {
            let Some(status) = self.status(&id) else {
                continue;
            };
            let records = record::records(&status);
            out.extend(
                records_between(&records, since, until)
                    .into_iter()
                    .map(|r| (id.clone(), r)),
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Phase, Reason};
    use crate::spec::units::Weight;

    fn at(seq: u64, minute: u64, action: Action) -> DecisionRecord {
        DecisionRecord {
            seq,
            at: Timestamp::from_millis(minute * 60_000),
            from: Phase::Progressing,
            to: Phase::Progressing,
            action,
            reason: String::new(),
            detail: Reason::StepPassed { step: 1 },
            step: 1,
            weight: Weight::ZERO,
            stable_version: "v1".into(),
            canary_version: "v2".into(),
            gates: Vec::new(),
            shadow: false,
            by: None,
        }
    }

    fn seqs(records: &[DecisionRecord]) -> Vec<u64> {
        records.iter().map(|r| r.seq).collect()
    }

    #[test]
    fn an_attempt_in_flight_at_the_start_of_the_period_is_read_from_its_start() {
        let log = [
            at(1, 1, Action::Start),
            at(2, 2, Action::Advance),
            at(3, 11, Action::Promote),
            at(4, 20, Action::Start),
        ];
        let since = Timestamp::from_millis(10 * 60_000);
        let until = Timestamp::from_millis(15 * 60_000);
        assert_eq!(seqs(&records_between(&log, since, until)), [1, 2, 3]);
    }

    #[test]
    fn a_finished_attempt_before_the_period_is_left_out() {
        let log = [
            at(1, 1, Action::Start),
            at(2, 2, Action::Rollback),
            at(3, 12, Action::Start),
        ];
        let since = Timestamp::from_millis(10 * 60_000);
        let until = Timestamp::from_millis(15 * 60_000);
        assert_eq!(seqs(&records_between(&log, since, until)), [3]);
    }
}
