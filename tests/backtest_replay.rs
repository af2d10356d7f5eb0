//! The replay behind `canaryd backtest`, on a stand-in history (no
//! Prometheus): one range query per distinct query for the whole span, the
//! daemon's queries at each tick (counters, and custom `query:` gates read at
//! that instant), and a history that cannot be read stops the replay.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use canaryd::backtest::{BacktestError, Outcome, RangeSeries, RangeSource, Span, replay};
use canaryd::engine::Timestamp;
use canaryd::provider::InstantQuery;
use canaryd::spec::policy::PolicySet;

const FROM: u64 = 1_741_082_400_000;
const INTERVAL_MS: u64 = 10_000;

/// History as functions of time, by a fragment of the PromQL asked: each
/// track serves 20 requests/s to the canary and 200 to the stable version,
/// 0.2% errors, every request under 50 ms; a custom gauge `queue_depth`
/// whose value is given by `queue`.
struct Fake {
    queue: fn(u64) -> f64,
    fail: bool,
    asked: Mutex<HashMap<String, usize>>,
}

impl Fake {
    fn new(queue: fn(u64) -> f64) -> Fake {
        Fake {
            queue,
            fail: false,
            asked: Mutex::new(HashMap::new()),
        }
    }

    fn value(&self, promql: &str, t: u64) -> Vec<(BTreeMap<String, String>, f64)> {
        let seconds = (t - FROM) as f64 / 1000.0 + 600.0;
        let rate = if promql.contains(r#"version="v2""#) {
            20.0
        } else {
            200.0
        };
        let requests = (rate * seconds).floor();
        let one = |v: f64| vec![(BTreeMap::new(), v)];
        if promql.contains("queue_depth") {
            one((self.queue)(t))
        } else if promql.contains("sum by (le)") {
            ["0.05", "0.1", "0.5", "1", "+Inf"]
                .into_iter()
                .map(|le| {
                    (
                        BTreeMap::from([("le".to_string(), le.to_string())]),
                        requests,
                    )
                })
                .collect()
        } else if promql.contains("increase(") {
            one(rate * 60.0)
        } else if promql.contains(r#"code=~"5..""#) {
            one((requests * 0.002).floor())
        } else {
            one(requests)
        }
    }
}

impl RangeSource for Fake {
    async fn query_range(
        &self,
        query: &InstantQuery,
        span: &Span,
    ) -> Result<Vec<RangeSeries>, String> {
        *self
            .asked
            .lock()
            .expect("lock")
            .entry(query.promql.clone())
            .or_default() += 1;
        if self.fail {
            return Err("bad_data: parse error".into());
        }
        let mut series: BTreeMap<BTreeMap<String, String>, BTreeMap<u64, f64>> = BTreeMap::new();
        let mut t = span.from.millis();
        while t <= span.to.millis() {
            for (labels, v) in self.value(&query.promql, t) {
                series.entry(labels).or_default().insert(t, v);
            }
            t += span.step.as_millis() as u64;
        }
        Ok(series
            .into_iter()
            .map(|(labels, points)| RangeSeries { labels, points })
            .collect())
    }
}

fn spec(extra_abort: &str) -> canaryd::spec::model::DeploySpec {
    let text = common::SEED_FILE.replace(
        "      - latency_p99_greater_than: 500ms\n",
        &format!("      - latency_p99_greater_than: 500ms\n{extra_abort}"),
    );
    common::spec(&text)
}

fn at(minutes: u64) -> Timestamp {
    Timestamp::from_millis(FROM + minutes * 60_000)
}

#[tokio::test]
async fn each_query_is_asked_once_for_the_whole_span_and_a_healthy_canary_is_promoted() {
    let fake = Fake::new(|_| 0.0);
    let r = replay(&spec(""), &PolicySet::builtin(), None, &fake, at(0), at(60))
        .await
        .expect("the replay runs");
    match r.outcome {
        Outcome::Promoted { at: when, .. } => {
            // 10 min at 5%, 20 min at 50%, then the last step's first tick.
            assert!(when >= at(30) && when < at(32), "{when}");
        }
        other => panic!(
            "{other:?}: {:#?}",
            r.decisions
                .iter()
                .map(|d| (d.at, &d.reason))
                .collect::<Vec<_>>()
        ),
    }
    let asked = fake.asked.lock().expect("lock").clone();
    // Requests, errors and the latency histogram of each track: nothing else,
    // each once.
    assert_eq!(asked.len(), 6, "{asked:?}");
    assert!(asked.values().all(|n| *n == 1), "{asked:?}");
    assert_eq!(
        r.ticks,
        (r.decisions.last().expect("decisions").at.millis() - FROM) / INTERVAL_MS + 1
    );
}

#[tokio::test]
async fn a_custom_query_gate_is_judged_on_its_value_at_each_tick() {
    let abort = "      - queue_depth_greater_than: 500\n        query: max(queue_depth{version=\"{{version}}\"})\n";
    // The queue grows past 500 at 12:14:00, in step 2.
    let fake = Fake::new(|t| if t >= FROM + 14 * 60_000 { 900.0 } else { 10.0 });
    let r = replay(
        &spec(abort),
        &PolicySet::builtin(),
        None,
        &fake,
        at(0),
        at(60),
    )
    .await
    .expect("the replay runs");
    match &r.outcome {
        Outcome::RolledBack {
            at: when, reason, ..
        } => {
            assert_eq!(*when, at(14));
            assert!(
                reason.contains("queue_depth > 500 breached: value 900"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    let asked = fake.asked.lock().expect("lock").clone();
    assert!(asked.values().all(|n| *n == 1), "{asked:?}");
    assert!(
        asked
            .keys()
            .any(|q| q == r#"max(queue_depth{version="v2"})"#),
        "{asked:?}"
    );
}

#[tokio::test]
async fn a_history_that_cannot_be_read_stops_the_replay_naming_the_query() {
    let mut fake = Fake::new(|_| 0.0);
    fake.fail = true;
    let e = replay(&spec(""), &PolicySet::builtin(), None, &fake, at(0), at(60))
        .await
        .expect_err("no history, no replay");
    assert!(matches!(e, BacktestError::History(_)), "{e:?}");
    let text = e.to_string();
    assert!(
        text.starts_with(
            "cannot read the history of `sum(http_requests_total{service=\"checkout\""
        ),
        "{text}"
    );
    assert!(text.ends_with("bad_data: parse error"), "{text}");
}

#[tokio::test]
async fn a_backwards_span_or_a_canary_that_is_the_stable_version_is_refused() {
    let fake = Fake::new(|_| 0.0);
    let e = replay(&spec(""), &PolicySet::builtin(), None, &fake, at(10), at(0))
        .await
        .expect_err("backwards");
    assert!(e.to_string().contains("is before --from"), "{e}");
    let mut same = spec("");
    same.canary.version = same.stable.version.clone();
    let e = replay(&same, &PolicySet::builtin(), None, &fake, at(0), at(10))
        .await
        .expect_err("nothing to roll out");
    assert!(e.to_string().contains("nothing to roll out"), "{e}");
    assert!(fake.asked.lock().expect("lock").is_empty());
}
