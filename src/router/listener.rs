//! Serving HTTP/1.1 on a listener under limits, for the built-in router and
//! the API server alike, so that idle or slow clients cannot exhaust the
//! daemon's file descriptors:
//!
//! * at most `max_connections` connections are open per listener; one more
//!   takes the place of the oldest connection that has not sent a request
//!   yet (a flood of idle connections cannot lock out a health probe or a new
//!   client), else it is closed the moment it is accepted (requests being
//!   served, and kept-alive clients, are not touched);
//! * a new connection must deliver its first request's headers within
//!   `header_timeout`;
//! * a kept-alive connection with no request in flight (including one that
//!   started its next request's headers and stalled) is closed after
//!   `idle_timeout`;
//! * a response the client stops reading (a write blocked that long) is cut
//!   after `idle_timeout` too.
//!
//! A request being served is never cut by the first two timers: a connection
//! is *busy* from the moment a request's headers are read until its response
//! body has been handed to the socket, whatever the upstream or the event
//! stream takes.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;

use open::OpenConnections;

/// How many connections a listener keeps and how long it waits on a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections at most; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// How long a new connection may take to send its first request's headers.
    pub header_timeout: Duration,
    /// How long a connection may sit with no request in flight (kept alive,
    /// or halfway through its next request's headers), and how long a
    /// response may wait for a client that does not read it.
    pub idle_timeout: Duration,
}

impl ConnectionLimits {
    /// The built-in router's defaults, per listener. Each proxied connection
    /// may hold a second descriptor upstream, so 256 keeps one router and the
    /// API (about 650 descriptors at their limits) within the usual open-file
    /// limit of 1024.
    pub const ROUTER: ConnectionLimits = ConnectionLimits {
        max_connections: 256,
        header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
    };

    /// The API server's defaults (people, scripts, a scraper, dashboards
    /// with one event stream each).
    pub const API: ConnectionLimits = ConnectionLimits {
        max_connections: 128,
        header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
    };
}

/// What a listener did with its connections (for logs and tests).
#[derive(Debug, Default)]
pub struct ListenerStats {
    open: AtomicU64,
    accepted: AtomicU64,
    refused: AtomicU64,
    timed_out: AtomicU64,
    evicted: AtomicU64,
}

impl ListenerStats {
    /// Connections open now.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::SeqCst)
    }

    /// Connections accepted and served so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections closed at once because the listener was full.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }

    /// Connections closed by the header, idle or write timeout.
    pub fn timed_out(&self) -> u64 {
        self.timed_out.load(Ordering::SeqCst)
    }

    /// Connections that had sent no request, closed to make room for a new one.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::SeqCst)
    }
}

/// How a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The client closed it, or it failed.
    Closed,
    /// Closed by canaryd: the first request's headers took too long.
    HeaderTimeout,
    /// Closed by canaryd: no request in flight for too long.
    IdleTimeout,
    /// Closed by canaryd: the client stopped reading its response.
    WriteTimeout,
    /// Closed because the listener stopped (requests in flight finished).
    Stopped,
    /// Closed before its first request, to make room for a newer connection
    /// on a full listener.
    Evicted,
}

impl Ending {
    fn timed_out(self) -> bool {
        matches!(
            self,
            Ending::HeaderTimeout | Ending::IdleTimeout | Ending::WriteTimeout
        )
    }
}

/// Accepts connections on `listener` until `stop` turns true, serving each
/// with `make(peer)` under `limits`. Returns once it stops accepting;
/// connections still open finish on their own (see [`serve_connection`]).
pub async fn serve_listener<M, H, Fut, B>(
    name: &'static str,
    listener: TcpListener,
    limits: ConnectionLimits,
    stats: Arc<ListenerStats>,
    make: M,
    mut stop: watch::Receiver<bool>,
) where
    M: Fn(SocketAddr) -> H,
    H: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let open = Arc::new(OpenConnections::default());
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors (EMFILE) or a connection reset before
                    // it was accepted: back off briefly rather than spin.
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => Some(slot),
            // Full: the oldest connection that never sent a request makes
            // room; its slot comes back as soon as its task sees the eviction.
            Err(_) if open.evict_oldest_unused() => None,
            Err(_) => {
                // Nothing to evict: close it now (dropping the stream frees
                // its descriptor).
                let refused = stats.refused.fetch_add(1, Ordering::SeqCst) + 1;
                drop(stream);
                // 1, 2, 4, 8…: a flood is visible without flooding the log.
                if refused.is_power_of_two() {
                    tracing::warn!(
                        listener = name,
                        max_connections = limits.max_connections,
                        refused,
                        "connection limit reached: new connections are closed"
                    );
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handler = make(peer);
        let (stats, stop, slots, open) = (stats.clone(), stop.clone(), slots.clone(), open.clone());
        tokio::spawn(async move {
            let slot = match slot {
                Some(slot) => slot,
                None => match tokio::time::timeout(EVICTION_WAIT, slots.acquire_owned()).await {
                    Ok(Ok(slot)) => slot,
                    // The evicted connection started a request meanwhile.
                    _ => {
                        stats.refused.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                },
            };
            stats.accepted.fetch_add(1, Ordering::SeqCst);
            stats.open.fetch_add(1, Ordering::SeqCst);
            let activity = Arc::new(Activity::new());
            let id = open.insert(activity.clone());
            let ending = serve_with(stream, handler, limits, stop, activity).await;
            open.remove(id);
            if ending == Ending::Evicted {
                stats.evicted.fetch_add(1, Ordering::SeqCst);
            } else if ending.timed_out() {
                stats.timed_out.fetch_add(1, Ordering::SeqCst);
                tracing::debug!(listener = name, %peer, ?ending, "connection closed");
            }
            stats.open.fetch_sub(1, Ordering::SeqCst);
            drop(slot);
        });
    }
}

/// How long a connection accepted on a full listener waits for the slot of
/// the connection it evicted (its task ends at its next poll).
const EVICTION_WAIT: Duration = Duration::from_secs(1);

/// Serves one connection until the client closes it, a timeout of `limits`
/// closes it, or `stop` turns true (then the request in flight finishes and
/// the connection closes).
pub async fn serve_connection<I, H, Fut, B>(
    io: I,
    handler: H,
    limits: ConnectionLimits,
    stop: watch::Receiver<bool>,
) -> Ending
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_with(io, handler, limits, stop, Arc::new(Activity::new())).await
}

