//! Detection time: from fault onset (the canary starts failing 50% of its
//! requests) to canary weight 0, on a real Prometheus at 1 s scrape, with the
//! daemon, the built-in router and 100 requests/s of load, over N rollouts.
//!
//! `cargo bench --bench detection [-- RUNS]` (default 10). Needs `prometheus`.

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use canaryd::daemon::{DaemonConfig, serve};
use canaryd::sample::{Behaviour, SampleApp, SampleAppConfig, load};
use serde_json::Value;

fn free() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

async fn app(version: &str, listen: SocketAddr) -> SampleApp {
    SampleApp::start(SampleAppConfig {
        service: "checkout".into(),
        version: version.into(),
        listen,
        behaviour: Behaviour {
            latency_p50: Duration::from_millis(5),
            latency_p99: Duration::from_millis(20),
            ..Behaviour::default()
        },
    })
    .await
    .expect("sample app")
}

fn deploy(router: SocketAddr, stable: SocketAddr, canary: SocketAddr, version: &str) -> String {
    format!(
        r#"service: checkout
policy: http-red
router: {{ kind: builtin, listen: "{router}" }}
stable: {{ version: v1, address: "{stable}" }}
canary: {{ version: {version}, address: "{canary}" }}
deploy:
  strategy: canary
  steps:
    - deploy: 20%
      duration: 10m
    - deploy: 100%
  rollback:
    auto: true
    on:
      - error_rate_greater_than: 2%
  analysis:
    interval: 1s
    window: 5s
    min_requests: 10
"#
    )
}

async fn rollout(http: &reqwest::Client, api: &str) -> Option<Value> {
    http.get(format!("{api}/api/v1/rollouts/default/checkout"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().expect("temp dir");
    let deploy_dir = dir.path().join("deploy");
    std::fs::create_dir_all(&deploy_dir).expect("deploy dir");
    let (stable_addr, canary_addr, router, api_addr, prom_addr) =
        (free(), free(), free(), free(), free());
    let _stable = app("v1", stable_addr).await; // serves until the end
    let prom = canaryd::demo::prometheus::start(dir.path(), prom_addr, &[stable_addr, canary_addr])
        .await
        .expect("prometheus");
    let api = format!("http://{api_addr}");
    let config = DaemonConfig {
        deploy_dir: deploy_dir.clone(),
        listen: api_addr.to_string(),
        state: dir.path().join("state.db"),
        prometheus_url: Some(prom.url.clone()),
        query_timeout: "2s".into(),
        reload_every: "200ms".into(),
        ..DaemonConfig::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(serve(config, async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let mut times = Vec::new();
    let mut load_handle = None;
    for i in 0..runs {
        let version = format!("v{}", i + 2);
        let canary = app(&version, canary_addr).await;
        let file = deploy_dir.join("checkout.yaml");
        let tmp = deploy_dir.join(".checkout.tmp");
        std::fs::write(&tmp, deploy(router, stable_addr, canary_addr, &version)).expect("write");
        std::fs::rename(&tmp, &file).expect("rename");
        if load_handle.is_none() {
            // The router exists once the first file is loaded.
            tokio::time::sleep(Duration::from_secs(1)).await;
            load_handle = Some(
                load::spawn(load::LoadConfig::new(format!("http://{router}/"), 100.0))
                    .expect("load"),
            );
        }
        // Healthy until the window holds canary data, then the fault.
        let started = Instant::now();
        loop {
            let r = rollout(&http, &api).await;
            let ready = r.as_ref().is_some_and(|r| {
                r["canary_version"] == version.as_str()
                    && r["phase"] == "Progressing"
                    && r["gates"]
                        .as_array()
                        .is_some_and(|g| !g.is_empty() && g.iter().all(|g| g["verdict"] == "pass"))
            });
            if ready {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "run {i}: no healthy data: {r:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Onset at a random point of the tick and scrape cycles, as faults come.
        let offset = Duration::from_millis(rand::random_range(0..1000));
        tokio::time::sleep(offset).await;
        http.put(format!("http://{canary_addr}/admin/behaviour"))
            .body(r#"{"error_rate": "50%"}"#)
            .send()
            .await
            .expect("fault");
        let fault = Instant::now();
        loop {
            let r = rollout(&http, &api).await;
            if r.as_ref().is_some_and(|r| r["canary_weight"] == 0.0) {
                break;
            }
            assert!(
                fault.elapsed() < Duration::from_secs(60),
                "run {i}: not rolled back: {r:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let t = fault.elapsed().as_secs_f64();
        println!("run {:>2}: {version} fault → weight 0 in {t:.2}s", i + 1);
        times.push(t);
        let _ = canary.stop().await;
    }
    times.sort_by(f64::total_cmp);
    let pick = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!(
        "detection over {} runs (1s scrape, 1s interval, 5s window, abort at error_rate > 2%, fault 50% errors at 20% weight, 100 req/s): median {:.2}s, min {:.2}s, p90 {:.2}s, max {:.2}s",
        times.len(),
        pick(0.5),
        times[0],
        pick(0.9),
        times[times.len() - 1]
    );
    if let Some(l) = load_handle {
        let _ = l.stop().await;
    }
    let _ = stop.send(());
    let _ = daemon.await;
    drop(prom);
}
