//! The connection timers in simulated time (paused tokio clock) over
//! in-memory streams: what closes a connection, when, and what never does.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Full, StreamBody};
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::Instant;

use super::*;

const LIMITS: ConnectionLimits = ConnectionLimits {
    max_connections: 8,
    header_timeout: Duration::from_secs(10),
    idle_timeout: Duration::from_secs(60),
};

fn never_stopped() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    // Keep the sender alive for the whole test: a dropped sender reads as "stop".
    std::mem::forget(tx);
    rx
}

async fn ok(_req: Request<Incoming>) -> Response<Full<Bytes>> {
    Response::new(Full::new(Bytes::from_static(b"ok")))
}

/// Longer than any timer under test: a connection left open fails the test
/// (in simulated time) instead of hanging it.
const BOUND: Duration = Duration::from_secs(3600);

/// Reads one response (headers and a `content-length` body); `None` at EOF.
async fn read_response(client: &mut DuplexStream) -> Option<String> {
    tokio::time::timeout(BOUND, read_one(client))
        .await
        .expect("no response within the bound")
}

async fn read_one(client: &mut DuplexStream) -> Option<String> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&seen).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_string)
                })
                .and_then(|n| n.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if seen.len() >= end + 4 + length {
                return Some(text);
            }
        }
        let n = client.read(&mut buf).await.expect("read");
        if n == 0 {
            return None;
        }
        seen.extend_from_slice(&buf[..n]);
    }
}

/// Reads until EOF; how long it took.
async fn closed_after(client: &mut DuplexStream) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(BOUND, async {
        while client.read(&mut buf).await.expect("read") > 0 {}
    })
    .await
    .expect("the connection was never closed");
    started.elapsed()
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let (mut client, server) = tokio::io::duplex(4096);
    let conn = tokio::spawn(serve_connection(server, ok, LIMITS, never_stopped()));
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let waited = closed_after(&mut client).await;
    assert!(
        waited >= LIMITS.header_timeout && waited < LIMITS.header_timeout + Duration::from_secs(1),
        "closed after {waited:?}"
    );
    assert_eq!(conn.await.expect("joined"), Ending::HeaderTimeout);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_connects_and_sends_nothing_is_disconnected() {
    let (mut client, server) = tokio::io::duplex(4096);
    let conn = tokio::spawn(serve_connection(server, ok, LIMITS, never_stopped()));
    let waited = closed_after(&mut client).await;
    assert!(waited >= LIMITS.header_timeout, "closed after {waited:?}");
    assert_eq!(conn.await.expect("joined"), Ending::HeaderTimeout);
}

