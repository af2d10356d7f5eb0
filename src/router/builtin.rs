//! canaryd's built-in router: an HTTP/1.1 reverse proxy (hyper) that sends each
//! request to the canary with probability `weight`, else to the stable
//! version. Upstream connections are pooled and reused; request and response
//! bodies are streamed, never buffered. The weight is read per request, so a
//! change applies to the next request and drops none in flight. Both upstreams
//! are health-checked (`GET /healthz`, every second): an unready canary gets no
//! traffic whatever its weight.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::RngExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Health;
use super::listener::{ConnectionLimits, ListenerStats, serve_listener};
use super::metrics::{RequestLabels, RouterMetrics, TrackLabels};
use crate::spec::units::Weight;

type Body = BoxBody<Bytes, hyper::Error>;

/// How to start a built-in router for one rollout.
#[derive(Clone, Debug)]
pub struct BuiltinConfig {
    /// Where clients connect.
    pub listen: SocketAddr,
    /// The rollout's namespace (a metric label).
    pub namespace: String,
    /// The rollout's name (the `route` label).
    pub route: String,
    /// `host:port` of the stable version.
    pub stable: String,
    /// `host:port` of the canary.
    pub canary: String,
    /// How often upstreams are health-checked.
    pub health_interval: Duration,
}

struct Upstreams {
    stable: String,
    canary: String,
}

struct Shared {
    namespace: String,
    route: String,
    upstreams: RwLock<Upstreams>,
    /// Canary weight in basis points (0–10000).
    weight: AtomicU16,
    stable_ready: AtomicBool,
    canary_ready: AtomicBool,
    client: Client<HttpConnector, Incoming>,
    probe: Client<HttpConnector, Empty<Bytes>>,
    metrics: RouterMetrics,
}

