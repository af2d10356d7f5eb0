//! Scenario: the daemon drives a real HAProxy through its Runtime API socket;
//! the socket file is removed (HAProxy keeps serving, nobody can reach its
//! API), then HAProxy is restarted (a new socket, weights back to its config:
//! canary 0). Invariants: the daemon keeps running and answering, reports the
//! router error (`canaryd_errors_total{kind="router_…"}`), stable traffic
//! keeps flowing while the socket is gone, the committed weight is set back
//! on the restarted HAProxy, and the rollout promotes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use canaryd::router::{HaproxyConfig, HaproxyRouter};

use crate::Opts;
use crate::checks::rate_holds;
use crate::probe::{Probe, count};
use crate::report::Rows;
use crate::rig::{LIMIT, Rig, brief, loopback, wait};

/// HAProxy in front of both apps, with an admin-level Runtime API socket.
struct Haproxy {
    child: Option<Child>,
    config: PathBuf,
    socket: PathBuf,
    frontend: SocketAddr,
}

impl Haproxy {
    fn new(
        dir: &std::path::Path,
        stable: SocketAddr,
        canary: SocketAddr,
    ) -> Result<Haproxy, String> {
        let frontend = loopback();
        let socket = dir.join("admin.sock");
        let config = format!(
            "global\n  stats socket {} mode 600 level admin\n\
             defaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n\
             frontend web\n  bind {frontend}\n  default_backend app\n\
             backend app\n  balance random\n  option httpchk GET /healthz\n  default-server inter 200ms fall 1 rise 1\n\
             \x20 server stable {stable} weight 256 check\n  server canary {canary} weight 0 check\n",
            socket.display()
        );
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, config).map_err(|e| e.to_string())?;
        Ok(Haproxy {
            child: None,
            config: path,
            socket,
            frontend,
        })
    }

    /// (Re)starts HAProxy and waits until its frontend answers.
    async fn start(&mut self) -> Result<(), String> {
        self.stop();
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("haproxy: {e} (apt-get install -y haproxy)"))?;
        self.child = Some(child);
        let url = format!("http://{}/", self.frontend);
        wait("haproxy to answer", Duration::from_secs(10), || async {
            reqwest::get(&url)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn adapter(&self) -> HaproxyRouter {
        HaproxyRouter::new(HaproxyConfig {
            socket: self.socket.display().to_string(),
            backend: "app".into(),
            stable_server: "stable".into(),
            canary_server: "canary".into(),
        })
    }

    /// Waits until HAProxy itself holds `weight` (as `25%`) for the canary.
    async fn wait_weight(&self, weight: &str, limit: Duration) -> Result<String, String> {
        let adapter = self.adapter();
        wait(&format!("HAProxy at {weight}"), limit, || async {
            let w = adapter.weight().await.map_err(|e| e.to_string())?;
            if w.to_string() == weight {
                Ok(w.to_string())
            } else {
                Err(w.to_string())
            }
        })
        .await
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        self.stop();
    }
}

pub async fn run(opts: &Opts) -> Rows {
    let mut rows = Rows::new("haproxy socket");
    if let Err(e) = scenario(opts, &mut rows).await {
        rows.aborted(&e);
    }
    rows
}

async fn scenario(opts: &Opts, rows: &mut Rows) -> Result<(), String> {
    let (gone, step) = if opts.short { (5, 8) } else { (15, 30) };
    let rig = Rig::new().await?;
    let mut haproxy = Haproxy::new(rig.dir.path(), rig.stable.addr(), rig.canary_addr)?;
    haproxy.start().await?;
    let file = format!(
        r#"service: checkout
policy: http-red
router: {{ kind: haproxy, socket: "{}", backend: app, stable_server: stable, canary_server: canary }}
stable: {{ version: v1 }}
canary: {{ version: v2 }}
deploy:
  strategy: canary
  steps:
    - deploy: 25%
      duration: {step}s
      metrics:
        - error_rate_less_than: 1%
    - deploy: 100%
  analysis:
    interval: 1s
    window: 5s
    min_requests: 5
"#,
        haproxy.socket.display()
    );
    rig.write_file("checkout.yaml", &file)?;
    rig.start_daemon()?;
    let probe = Probe::start(&format!("http://{}/", haproxy.frontend), 50.0);
    haproxy.wait_weight("25%", LIMIT).await?;
    let baseline_from = SystemTime::now();
    // A baseline of traffic before the fault (a fixed pace on purpose).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let errors_before = rig
        .metric("canaryd_errors_total", &["kind=\"router"])
        .await?;

    std::fs::remove_file(&haproxy.socket).map_err(|e| e.to_string())?;
    let removed = SystemTime::now();
    let reported = wait(
        "a router error counted",
        Duration::from_secs(20),
        || async {
            let n = rig
                .metric("canaryd_errors_total", &["kind=\"router"])
                .await?;
            if n > errors_before {
                Ok(n)
            } else {
                Err(format!("{n}"))
            }
        },
    )
    .await;
    rows.result(
        "the router error is reported",
        reported.map(|n| format!("canaryd_errors_total{{kind=router_*}} {errors_before} → {n}")),
    );
    let left = Duration::from_secs(gone).saturating_sub(removed.elapsed().unwrap_or_default());
    tokio::time::sleep(left).await;
    let restored = SystemTime::now();
    let alive = rig.exited().is_none() && rig.status("/healthz").await == Ok(200);
    let view = rig.rollout().await;
    rows.check(
        "the daemon keeps running and answering",
        alive && view.is_ok(),
        format!(
            "/healthz {:?} after {gone}s without the socket; {}",
            rig.status("/healthz").await,
            view.as_ref().map(brief).unwrap_or_else(|e| e.clone())
        ),
    );
    let base = count(&probe.between(baseline_from, removed));
    let during = count(&probe.between(removed, restored));
    rows.result(
        "stable traffic keeps flowing without the socket",
        rate_holds(
            "answered",
            (base.ok, base.total),
            (during.ok, during.total),
            0.99,
        ),
    );

    haproxy.start().await?;
    let back = haproxy.wait_weight("25%", LIMIT).await;
    rows.result(
        "the committed weight is set back on a restarted HAProxy",
        back.map(|w| {
            format!(
                "HAProxy canary {w} {:.1}s after its restart",
                restored.elapsed().unwrap_or_default().as_secs_f64()
            )
        }),
    );
    let done = rig
        .wait_rollout("promotion", Duration::from_secs(90), |r| {
            r["phase"] == "Promoted"
        })
        .await;
    let at100 = haproxy.wait_weight("100%", Duration::from_secs(10)).await;
    rows.result(
        "promotes in the end (HAProxy at 100%)",
        done.and_then(|r| at100.map(|w| format!("{}; HAProxy {w}", brief(&r)))),
    );
    Ok(())
}