#[tokio::test(start_paused = true)]
async fn headers_finished_just_before_the_header_timeout_are_answered() {
    let (mut client, server) = tokio::io::duplex(4096);
    tokio::spawn(serve_connection(server, ok, LIMITS, never_stopped()));
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    tokio::time::sleep(LIMITS.header_timeout - Duration::from_millis(100)).await;
    client.write_all(b"\r\n").await.expect("write");
    let response = read_response(&mut client).await.expect("a response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[tokio::test(start_paused = true)]
async fn a_kept_alive_connection_is_closed_after_the_idle_timeout_and_not_before() {
    let (mut client, server) = tokio::io::duplex(4096);
    let conn = tokio::spawn(serve_connection(server, ok, LIMITS, never_stopped()));
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    read_response(&mut client).await.expect("first response");
    // Idle for longer than the header timeout, less than the idle timeout:
    // the connection is still there for the next request.
    tokio::time::sleep(LIMITS.idle_timeout - Duration::from_secs(1)).await;
    client
        .write_all(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    read_response(&mut client).await.expect("second response");
    let waited = closed_after(&mut client).await;
    assert!(
        waited >= LIMITS.idle_timeout && waited < LIMITS.idle_timeout + Duration::from_secs(1),
        "closed after {waited:?}"
    );
    assert_eq!(conn.await.expect("joined"), Ending::IdleTimeout);
}

#[tokio::test(start_paused = true)]
async fn a_next_request_whose_headers_stall_is_closed_at_the_idle_deadline() {
    let (mut client, server) = tokio::io::duplex(4096);
    let conn = tokio::spawn(serve_connection(server, ok, LIMITS, never_stopped()));
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    read_response(&mut client).await.expect("first response");
    client
        .write_all(b"GET /never HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let waited = closed_after(&mut client).await;
    assert!(waited <= LIMITS.idle_timeout, "closed after {waited:?}");
    assert_eq!(conn.await.expect("joined"), Ending::IdleTimeout);
}

#[tokio::test(start_paused = true)]
async fn a_slow_response_is_not_cut_by_the_header_or_idle_timeout() {
    let (mut client, server) = tokio::io::duplex(4096);
    let slow = |_req: Request<Incoming>| async {
        tokio::time::sleep(Duration::from_secs(300)).await;
        Response::new(Full::new(Bytes::from_static(b"late")))
    };
    tokio::spawn(serve_connection(server, slow, LIMITS, never_stopped()));
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    let response = read_response(&mut client).await.expect("a response");
    assert!(started.elapsed() >= Duration::from_secs(300));
    assert!(response.ends_with("late"), "{response}");
}

#[tokio::test(start_paused = true)]
async fn a_streamed_response_longer_than_the_idle_timeout_is_not_cut() {
    let (mut client, server) = tokio::io::duplex(1 << 16);
    // An event stream: one chunk every 30 s for five minutes.
    let stream = |_req: Request<Incoming>| async {
        let chunks = futures::stream::unfold(0, |i| async move {
            if i == 10 {
                return None;
            }
            tokio::time::sleep(Duration::from_secs(30)).await;
            Some((
                Ok::<_, Infallible>(Frame::data(Bytes::from(format!("event {i}\n")))),
                i + 1,
            ))
        });
        Response::new(StreamBody::new(Box::pin(chunks)))
    };
    tokio::spawn(serve_connection(server, stream, LIMITS, never_stopped()));
    client
        .write_all(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    // Chunked encoding ends with an empty chunk; the connection stays open after.
    while !String::from_utf8_lossy(&all).contains("event 9\n\r\n0\r\n\r\n") {
        let n = tokio::time::timeout(BOUND, client.read(&mut buf))
            .await
            .expect("the stream stalled")
            .expect("read");
        assert!(n > 0, "cut: {}", String::from_utf8_lossy(&all));
        all.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_its_response_is_disconnected_after_the_idle_timeout() {
    // A tiny pipe: the response cannot be written unless the client reads.
    let (mut client, server) = tokio::io::duplex(1024);
    let big = |_req: Request<Incoming>| async {
        Response::new(Full::new(Bytes::from(vec![b'x'; 1 << 20])))
    };
    let conn = tokio::spawn(serve_connection(server, big, LIMITS, never_stopped()));
    client
        .write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    let ending = tokio::time::timeout(BOUND, conn)
        .await
        .expect("the connection was never closed")
        .expect("joined");
    assert_eq!(ending, Ending::WriteTimeout);
    assert!(started.elapsed() >= LIMITS.idle_timeout);
}

#[tokio::test(start_paused = true)]
async fn a_stop_lets_the_request_in_flight_finish_then_closes() {
    let (mut client, server) = tokio::io::duplex(4096);
    let (stop, stopped) = watch::channel(false);
    let slow = |_req: Request<Incoming>| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Response::new(Full::new(Bytes::from_static(b"done")))
    };
    let conn = tokio::spawn(serve_connection(server, slow, LIMITS, stopped));
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.send(true).expect("send");
    let response = read_response(&mut client).await.expect("a response");
    assert!(response.ends_with("done"), "{response}");
    assert_eq!(conn.await.expect("joined"), Ending::Stopped);
}

/// A listener on a loopback port with `max` connections at most.
async fn listening(max: usize) -> (SocketAddr, Arc<ListenerStats>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let stats = Arc::new(ListenerStats::default());
    let limits = ConnectionLimits {
        max_connections: max,
        ..LIMITS
    };
    tokio::spawn(serve_listener(
        "test",
        listener,
        limits,
        stats.clone(),
        |_| ok,
        never_stopped(),
    ));
    (addr, stats)
}

#[tokio::test]
async fn a_full_listener_of_idle_connections_still_serves_a_new_client() {
    let (addr, stats) = listening(4).await;
    // Idle clients (connected, nothing sent) fill every slot, far from their
    // header timeout.
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
    }
    tokio::time::timeout(Duration::from_secs(5), async {
        while stats.open() < 4 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("4 connections open");
    // A health probe on a fresh connection is answered: the oldest idle
    // connection makes room for it.
    let mut probe = tokio::net::TcpStream::connect(addr).await.expect("connect");
    probe
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), probe.read_to_string(&mut answer))
        .await
        .expect("an answer within 5 s")
        .expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert_eq!(stats.evicted(), 1);
    // The evicted one is the oldest; the others are still open.
    let mut buf = [0u8; 1];
    let first = tokio::time::timeout(Duration::from_secs(5), idle[0].read(&mut buf)).await;
    assert!(
        matches!(first, Ok(Ok(0)) | Ok(Err(_))),
        "the oldest was closed"
    );
    let second = tokio::time::timeout(Duration::from_millis(200), idle[1].read(&mut buf)).await;
    assert!(second.is_err(), "a younger idle connection is kept");
}

#[tokio::test]
async fn a_full_listener_of_busy_connections_still_closes_a_new_one() {
    let (addr, stats) = listening(1).await;
    // One client that has sent a request: kept alive, not evictable.
    let mut kept = tokio::net::TcpStream::connect(addr).await.expect("connect");
    kept.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 256];
    let n = kept.read(&mut buf).await.expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let mut late = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let closed = tokio::time::timeout(Duration::from_secs(5), late.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "closed at once");
    assert_eq!(stats.refused(), 1);
    assert_eq!(stats.evicted(), 0);
}
