//! `canaryd run` as a child process with a small open-file limit, flooded
//! with connections that never finish their headers: the router's and the
//! API's excess connections are closed at once, `/healthz` and the API keep
//! answering, the daemon's descriptor count (`/proc/<pid>/fd`) stays bounded,
//! and stalled clients are cut at the header timeout. No Prometheus is
//! needed: the rollout's gates are inconclusive, the router routes anyway.

mod harness;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use canaryd::sample::SampleApp;
use harness::daemon::{Daemon, free_addr};
use harness::{instant, sample_app, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The daemon's open-file limit: far below the flood.
const NOFILE: u32 = 256;
const ROUTER_MAX: usize = 64;
const API_MAX: usize = 32;
/// Descriptors the daemon may use beyond its baseline for things other than
/// the flood (a Prometheus attempt, a health probe, a pooled upstream).
const SLACK: usize = 16;
const LIMIT: Duration = Duration::from_secs(30);

struct Setup {
    _apps: (SampleApp, SampleApp),
    _dir: tempfile::TempDir,
    daemon: Daemon,
    router: SocketAddr,
    api: SocketAddr,
}

fn deploy_file(dir: &Path, router: SocketAddr, stable: SocketAddr, canary: SocketAddr) {
    let text = format!(
        "service: checkout\npolicy: http-red\nrouter: {{ kind: builtin, listen: \"{router}\" }}\n\
         stable: {{ version: v1, address: \"{stable}\" }}\ncanary: {{ version: v2, address: \"{canary}\" }}\n\
         deploy:\n  strategy: canary\n  steps:\n    - deploy: 10%\n      duration: 10m\n    - deploy: 100%\n"
    );
    std::fs::create_dir_all(dir.join("deploy")).expect("deploy dir");
    std::fs::write(dir.join("deploy/checkout.yaml"), text).expect("deploy file");
}

async fn start(header_timeout: &str) -> Setup {
    let stable = sample_app("checkout", "v1", instant()).await;
    let canary = sample_app("checkout", "v2", instant()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let router: SocketAddr = free_addr().parse().expect("address");
    let api: SocketAddr = free_addr().parse().expect("address");
    deploy_file(dir.path(), router, stable.addr(), canary.addr());
    let env = [
        ("CANARYD_ROUTER_MAX_CONNECTIONS", ROUTER_MAX.to_string()),
        ("CANARYD_MAX_CONNECTIONS", API_MAX.to_string()),
        ("CANARYD_HEADER_TIMEOUT", header_timeout.to_string()),
    ];
    // Port 9 (discard) on loopback: nothing answers, every gate is inconclusive.
    let daemon = Daemon::start_with_nofile(
        dir.path(),
        "http://127.0.0.1:9",
        &api.to_string(),
        &env,
        NOFILE,
    );
    let s = Setup {
        _apps: (stable, canary),
        _dir: dir,
        daemon,
        router,
        api,
    };
    wait_for("the router to answer", LIMIT, || s.answers(router, "/")).await;
    s
}

impl Setup {
    /// One request on a fresh connection: `Ok` on a 200.
    async fn answers(&self, addr: SocketAddr, path: &str) -> Result<(), String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| e.to_string())?;
        let r = client
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if r.status() == 200 {
            Ok(())
        } else {
            Err(format!("status {}", r.status()))
        }
    }

    fn descriptors(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.daemon.pid()))
            .map(|d| d.count())
            .unwrap_or(usize::MAX)
    }
}

/// `n` connections that send the start of a request and never finish it
/// (a connection the kernel does not accept within 2 s is left out).
async fn stalled(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        let Ok(Ok(mut c)) =
            tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await
        else {
            continue;
        };
        if c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Never: ")
            .await
            .is_ok()
        {
            clients.push(c);
        }
    }
    clients
}

/// How many of `clients` the server closes within `limit` (the others stay
/// open, still held).
async fn closed_within(clients: &mut [TcpStream], limit: Duration) -> usize {
    let each = clients.iter_mut().map(|c| async move {
        let mut buf = [0u8; 256];
        tokio::time::timeout(limit, async move {
            loop {
                match c.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .is_ok()
    });
    futures::future::join_all(each)
        .await
        .into_iter()
        .filter(|closed| *closed)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_connections_leaves_the_daemon_answering_with_bounded_descriptors() {
    let s = start("60s").await;
    let baseline = s.descriptors();

    // The router: 400 stalled clients; it keeps at most 64 and closes the
    // rest at once (the header timeout is a minute away).
    let mut router_flood = stalled(s.router, 400).await;
    assert_eq!(router_flood.len(), 400, "the kernel stopped accepting");
    let closed = closed_within(&mut router_flood, Duration::from_secs(5)).await;
    let kept = 400 - closed;
    assert!(kept > 0 && kept <= ROUTER_MAX, "the router kept {kept}");
    s.answers(s.api, "/healthz")
        .await
        .expect("/healthz during the flood");
    s.answers(s.api, "/api/v1/rollouts")
        .await
        .expect("the API during the flood");
    let during_router_flood = s.descriptors();
    assert!(
        during_router_flood <= baseline + ROUTER_MAX + SLACK,
        "{during_router_flood} descriptors (baseline {baseline})"
    );

    // The API: 200 stalled clients; it keeps at most 32.
    let mut api_flood = stalled(s.api, 200).await;
    assert_eq!(api_flood.len(), 200, "the kernel stopped accepting");
    let closed = closed_within(&mut api_flood, Duration::from_secs(5)).await;
    let kept = 200 - closed;
    assert!(kept > 0 && kept <= API_MAX, "the API kept {kept}");
    let peak = s.descriptors();
    assert!(
        peak <= baseline + ROUTER_MAX + API_MAX + SLACK,
        "{peak} descriptors (baseline {baseline})"
    );
    println!(
        "descriptors: baseline {baseline}, router flood {during_router_flood}, both floods {peak} (limit {NOFILE})"
    );

    // The stalled clients go: both listeners serve again, descriptors return.
    drop((router_flood, api_flood));
    wait_for("the router again", LIMIT, || s.answers(s.router, "/")).await;
    wait_for("the API again", LIMIT, || {
        s.answers(s.api, "/api/v1/rollouts")
    })
    .await;
    wait_for("descriptors back to the baseline", LIMIT, || async {
        match s.descriptors() {
            n if n <= baseline + SLACK => Ok(()),
            n => Err(format!("{n} descriptors (baseline {baseline})")),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_finish_their_headers_are_cut_at_the_header_timeout_on_both_listeners() {
    let s = start("1s").await;
    for (what, addr, n) in [("router", s.router, ROUTER_MAX), ("API", s.api, API_MAX)] {
        let started = Instant::now();
        let mut clients = stalled(addr, n).await;
        assert_eq!(clients.len(), n, "{what}");
        let closed = closed_within(&mut clients, Duration::from_secs(10)).await;
        assert_eq!(closed, n, "{what}: stalled clients still connected");
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "{what}: cut before the timeout"
        );
        // The slots are free again.
        wait_for(&format!("the {what} again"), LIMIT, || {
            s.answers(addr, if what == "API" { "/healthz" } else { "/" })
        })
        .await;
    }
}
