//! Built-in routers share one health checker per upstream address: however
//! many routers point at an upstream, it is checked once per interval, until
//! the last of them stops or moves away.

mod harness;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use canaryd::router::{
    BuiltinConfig, BuiltinRouter, ConnectionLimits, RouterMetrics, UpstreamPool,
};
use canaryd::spec::units::Weight;
use harness::wait_for;
use prometheus_client::registry::Registry;

/// A tiny upstream that counts its health checks and answers them with a
/// status it is told.
#[derive(Clone)]
struct Upstream {
    addr: SocketAddr,
    checks: Arc<AtomicUsize>,
    status: Arc<AtomicU16>,
}

impl Upstream {
    async fn start() -> Upstream {
        let checks = Arc::new(AtomicUsize::new(0));
        let status = Arc::new(AtomicU16::new(200));
        let app = axum::Router::new()
            .route(
                "/healthz",
                axum::routing::get(
                    |State((checks, status)): State<(Arc<AtomicUsize>, Arc<AtomicU16>)>| async move {
                        checks.fetch_add(1, Ordering::SeqCst);
                        StatusCode::from_u16(status.load(Ordering::SeqCst))
                            .unwrap_or(StatusCode::OK)
                    },
                ),
            )
            .with_state((checks.clone(), status.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Upstream {
            addr,
            checks,
            status,
        }
    }

    fn checks(&self) -> usize {
        self.checks.load(Ordering::SeqCst)
    }

    /// Waits until `n` more checks than `from` arrived.
    async fn checked_again(&self, from: usize, n: usize) {
        wait_for(
            &format!("{n} more health checks at {}", self.addr),
            Duration::from_secs(10),
            || async {
                let now = self.checks();
                if now >= from + n {
                    Ok(())
                } else {
                    Err(format!("{now} checks"))
                }
            },
        )
        .await;
    }
}

async fn router(
    pool: &UpstreamPool,
    route: &str,
    stable: &Upstream,
    canary: &Upstream,
) -> BuiltinRouter {
    let mut registry = Registry::default();
    BuiltinRouter::start_in(
        BuiltinConfig {
            listen: "127.0.0.1:0".parse().expect("address"),
            namespace: "default".into(),
            route: route.into(),
            stable: stable.addr.to_string(),
            canary: canary.addr.to_string(),
            health_interval: Duration::from_secs(3600),
            weight: Weight::ZERO,
        },
        ConnectionLimits::ROUTER,
        RouterMetrics::register(&mut registry),
        pool,
    )
    .await
    .expect("router starts")
}

#[tokio::test]
async fn two_routers_on_the_same_upstreams_cause_one_check_per_interval() {
    let (stable, canary) = (Upstream::start().await, Upstream::start().await);
    // An hour between checks: only each checker's first check happens here.
    let pool = UpstreamPool::new(Duration::from_secs(3600), 8);
    let a = router(&pool, "a", &stable, &canary).await;
    assert_eq!((stable.checks(), canary.checks()), (1, 1));
    let b = router(&pool, "b", &stable, &canary).await;
    assert_eq!(
        (stable.checks(), canary.checks()),
        (1, 1),
        "the second router reads the first one's checks"
    );
    let ready = canaryd::router::Health {
        stable: true,
        canary: true,
    };
    assert_eq!((a.health(), b.health()), (ready, ready));
    let mut expected = vec![stable.addr.to_string(), canary.addr.to_string()];
    expected.sort();
    assert_eq!(pool.checked(), expected);
}

#[tokio::test]
async fn stopping_one_router_keeps_the_others_checks_and_stopping_both_ends_them() {
    let (stable, canary) = (Upstream::start().await, Upstream::start().await);
    let pool = UpstreamPool::new(Duration::from_millis(20), 8);
    let a = router(&pool, "a", &stable, &canary).await;
    let b = router(&pool, "b", &stable, &canary).await;
    a.stop();
    stable.checked_again(stable.checks(), 3).await;
    canary.status.store(503, Ordering::SeqCst);
    wait_for(
        "b to see the canary unready",
        Duration::from_secs(10),
        || async {
            if b.health().canary {
                Err("still ready".to_string())
            } else {
                Ok(())
            }
        },
    )
    .await;

    drop(b);
    assert!(pool.checked().is_empty(), "no checker left");
    let stopped_at = stable.checks();
    // Time passes: another pool's checker runs five more rounds meanwhile.
    let (other_stable, other_canary) = (Upstream::start().await, Upstream::start().await);
    let _c = router(&pool, "c", &other_stable, &other_canary).await;
    other_stable.checked_again(other_stable.checks(), 5).await;
    assert!(
        stable.checks() <= stopped_at + 1,
        "at most the check in flight: {stopped_at} then {}",
        stable.checks()
    );
}

#[tokio::test]
async fn a_retargeted_router_moves_its_health_check_to_the_new_canary() {
    let stable = Upstream::start().await;
    let (old_canary, new_canary) = (Upstream::start().await, Upstream::start().await);
    new_canary.status.store(500, Ordering::SeqCst);
    let pool = UpstreamPool::new(Duration::from_millis(20), 8);
    let a = router(&pool, "a", &stable, &old_canary).await;
    assert!(a.health().canary);
    a.set_upstreams(stable.addr.to_string(), new_canary.addr.to_string())
        .await;
    assert!(!a.health().canary, "the new canary's own check: unready");
    let mut expected = vec![stable.addr.to_string(), new_canary.addr.to_string()];
    expected.sort();
    assert_eq!(
        pool.checked(),
        expected,
        "the old canary is no longer checked"
    );
    let left_at = old_canary.checks();
    stable.checked_again(stable.checks(), 5).await;
    assert!(old_canary.checks() <= left_at + 1);
    // An unready canary gets no traffic whatever its weight.
    a.set_weight(Weight::FULL);
    let r = reqwest::get(format!("http://{}/healthz", a.addr()))
        .await
        .expect("request");
    assert_eq!(r.headers()["x-canaryd-track"], "stable");
}
