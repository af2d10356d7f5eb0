//! Serving the API on its listener under connection limits (see
//! [`crate::router::listener`]): at most `max_connections` clients, header
//! and idle timeouts. Each request carries its peer's address (for
//! loopback-only reads).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use hyper::Request;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

use super::{ApiState, router};
use crate::router::listener::{ConnectionLimits, ListenerStats, serve_listener};

/// Serves the API on `listener` until `stop` turns true, then waits for the
/// connections still open to finish (an open event stream never does: give
/// this a deadline).
pub async fn serve(
    listener: TcpListener,
    state: Arc<ApiState>,
    limits: ConnectionLimits,
    stats: Arc<ListenerStats>,
    stop: watch::Receiver<bool>,
) {
    let app = router(state);
    let make = move |peer: SocketAddr| {
        let app = app.clone();
        move |req: Request<Incoming>| {
            let mut req = req.map(axum::body::Body::new);
            req.extensions_mut().insert(ConnectInfo(peer));
            let app = app.clone();
            async move {
                match app.oneshot(req).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            }
        }
    };
    serve_listener("api", listener, limits, stats.clone(), make, stop).await;
    // Wait for the connections still open (each finishes its request first).
    let mut every = tokio::time::interval(std::time::Duration::from_millis(50));
    while stats.open() > 0 {
        every.tick().await;
    }
}
