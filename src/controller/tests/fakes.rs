//! Fakes of every port for the controller's in-process tests: a spec
//! source fed by the test, an in-memory store that can be made to fail, a
//! router that records its calls and can refuse them, a metrics source that
//! answers the policy's count queries from a traffic model and can stall.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::engine::{DecisionRecord, Timestamp};
use crate::ports::{
    Answer, Change, Checkpoint, DecisionLog, Health, InstantQuery, MetricsSource, QueryValue,
    RouterError, RouterFactory, Series, SpecEvent, SpecSource, SpecSourceError, StateStore,
    StoreError, StoredRollout, TrafficRouter,
};
use crate::spec::model::{DeploySpec, RolloutId};
use crate::spec::units::Weight;

/// Spec events the test pushes; `hold` keeps a look going until released
/// (a full rescan of a large directory).
#[derive(Clone, Default)]
pub struct FakeSpecs {
    pub queue: Arc<Mutex<VecDeque<SpecEvent>>>,
    pub retried: Arc<Mutex<Vec<RolloutId>>>,
    pub hold: Arc<AtomicBool>,
    pub holding: Arc<AtomicBool>,
    pub release: Arc<tokio::sync::Notify>,
}

impl FakeSpecs {
    pub fn push(&self, event: SpecEvent) {
        self.queue.lock().expect("lock").push_back(event);
    }
}

#[async_trait]
impl SpecSource for FakeSpecs {
    async fn changes(&mut self) -> Result<Vec<SpecEvent>, SpecSourceError> {
        if self.hold.load(Ordering::SeqCst) {
            self.holding.store(true, Ordering::SeqCst);
            self.release.notified().await;
            self.holding.store(false, Ordering::SeqCst);
        }
        Ok(self.queue.lock().expect("lock").drain(..).collect())
    }

    fn retry(&mut self, id: &RolloutId) {
        self.retried.lock().expect("lock").push(id.clone());
    }
}

/// An in-memory store; `fail` makes commits fail (a full disk).
#[derive(Default)]
pub struct FakeStore {
    pub states: Mutex<BTreeMap<RolloutId, StoredRollout>>,
    pub records: Mutex<Vec<DecisionRecord>>,
    pub commits: AtomicUsize,
    pub fail: AtomicBool,
}

#[async_trait]
impl StateStore for FakeStore {
    async fn load(&self) -> Result<Vec<StoredRollout>, StoreError> {
        Ok(self
            .states
            .lock()
            .expect("lock")
            .values()
            .cloned()
            .collect())
    }

    async fn commit(&self, changes: Vec<Change>, now: Timestamp) -> Result<(), StoreError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Backend("disk full".into()));
        }
        self.commits.fetch_add(1, Ordering::SeqCst);
        let mut states = self.states.lock().expect("lock");
        let mut records = self.records.lock().expect("lock");
        for c in changes {
            for r in c.records {
                if !records.iter().any(|x| x.seq == r.seq) {
                    records.push(r);
                }
            }
            states.insert(
                c.id.clone(),
                StoredRollout {
                    id: c.id,
                    state: c.state,
                    updated_at: now,
                },
            );
        }
        Ok(())
    }

    async fn checkpoint(&self, marks: Vec<Checkpoint>) -> Result<(), StoreError> {
        self.checkpoint_marks(marks).await
    }
}

