//! Gates measured on a real Prometheus (Debian's 2.42, started per test)
//! scraping real sample apps under real load.

mod harness;

use std::net::TcpListener;
use std::time::{Duration, SystemTime};

use canaryd::engine::Timestamp;
use canaryd::engine::observation::{CountsNeeded, CountsReading};
use canaryd::engine::{GateRef, Inconclusive, Measurement};
use canaryd::provider::plan::single_value;
use canaryd::provider::{
    Answers, Batch, InstantQuery, MetricsSource, PrometheusSource, ProviderConfig, QueryValue,
    every_gate, plan_counts, plan_rollout,
};
use canaryd::sample::Behaviour;
use canaryd::spec::decode::decode;
use canaryd::spec::model::DeploySpec;
use canaryd::spec::policy::{PolicySet, TemplateVars};
use harness::{Prometheus, load_on, sample_app, wait_for};

const ERROR_RATE: GateRef = GateRef::Promotion { step: 0, index: 0 };
const LATENCY_P99: GateRef = GateRef::Promotion { step: 0, index: 1 };

/// The seed's first step on a 20 s window, for `service` with these versions.
fn spec(service: &str, stable: &str, canary: &str, prometheus: &str) -> DeploySpec {
    let text = format!(
        r#"
service: checkout
policy: http-red
prometheus: {prometheus}
router: {{ kind: builtin, listen: "127.0.0.1:8080" }}
stable: {{ version: v1, address: "127.0.0.1:9001" }}
canary: {{ version: v2, address: "127.0.0.1:9002" }}
deploy:
  strategy: canary
  steps:
    - deploy: 5%
      duration: 1m
      metrics:
        - error_rate_less_than: 1%
        - latency_p99_less_than: 200ms
    - deploy: 100%
  rollback:
    auto: true
    on:
      - error_rate_greater_than: 2%
  analysis:
    window: 20s
"#
    );
    let decoded = decode("test.yaml", &text, &PolicySet::builtin());
    let mut spec = decoded.spec.expect("test spec is valid");
    // Set directly: the decoder only admits plain names, and these tests
    // also need hostile ones.
    spec.id.name = service.to_string();
    spec.stable.version = stable.to_string();
    spec.canary.version = canary.to_string();
    spec
}

fn source() -> PrometheusSource {
    PrometheusSource::new(ProviderConfig::default()).expect("HTTP client")
}

fn now() -> Timestamp {
    Timestamp::from_system(SystemTime::now())
}

/// Measures every gate of `spec` once, now.
async fn measure(spec: &DeploySpec, source: &PrometheusSource) -> Vec<Measurement> {
    let mut batch = Batch::new();
    let plan = plan_rollout(
        &mut batch,
        spec,
        &PolicySet::builtin(),
        None,
        &every_gate(spec),
    )
    .expect("plan");
    let answers = source.query_batch(&batch.queries(), now()).await;
    plan.measurements(&Answers::new(&batch, answers))
}

fn gate(ms: &[Measurement], gate: GateRef) -> Measurement {
    ms.iter()
        .find(|m| m.gate == gate)
        .cloned()
        .expect("gate measured")
}

/// Measures until the canary's error-rate reading counts `requests` in its
/// window (the window is then full enough for a stable estimate).
async fn measure_with_requests(
    spec: &DeploySpec,
    source: &PrometheusSource,
    requests: f64,
) -> Vec<Measurement> {
    wait_for(
        "a window with enough canary requests",
        Duration::from_secs(60),
        || async {
            let ms = measure(spec, source).await;
            let m = gate(&ms, ERROR_RATE);
            match (
                m.canary.requests,
                m.stable.as_ref().and_then(|s| s.requests),
            ) {
                (Some(c), Some(s)) if c >= requests && s >= requests => Ok(ms),
                _ => Err(format!("{:?} / {:?}", m.canary, m.stable)),
            }
        },
    )
    .await
}

fn healthy() -> Behaviour {
    Behaviour::default()
}

