//! The built-in router's own metrics, under the names the `canaryd-router`
//! policy queries:
//! `canaryd_router_requests_total{namespace, route, track, code}` and
//! `canaryd_router_request_duration_seconds{namespace, route, track}`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of a forwarded request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The rollout's namespace.
    pub namespace: String,
    /// The rollout's name.
    pub route: String,
    /// `stable` or `canary`.
    pub track: String,
    /// The HTTP status returned (502 when the upstream could not be reached).
    pub code: String,
}

/// Labels of a latency observation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TrackLabels {
    /// The rollout's namespace.
    pub namespace: String,
    /// The rollout's name.
    pub route: String,
    /// `stable` or `canary`.
    pub track: String,
}

/// Latency buckets (seconds) of the router's histogram (and of the sample
/// app's): fine around the latencies gates usually name (100ms–1s), so a
/// 200ms or 300ms threshold is a bucket bound and is judged exactly.
pub const LATENCY_BUCKETS: [f64; 19] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0,
    10.0, 30.0,
];

type Histograms = Family<TrackLabels, Histogram, fn() -> Histogram>;

fn histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Handles on the router metrics (cheap to clone; all routers share them).
#[derive(Clone)]
pub struct RouterMetrics {
    /// Requests forwarded.
    pub requests: Family<RequestLabels, Counter>,
    /// Time to the upstream's response headers.
    pub durations: Histograms,
}

impl RouterMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> RouterMetrics {
        let metrics = RouterMetrics {
            requests: Family::default(),
            durations: Family::new_with_constructor(histogram),
        };
        registry.register(
            "canaryd_router_requests",
            "Requests the built-in router forwarded, by rollout, track and status",
            metrics.requests.clone(),
        );
        registry.register(
            "canaryd_router_request_duration_seconds",
            "Time from a request to its upstream's response headers",
            metrics.durations.clone(),
        );
        metrics
    }
}
