//! HAProxy's server states and weights (`show stat`), read once per short
//! period for every rollout on one Runtime API socket: concurrent callers
//! wait on the one read in flight, and its parsed answer serves them all.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::haproxy::command;

/// How long one `show stat` answers for: shorter than any tick, longer than
/// the burst of readiness and weight reads a tick makes.
pub const FRESH_FOR: Duration = Duration::from_millis(500);

/// One server's row of `show stat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerStat {
    /// `UP` (or `no check`, when checks are off).
    pub ready: bool,
    /// Its effective weight (the `weight` column), when the row has one.
    pub weight: Option<u32>,
}

/// Each server's row by backend, then server name.
#[derive(Debug, Default)]
pub struct States(HashMap<String, HashMap<String, ServerStat>>);

impl States {
    /// The row of `backend`/`server`, if HAProxy listed it.
    pub fn get(&self, backend: &str, server: &str) -> Option<ServerStat> {
        self.0.get(backend)?.get(server).copied()
    }
}

/// The last read: when, and its states or why it failed.
struct Last {
    at: Instant,
    states: Result<Arc<States>, String>,
}

/// One socket's shared stats reader. Cheap to clone (a handle).
#[derive(Clone)]
pub struct StatsReader {
    socket: String,
    fresh_for: Duration,
    last: Arc<Mutex<Option<Last>>>,
    reads: Arc<AtomicU64>,
}

impl StatsReader {
    /// A reader for `socket` whose answers are reused for `fresh_for`.
    pub fn new(socket: impl Into<String>, fresh_for: Duration) -> StatsReader {
        StatsReader {
            socket: socket.into(),
            fresh_for,
            last: Arc::default(),
            reads: Arc::default(),
        }
    }

    /// The socket it reads.
    pub fn socket(&self) -> &str {
        &self.socket
    }

    /// How many times `show stat` was sent.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Every server's row, from a read at most `fresh_for` old; a
    /// failed read fails every caller that waited on it.
    pub async fn states(&self) -> Result<Arc<States>, String> {
        // Held across the read: callers arriving meanwhile wait for it.
        let mut last = self.last.lock().await;
        if let Some(l) = last.as_ref().filter(|l| l.at.elapsed() < self.fresh_for) {
            return l.states.clone();
        }
        self.reads.fetch_add(1, Ordering::Relaxed);
        let states = command(&self.socket, "show stat")
            .await
            .map(|csv| Arc::new(parse(&csv)))
            .map_err(|e| e.to_string());
        *last = Some(Last {
            at: Instant::now(),
            states: states.clone(),
        });
        states
    }
}

/// `show stat`'s CSV, its columns found by the header's names (`status`
/// and `weight`, at 17 and 18 in every HAProxy since 1.x).
fn parse(csv: &str) -> States {
    let mut status_at = 17;
    let mut weight_at = 18;
    let mut states = States::default();
    for line in csv.lines() {
        if let Some(header) = line.strip_prefix('#') {
            for (i, name) in header.trim_start().split(',').enumerate() {
                match name {
                    "status" => status_at = i,
                    "weight" => weight_at = i,
                    _ => {}
                }
            }
            continue;
        }
        let cols: Vec<&str> = line.split(',').collect();
        let (Some(backend), Some(server), Some(status)) =
            (cols.first(), cols.get(1), cols.get(status_at))
        else {
            continue;
        };
        let stat = ServerStat {
            ready: status.starts_with("UP") || *status == "no check",
            weight: cols.get(weight_at).and_then(|w| w.parse().ok()),
        };
        states
            .0
            .entry(backend.to_string())
            .or_default()
            .insert(server.to_string(), stat);
    }
    states
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_up_or_unchecked_are_ready_and_others_are_not() {
        let csv = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status\n\
                   app,stable,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP 1/2,243\n\
                   app,canary,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,13\n\
                   app,spare,0,0,0,0,,0,0,0,,0,,0,0,0,0,no check,1\n\
                   app,BACKEND,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,257\n";
        let states = parse(csv);
        let ready = |s: &str| states.get("app", s).map(|s| s.ready);
        assert_eq!(ready("stable"), Some(true));
        assert_eq!(ready("canary"), Some(false));
        assert_eq!(ready("spare"), Some(true));
        assert_eq!(ready("missing"), None);
        assert_eq!(states.get("other", "stable"), None);
    }

    #[test]
    fn server_weights_are_read_from_the_column_the_header_names() {
        let csv = "#pxname,svname,weight,status\n\
                   app,stable,243,UP\n\
                   app,canary,,UP\n\
                   lonely\n";
        let states = parse(csv);
        assert_eq!(
            states.get("app", "stable").and_then(|s| s.weight),
            Some(243)
        );
        assert_eq!(states.get("app", "canary").and_then(|s| s.weight), None);
        assert_eq!(states.get("app", "canary").map(|s| s.ready), Some(true));
    }
}
