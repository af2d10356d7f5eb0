//! The sample HTTP service: answers any path after a drawn latency, fails a
//! drawn share with 500, and exports `http_requests_total{service,version,code}`
//! and `http_request_duration_seconds{service,version}` (the `http-red`
//! contract) with prometheus-client. `/admin/behaviour` changes it at runtime.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::behaviour::{Behaviour, BehaviourPatch};

/// Histogram buckets (seconds): the built-in router's, so both read the same.
pub use crate::router::metrics::LATENCY_BUCKETS;

/// How to start the service.
#[derive(Clone, Debug)]
pub struct SampleAppConfig {
    /// The `service` label (the rollout's name).
    pub service: String,
    /// The `version` label (the track's version).
    pub version: String,
    /// Where to listen; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Initial behaviour.
    pub behaviour: Behaviour,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    service: String,
    version: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TrackLabels {
    service: String,
    version: String,
}

type HistogramFamily = Family<TrackLabels, Histogram, fn() -> Histogram>;

struct Shared {
    service: String,
    version: String,
    behaviour: RwLock<Behaviour>,
    requests: Family<RequestLabels, Counter>,
    durations: HistogramFamily,
    registry: Registry,
}

impl Shared {
    fn behaviour(&self) -> Behaviour {
        match self.behaviour.read() {
            Ok(b) => b.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

fn new_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// A running sample service.
pub struct SampleApp {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl SampleApp {
    /// Binds and starts serving in the background.
    pub async fn start(config: SampleAppConfig) -> std::io::Result<SampleApp> {
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let router = router(config);
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(SampleApp {
            addr,
            stop: Some(stop),
            task,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets in-flight requests finish, and returns.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.task).await {
            Ok(result) => result,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

impl Drop for SampleApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn router(config: SampleAppConfig) -> Router {
    let mut registry = Registry::default();
    let requests = Family::<RequestLabels, Counter>::default();
    let durations: HistogramFamily = Family::new_with_constructor(new_histogram);
    registry.register(
        "http_requests",
        "HTTP requests served, by status code",
        requests.clone(),
    );
    registry.register(
        "http_request_duration_seconds",
        "Time to answer an HTTP request",
        durations.clone(),
    );
    // Every series exists from the start at zero, so the first failure is a
    // rise that rate() sees, not the birth of a series it cannot rate yet.
    for code in ["200", "500"] {
        drop(requests.get_or_create(&RequestLabels {
            service: config.service.clone(),
            version: config.version.clone(),
            code: code.to_string(),
        }));
    }
    drop(durations.get_or_create(&TrackLabels {
        service: config.service.clone(),
        version: config.version.clone(),
    }));
    let shared = Arc::new(Shared {
        service: config.service,
        version: config.version,
        behaviour: RwLock::new(config.behaviour),
        requests,
        durations,
        registry,
    });
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/admin/behaviour", get(show).put(change))
        .fallback(serve)
        .with_state(shared)
}

async fn serve(State(app): State<Arc<Shared>>) -> Response {
    let started = Instant::now();
    let (latency, fails) = app.behaviour().draw(&mut rand::rng());
    tokio::time::sleep(latency).await;
    let status = if fails {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    app.requests
        .get_or_create(&RequestLabels {
            service: app.service.clone(),
            version: app.version.clone(),
            code: status.as_u16().to_string(),
        })
        .inc();
    app.durations
        .get_or_create(&TrackLabels {
            service: app.service.clone(),
            version: app.version.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    let body = if fails {
        format!("{} {}: injected failure\n", app.service, app.version)
    } else {
        format!("hello from {} {}\n", app.service, app.version)
    };
    (
        status,
        [("x-canaryd-version", sanitize_header(&app.version))],
        body,
    )
        .into_response()
}

/// Header values cannot hold control characters; the body still has the exact version.
fn sanitize_header(version: &str) -> String {
    version
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

async fn metrics(State(app): State<Arc<Shared>>) -> Response {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &app.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn healthz(State(app): State<Arc<Shared>>) -> Response {
    if app.behaviour().ready {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn show(State(app): State<Arc<Shared>>) -> Response {
    axum::Json(app.behaviour()).into_response()
}

async fn change(State(app): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let patch: BehaviourPatch = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return bad_request(format!("not a behaviour patch: {e}")),
    };
    let mut current = match app.behaviour.write() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    match current.patched(&patch) {
        Ok(next) => {
            *current = next.clone();
            drop(current);
            tracing::info!(service = %app.service, version = %app.version, ?next, "behaviour changed");
            axum::Json(next).into_response()
        }
        Err(e) => bad_request(e.to_string()),
    }
}

fn bad_request(message: String) -> Response {
    let body = serde_json::json!({"error": {"code": "bad_request", "message": message}});
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}
