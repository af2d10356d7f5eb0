//! The SQLite adapter of the store (rusqlite, WAL journal, full sync).

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};

use super::{Change, Checkpoint, StoreError, StoredRollout};
use crate::engine::{DecisionRecord, RolloutState, Timestamp};
use crate::spec::model::RolloutId;

/// The newest schema this build writes.
const SCHEMA_VERSION: i64 = 4;

const SCHEMA_V1: &str = "
CREATE TABLE rollouts (
    namespace  TEXT NOT NULL,
    name       TEXT NOT NULL,
    state      TEXT NOT NULL,           -- RolloutState as JSON
    updated_at INTEGER NOT NULL,        -- ms since the epoch
    PRIMARY KEY (namespace, name)
);
CREATE TABLE decisions (
    namespace TEXT NOT NULL,
    name      TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    at        INTEGER NOT NULL,
    action    TEXT NOT NULL,
    record    TEXT NOT NULL,            -- DecisionRecord as JSON
    PRIMARY KEY (namespace, name, seq)
);
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace       TEXT NOT NULL,
    name            TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    event           TEXT NOT NULL,
    alert           TEXT NOT NULL,      -- Alert as JSON
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    delivered_at    INTEGER,
    gave_up_at      INTEGER,
    last_error      TEXT,
    UNIQUE (namespace, name, seq, event)
);
CREATE INDEX outbox_pending ON outbox (next_attempt_at)
    WHERE delivered_at IS NULL AND gave_up_at IS NULL;
";

/// Version 2: the last accepted text of each deploy file, so a file broken
/// while canaryd was down still runs its last good version after a restart.
const SCHEMA_V2: &str = "
CREATE TABLE accepted_files (
    path        TEXT PRIMARY KEY,
    text        TEXT NOT NULL,
    accepted_at INTEGER NOT NULL
);
";

/// Version 4: a rollout's watched time, checkpointed every tick between
/// writes of its whole state (NULL when the state is newer).
const SCHEMA_V4: &str = "
ALTER TABLE rollouts ADD COLUMN watched_ms INTEGER;
ALTER TABLE rollouts ADD COLUMN watched_at INTEGER;
";

/// Rollout state, decision log and alert outbox in one SQLite file. Cheap to
/// clone: clones share the connection.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        StoreError::Backend(e.to_string())
    }
}

pub(super) fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt {
        what: "value",
        message: e.to_string(),
    })
}

pub(super) fn from_json<T: serde::de::DeserializeOwned>(
    what: &'static str,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        what,
        message: e.to_string(),
    })
}

pub(super) fn millis(t: Timestamp) -> i64 {
    i64::try_from(t.millis()).unwrap_or(i64::MAX)
}

pub(super) fn timestamp(ms: i64) -> Timestamp {
    Timestamp::from_millis(u64::try_from(ms).unwrap_or(0))
}

