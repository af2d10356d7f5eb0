//! The Prometheus adapter of [`MetricsSource`]: instant queries through
//! prometheus-http-query over one shared HTTP client, each bounded by a
//! timeout, a batch run with bounded concurrency. Every failure becomes a
//! distinct *inconclusive* reason; error texts never carry the server URL
//! (it may hold credentials).

use std::collections::HashMap;
use std::error::Error as _;
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use prometheus_http_query::error::PrometheusError;
use prometheus_http_query::response::PromqlResult;
use prometheus_http_query::{Client, Error as QueryError};
use serde::Deserialize;

use super::{Answer, InstantQuery, MetricsSource, QueryValue, Series};
use crate::engine::observation::Inconclusive;
use crate::engine::time::Timestamp;

/// Settings of the adapter.
#[derive(Clone, Debug)]
pub struct ProviderConfig {
    /// How long one query may take (sent to Prometheus as its evaluation
    /// timeout too); past it the reading is inconclusive (`Timeout`).
    pub timeout: Duration,
    /// Queries in flight at once.
    pub max_concurrent: usize,
}

impl Default for ProviderConfig {
    fn default() -> ProviderConfig {
        ProviderConfig {
            timeout: Duration::from_secs(5),
            max_concurrent: 16,
        }
    }
}

/// The adapter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The HTTP client could not be built (TLS setup).
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// Queries Prometheus servers, one HTTP client for all of them.
pub struct PrometheusSource {
    http: reqwest::Client,
    clients: Mutex<HashMap<String, Client>>,
    config: ProviderConfig,
}

impl PrometheusSource {
    /// An adapter with its own connection pool.
    pub fn new(config: ProviderConfig) -> Result<PrometheusSource, ProviderError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .build()
            .map_err(|e| ProviderError::Client(e.without_url().to_string()))?;
        Ok(PrometheusSource::with_client(http, config))
    }

    /// An adapter sharing an existing HTTP client (and its pool).
    pub fn with_client(http: reqwest::Client, config: ProviderConfig) -> PrometheusSource {
        PrometheusSource {
            http,
            clients: Mutex::new(HashMap::new()),
            config,
        }
    }

    fn client(&self, server: &str) -> Result<Client, Inconclusive> {
        let mut clients = match self.clients.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(c) = clients.get(server) {
            return Ok(c.clone());
        }
        // `http://host/prom/` and `http://host/prom` are the same server.
        let base = match server.trim_end_matches('/') {
            "" => server,
            trimmed => trimmed,
        };
        let client =
            Client::from(self.http.clone(), base).map_err(|_| Inconclusive::ProviderError {
                message: format!("invalid Prometheus URL `{}`", redact_url(server)),
            })?;
        clients.insert(server.to_string(), client.clone());
        Ok(client)
    }

    /// Answers one query as of `at`.
    pub async fn query(&self, query: &InstantQuery, at: Timestamp) -> Answer {
        let client = self.client(&query.server)?;
        let timeout = self.config.timeout;
        let request = client
            .query(&query.promql)
            .query("time", format_time(at))
            .timeout(i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX))
            .post_raw();
        let answer = async {
            let response = request.await.map_err(|e| inconclusive(&e))?;
            read_answer(response).await
        };
        match tokio::time::timeout(timeout, answer).await {
            Err(_) => Err(Inconclusive::Timeout),
            Ok(answer) => answer,
        }
    }
}

/// Reads an answer's body: JSON whatever the HTTP status (Prometheus' errors
/// carry their type in it), anything else a provider error with the status.
async fn read_answer(response: reqwest::Response) -> Answer {
    let json = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        let status = response.status();
        let mut message =
            "failed to parse response from server due to invalid media type".to_string();
        if !status.is_success() {
            message.push_str(&format!(": HTTP {status}"));
        }
        return Err(Inconclusive::ProviderError { message });
    }
    match response.bytes().await {
        Ok(body) => parse_answer(&body),
        Err(e) if e.is_timeout() => Err(Inconclusive::Timeout),
        Err(e) => Err(Inconclusive::ProviderError {
            message: describe("failed to read the response from server".to_string(), &e),
        }),
    }
}

/// The JSON body of Prometheus' answer to an instant query (`/api/v1/query`).
#[derive(Deserialize)]
#[serde(tag = "status")]
enum Envelope {
    #[serde(alias = "success")]
    Success { data: PromqlResult },
    #[serde(alias = "error")]
    Error(PrometheusError),
}