impl FakeStore {
    async fn checkpoint_marks(&self, marks: Vec<Checkpoint>) -> Result<(), StoreError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Backend("disk full".into()));
        }
        let mut states = self.states.lock().expect("lock");
        for m in marks {
            if let Some(s) = states.get_mut(&m.id) {
                s.state.step_elapsed = m.step_elapsed;
                s.state.last_tick = Some(m.last_tick);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl DecisionLog for FakeStore {
    async fn decisions(
        &self,
        _: &RolloutId,
        limit: usize,
    ) -> Result<Vec<DecisionRecord>, StoreError> {
        let r = self.records.lock().expect("lock");
        Ok(r.iter().rev().take(limit).rev().cloned().collect())
    }

    async fn last_decision(&self, _: &RolloutId) -> Result<Option<DecisionRecord>, StoreError> {
        Ok(self.records.lock().expect("lock").last().cloned())
    }
}

/// A router that records every weight set; `refuse` makes it fail.
pub struct FakeRouter {
    pub weight: Mutex<Weight>,
    pub sets: Mutex<Vec<Weight>>,
    pub reads: AtomicUsize,
    pub health_checks: AtomicUsize,
    pub refuse: AtomicBool,
    pub ready: AtomicBool,
    pub stopped: AtomicBool,
}

impl Default for FakeRouter {
    fn default() -> FakeRouter {
        FakeRouter {
            weight: Mutex::new(Weight::ZERO),
            sets: Mutex::new(Vec::new()),
            reads: AtomicUsize::new(0),
            health_checks: AtomicUsize::new(0),
            refuse: AtomicBool::new(false),
            ready: AtomicBool::new(true),
            stopped: AtomicBool::new(false),
        }
    }
}

impl FakeRouter {
    pub fn weight(&self) -> Weight {
        *self.weight.lock().expect("lock")
    }
}

#[async_trait]
impl TrafficRouter for FakeRouter {
    async fn set_weight(&self, weight: Weight) -> Result<(), RouterError> {
        if self.refuse.load(Ordering::SeqCst) {
            return Err(RouterError::Refused("runtime API socket gone".into()));
        }
        self.sets.lock().expect("lock").push(weight);
        *self.weight.lock().expect("lock") = weight;
        Ok(())
    }

    async fn weight(&self) -> Result<Weight, RouterError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        Ok(self.weight())
    }

    async fn health(&self) -> Health {
        self.health_checks.fetch_add(1, Ordering::SeqCst);
        Health {
            stable: true,
            canary: self.ready.load(Ordering::SeqCst),
        }
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }
}

/// Hands out one shared [`FakeRouter`].
pub struct FakeRouters(pub Arc<FakeRouter>);

#[async_trait]
impl RouterFactory for FakeRouters {
    async fn router(&self, _: &DeploySpec) -> Result<Arc<dyn TrafficRouter>, RouterError> {
        Ok(self.0.clone())
    }
}

/// Answers `http-red` count queries from a traffic model: each track's
/// requests grow by `per_second` (the canary's by its share of it) with an
/// error rate and fast responses; a stall delays every answer.
pub struct FakeMetrics {
    pub start: Timestamp,
    pub per_second: f64,
    pub canary_errors: Mutex<f64>,
    pub stall: Mutex<Option<Duration>>,
    pub batches: AtomicUsize,
    /// The canary's weight over time is read from its router.
    pub router: Arc<FakeRouter>,
    /// Canary requests served so far (integrated as time passes).
    pub canary_served: Mutex<(Timestamp, f64, f64)>,
}

impl FakeMetrics {
    pub fn new(start: Timestamp, per_second: f64, router: Arc<FakeRouter>) -> FakeMetrics {
        FakeMetrics {
            start,
            per_second,
            canary_errors: Mutex::new(0.0),
            stall: Mutex::new(None),
            batches: AtomicUsize::new(0),
            router,
            canary_served: Mutex::new((start, 0.0, 0.0)),
        }
    }

    /// Canary requests and errors so far, integrating the weight since the last call.
    fn canary(&self, at: Timestamp) -> (f64, f64) {
        let mut s = self.canary_served.lock().expect("lock");
        let (since, requests, errors) = *s;
        let dt = at.since(since).as_secs_f64();
        let w = self.router.weight().percent() / 100.0;
        let n = self.per_second * w * dt;
        let rate = *self.canary_errors.lock().expect("lock");
        *s = (at.max(since), requests + n, errors + n * rate);
        (s.1, s.2)
    }
}

#[async_trait]
impl MetricsSource for FakeMetrics {
    async fn query_batch(&self, queries: &[InstantQuery], at: Timestamp) -> Vec<Answer> {
        self.batches.fetch_add(1, Ordering::SeqCst);
        let stall = *self.stall.lock().expect("lock");
        if let Some(d) = stall {
            tokio::time::sleep(d).await;
        }
        let stable_requests = self.per_second * at.since(self.start).as_secs_f64();
        let (canary_requests, canary_errors) = self.canary(at);
        queries
            .iter()
            .map(|q| {
                // Per rollout (`version="v2"`) or grouped (`version=~"v1|v2"`,
                // one series per version, labelled as Prometheus would).
                let mut series = Vec::new();
                for version in label_values(&q.promql, "version") {
                    let (n, x) = if version == "v2" {
                        (canary_requests, canary_errors)
                    } else {
                        (stable_requests, stable_requests * 0.001)
                    };
                    let labels = |le: Option<&str>| {
                        let mut l: std::collections::BTreeMap<String, String> =
                            [("version".to_string(), version.clone())]
                                .into_iter()
                                .collect();
                        if let Some(service) = label_values(&q.promql, "service").first() {
                            l.insert("service".into(), service.clone());
                        }
                        if let Some(le) = le {
                            l.insert("le".into(), le.into());
                        }
                        l.into_iter().collect::<crate::ports::Labels>()
                    };
                    if q.promql.starts_with("sum by (le") {
                        series.extend(
                            [("0.05", 0.99), ("0.1", 0.999), ("0.2", 1.0), ("+Inf", 1.0)]
                                .iter()
                                .map(|(le, share)| Series {
                                    labels: labels(Some(le)),
                                    value: n * share,
                                }),
                        );
                    } else {
                        let value = if q.promql.contains("code=~\"5..\"") {
                            x
                        } else {
                            n
                        };
                        series.push(Series {
                            labels: labels(None),
                            value,
                        });
                    }
                }
                Ok(QueryValue::Vector(series))
            })
            .collect()
    }
}

/// The values a query selects for `label`: `label="a"` or `label=~"a|b"`.
fn label_values(promql: &str, label: &str) -> Vec<String> {
    for (op, split) in [("=\"", false), ("=~\"", true)] {
        let needle = format!("{label}{op}");
        if let Some(at) = promql.find(&needle) {
            let rest = &promql[at + needle.len()..];
            let value = rest.split('"').next().unwrap_or_default();
            return if split {
                value.split('|').map(str::to_string).collect()
            } else {
                vec![value.to_string()]
            };
        }
    }
    Vec::new()
}
