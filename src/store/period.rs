//! Reading the decision log over a period, for delivery metrics: every
//! rollout's records of `[since, until)`, and before `since` those of the
//! attempt then in flight, from its start (so its lead time is known).

use rusqlite::params;

use super::sqlite::{from_json, millis};
use super::{SqliteStore, StoreError};
use crate::engine::{DecisionRecord, Timestamp};
use crate::ports::store::PeriodLog;
use crate::spec::model::RolloutId;

impl PeriodLog for SqliteStore {
    fn decisions_between(
        &self,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<(RolloutId, DecisionRecord)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "WITH starts AS (
                 SELECT namespace, name, MAX(seq) AS seq FROM decisions
                 WHERE at < ?1 AND action IN ('start', 'retry') GROUP BY namespace, name),
             open AS (
                 SELECT s.namespace, s.name, s.seq FROM starts s
                 WHERE NOT EXISTS (SELECT 1 FROM decisions e
                     WHERE e.namespace = s.namespace AND e.name = s.name AND e.seq > s.seq
                     AND e.at < ?1 AND e.action IN ('promote', 'rollback', 'abort', 'supersede')))
             SELECT d.namespace, d.name, d.record FROM decisions d
             LEFT JOIN open o ON o.namespace = d.namespace AND o.name = d.name
             WHERE d.at < ?2 AND (d.at >= ?1 OR d.seq >= o.seq)
             ORDER BY d.namespace, d.name, d.seq",
        )?;
        let rows = stmt.query_map(params![millis(since), millis(until)], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        rows.map(|row| {
            let (namespace, name, record) = row?;
            Ok((
                RolloutId { namespace, name },
                from_json("decision record", &record)?,
            ))
        })
        .collect()
    }
}
