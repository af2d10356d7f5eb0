//! The event stream's subscriptions: each subscriber has its own queue that
//! keeps only the latest event per rollout (and per rejected file), in the
//! order they first arrived, and is drained at most once per
//! [`EVENT_WINDOW`]. A client that reads slowly therefore costs at most one
//! pending event per rollout, never a growing backlog, and a rollout updated
//! many times within a window is sent once, in its latest state.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::Event;
use crate::spec::model::RolloutId;

/// How often a subscription is drained at most: each rollout gets at most
/// one event per window (its latest state), which covers a tick of the
/// usual intervals (1 s and up).
pub const EVENT_WINDOW: Duration = Duration::from_secs(1);

/// What a subscription receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Topic {
    /// Every rollout and every rejected file.
    All,
    /// One rollout, and rejections of its deploy file.
    Rollout {
        /// The rollout.
        id: RolloutId,
        /// Its deploy file's path (as `FileRejected` names it).
        file_path: String,
    },
}

/// What a pending event replaces: the same rollout, or the same file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Rollout(RolloutId),
    File(String),
}

impl Key {
    fn of(event: &Event) -> Key {
        match event {
            Event::Decision { rollout, .. } | Event::State { rollout } => Key::Rollout(RolloutId {
                namespace: rollout.namespace.clone(),
                name: rollout.name.clone(),
            }),
            Event::FileRejected { file, .. } => Key::File(file.clone()),
        }
    }
}

impl Topic {
    fn wants(&self, key: &Key) -> bool {
        match (self, key) {
            (Topic::All, _) => true,
            (Topic::Rollout { id, .. }, Key::Rollout(k)) => id == k,
            (Topic::Rollout { file_path, .. }, Key::File(f)) => file_path == f,
        }
    }
}

/// The latest event per key, in first-arrival order.
#[derive(Default)]
struct Queue {
    order: VecDeque<Key>,
    latest: HashMap<Key, Arc<Event>>,
    closed: bool,
}

impl Queue {
    fn push(&mut self, key: Key, event: Arc<Event>) {
        match self.latest.get_mut(&key) {
            Some(pending) => *pending = merged(pending, event),
            None => {
                self.order.push_back(key.clone());
                self.latest.insert(key, event);
            }
        }
    }

    fn drain(&mut self) -> Vec<Arc<Event>> {
        let mut out = Vec::with_capacity(self.order.len());
        while let Some(key) = self.order.pop_front() {
            if let Some(event) = self.latest.remove(&key) {
                out.push(event);
            }
        }
        out
    }
}

/// A newer event over a pending one: a state change keeps a pending
/// decision (with the newer rollout), so a tick's decision is not hidden by
/// the state that follows it; anything else replaces it.
fn merged(pending: &Event, newer: Arc<Event>) -> Arc<Event> {
    match (pending, &*newer) {
        (Event::Decision { decision, .. }, Event::State { rollout }) => Arc::new(Event::Decision {
            rollout: rollout.clone(),
            decision: decision.clone(),
        }),
        _ => newer,
    }
}

/// What the view and a subscription share.
struct Shared {
    topic: Topic,
    queue: Mutex<Queue>,
    wake: Notify,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Every live subscription (the view's side).
#[derive(Default)]
pub(super) struct Subscribers(Mutex<Vec<Weak<Shared>>>);

impl Subscribers {
    fn list(&self) -> MutexGuard<'_, Vec<Weak<Shared>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn subscribe(&self, topic: Topic) -> Subscription {
        let shared = Arc::new(Shared {
            topic,
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
        });
        self.list().push(Arc::downgrade(&shared));
        Subscription {
            shared,
            last_drain: None,
        }
    }

    /// Queues `event` for every subscription that wants it (shared, not
    /// copied), forgetting the ones whose client went away.
    pub(super) fn publish(&self, event: Event) {
        let key = Key::of(&event);
        let event = Arc::new(event);
        self.list().retain(|weak| match weak.upgrade() {
            Some(s) => {
                if s.topic.wants(&key) {
                    s.queue().push(key.clone(), event.clone());
                    s.wake.notify_one();
                }
                true
            }
            None => false,
        });
    }

    /// Ends every subscription (the view is going away).
    pub(super) fn close(&self) {
        for s in self.list().drain(..).filter_map(|w| w.upgrade()) {
            s.queue().closed = true;
            s.wake.notify_one();
        }
    }
}

/// One client's subscription to the event stream.
pub struct Subscription {
    shared: Arc<Shared>,
    last_drain: Option<Instant>,
}

impl Subscription {
    /// The pending events, oldest first, once at least one is pending and
    /// a window has passed since the last batch; none once the view is gone.
    pub async fn next_batch(&mut self) -> Option<Vec<Arc<Event>>> {
        loop {
            {
                let queue = self.shared.queue();
                if !queue.order.is_empty() {
                    break;
                }
                if queue.closed {
                    return None;
                }
            }
            // A permit stored by `publish` before this wait is not lost.
            self.shared.wake.notified().await;
        }
        if let Some(last) = self.last_drain {
            // Let the window fill: later updates replace pending ones.
            tokio::time::sleep_until(last + EVENT_WINDOW).await;
        }
        self.last_drain = Some(Instant::now());
        Some(self.shared.queue().drain())
    }