pub(super) fn seq(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::init(Connection::open(path)?)
    }

    /// A store that lives in memory (tests, `--state :memory:`).
    pub fn in_memory() -> Result<SqliteStore, StoreError> {
        SqliteStore::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<SqliteStore, StoreError> {
        // WAL: readers (the API) never block the controller's commits.
        // synchronous=FULL: a committed decision survives power loss too.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        if version < 1 {
            conn.execute_batch(&format!(
                "BEGIN; {SCHEMA_V1} PRAGMA user_version = 1; COMMIT;"
            ))?;
        }
        if version < 2 {
            conn.execute_batch(&format!(
                "BEGIN; {SCHEMA_V2} PRAGMA user_version = 2; COMMIT;"
            ))?;
        }
        if version < 3 {
            conn.execute_batch(&format!(
                "BEGIN; {} PRAGMA user_version = 3; COMMIT;",
                super::outbox::SCHEMA_V3
            ))?;
        }
        if version < 4 {
            conn.execute_batch(&format!(
                "BEGIN; {SCHEMA_V4} PRAGMA user_version = 4; COMMIT;"
            ))?;
        }
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    pub(super) fn conn(&self) -> MutexGuard<'_, Connection> {
        match self.conn.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Every stored rollout with its last committed state.
    pub fn load(&self) -> Result<Vec<StoredRollout>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT namespace, name, state, updated_at, watched_ms, watched_at FROM rollouts
             ORDER BY namespace, name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, Option<i64>>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (namespace, name, state, updated_at, watched_ms, watched_at) = row?;
            let mut state: RolloutState = from_json("rollout state", &state)?;
            // A watched-time checkpoint newer than the whole state.
            if let (Some(ms), Some(at)) = (watched_ms, watched_at) {
                state.step_elapsed =
                    std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
                state.last_tick = Some(timestamp(at));
            }
            out.push(StoredRollout {
                id: RolloutId { namespace, name },
                state,
                updated_at: timestamp(updated_at),
            });
        }
        Ok(out)
    }

    /// Commits a tick's changes in one transaction, at `now`.
    pub fn commit(&self, changes: &[Change], now: Timestamp) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for c in changes {
            let (ns, name) = (&c.id.namespace, &c.id.name);
            tx.execute(
                "INSERT INTO rollouts (namespace, name, state, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (namespace, name) DO UPDATE SET state = excluded.state,
                     updated_at = excluded.updated_at, watched_ms = NULL, watched_at = NULL",
                params![ns, name, to_json(&c.state)?, millis(now)],
            )?;
            for r in &c.records {
                tx.execute(
                    "INSERT INTO decisions (namespace, name, seq, at, action, record) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (namespace, name, seq) DO NOTHING",
                    params![ns, name, seq(r.seq), millis(r.at), r.action.to_string(), to_json(r)?],
                )?;
            }
            for a in &c.alerts {
                let event = a.event.name();
                tx.execute(
                    "INSERT INTO outbox (namespace, name, seq, event, alert, created_at, next_attempt_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
                     ON CONFLICT (namespace, name, seq, event) DO NOTHING",
                    params![ns, name, seq(a.seq), event, to_json(a)?, millis(now)],
                )?;
            }
            for d in &c.deliveries {
                super::outbox::insert(&tx, &c.id, d, now)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Checkpoints watched time between writes of whole states (one small
    /// update per rollout, in one transaction).
    pub fn checkpoint(&self, marks: &[Checkpoint]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for m in marks {
            tx.execute(
                "UPDATE rollouts SET watched_ms = ?3, watched_at = ?4 WHERE namespace = ?1 AND name = ?2",
                params![
                    m.id.namespace,
                    m.id.name,
                    i64::try_from(m.step_elapsed.as_millis()).unwrap_or(i64::MAX),
                    millis(m.last_tick)
                ],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The last `limit` decisions of a rollout, oldest first.
    pub fn decisions(
        &self,
        id: &RolloutId,
        limit: usize,
    ) -> Result<Vec<DecisionRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT record FROM (SELECT seq, record FROM decisions WHERE namespace = ?1 AND name = ?2
             ORDER BY seq DESC LIMIT ?3) ORDER BY seq",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![id.namespace, id.name, limit], |r| {
            r.get::<_, String>(0)
        })?;
        rows.map(|r| from_json("decision record", &r?)).collect()
    }

    /// The last decision of a rollout, if any.
    pub fn last_decision(&self, id: &RolloutId) -> Result<Option<DecisionRecord>, StoreError> {
        let conn = self.conn();
        let text: Option<String> = conn
            .query_row(
                "SELECT record FROM decisions WHERE namespace = ?1 AND name = ?2 ORDER BY seq DESC LIMIT 1",
                params![id.namespace, id.name],
                |r| r.get(0),
            )
            .optional()?;
        text.map(|t| from_json("decision record", &t)).transpose()
    }

    /// Remembers the text of a deploy file that was accepted.
    pub fn save_accepted_file(
        &self,
        path: &str,
        text: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO accepted_files (path, text, accepted_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (path) DO UPDATE SET text = excluded.text, accepted_at = excluded.accepted_at",
            params![path, text, millis(now)],
        )?;
        Ok(())
    }

    /// The last accepted text of a deploy file, if any.
    pub fn accepted_file(&self, path: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT text FROM accepted_files WHERE path = ?1",
                params![path],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The stored state of one rollout.
    pub fn state(&self, id: &RolloutId) -> Result<Option<RolloutState>, StoreError> {
        let conn = self.conn();
        let text: Option<String> = conn
            .query_row(
                "SELECT state FROM rollouts WHERE namespace = ?1 AND name = ?2",
                params![id.namespace, id.name],
                |r| r.get(0),
            )
            .optional()?;
        text.map(|t| from_json("rollout state", &t)).transpose()
    }
}
