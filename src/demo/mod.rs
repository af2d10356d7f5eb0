//! `canaryd demo`: the whole product on one machine in a minute. Two sample
//! app versions behind the built-in router under load, Prometheus at 1 s
//! scrape, and the daemon with short steps: a healthy v2 is promoted, then v3
//! gets a fault mid-rollout and is rolled back within seconds.

pub mod chat;
pub mod prometheus;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::daemon::{DaemonConfig, serve};
use crate::sample::{Behaviour, SampleApp, SampleAppConfig, load};

/// Settings of the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Where the API and dashboard listen (a free port if taken).
    pub api: SocketAddr,
    /// Stop after the scenario instead of waiting for Ctrl-C.
    pub exit: bool,
}

fn free() -> Result<SocketAddr, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())
}

fn available(addr: SocketAddr) -> Result<SocketAddr, String> {
    match TcpListener::bind(addr) {
        Ok(l) => l.local_addr().map_err(|e| e.to_string()),
        Err(_) => free(),
    }
}

/// Requests per second the demo sends: at 20% the canary gets 40/s, enough
/// for positive evidence that it is under its 1% and 200ms gates within its
/// 25-second step (about 700 good requests each).
const LOAD_RPS: f64 = 200.0;

fn healthy() -> Behaviour {
    Behaviour {
        latency_p50: Duration::from_millis(15),
        latency_p99: Duration::from_millis(60),
        ..Behaviour::default()
    }
}

async fn app(version: &str, listen: SocketAddr) -> Result<SampleApp, String> {
    SampleApp::start(SampleAppConfig {
        service: "checkout".into(),
        version: version.into(),
        listen,
        behaviour: healthy(),
    })
    .await
    .map_err(|e| format!("sample app {version}: {e}"))
}

fn deploy_file(
    router: SocketAddr,
    stable: (&str, SocketAddr),
    canary: (&str, SocketAddr),
    slack_url_file: &Path,
) -> String {
    format!(
        r#"# Written by `canaryd demo`. Edit it while the demo runs: canaryd reloads it.
service: checkout
policy: http-red
router: {{ kind: builtin, listen: "{router}" }}
stable: {{ version: {}, address: "{}" }}
canary: {{ version: {}, address: "{}" }}
deploy:
  strategy: canary
  steps:
    - deploy: 20%
      duration: 25s
      metrics:
        - error_rate_less_than: 1%
        - latency_p99_less_than: 200ms
    - deploy: 50%
      duration: 10s
    - deploy: 100%
  rollback:
    auto: true
    on:
      - error_rate_greater_than: 2%
      - latency_p99_greater_than: 500ms
  analysis:
    interval: 1s
    window: 5s
    min_requests: 10
alerts:
  # A real Slack webhook URL stays out of the file: `webhook_env: SLACK_WEBHOOK_URL`.
  - slack: {{ webhook_file: "{}" }}
"#,
        stable.0,
        stable.1,
        canary.0,
        canary.1,
        slack_url_file.display()
    )
}

