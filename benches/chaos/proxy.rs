//! A tiny TCP proxy between the daemon and Prometheus, so a scenario can take
//! Prometheus away and bring a new one back at the same address, or slow it:
//! each new connection goes to the current upstream; every chunk of an answer
//! waits the delay set at that moment (so pooled connections are slowed
//! too); when the upstream refuses, the client's connection is closed (the
//! daemon sees a failed query, as with a stopped server).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

#[derive(Clone, Copy)]
struct Route {
    upstream: SocketAddr,
    delay: Duration,
}

/// A running proxy; stops when dropped.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    route: Arc<Mutex<Route>>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Forwards a free loopback port to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let route = Arc::new(Mutex::new(Route {
            upstream,
            delay: Duration::ZERO,
        }));
        let shared = route.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(forward(client, shared.clone()));
            }
        });
        Ok(Proxy { addr, route, task })
    }

    /// New connections go to `upstream`.
    pub fn point_at(&self, upstream: SocketAddr) {
        self.route.lock().expect("route").upstream = upstream;
    }

    /// New connections wait `delay` before they are forwarded.
    pub fn delay(&self, delay: Duration) {
        self.route.lock().expect("route").delay = delay;
    }

    /// The URL of the proxy.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn forward(client: TcpStream, route: Arc<Mutex<Route>>) {
    let upstream = route.lock().expect("route").upstream;
    let Ok(upstream) = TcpStream::connect(upstream).await else {
        return; // dropped: the client sees its connection closed
    };
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut up_rx, mut up_tx) = upstream.into_split();
    let requests = async {
        let _ = tokio::io::copy(&mut client_rx, &mut up_tx).await;
        let _ = up_tx.shutdown().await;
    };
    let answers = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match up_rx.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let delay = route.lock().expect("route").delay;
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if client_tx.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = client_tx.shutdown().await;
    };
    // Either side ending ends the connection (a killed upstream closes it).
    tokio::select! {
        _ = answers => {}
        _ = async { requests.await; std::future::pending::<()>().await } => {}
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
