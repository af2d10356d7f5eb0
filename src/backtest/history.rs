//! Recorded history: the answers of range queries, kept per query, and read
//! back as the instant answer the daemon would have had at a given tick.
//!
//! A range query with `step` = the analysis interval is evaluated at exactly
//! the instants the daemon would have ticked at (`from`, `from + interval`,
//! …), with the same semantics as an instant query at each of them (same
//! lookback, same staleness), so the value at a tick is the instant answer.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::Duration;

use crate::engine::time::Timestamp;
use crate::provider::{Answer, InstantQuery, QueryValue, Series};

/// The instants a replay ticks at: `from`, then every `step` up to `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// The first tick.
    pub from: Timestamp,
    /// No tick after this.
    pub to: Timestamp,
    /// Between two ticks (the analysis interval).
    pub step: Duration,
}

impl Span {
    /// The number of ticks in the span.
    pub fn ticks(&self) -> u64 {
        let step = u64::try_from(self.step.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        self.to.millis().saturating_sub(self.from.millis()) / step + 1
    }
}

/// One series of a range query: its labels and its values by instant (ms).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RangeSeries {
    /// The series' labels.
    pub labels: BTreeMap<String, String>,
    /// Its values, keyed by evaluation instant in milliseconds.
    pub points: BTreeMap<u64, f64>,
}

/// A source of recorded history: answers one PromQL query over a span.
pub trait RangeSource: Sync {
    /// The query's series over `span`, evaluated at each of its ticks.
    fn query_range(
        &self,
        query: &InstantQuery,
        span: &Span,
    ) -> impl Future<Output = Result<Vec<RangeSeries>, String>> + Send;
}

/// A query's history could not be read: the replay stops (a failed read is
/// a problem with the backtest, not a verdict on the canary).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read the history of `{query}`: {message}")]
pub struct HistoryError {
    /// The PromQL.
    pub query: String,
    /// What went wrong (no URL: it may carry credentials).
    pub message: String,
}

/// The history fetched so far, one range query per distinct query.
#[derive(Debug, Default)]
pub struct Recorded {
    series: HashMap<InstantQuery, Vec<RangeSeries>>,
}

impl Recorded {
    /// Fetches the history of every query not yet fetched, concurrently.
    pub async fn fetch<S: RangeSource>(
        &mut self,
        source: &S,
        queries: &[InstantQuery],
        span: &Span,
    ) -> Result<(), HistoryError> {
        let mut missing: Vec<&InstantQuery> = queries
            .iter()
            .filter(|q| !self.series.contains_key(*q))
            .collect();
        missing.dedup();
        let fetched = futures::future::join_all(missing.iter().map(|q| async move {
            let result = source.query_range(q, span).await;
            ((*q).clone(), result)
        }))
        .await;
        for (query, result) in fetched {
            let series = result.map_err(|message| HistoryError {
                query: query.promql.clone(),
                message,
            })?;
            self.series.insert(query, series);
        }
        Ok(())
    }

    /// The instant answer to `query` at `at`: the series with a value at
    /// that instant (none is an empty vector: no data, as Prometheus says).
    pub fn answer(&self, query: &InstantQuery, at: Timestamp) -> Answer {
        let series = self.series.get(query).map_or(&[][..], Vec::as_slice);
        Ok(QueryValue::Vector(
            series
                .iter()
                .filter_map(|s| {
                    s.points.get(&at.millis()).map(|v| Series {
                        labels: s
                            .labels
                            .iter()
                            .map(|(k, v)| (k.as_str(), v.as_str()))
                            .collect(),
                        value: *v,
                    })
                })
                .collect(),
        ))
    }

    /// How many distinct queries were fetched.
    pub fn queries(&self) -> usize {
        self.series.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_counts_its_first_and_last_tick() {
        let span = Span {
            from: Timestamp::from_millis(10_000),
            to: Timestamp::from_millis(40_000),
            step: Duration::from_secs(10),
        };
        assert_eq!(span.ticks(), 4);
        let short = Span {
            to: Timestamp::from_millis(49_999),
            ..span
        };
        assert_eq!(short.ticks(), 4);
    }

    #[test]
    fn an_instant_without_a_recorded_value_is_an_empty_vector() {
        let q = InstantQuery {
            server: "http://prom".into(),
            promql: "up".into(),
        };
        let mut recorded = Recorded::default();
        recorded.series.insert(
            q.clone(),
            vec![RangeSeries {
                labels: BTreeMap::new(),
                points: BTreeMap::from([(1_000, 5.0)]),
            }],
        );
        let at = |ms| recorded.answer(&q, Timestamp::from_millis(ms));
        match at(1_000) {
            Ok(QueryValue::Vector(v)) => assert_eq!(v.len(), 1),
            other => panic!("{other:?}"),
        }
        assert_eq!(at(2_000), Ok(QueryValue::Vector(Vec::new())));
    }
}