/// A successful instant query's answer, read straight into [`Series`]:
/// `status` and `resultType` come first in what Prometheus writes, so
/// nothing is buffered (the tagged [`Envelope`] buffers the whole answer
/// before reading it again, and a grouped answer holds 200,000 series at
/// 10,000 rollouts).
#[derive(Deserialize)]
struct Success<'a> {
    #[serde(borrow)]
    status: &'a str,
    #[serde(borrow)]
    data: SuccessData<'a>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum SuccessData<'a> {
    #[serde(borrow)]
    Vector(Vec<RawSeries<'a>>),
    #[serde(borrow)]
    Scalar(RawSample<'a>),
}

#[derive(Deserialize)]
struct RawSeries<'a> {
    metric: crate::ports::Labels,
    #[serde(borrow)]
    value: RawSample<'a>,
}

/// `[timestamp, "value"]`.
#[derive(Deserialize)]
struct RawSample<'a>(
    #[expect(dead_code, reason = "read for its type: a sample's time is a number")] f64,
    #[serde(borrow)] std::borrow::Cow<'a, str>,
);

impl RawSample<'_> {
    fn value(&self) -> Option<f64> {
        self.1.parse().ok()
    }
}

/// The answer read by [`Success`], or `None` for anything else (errors,
/// matrices, malformed bodies): those take the tagged [`Envelope`]'s path.
fn parse_success(body: &[u8]) -> Option<Answer> {
    let answer: Success<'_> = serde_json::from_slice(body).ok()?;
    if answer.status != "success" {
        return None;
    }
    Some(Ok(match answer.data {
        SuccessData::Scalar(sample) => QueryValue::Scalar(sample.value()?),
        SuccessData::Vector(series) => QueryValue::Vector(
            series
                .into_iter()
                .map(|s| {
                    Some(Series {
                        value: s.value.value()?,
                        labels: s.metric,
                    })
                })
                .collect::<Option<Vec<Series>>>()?,
        ),
    }))
}

/// Prometheus' JSON answer to an instant query, as a gate's answer: a scalar
/// or an instant vector, else why it is inconclusive. Pure, and never
/// panics whatever the bytes (the `prometheus_answer` fuzz target).
pub fn parse_answer(body: &[u8]) -> Answer {
    if let Some(answer) = parse_success(body) {
        return answer;
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(Envelope::Success { data }) => convert(data.into_inner().0),
        Ok(Envelope::Error(e)) => Err(inconclusive(&QueryError::Prometheus(e))),
        Err(e) => Err(Inconclusive::ProviderError {
            message: format!("failed to parse JSON response from server: {e}"),
        }),
    }
}

#[async_trait::async_trait]
impl MetricsSource for PrometheusSource {
    async fn query_batch(&self, queries: &[InstantQuery], at: Timestamp) -> Vec<Answer> {
        let pending: Vec<_> = queries.iter().map(|q| self.query(q, at)).collect();
        futures::stream::iter(pending)
            .buffered(self.config.max_concurrent.max(1))
            .collect()
            .await
    }
}