/// [`serve_connection`] with the connection's activity shared with its
/// listener (which may evict it before its first request).
async fn serve_with<I, H, Fut, B>(
    io: I,
    handler: H,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
    activity: Arc<Activity>,
) -> Ending
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let io = Watched {
        inner: io,
        activity: activity.clone(),
    };
    let tracker = activity.clone();
    let service = hyper::service::service_fn(move |req| {
        let busy = tracker.begin();
        let response = handler(req);
        async move {
            let response = response.await;
            Ok::<_, Infallible>(response.map(|body| Tracked {
                inner: body,
                busy: Some(busy),
            }))
        }
    });
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut stopping = *stop.borrow();
    if stopping {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        // Re-armed whenever the connection's activity changes.
        let changed = activity.changed.notified();
        let deadline = activity.deadline(&limits);
        let sleep = tokio::time::sleep_until(deadline.map_or_else(far_future, |(at, _)| at));
        tokio::select! {
            _ = conn.as_mut() => return if stopping { Ending::Stopped } else { Ending::Closed },
            _ = changed => {}
            _ = sleep, if deadline.is_some() => {
                // Still due after whatever the connection did meanwhile?
                if let Some((at, ending)) = activity.deadline(&limits)
                    && at <= Instant::now()
                {
                    // No request is being served (or its client stopped
                    // reading): dropping the connection closes the socket.
                    return ending;
                }
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

// === Activity: what the connection is doing, for the timers ===

struct Activity {
    state: Mutex<ActivityState>,
    changed: Notify,
}

struct ActivityState {
    /// Requests whose response is not fully written yet.
    in_flight: usize,
    /// Requests answered so far.
    served: u64,
    /// When the connection last became idle (accepted, or a response ended).
    idle_since: Instant,
    /// Since when a write has been waiting for the client to read.
    write_blocked_since: Option<Instant>,
    /// Chosen to make room for a newer connection (honoured only while it
    /// has sent no request).
    evicted: bool,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            state: Mutex::new(ActivityState {
                in_flight: 0,
                served: 0,
                idle_since: Instant::now(),
                write_blocked_since: None,
                evicted: false,
            }),
            changed: Notify::new(),
        }
    }

    /// The state (a poisoned lock still holds plain counters).
    fn lock(&self) -> MutexGuard<'_, ActivityState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A request's headers were read: busy until the returned guard drops.
    fn begin(self: &Arc<Self>) -> Busy {
        self.lock().in_flight += 1;
        self.changed.notify_one();
        Busy(self.clone())
    }

    /// Marks it for eviction if it has sent no request and is not marked
    /// yet; true when marked.
    fn evict_if_unused(&self) -> bool {
        let mut s = self.lock();
        if s.evicted || s.in_flight > 0 || s.served > 0 {
            return false;
        }
        s.evicted = true;
        drop(s);
        self.changed.notify_one();
        true
    }

    fn write_blocked(&self, blocked: bool) {
        let mut s = self.lock();
        match (blocked, s.write_blocked_since) {
            (true, None) => {
                s.write_blocked_since = Some(Instant::now());
                drop(s);
                self.changed.notify_one();
            }
            (false, Some(_)) => s.write_blocked_since = None,
            _ => {}
        }
    }

    /// When the connection is due to be closed, and why.
    fn deadline(&self, limits: &ConnectionLimits) -> Option<(Instant, Ending)> {
        let s = self.lock();
        if let Some(since) = s.write_blocked_since {
            return Some((since + limits.idle_timeout, Ending::WriteTimeout));
        }
        match (s.in_flight, s.served) {
            (0, 0) if s.evicted => Some((s.idle_since, Ending::Evicted)),
            (0, 0) => Some((s.idle_since + limits.header_timeout, Ending::HeaderTimeout)),
            (0, _) => Some((s.idle_since + limits.idle_timeout, Ending::IdleTimeout)),
            _ => None,
        }
    }
}

/// A request in flight; dropped once its response body is written (or the
/// request is abandoned).
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        {
            let mut s = self.0.lock();
            s.in_flight = s.in_flight.saturating_sub(1);
            s.served += 1;
            s.idle_since = Instant::now();
        }
        self.0.changed.notify_one();
    }
}

/// A response body that keeps its connection busy until it ends.
struct Tracked<B> {
    inner: B,
    busy: Option<Busy>,
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.busy = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, noting when a write waits on a client that does not read.
struct Watched<I> {
    inner: I,
    activity: Arc<Activity>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.activity.write_blocked(polled.is_pending());
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.activity.write_blocked(polled.is_pending());
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.activity.write_blocked(polled.is_pending());
        polled
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

mod open;
#[cfg(test)]
mod tests;