fn write_atomically(path: &Path, text: &str) -> Result<(), String> {
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
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

/// Waits until the rollout of `version` reaches one of `phases`, printing decisions as they come.
async fn follow(
    http: &reqwest::Client,
    api: &str,
    version: &str,
    phases: &[&str],
    limit: Duration,
    seen: &mut String,
) -> Result<Value, String> {
    let started = Instant::now();
    loop {
        if let Some(r) = rollout(http, api).await {
            if let Some(d) = r.get("last_decision").filter(|d| !d.is_null()) {
                let line = format!(
                    "  {} {:>8}  {}",
                    d["at"].as_str().unwrap_or(""),
                    d["action"].as_str().unwrap_or(""),
                    d["reason"].as_str().unwrap_or("")
                );
                if line != *seen {
                    println!(
                        "{line}   [{} step {}/{}, canary {}%]",
                        r["phase"].as_str().unwrap_or(""),
                        r["step"],
                        r["steps"],
                        r["canary_weight"]
                    );
                    *seen = line;
                }
            }
            if r["canary_version"] == version && phases.iter().any(|p| r["phase"] == *p) {
                return Ok(r);
            }
        }
        if started.elapsed() > limit {
            return Err(format!(
                "the rollout of {version} did not finish within {limit:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits (bounded) for the chat message whose text contains `needle`.
async fn wait_for_alert(chat: &chat::ChatReceiver, needle: &str) -> Result<Value, String> {
    let started = Instant::now();
    loop {
        if let Some(m) = chat.find(needle) {
            return Ok(m);
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err(format!("no chat message about `{needle}` within 30s"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the demo until it ends (`--exit`) or Ctrl-C, which drops everything it
/// started: the Prometheus child is killed, the apps and the daemon stop.
pub async fn run(options: DemoOptions) -> Result<(), String> {
    tokio::select! {
        r = scenario(options) => r,
        _ = tokio::signal::ctrl_c() => {
            println!("\nstopping: Prometheus, the daemon, the router, the apps and the load");
            Ok(())
        }
    }
}

async fn scenario(options: DemoOptions) -> Result<(), String> {
    let dir = tempfile::Builder::new()
        .prefix("canaryd-demo-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let deploy_dir = dir.path().join("deploy");
    std::fs::create_dir_all(&deploy_dir).map_err(|e| e.to_string())?;
    let (a, b, router, prom_addr, chat_addr) = (free()?, free()?, free()?, free()?, free()?);
    let api_addr = available(options.api)?;
    let api = format!("http://{api_addr}");

    println!("canaryd demo — everything runs on this machine; Ctrl-C stops it all.\n");
    let v1 = app("v1", a).await?;
    let v2 = app("v2", b).await?;
    let chat =
        chat::ChatReceiver::start(chat_addr, dir.path().join("slack-messages.jsonl")).await?;
    let slack_url_file = dir.path().join("slack-webhook-url");
    std::fs::write(&slack_url_file, &chat.url).map_err(|e| e.to_string())?;
    let prom = prometheus::start(dir.path(), prom_addr, &[a, b, api_addr]).await?;
    println!("  sample app v1      http://{a}/   (stable)");
    println!("  sample app v2      http://{b}/   (canary)");
    println!("  built-in router    http://{router}/   ({LOAD_RPS} requests/s of load)");
    println!("  Prometheus         {}/", prom.url);
    println!("  canaryd dashboard  {api}/rollouts/default/checkout   API {api}/api/v1/rollouts");
    println!("  Slack (local)      {}", chat.url);
    println!(
        "  deploy file        {}\n",
        deploy_dir.join("checkout.yaml").display()
    );

    // A token for this demo only (never one from the environment: it is printed).
    let token = "demo".to_string();
    let config = DaemonConfig {
        deploy_dir: deploy_dir.clone(),
        listen: api_addr.to_string(),
        state: dir.path().join("canaryd.db"),
        prometheus_url: Some(prom.url.clone()),
        api_token: Some(token.clone()),
        query_timeout: "2s".into(),
        reload_every: "500ms".into(),
        alert_timeout: "5s".into(),
        ..DaemonConfig::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(serve(config, async move {
        let _ = stopped.await;
    }));
    let file = deploy_dir.join("checkout.yaml");
    write_atomically(
        &file,
        &deploy_file(router, ("v1", a), ("v2", b), &slack_url_file),
    )?;
    let load = load::spawn(load::LoadConfig::new(format!("http://{router}/"), LOAD_RPS))
        .map_err(|e| e.to_string())?;
    let http = reqwest::Client::new();
    let mut seen = String::new();

    println!(
        "1. Rolling out a healthy v2: 20% → 50% → 100%, judged every second on Prometheus counts"
    );
    let promoted = follow(
        &http,
        &api,
        "v2",
        &["Promoted", "RolledBack", "Aborted"],
        Duration::from_secs(180),
        &mut seen,
    )
    .await?;
    println!("   → v2 is {}\n", promoted["phase"].as_str().unwrap_or("?"));

    println!("2. Rolling out v3, which fails 30% of its requests a few seconds in");
    v1.stop().await.map_err(|e| e.to_string())?;
    let v3 = app("v3", a).await?;
    write_atomically(
        &file,
        &deploy_file(router, ("v2", b), ("v3", a), &slack_url_file),
    )?;
    follow(
        &http,
        &api,
        "v3",
        &["Progressing"],
        Duration::from_secs(60),
        &mut seen,
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    http.put(format!("http://{a}/admin/behaviour"))
        .body(r#"{"error_rate": "30%"}"#)
        .send()
        .await
        .map_err(|e| format!("cannot inject the fault: {e}"))?;
    let fault = Instant::now();
    println!("   fault injected into v3: 30% errors");
    let ended = follow(
        &http,
        &api,
        "v3",
        &["RolledBack", "Promoted", "Aborted"],
        Duration::from_secs(120),
        &mut seen,
    )
    .await?;
    println!(
        "   → v3 is {} {:.1}s after the fault; canary weight {}%\n",
        ended["phase"].as_str().unwrap_or("?"),
        fault.elapsed().as_secs_f64(),
        ended["canary_weight"]
    );
    let alert = wait_for_alert(&chat, "v3 rolled back").await?;
    println!(
        "   the rollback alert as posted to Slack ({}):\n{}\n",
        dir.path().join("slack-messages.jsonl").display(),
        chat::render(&alert)
    );
    println!(
        "Every decision, with the numbers and the PromQL behind it: {api}/api/v1/rollouts/default/checkout/decisions"
    );
    println!("Commands need the token: CANARYD_API_TOKEN={token} canaryd status --server {api}\n");

    if !options.exit {
        println!(
            "The demo keeps running for you to explore; Ctrl-C stops every process it started."
        );
        std::future::pending::<()>().await;
    }
    let _ = load.stop().await;
    let _ = stop.send(());
    let _ = daemon.await;
    let _ = (v2.stop().await, v3.stop().await);
    drop(prom);
    Ok(())
}