impl Shared {
    /// The upstream addresses (a poisoned lock still holds valid strings).
    fn upstreams(&self) -> std::sync::RwLockReadGuard<'_, Upstreams> {
        self.upstreams
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A running built-in router.
pub struct BuiltinRouter {
    shared: Arc<Shared>,
    addr: SocketAddr,
    connections: Arc<ListenerStats>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Headers that belong to one connection, not to the request (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

impl BuiltinRouter {
    /// Binds the listener, checks both upstreams once, and starts serving at
    /// weight 0, under the default router limits.
    pub async fn start(
        config: BuiltinConfig,
        metrics: RouterMetrics,
    ) -> std::io::Result<BuiltinRouter> {
        BuiltinRouter::start_with_limits(config, ConnectionLimits::ROUTER, metrics).await
    }

    /// [`BuiltinRouter::start`] with explicit connection limits.
    pub async fn start_with_limits(
        config: BuiltinConfig,
        limits: ConnectionLimits,
        metrics: RouterMetrics,
    ) -> std::io::Result<BuiltinRouter> {
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            // Never more idle upstream connections than client connections.
            .pool_max_idle_per_host(limits.max_connections)
            .build(connector.clone());
        let probe = Client::builder(TokioExecutor::new()).build(connector);
        let shared = Arc::new(Shared {
            namespace: config.namespace,
            route: config.route,
            upstreams: RwLock::new(Upstreams {
                stable: config.stable,
                canary: config.canary,
            }),
            weight: AtomicU16::new(0),
            stable_ready: AtomicBool::new(false),
            canary_ready: AtomicBool::new(false),
            client,
            probe,
            metrics,
        });
        check_health(&shared).await;
        let (stop, stopped) = watch::channel(false);
        let connections = Arc::new(ListenerStats::default());
        // A stopped router finishes the request in flight on each kept-alive
        // connection, then closes it: nothing is proxied after.
        let proxy = {
            let shared = shared.clone();
            move |peer: SocketAddr| {
                let shared = shared.clone();
                move |req: Request<Incoming>| {
                    let shared = shared.clone();
                    async move { forward(&shared, req, peer).await }
                }
            }
        };
        let serve = tokio::spawn(serve_listener(
            "router",
            listener,
            limits,
            connections.clone(),
            proxy,
            stopped.clone(),
        ));
        let health = tokio::spawn(health_loop(shared.clone(), config.health_interval, stopped));
        Ok(BuiltinRouter {
            shared,
            addr,
            connections,
            stop,
            tasks: vec![serve, health],
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the listener did with its connections.
    pub fn connections(&self) -> &ListenerStats {
        &self.connections
    }

    /// Sets the canary weight for the next requests.
    pub fn set_weight(&self, weight: Weight) {
        self.shared
            .weight
            .store(weight.basis_points(), Ordering::SeqCst);
    }

    /// The weight applied now.
    pub fn weight(&self) -> Weight {
        Weight::from_basis_points(self.shared.weight.load(Ordering::SeqCst)).unwrap_or(Weight::FULL)
    }

    /// Readiness from the last health check.
    pub fn health(&self) -> Health {
        Health {
            stable: self.shared.stable_ready.load(Ordering::SeqCst),
            canary: self.shared.canary_ready.load(Ordering::SeqCst),
        }
    }

    /// Points the tracks at new addresses (an edited deploy file, a promotion).
    pub async fn set_upstreams(&self, stable: String, canary: String) {
        {
            let mut u = self
                .shared
                .upstreams
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if u.stable == stable && u.canary == canary {
                return;
            }
            // Not ready until the new canary answers its own health check.
            self.shared.canary_ready.store(false, Ordering::SeqCst);
            *u = Upstreams { stable, canary };
        }
        check_health(&self.shared).await;
    }

    /// Stops accepting connections; requests in flight finish.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for BuiltinRouter {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Which track this request goes to.
fn choose(shared: &Shared) -> &'static str {
    let weight = shared.weight.load(Ordering::Relaxed);
    if weight == 0 || !shared.canary_ready.load(Ordering::Relaxed) {
        return "stable";
    }
    if weight >= 10_000 || rand::rng().random_range(0..10_000u16) < weight {
        "canary"
    } else {
        "stable"
    }
}

async fn forward(shared: &Shared, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let started = Instant::now();
    let track = choose(shared);
    let upstream = {
        let u = shared.upstreams();
        if track == "canary" {
            u.canary.clone()
        } else {
            u.stable.clone()
        }
    };
    let response = match upstream_request(req, &upstream, peer) {
        Ok(req) => match shared.client.request(req).await {
            Ok(resp) => {
                let (mut parts, body) = resp.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                parts.headers.insert(
                    HeaderName::from_static("x-canaryd-track"),
                    HeaderValue::from_static(track),
                );
                Response::from_parts(parts, body.boxed())
            }
            Err(e) => {
                tracing::debug!(%track, error = %e, "router: upstream failed");
                bad_gateway(track)
            }
        },
        Err(()) => bad_gateway(track),
    };
    let labels = TrackLabels {
        namespace: shared.namespace.clone(),
        route: shared.route.clone(),
        track: track.to_string(),
    };
    shared
        .metrics
        .durations
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    shared
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            namespace: labels.namespace,
            route: labels.route,
            track: labels.track,
            code: response.status().as_u16().to_string(),
        })
        .inc();
    response
}

fn upstream_request(
    req: Request<Incoming>,
    upstream: &str,
    peer: SocketAddr,
) -> Result<Request<Incoming>, ()> {
    let (mut parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    parts.uri = Uri::try_from(format!("http://{upstream}{path}")).map_err(|_| ())?;
    strip_hop_by_hop(&mut parts.headers);
    let forwarded = match parts
        .headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
    {
        Some(prior) => format!("{prior}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&forwarded) {
        parts
            .headers
            .insert(HeaderName::from_static("x-forwarded-for"), v);
    }
    Ok(Request::from_parts(parts, body))
}

fn strip_hop_by_hop(headers: &mut hyper::HeaderMap) {
    // Headers named in `Connection` are hop-by-hop too.
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .collect();
    for name in HOP_BY_HOP
        .iter()
        .copied()
        .chain(named.iter().map(String::as_str))
    {
        headers.remove(name);
    }
}

fn bad_gateway(track: &'static str) -> Response<Body> {
    let body = Full::new(Bytes::from(format!(
        "canaryd: the {track} upstream did not answer\n"
    )))
    .map_err(|never| match never {})
    .boxed();
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::BAD_GATEWAY;
    resp.headers_mut().insert(
        HeaderName::from_static("x-canaryd-track"),
        HeaderValue::from_static(track),
    );
    resp
}

async fn health_loop(shared: Arc<Shared>, every: Duration, mut stopped: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(100)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            _ = ticks.tick() => check_health(&shared).await,
        }
    }
}

async fn check_health(shared: &Shared) {
    let (stable, canary) = {
        let u = shared.upstreams();
        (u.stable.clone(), u.canary.clone())
    };
    let (s, c) = tokio::join!(probe(shared, &stable), probe(shared, &canary));
    shared.stable_ready.store(s, Ordering::SeqCst);
    shared.canary_ready.store(c, Ordering::SeqCst);
}

/// Ready: `GET /healthz` answers within a second with a status below 500
/// (an app without the endpoint answers 404, and is up).
async fn probe(shared: &Shared, upstream: &str) -> bool {
    let Ok(uri) = Uri::try_from(format!("http://{upstream}/healthz")) else {
        return false;
    };
    let request = shared.probe.get(uri);
    match tokio::time::timeout(Duration::from_secs(1), request).await {
        Ok(Ok(resp)) => {
            let ok = resp.status().as_u16() < 500;
            let _ = resp.into_body().collect().await;
            ok
        }
        _ => false,
    }
}