    /// How many events are waiting.
    pub fn pending(&self) -> usize {
        self.shared.queue().order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::RolloutView;
    use crate::engine::{Action, DecisionRecord, Phase, Reason, Timestamp};
    use crate::spec::units::Weight;

    fn view(name: &str, weight: f64) -> RolloutView {
        let mut v = crate::controller::view::seed_view();
        v.name = name.into();
        v.canary_weight = weight;
        v
    }

    fn state(name: &str, weight: f64) -> Event {
        Event::State {
            rollout: Arc::new(view(name, weight)),
        }
    }

    fn weight(event: &Event) -> f64 {
        match event {
            Event::State { rollout } | Event::Decision { rollout, .. } => rollout.canary_weight,
            Event::FileRejected { .. } => f64::NAN,
        }
    }

    #[tokio::test]
    async fn a_client_that_does_not_read_holds_one_pending_event_per_rollout() {
        let subscribers = Subscribers::default();
        let mut sub = subscribers.subscribe(Topic::All);
        for round in 0..100 {
            for i in 0..100 {
                subscribers.publish(state(&format!("svc-{i:03}"), f64::from(round)));
            }
        }
        assert_eq!(sub.pending(), 100);
        let batch = sub.next_batch().await.expect("open");
        assert_eq!(batch.len(), 100);
        assert!(batch.iter().all(|e| weight(e) == 99.0));
        assert_eq!(sub.pending(), 0);
    }

    #[tokio::test]
    async fn a_state_change_after_a_pending_decision_keeps_the_decision_with_the_newer_state() {
        let subscribers = Subscribers::default();
        let mut sub = subscribers.subscribe(Topic::All);
        let record = DecisionRecord {
            seq: 7,
            at: Timestamp::from_millis(0),
            from: Phase::Idle,
            to: Phase::Progressing,
            action: Action::Start,
            reason: "new version v2".into(),
            detail: Reason::NewVersion {
                version: "v2".into(),
            },
            step: 0,
            weight: Weight::ZERO,
            stable_version: "v1".into(),
            canary_version: "v2".into(),
            gates: Vec::new(),
            shadow: false,
            by: None,
        };
        subscribers.publish(Event::Decision {
            rollout: Arc::new(view("checkout", 5.0)),
            decision: Box::new(record),
        });
        subscribers.publish(state("checkout", 10.0));
        let batch = sub.next_batch().await.expect("open");
        match batch.iter().map(|e| &**e).collect::<Vec<_>>().as_slice() {
            [Event::Decision { rollout, decision }] => {
                assert_eq!(rollout.canary_weight, 10.0);
                assert_eq!(decision.seq, 7);
            }
            other => panic!("expected one decision, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_gone_client_is_forgotten_and_the_stream_ends_with_the_view() {
        let subscribers = Subscribers::default();
        let gone = subscribers.subscribe(Topic::All);
        let mut kept = subscribers.subscribe(Topic::All);
        drop(gone);
        subscribers.publish(state("checkout", 1.0));
        assert_eq!(subscribers.list().len(), 1);
        subscribers.close();
        assert_eq!(kept.next_batch().await.map(|b| b.len()), Some(1));
        assert!(kept.next_batch().await.is_none());
    }
}
