//! HAProxy's server states (`show stat`), read once per short period for
//! every rollout on one Runtime API socket: concurrent callers wait on the
//! one read in flight, and its parsed answer serves them all.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::haproxy::command;

/// How long one `show stat` answers for: shorter than any tick, longer than
/// the burst of health calls a tick makes.
pub const FRESH_FOR: Duration = Duration::from_millis(500);

/// Each server's readiness by `(backend, server)`.
type States = HashMap<(String, String), bool>;

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

    /// Every server's readiness, from a read at most `fresh_for` old; a
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

/// `show stat`'s CSV: a server is ready when `UP` (or `no check`, when
/// checks are off).
fn parse(csv: &str) -> States {
    csv.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let cols: Vec<&str> = line.split(',').collect();
            let status = cols.get(17)?;
            Some((
                (cols[0].to_string(), cols[1].to_string()),
                status.starts_with("UP") || *status == "no check",
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_up_or_unchecked_are_ready_and_others_are_not() {
        let csv = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status\n\
                   app,stable,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP 1/2,1\n\
                   app,canary,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,1\n\
                   app,spare,0,0,0,0,,0,0,0,,0,,0,0,0,0,no check,1\n\
                   app,BACKEND,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1\n";
        let states = parse(csv);
        let ready = |s: &str| states.get(&("app".to_string(), s.to_string())).copied();
        assert_eq!(ready("stable"), Some(true));
        assert_eq!(ready("canary"), Some(false));
        assert_eq!(ready("spare"), Some(true));
        assert_eq!(ready("missing"), None);
    }
}
