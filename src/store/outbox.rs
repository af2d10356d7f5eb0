//! The alert outbox's deliveries: one row per alert and sink, queued with the
//! decision that raised it and handed to the notifier in order per sink.

use rusqlite::{Transaction, params};

use super::sqlite::{from_json, millis, seq, timestamp, to_json};
use super::{
    Delivery, DeliveryState, DeliveryStatus, Outgoing, PendingDelivery, SqliteStore, StoreError,
};
use crate::engine::Timestamp;
use crate::notify::{AlertMessage, sink_key};
use crate::spec::model::RolloutId;

/// Version 3: deliveries per sink. The v1 `outbox` table stays the record of
/// alerts raised; what was sent where, and when, lives here.
pub(super) const SCHEMA_V3: &str = "
CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace       TEXT NOT NULL,
    name            TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    event           TEXT NOT NULL,
    sink_key        TEXT NOT NULL,      -- kind and where the URL is read; never the URL
    sink            TEXT NOT NULL,      -- AlertSink as JSON (references only)
    message         TEXT NOT NULL,      -- AlertMessage as JSON
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    delivered_at    INTEGER,
    gave_up_at      INTEGER,
    last_error      TEXT,
    UNIQUE (namespace, name, seq, event, sink_key)
);
CREATE INDEX deliveries_open ON deliveries (sink_key, id)
    WHERE delivered_at IS NULL AND gave_up_at IS NULL;
CREATE INDEX deliveries_rollout ON deliveries (namespace, name, id);
";

/// Queues `d` (once: the same alert and sink again is ignored).
pub(super) fn insert(
    tx: &Transaction<'_>,
    id: &RolloutId,
    d: &Outgoing,
    now: Timestamp,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO deliveries (namespace, name, seq, event, sink_key, sink, message, created_at, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
         ON CONFLICT (namespace, name, seq, event, sink_key) DO NOTHING",
        params![
            id.namespace,
            id.name,
            seq(d.seq),
            d.event.name(),
            sink_key(&d.sink),
            to_json(&d.sink)?,
            to_json(&d.message)?,
            millis(now)
        ],
    )?;
    Ok(())
}

impl SqliteStore {
    /// Deliveries to attempt at `now`: for each sink, its oldest open one,
    /// if that is due. A later alert never overtakes an earlier one.
    pub fn due_deliveries(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<PendingDelivery>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT d.id, d.sink_key, d.sink, d.message, d.attempts FROM deliveries d
             WHERE d.delivered_at IS NULL AND d.gave_up_at IS NULL AND d.next_attempt_at <= ?1
               AND NOT EXISTS (SELECT 1 FROM deliveries e WHERE e.sink_key = d.sink_key AND e.id < d.id
                               AND e.delivered_at IS NULL AND e.gave_up_at IS NULL)
             ORDER BY d.id LIMIT ?2",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![millis(now), limit], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, u32>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        let mut undecodable = Vec::new();
        for row in rows {
            let (id, sink_key, sink, message, attempts) = row?;
            let decoded = from_json("alert sink", &sink).and_then(|sink| {
                from_json::<AlertMessage>("alert message", &message).map(|m| (sink, m))
            });
            match decoded {
                Ok((sink, message)) => out.push(PendingDelivery {
                    id,
                    sink_key,
                    sink,
                    message,
                    attempts,
                }),
                Err(e) => undecodable.push((id, e.to_string())),
            }
        }
        drop(stmt);
        // A row this build cannot read must not stop every other alert.
        for (id, error) in undecodable {
            tracing::error!(delivery = id, %error, "alert given up: its stored form does not decode");
            conn.execute(
                "UPDATE deliveries SET gave_up_at = ?2, last_error = ?3 WHERE id = ?1",
                params![id, millis(now), error],
            )?;
        }
        Ok(out)
    }

    /// Records how an attempt at delivery `id` ended.
    pub fn record_delivery(
        &self,
        id: i64,
        outcome: &Delivery,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        match outcome {
            Delivery::Delivered => conn.execute(
                "UPDATE deliveries SET attempts = attempts + 1, delivered_at = ?2, last_error = NULL WHERE id = ?1",
                params![id, millis(now)],
            )?,
            Delivery::Retry { retry_at, error } => conn.execute(
                "UPDATE deliveries SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3 WHERE id = ?1",
                params![id, millis(*retry_at), error],
            )?,
            Delivery::GaveUp { error } => conn.execute(
                "UPDATE deliveries SET attempts = attempts + 1, gave_up_at = ?2, last_error = ?3 WHERE id = ?1",
                params![id, millis(now), error],
            )?,
        };
        Ok(())
    }

    /// The last `limit` deliveries of a rollout's alerts, oldest first.
    pub fn deliveries(
        &self,
        rollout: &RolloutId,
        limit: usize,
    ) -> Result<Vec<DeliveryStatus>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT * FROM (SELECT id, seq, sink_key, message, attempts, created_at, delivered_at, gave_up_at, last_error
             FROM deliveries WHERE namespace = ?1 AND name = ?2 ORDER BY id DESC LIMIT ?3) ORDER BY id",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![rollout.namespace, rollout.name, limit], |r| {
            Ok((
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, u32>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, Option<i64>>(6)?,
                r.get::<_, Option<i64>>(7)?,
                r.get::<_, Option<String>>(8)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, sink, message, attempts, created, delivered, gave_up, last_error) = row?;
            let Ok(message) = from_json::<AlertMessage>("alert message", &message) else {
                continue; // given up by the notifier (see due_deliveries)
            };
            let state = match (delivered, gave_up) {
                (Some(_), _) => DeliveryState::Delivered,
                (None, Some(_)) => DeliveryState::GaveUp,
                (None, None) => DeliveryState::Pending,
            };
            out.push(DeliveryStatus {
                seq: u64::try_from(seq).unwrap_or_default(),
                event: message.event,
                sink,
                title: message.title,
                state,
                attempts,
                queued_at: timestamp(created),
                delivered_at: delivered.map(timestamp),
                last_error,
            });
        }
        Ok(out)
    }
}
