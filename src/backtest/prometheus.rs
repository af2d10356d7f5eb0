//! The Prometheus adapter of [`RangeSource`]: `GET /api/v1/query_range` with
//! `step` = the analysis interval, split into chunks Prometheus accepts (it
//! refuses more than 11,000 points per series). Error texts never carry the
//! server URL (it may hold credentials).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::history::{RangeSeries, RangeSource, Span};
use crate::engine::time::Timestamp;
use crate::provider::InstantQuery;

/// Points asked per range query at most (Prometheus' limit is 11,000).
const MAX_POINTS: u64 = 10_000;

/// Reads history from Prometheus servers over one HTTP client.
pub struct PrometheusHistory {
    http: reqwest::Client,
    timeout: Duration,
}

impl PrometheusHistory {
    /// An adapter whose every request is bounded by `timeout`.
    pub fn new(timeout: Duration) -> Result<PrometheusHistory, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {}", e.without_url()))?;
        Ok(PrometheusHistory { http, timeout })
    }

    async fn chunk(
        &self,
        query: &InstantQuery,
        start: Timestamp,
        end: Timestamp,
        step: Duration,
    ) -> Result<Vec<RangeSeries>, String> {
        let base = query.server.trim_end_matches('/');
        let mut url = reqwest::Url::parse(&format!("{base}/api/v1/query_range"))
            .map_err(|_| "the Prometheus URL does not parse".to_string())?;
        url.query_pairs_mut()
            .append_pair("query", &query.promql)
            .append_pair("start", &seconds(start))
            .append_pair("end", &seconds(end))
            .append_pair("step", &format!("{}", step.as_secs_f64()))
            .append_pair("timeout", &format!("{}s", self.timeout.as_secs().max(1)));
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        let status = response.status();
        let body: Body = response
            .json()
            .await
            .map_err(|e| format!("HTTP {status}: {}", e.without_url()))?;
        match body {
            Body {
                status: Status::Success,
                data: Some(data),
                ..
            } => convert(data),
            Body {
                error_type, error, ..
            } => Err(format!(
                "{}: {}",
                error_type.unwrap_or_else(|| format!("HTTP {status}")),
                error.unwrap_or_default()
            )),
        }
    }
}

impl RangeSource for PrometheusHistory {
    async fn query_range(
        &self,
        query: &InstantQuery,
        span: &Span,
    ) -> Result<Vec<RangeSeries>, String> {
        let step_ms = u64::try_from(span.step.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut merged: BTreeMap<BTreeMap<String, String>, BTreeMap<u64, f64>> = BTreeMap::new();
        let mut start = span.from;
        while start <= span.to {
            let last = Timestamp::from_millis(
                start
                    .millis()
                    .saturating_add(step_ms.saturating_mul(MAX_POINTS - 1)),
            )
            .min(span.to);
            for s in self.chunk(query, start, last, span.step).await? {
                merged.entry(s.labels).or_default().extend(s.points);
            }
            // The next chunk starts on the same grid.
            let covered = (last.millis() - start.millis()) / step_ms + 1;
            start = Timestamp::from_millis(start.millis() + covered * step_ms);
        }
        Ok(merged
            .into_iter()
            .map(|(labels, points)| RangeSeries { labels, points })
            .collect())
    }
}

/// Seconds since the epoch with milliseconds, as Prometheus reads times.
fn seconds(t: Timestamp) -> String {
    format!("{}.{:03}", t.millis() / 1000, t.millis() % 1000)
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Success,
    Error,
}

#[derive(Deserialize)]
struct Body {
    status: Status,
    data: Option<Data>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<Matrix>,
}

#[derive(Deserialize)]
struct Matrix {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

fn convert(data: Data) -> Result<Vec<RangeSeries>, String> {
    if data.result_type != "matrix" {
        return Err(format!(
            "a range query returned a {}, not a matrix",
            data.result_type
        ));
    }
    data.result
        .into_iter()
        .map(|m| {
            let points = m
                .values
                .into_iter()
                .map(|(t, v)| {
                    // Prometheus writes NaN and ±Inf as text, as the instant API does.
                    let value = match v.as_str() {
                        "NaN" => f64::NAN,
                        "+Inf" | "Inf" => f64::INFINITY,
                        "-Inf" => f64::NEG_INFINITY,
                        other => other
                            .parse::<f64>()
                            .map_err(|_| format!("`{other}` is not a number"))?,
                    };
                    Ok(((t * 1000.0).round() as u64, value))
                })
                .collect::<Result<BTreeMap<u64, f64>, String>>()?;
            Ok(RangeSeries {
                labels: m.metric,
                points,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_matrix_is_read_with_millisecond_instants_and_text_values() {
        let body: Body = serde_json::from_str(
            r#"{"status":"success","data":{"resultType":"matrix","result":[
                {"metric":{"le":"0.1"},"values":[[1741082400,"5"],[1741082410.5,"NaN"]]}]}}"#,
        )
        .expect("parses");
        let series = convert(body.data.expect("data")).expect("a matrix");
        assert_eq!(series[0].labels["le"], "0.1");
        assert_eq!(series[0].points[&1_741_082_400_000], 5.0);
        assert!(series[0].points[&1_741_082_410_500].is_nan());
    }

    #[test]
    fn times_are_sent_in_seconds_with_milliseconds() {
        assert_eq!(
            seconds(Timestamp::from_millis(1_741_082_400_005)),
            "1741082400.005"
        );
    }
}
