//! canaryd's built-in router: an HTTP/1.1 reverse proxy (hyper) that sends each
//! request to the canary with probability `weight`, else to the stable
//! version. Upstream connections are pooled and reused; request and response
//! bodies are streamed, never buffered. The weight is read per request, so a
//! change applies to the next request and drops none in flight. Both upstreams
//! are health-checked (`GET /healthz`, every second, one checker per address
//! shared by every router of an [`UpstreamPool`]): an unready canary gets no
//! traffic whatever its weight.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri};
use rand::RngExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Health;
use super::health::{Subscription, UpstreamPool};
use super::listener::{ConnectionLimits, ListenerStats, serve_listener};
use super::metrics::{RequestLabels, RouteLabels, RouterMetrics, TrackLabels};
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
    /// How often upstreams are health-checked (when the router makes its
    /// own [`UpstreamPool`]; a shared pool has its own interval).
    pub health_interval: Duration,
    /// The canary weight it starts at (0, or a shadowed rollout's
    /// `deploy.shadow_weight`).
    pub weight: Weight,
}

/// Where the tracks are, and their health checks (none once stopped).
struct Upstreams {
    stable: String,
    canary: String,
    checks: Option<(Subscription, Subscription)>,
}

impl Upstreams {
    fn health(&self) -> Health {
        self.checks
            .as_ref()
            .map_or(Health::default(), |(s, c)| Health {
                stable: s.ready(),
                canary: c.ready(),
            })
    }
}

struct Shared {
    namespace: String,
    route: String,
    upstreams: RwLock<Upstreams>,
    /// Canary weight in basis points (0–10000).
    weight: AtomicU16,
    pool: UpstreamPool,
    metrics: RouterMetrics,
}

impl Shared {
    /// This router's labels on its weight metrics.
    fn route_labels(&self) -> RouteLabels {
        RouteLabels {
            namespace: self.namespace.clone(),
            route: self.route.clone(),
        }
    }

    /// The upstream addresses (a poisoned lock still holds valid strings).
    fn upstreams(&self) -> std::sync::RwLockReadGuard<'_, Upstreams> {
        self.upstreams
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn upstreams_mut(&self) -> std::sync::RwLockWriteGuard<'_, Upstreams> {
        self.upstreams
            .write()
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

    /// [`BuiltinRouter::start`] with explicit connection limits (and an
    /// upstream pool of its own).
    pub async fn start_with_limits(
        config: BuiltinConfig,
        limits: ConnectionLimits,
        metrics: RouterMetrics,
    ) -> std::io::Result<BuiltinRouter> {
        // Never more idle upstream connections than client connections.
        let pool = UpstreamPool::new(config.health_interval, limits.max_connections);
        BuiltinRouter::start_in(config, limits, metrics, &pool).await
    }

    /// Starts a router whose health checks and upstream connections are
    /// shared with the other routers of `pool`.
    pub async fn start_in(
        config: BuiltinConfig,
        limits: ConnectionLimits,
        metrics: RouterMetrics,
        pool: &UpstreamPool,
    ) -> std::io::Result<BuiltinRouter> {
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let checks = subscribe(pool, &config.stable, &config.canary).await;
        let shared = Arc::new(Shared {
            namespace: config.namespace,
            route: config.route,
            upstreams: RwLock::new(Upstreams {
                stable: config.stable,
                canary: config.canary,
                checks: Some(checks),
            }),
            weight: AtomicU16::new(config.weight.basis_points()),
            pool: pool.clone(),
            metrics,
        });
        shared
            .metrics
            .weights
            .get_or_create(&shared.route_labels())
            .set(config.weight.percent());
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
        Ok(BuiltinRouter {
            shared,
            addr,
            connections,
            stop,
            tasks: vec![serve],
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
        let before = self
            .shared
            .weight
            .swap(weight.basis_points(), Ordering::SeqCst);
        let labels = self.shared.route_labels();
        self.shared
            .metrics
            .weights
            .get_or_create(&labels)
            .set(weight.percent());
        if before != weight.basis_points() {
            self.shared
                .metrics
                .weight_changes
                .get_or_create(&labels)
                .inc();
        }
    }

    /// The weight applied now.
    pub fn weight(&self) -> Weight {
        Weight::from_basis_points(self.shared.weight.load(Ordering::SeqCst)).unwrap_or(Weight::FULL)
    }

    /// Readiness from the last health check (neither, once stopped).
    pub fn health(&self) -> Health {
        self.shared.upstreams().health()
    }

    /// Points the tracks at new addresses (an edited deploy file, a
    /// promotion), moving the health subscriptions with them.
    pub async fn set_upstreams(&self, stable: String, canary: String) {
        {
            let u = self.shared.upstreams();
            if u.stable == stable && u.canary == canary {
                return;
            }
        }
        // Checked before the switch: requests keep going to the old canary
        // only while it is ready, and to the new one only once it is.
        let checks = subscribe(&self.shared.pool, &stable, &canary).await;
        let old = {
            let mut u = self.shared.upstreams_mut();
            let stopped = u.checks.is_none();
            let old = std::mem::replace(
                &mut *u,
                Upstreams {
                    stable,
                    canary,
                    checks: Some(checks),
                },
            );
            if stopped {
                u.checks = None;
            }
            old
        };
        // The old subscriptions are released outside the lock.
        drop(old);
    }

    /// Stops accepting connections (requests in flight finish) and releases
    /// the health checks.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
        let checks = self.shared.upstreams_mut().checks.take();
        drop(checks);
    }
}

impl Drop for BuiltinRouter {
    fn drop(&mut self) {
        self.stop();
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Both tracks' health subscriptions, each checked at least once.
async fn subscribe(
    pool: &UpstreamPool,
    stable: &str,
    canary: &str,
) -> (Subscription, Subscription) {
    let mut s = pool.subscribe(stable);
    let mut c = pool.subscribe(canary);
    tokio::join!(s.checked(), c.checked());
    (s, c)
}

/// Which track this request goes to.
fn choose(shared: &Shared) -> &'static str {
    let weight = shared.weight.load(Ordering::Relaxed);
    if weight == 0 || !shared.upstreams().health().canary {
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
        Ok(req) => match shared.pool.client().request(req).await {
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