/// A healthy stable v1 and a canary v2 behaving as `canary`, both under
/// 150 requests/s and scraped by Prometheus; kept alive together.
struct LoadedPair {
    _apps: (canaryd::sample::SampleApp, canaryd::sample::SampleApp),
    _loads: (
        canaryd::sample::load::LoadHandle,
        canaryd::sample::load::LoadHandle,
    ),
    _prom: Prometheus,
    spec: DeploySpec,
}

async fn loaded_pair(canary: Behaviour) -> LoadedPair {
    let stable = sample_app("checkout", "v1", healthy()).await;
    let canary = sample_app("checkout", "v2", canary).await;
    let loads = (load_on(&stable, 150.0), load_on(&canary, 150.0));
    let prom = Prometheus::start(&[stable.addr(), canary.addr()]).await;
    let spec = spec("checkout", "v1", "v2", prom.url());
    LoadedPair {
        _apps: (stable, canary),
        _loads: loads,
        _prom: prom,
        spec,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_failing_5_percent_reads_5_percent_and_a_healthy_stable_reads_zero() {
    let pair = loaded_pair(Behaviour {
        error_rate: 0.05,
        ..healthy()
    })
    .await;

    let ms = measure_with_requests(&pair.spec, &source(), 2500.0).await;
    let m = gate(&ms, ERROR_RATE);
    let canary_rate = m.canary.value.clone().expect("canary error rate");
    // Binomial noise over ≥2,500 requests: σ ≤ 0.44 points; ±2 points is 4.5σ.
    assert!(
        (canary_rate - 0.05).abs() <= 0.02,
        "canary error rate {canary_rate} not within 5% ± 2 points; query {}",
        m.canary.query
    );
    let stable_reading = m.stable.expect("stable measured");
    // No 5xx series exists for the stable app: that is zero errors, not "no data".
    assert_eq!(stable_reading.value, Ok(0.0), "{stable_reading:?}");
    // The same numbers feed the abort condition on the same query.
    assert_eq!(gate(&ms, GateRef::Abort(0)).canary.query, m.canary.query);
    assert!(
        m.canary.query.contains(r#"version="v2""#),
        "{}",
        m.canary.query
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_p99_of_300ms_reads_within_histogram_bucket_resolution() {
    let pair = loaded_pair(Behaviour {
        latency_p50: Duration::from_millis(100),
        latency_p99: Duration::from_millis(300),
        ..healthy()
    })
    .await;

    let ms = measure_with_requests(&pair.spec, &source(), 2000.0).await;
    let m = gate(&ms, LATENCY_P99);
    let p99 = m.canary.value.clone().expect("canary p99");
    // 300ms sits on the 0.25 | 0.3 | 0.4 bucket bounds; histogram_quantile
    // interpolates inside a bucket, so the reading lands in (0.25, 0.4].
    assert!((0.25..=0.4).contains(&p99), "canary p99 {p99}s");
    let stable_p99 = m.stable.and_then(|s| s.value.ok()).expect("stable p99");
    // Stable: p99 80ms, between the 0.05 and 0.1 bounds. The app's latency
    // is a sleep, which a loaded machine only lengthens: up to the next
    // bucket (0.15) is the same reading on a busy runner.
    assert!(
        (0.05..=0.15).contains(&stable_p99),
        "stable p99 {stable_p99}s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_without_traffic_reads_as_no_data_never_as_a_pass() {
    let stable = sample_app("checkout", "v1", healthy()).await;
    let canary = sample_app("checkout", "v2", healthy()).await;
    let _load = load_on(&stable, 50.0);
    let prom = Prometheus::start(&[stable.addr(), canary.addr()]).await;
    let spec = spec("checkout", "v1", "v2", prom.url());
    let source = source();

    // Wait until the stable track has data, so the canary's emptiness is not
    // just a Prometheus that has not scraped yet.
    let ms = wait_for("stable data", Duration::from_secs(30), || async {
        let ms = measure(&spec, &source).await;
        let stable = gate(&ms, ERROR_RATE).stable.expect("stable measured");
        match stable.value {
            Ok(_) => Ok(ms),
            Err(why) => Err(why.to_string()),
        }
    })
    .await;
    for g in [ERROR_RATE, LATENCY_P99, GateRef::Abort(0)] {
        let m = gate(&ms, g);
        assert_eq!(
            m.canary.value,
            Err(Inconclusive::NoData),
            "{g:?}: {:?}",
            m.canary
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_stopped_mid_test_gives_a_provider_error_without_the_credentials() {
    let mut prom = Prometheus::start(&[]).await;
    let with_credentials = prom.url().replace("http://", "http://canary:s3cret@");
    let query = [InstantQuery {
        server: with_credentials,
        promql: "vector(1)".into(),
    }];
    let source = source();
    let before = source.query_batch(&query, now()).await;
    assert_eq!(single_value(&before[0]), Ok(1.0));

    prom.stop();
    let after = source.query_batch(&query, now()).await;
    match &after[0] {
        // "Connection refused", or a pooled connection closed under it.
        Err(Inconclusive::ProviderError { message }) => {
            assert!(message.starts_with("failed to send request"), "{message}");
            assert!(!message.contains("s3cret"), "{message}");
        }
        other => panic!("expected a provider error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    let addr = listener.local_addr().expect("address");
    // Accept connections and hold them open without a word.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    let source = PrometheusSource::new(ProviderConfig {
        timeout: Duration::from_millis(300),
        ..ProviderConfig::default()
    })
    .expect("HTTP client");
    let answers = source
        .query_batch(
            &[InstantQuery {
                server: format!("http://{addr}"),
                promql: "vector(1)".into(),
            }],
            now(),
        )
        .await;
    assert_eq!(answers[0], Err(Inconclusive::Timeout));
}

#[tokio::test]
async fn an_http_error_from_a_proxy_is_a_provider_error_with_its_status() {
    use axum::http::StatusCode;
    let app = axum::Router::new()
        .fallback(|| async { (StatusCode::SERVICE_UNAVAILABLE, "upstream connect error") });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listener");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let answers = source()
        .query_batch(
            &[InstantQuery {
                server: format!("http://{addr}"),
                promql: "vector(1)".into(),
            }],
            now(),
        )
        .await;
    match &answers[0] {
        Err(Inconclusive::ProviderError { message }) => {
            assert!(message.contains("503"), "{message}")
        }
        other => panic!("expected a provider error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_result_shape_maps_to_a_value_or_a_distinct_reason() {
    let prom = Prometheus::start(&[]).await;
    let cases: [(&str, Result<f64, Inconclusive>); 6] = [
        ("vector(0.25)", Ok(0.25)),
        ("scalar(vector(0.5))", Ok(0.5)),
        ("absent(vector(1))", Err(Inconclusive::NoData)),
        ("vector(0) / 0", Err(Inconclusive::not_finite(f64::NAN))),
        (
            "vector(1) / 0",
            Err(Inconclusive::not_finite(f64::INFINITY)),
        ),
        (
            "vector(-1) / 0",
            Err(Inconclusive::not_finite(f64::NEG_INFINITY)),
        ),
    ];
    let two_series = r#"vector(1) or label_replace(vector(2), "x", "y", "", "")"#;
    let queries: Vec<InstantQuery> = cases
        .iter()
        .map(|(q, _)| *q)
        .chain([two_series, "sum(rate(up[1m]", "vector(1)[1m:1s]"])
        .map(|q| InstantQuery {
            server: prom.url().to_string(),
            promql: q.to_string(),
        })
        .collect();
    let answers = source().query_batch(&queries, now()).await;

    for ((query, expected), answer) in cases.iter().zip(&answers) {
        assert_eq!(&single_value(answer), expected, "{query}: {answer:?}");
    }
    assert!(
        matches!(answers[1], Ok(QueryValue::Scalar(_))),
        "{:?}",
        answers[1]
    );
    assert_eq!(
        single_value(&answers[6]),
        Err(Inconclusive::AmbiguousSeries { series: 2 })
    );
    // The labels of each series are kept.
    let Ok(QueryValue::Vector(series)) = &answers[6] else {
        panic!("{:?}", answers[6])
    };
    assert!(series.iter().any(|s| s.labels.get("x") == Some("y")));
    match &answers[7] {
        Err(Inconclusive::ProviderError { message }) => {
            assert!(message.starts_with("bad_data"), "{message}")
        }
        other => panic!("syntax error: {other:?}"),
    }
    match &answers[8] {
        Err(Inconclusive::ProviderError { message }) => {
            assert!(message.contains("range vector"), "{message}")
        }
        other => panic!("range vector: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_label_values_select_exactly_their_own_series_and_cannot_change_the_query() {
    let service = "check\"out\\";
    let version = "v2\"} or vector(1) or up{x=\"\n";
    let stable = sample_app(service, "v1", healthy()).await;
    let canary = sample_app(service, version, healthy()).await;
    let _loads = (load_on(&stable, 50.0), load_on(&canary, 50.0));
    let prom = Prometheus::start(&[stable.addr(), canary.addr()]).await;
    let source = source();

    // The escaped values match the app's real labels: its own data comes back.
    let spec_real = spec(service, "v1", version, prom.url());
    let ms = measure_with_requests(&spec_real, &source, 200.0).await;
    let m = gate(&ms, ERROR_RATE);
    assert_eq!(m.canary.value, Ok(0.0), "{:?}", m.canary);

    // A version that matches nothing reads as no data: had the quote closed
    // the string, `or vector(1)` would have answered 1.
    let spec_none = spec(service, "v1", "none\"} or vector(1) or up{x=\"", prom.url());
    let ms = measure(&spec_none, &source).await;
    for m in &ms {
        assert_eq!(m.canary.value, Err(Inconclusive::NoData), "{:?}", m.canary);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shipped_policy_renders_queries_prometheus_2_42_accepts() {
    let prom = Prometheus::start(&[]).await;
    let policies = PolicySet::builtin();
    let mut queries = Vec::new();
    for name in policies.names() {
        let policy = policies.get(name).expect("listed policy");
        let vars = TemplateVars {
            service: "web\"app",
            namespace: "prod\\ns",
            version: "1.2.3\n",
            track: "canary",
            window: Duration::from_secs(30),
            track_selector: policy.track_selectors.of("canary"),
        };
        queries.push((format!("{name} requests"), policy.requests.render(&vars)));
        for (metric, def) in &policy.metrics {
            queries.push((format!("{name} {metric}"), def.query.render(&vars)));
        }
    }
    let batch: Vec<InstantQuery> = queries
        .iter()
        .map(|(_, q)| InstantQuery {
            server: prom.url().to_string(),
            promql: q.clone(),
        })
        .collect();
    let answers = source().query_batch(&batch, now()).await;
    for ((what, query), answer) in queries.iter().zip(&answers) {
        // No such series here, so the answer is an empty vector: what matters
        // is that Prometheus parsed and ran it.
        assert!(
            matches!(answer, Ok(QueryValue::Vector(v)) if v.is_empty()),
            "{what}: {answer:?}\n{query}"
        );
    }
    assert!(queries.len() >= 36, "{} queries", queries.len());
}

/// Every gate and counter of `specs`, asked in one batch at `at`: each
/// rollout's own queries, or grouped (one query per template).
async fn measure_all(
    specs: &[DeploySpec],
    mut batch: Batch,
    at: Timestamp,
) -> (usize, Vec<(Vec<Measurement>, CountsReading)>) {
    let policies = PolicySet::builtin();
    let needed = CountsNeeded {
        errors: true,
        latency_buckets: true,
    };
    let plans: Vec<_> = specs
        .iter()
        .map(|s| {
            let plan = plan_rollout(&mut batch, s, &policies, None, &every_gate(s)).expect("plan");
            let counts = plan_counts(&mut batch, s, &policies, None, needed).expect("counts");
            (plan, counts)
        })
        .collect();
    let queries = batch.queries();
    let answers = Answers::new(&batch, source().query_batch(&queries, at).await);
    let read = plans
        .iter()
        .map(|(plan, counts)| (plan.measurements(&answers), counts.reading(&answers)))
        .collect();
    (queries.len(), read)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouped_queries_answer_each_rollout_exactly_as_its_own_queries_do() {
    let apps = (
        sample_app("checkout", "v1", healthy()).await,
        sample_app(
            "checkout",
            "v2",
            Behaviour {
                error_rate: 0.05,
                ..healthy()
            },
        )
        .await,
        sample_app("cart.v2", "v1", healthy()).await,
    );
    let _loads = (
        load_on(&apps.0, 100.0),
        load_on(&apps.1, 100.0),
        load_on(&apps.2, 100.0),
    );
    let prom = Prometheus::start(&[apps.0.addr(), apps.1.addr(), apps.2.addr()]).await;
    let checkout = spec("checkout", "v1", "v2", prom.url());
    // A canary with no series at all: no data for it alone.
    let cart = spec("cart.v2", "v1", "v9", prom.url());
    measure_with_requests(&checkout, &source(), 500.0).await;
    measure_with_requests(&spec("cart.v2", "v1", "v1", prom.url()), &source(), 500.0).await;

    let specs = [checkout, cart];
    let at = now();
    let (own_queries, own) = measure_all(&specs, Batch::new(), at).await;
    let (grouped_queries, grouped) = measure_all(&specs, Batch::grouped(), at).await;
    assert_eq!(grouped, own);
    assert!(
        grouped_queries < own_queries,
        "{grouped_queries} grouped vs {own_queries} own queries"
    );
    // The numbers are real: checkout's canary fails, cart's canary has none.
    let checkout_errors = own[0]
        .0
        .iter()
        .find(|m| m.gate == ERROR_RATE)
        .expect("gate");
    assert!(
        checkout_errors
            .canary
            .value
            .as_ref()
            .is_ok_and(|v| *v > 0.0)
    );
    let cart_errors = own[1]
        .0
        .iter()
        .find(|m| m.gate == ERROR_RATE)
        .expect("gate");
    assert_eq!(cart_errors.canary.value, Err(Inconclusive::NoData));
    assert!(
        own[1]
            .1
            .stable
            .snapshot
            .as_ref()
            .is_ok_and(|s| s.requests > 0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shipped_policys_grouped_queries_are_accepted_by_prometheus_2_42() {
    let prom = Prometheus::start(&[]).await;
    let policies = PolicySet::builtin();
    let mut batch = Batch::grouped();
    let mut templates = 0;
    for name in policies.names() {
        let policy = policies.get(name).expect("listed policy");
        for (service, version) in [("web\"app", "1.2.3\n"), ("a.b|c", "v2")] {
            let vars = TemplateVars {
                service,
                namespace: "prod\\ns",
                version,
                track: "canary",
                window: Duration::from_secs(30),
                track_selector: policy.track_selectors.of("canary"),
            };
            let mut all = vec![&policy.requests];
            all.extend(policy.metrics.values().map(|d| &d.query));
            if let Some(c) = &policy.counts {
                all.push(&c.requests);
                all.extend(c.errors.iter().chain(&c.latency_buckets));
            }
            templates = templates.max(all.len());
            for t in all {
                batch.ask(prom.url(), t, &vars);
            }
        }
    }
    let queries = batch.queries();
    let answers = source().query_batch(&queries, now()).await;
    for (q, answer) in queries.iter().zip(&answers) {
        assert!(
            matches!(answer, Ok(QueryValue::Vector(v)) if v.is_empty()),
            "{answer:?}\n{}",
            q.promql
        );
    }
    let grouped = queries.iter().filter(|q| q.promql.contains("=~\"")).count();
    assert!(
        grouped >= 10,
        "{grouped} grouped queries of {}",
        queries.len()
    );
}