/// Seconds since the epoch with milliseconds, as Prometheus' `time` parameter.
fn format_time(at: Timestamp) -> String {
    let ms = at.millis();
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

fn convert(data: prometheus_http_query::response::Data) -> Answer {
    use prometheus_http_query::response::Data;
    match data {
        Data::Scalar(sample) => Ok(QueryValue::Scalar(sample.value())),
        Data::Vector(vector) => Ok(QueryValue::Vector(
            vector
                .into_iter()
                .map(|v| {
                    let (labels, sample) = v.into_inner();
                    Series {
                        labels: labels.into_iter().collect(),
                        value: sample.value(),
                    }
                })
                .collect(),
        )),
        Data::Matrix(_) => Err(Inconclusive::ProviderError {
            message: "the query returned a range vector; a gate needs an instant vector or a scalar (drop the `[range]` or wrap it in a function such as rate())".to_string(),
        }),
    }
}

/// Maps a client error to the reason a reading is inconclusive.
fn inconclusive(e: &QueryError) -> Inconclusive {
    match e {
        QueryError::Prometheus(p) if p.is_timeout() || p.is_canceled() => Inconclusive::Timeout,
        QueryError::Prometheus(p) => Inconclusive::ProviderError {
            message: format!("{}: {}", p.error_type(), p.message()),
        },
        QueryError::Client(c) => match c.inner() {
            Some(r) if r.is_timeout() => Inconclusive::Timeout,
            Some(r) => Inconclusive::ProviderError {
                message: describe(c.to_string(), r),
            },
            None => Inconclusive::ProviderError {
                message: c.to_string(),
            },
        },
        other => Inconclusive::ProviderError {
            message: other.to_string(),
        },
    }
}

/// `failed to send request to server: HTTP 503` / `…: tcp connect error: Connection refused`,
/// built from the error chain without the URL.
fn describe(context: String, e: &reqwest::Error) -> String {
    let mut parts = vec![context];
    if let Some(status) = e.status() {
        parts.push(format!("HTTP {status}"));
    }
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !text.contains("://") && !parts.contains(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// The URL without user, password, query or fragment, for messages and output.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "<unparsable URL>".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_credentials_or_query() {
        assert_eq!(
            redact_url("https://bot:s3cret@prom.example:9090/prom/?token=abc#x"),
            "https://prom.example:9090/prom/"
        );
        assert_eq!(redact_url("http://[oops"), "<unparsable URL>");
    }

    #[test]
    fn prometheus_answers_parse_into_vectors_scalars_and_distinct_reasons() {
        let vector = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"version":"v2"},"value":[1700000000.5,"0.25"]}]}}"#;
        let Ok(QueryValue::Vector(series)) = parse_answer(vector) else {
            panic!("{:?}", parse_answer(vector));
        };
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].value, 0.25);
        assert_eq!(series[0].labels.get("version"), Some("v2"));
        let scalar = br#"{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}"#;
        assert!(matches!(parse_answer(scalar), Ok(QueryValue::Scalar(v)) if v.is_nan()));
        let empty = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(parse_answer(empty), Ok(QueryValue::Vector(Vec::new())));
        let error = br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        assert_eq!(
            parse_answer(error),
            Err(Inconclusive::ProviderError {
                message: "bad_data: parse error".into()
            })
        );
        let timeout = br#"{"status":"error","errorType":"timeout","error":"query timed out"}"#;
        assert_eq!(parse_answer(timeout), Err(Inconclusive::Timeout));
        let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(
            matches!(parse_answer(matrix), Err(Inconclusive::ProviderError { message }) if message.contains("range vector"))
        );
        for garbage in [&b""[..], b"{", b"\xff\xfe", br#"{"status":"success"}"#, br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"x"]}]}}"#] {
            assert!(
                matches!(parse_answer(garbage), Err(Inconclusive::ProviderError { message }) if message.starts_with("failed to parse JSON response")),
                "{garbage:?}"
            );
        }
    }

    /// The tagged envelope's reading, the reference the direct reader must match.
    fn by_envelope(body: &[u8]) -> Answer {
        match serde_json::from_slice::<Envelope>(body) {
            Ok(Envelope::Success { data }) => convert(data.into_inner().0),
            other => panic!("not a success: {}", other.is_ok()),
        }
    }

    #[test]
    fn successful_answers_are_read_directly_exactly_as_the_tagged_envelope_reads_them() {
        let bodies: [&[u8]; 5] = [
            br#"{"status":"success","data":{"resultType":"vector","result":[
                {"metric":{"service":"a","version":"v1","le":"0.25"},"value":[1700000000.5,"1e-05"]},
                {"metric":{"service":"b","version":"v2","le":"+Inf"},"value":[1700000000.5,"+Inf"]},
                {"metric":{},"value":[1700000000,"-Inf"]},
                {"metric":{"x":"\u00e9\n"},"value":[1,"42"]}]}}"#,
            br#"{"status":"success","data":{"resultType":"scalar","result":[1,"0.5"]}}"#,
            br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
            br#"{"status":"success","data":{"result":[1,"7"],"resultType":"scalar"}}"#,
            br#"{"data":{"resultType":"vector","result":[{"metric":{"a":"b"},"value":[1,"3"]}]},"status":"success","warnings":["w"]}"#,
        ];
        for body in bodies {
            let direct = parse_success(body).expect("read directly");
            assert_eq!(
                direct,
                by_envelope(body),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let nan = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}}"#;
        match parse_success(nan) {
            Some(Ok(QueryValue::Vector(v))) => assert!(v[0].value.is_nan()),
            other => panic!("{other:?}"),
        }
        // Everything else takes the envelope's path, with its reasons.
        for other in [
            &br#"{"status":"error","errorType":"timeout","error":"x"}"#[..],
            br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
            br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"x"]}]}}"#,
            br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[null,"1"]}]}}"#,
        ] {
            assert!(parse_success(other).is_none(), "{}", String::from_utf8_lossy(other));
        }
    }

    #[tokio::test]
    async fn an_invalid_url_is_a_provider_error_that_keeps_the_secret() {
        let source = PrometheusSource::new(ProviderConfig::default()).expect("client");
        let answer = source
            .query(
                &InstantQuery {
                    server: "http//bot:s3cret@prom".into(),
                    promql: "vector(1)".into(),
                },
                Timestamp::from_millis(0),
            )
            .await;
        match answer {
            Err(Inconclusive::ProviderError { message }) => {
                assert!(message.contains("invalid Prometheus URL"), "{message}");
                assert!(!message.contains("s3cret"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}
