//! One scenario's world: a stable sample app (in process) and a canary one
//! (`canaryd sample-app` as a process, so it can be SIGKILLed), a real Prometheus
//! scraping them (behind [`Proxy`], so it can be stopped, replaced or
//! slowed), a chat receiver stand-in, a deploy directory and a state file in a
//! temp dir, and `canaryd run` as a child process that can be SIGKILLed and
//! started again on the same addresses.
//!
//! The daemon runs through `sh` with the usual open-file limit (1024) and
//! SIGXFSZ ignored, so a lowered file-size limit makes its writes fail
//! instead of killing it (see the disk scenario).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use canaryd::sample::SampleApp;
use serde_json::Value;

use crate::harness::receiver::Receiver;
use crate::harness::{Prometheus, free_port, sample_app};
use crate::proxy::Proxy;

pub const TOKEN: &str = "chaos-t0ken";
/// Everything a scenario waits for is bounded by this unless it says otherwise.
pub const LIMIT: Duration = Duration::from_secs(60);

/// Polls `probe` every 100 ms until it returns `Ok`, or gives up after
/// `limit` with what was awaited and the last state seen.
pub async fn wait<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        let last = match probe().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if started.elapsed() >= limit {
            return Err(format!("no {what} after {limit:?} (last: {last})"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// A healthy sample app behaviour with a little latency.
pub fn fast() -> canaryd::sample::Behaviour {
    crate::harness::daemon::fast()
}

pub struct Rig {
    pub stable: SampleApp,
    canary: Option<Child>,
    pub canary_addr: SocketAddr,
    pub prom: Option<Prometheus>,
    pub prom_proxy: Proxy,
    pub receiver: Receiver,
    pub dir: tempfile::TempDir,
    pub router: SocketAddr,
    pub api: SocketAddr,
    daemon: std::sync::Mutex<Option<Child>>,
    env: Vec<(String, String)>,
    http: reqwest::Client,
}

impl Rig {
    pub async fn new() -> Result<Rig, String> {
        let stable = sample_app("checkout", "v1", fast()).await;
        let canary_addr = loopback();
        let canary = spawn_canary(canary_addr).await?;
        let prom = Prometheus::start(&[stable.addr(), canary_addr]).await;
        let prom_proxy = Proxy::start(upstream(&prom)?)
            .await
            .map_err(|e| e.to_string())?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        std::fs::create_dir_all(dir.path().join("deploy")).map_err(|e| e.to_string())?;
        let receiver = Receiver::start().await;
        let env = vec![
            ("CANARYD_API_TOKEN".into(), TOKEN.into()),
            ("CANARYD_LOG".into(), "info".into()),
            ("CANARYD_QUERY_TIMEOUT".into(), "1s".into()),
            ("CANARYD_ALERT_RETRY_FIRST".into(), "200ms".into()),
            ("CHAOS_HOOK_URL".into(), format!("{}/hook", receiver.base)),
        ];
        Ok(Rig {
            stable,
            canary: Some(canary),
            canary_addr,
            prom: Some(prom),
            prom_proxy,
            receiver,
            dir,
            router: loopback(),
            api: loopback(),
            daemon: std::sync::Mutex::new(None),
            env,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(3))
                .build()
                .map_err(|e| e.to_string())?,
        })
    }

    /// The deploy file for the built-in router with these `steps` (YAML
    /// lines), alerts to the receiver's webhook, then `extra`.
    pub fn builtin_file(&self, steps: &str, extra: &str) -> String {
        format!(
            r#"service: checkout
policy: http-red
router: {{ kind: builtin, listen: "{}" }}
stable: {{ version: v1, address: "{}" }}
canary: {{ version: v2, address: "{}" }}
deploy:
  strategy: canary
  steps:
{steps}
  rollback:
    auto: true
    on:
      - error_rate_greater_than: 5%
  analysis:
    interval: 1s
    window: 5s
    min_requests: 5
alerts:
  - webhook: {{ webhook_env: CHAOS_HOOK_URL }}
{extra}"#,
            self.router,
            self.stable.addr(),
            self.canary_addr
        )
    }

    /// Writes `text` as `deploy/<name>`: written then renamed, as a deploy
    /// tool would, so no half file is read.
    pub fn write_file(&self, name: &str, text: &str) -> Result<(), String> {
        let deploy = self.dir.path().join("deploy");
        let tmp = deploy.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, deploy.join(name)).map_err(|e| e.to_string())
    }

    /// Starts `canaryd run` (debug or release, whichever the runner was built
    /// with) on the rig's fixed API address.
    pub fn start_daemon(&self) -> Result<(), String> {
        self.kill_daemon();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("canaryd.log"))
            .map_err(|e| e.to_string())?;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("trap '' XFSZ; ulimit -n 1024 && exec \"$0\" \"$@\"")
            .arg(env!("CARGO_BIN_EXE_canaryd"))
            .args(["run", "--listen", &self.api.to_string()])
            .args(["--prometheus", &self.prom_proxy.url()])
            .arg("--deploy-dir")
            .arg(self.dir.path().join("deploy"))
            .arg("--state")
            .arg(self.dir.path().join("state.db"))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("canaryd: {e}"))?;
        // Through a pipe, so the file-size limit of the disk scenario falls
        // on the state files only (a log on the full disk is not the point).
        let mut log = log;
        if let Some(mut stderr) = child.stderr.take() {
            std::thread::spawn(move || std::io::copy(&mut stderr, &mut log));
        }
        *self.daemon.lock().expect("daemon") = Some(child);
        Ok(())
    }

    /// SIGKILL: no shutdown code runs. Returns when the process is gone.
    pub fn kill_daemon(&self) {
        if let Some(mut child) = self.daemon.lock().expect("daemon").take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The daemon's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.daemon.lock().expect("daemon").as_ref().map(Child::id)
    }

    /// `Some(status)` when the daemon has exited on its own.
    pub fn exited(&self) -> Option<String> {
        match self
            .daemon
            .lock()
            .expect("daemon")
            .as_mut()
            .map(Child::try_wait)
        {
            Some(Ok(Some(status))) => Some(status.to_string()),
            _ => None,
        }
    }

    pub fn api_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    pub async fn get_json(&self, path: &str) -> Result<Value, String> {
        let r = self
            .http
            .get(self.api_url(path))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        r.json().await.map_err(|e| e.to_string())
    }

    /// The status `path` answers with.
    pub async fn status(&self, path: &str) -> Result<u16, String> {
        self.http
            .get(self.api_url(path))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| e.to_string())
    }

    pub async fn rollout(&self) -> Result<Value, String> {
        self.get_json("/api/v1/rollouts/default/checkout").await
    }

    /// The whole decision log, oldest first.
    pub async fn decisions(&self) -> Result<Vec<Value>, String> {
        let v = self
            .get_json("/api/v1/rollouts/default/checkout/decisions?limit=1000")
            .await?;
        let mut d = v["decisions"].as_array().cloned().unwrap_or_default();
        d.sort_by_key(|d| d["seq"].as_u64());
        Ok(d)
    }

    /// The alert deliveries the daemon reports.
    pub async fn alerts(&self) -> Result<Vec<Value>, String> {
        let v = self
            .get_json("/api/v1/rollouts/default/checkout/alerts?limit=1000")
            .await?;
        Ok(v["alerts"].as_array().cloned().unwrap_or_default())
    }

    /// The sum of a metric's samples whose line contains every `labels` text.
    pub async fn metric(&self, name: &str, labels: &[&str]) -> Result<f64, String> {
        let text = self
            .http
            .get(self.api_url("/metrics"))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with(name) && labels.iter().all(|t| l.contains(t)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .fold(0.0, |a, b| a + b))
    }

    /// Sends a command (`pause`, `resume`, `retry`, …) with the API token.
    pub async fn command(&self, action: &str) -> Result<u16, String> {
        self.http
            .post(self.api_url(&format!("/api/v1/rollouts/default/checkout/{action}")))
            .bearer_auth(TOKEN)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| e.to_string())
    }

    /// Waits until the rollout satisfies `ok`.
    pub async fn wait_rollout(
        &self,
        what: &str,
        limit: Duration,
        ok: impl Fn(&Value) -> bool,
    ) -> Result<Value, String> {
        wait(what, limit, || async {
            let r = self.rollout().await?;
            if ok(&r) { Ok(r) } else { Err(brief(&r)) }
        })
        .await
    }

    /// Changes the canary app's behaviour (`{"error_rate": "50%"}`).
    pub async fn set_canary(&self, behaviour: &str) -> Result<(), String> {
        self.http
            .put(format!("http://{}/admin/behaviour", self.canary_addr))
            .body(behaviour.to_string())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// The canary app SIGKILLed: its listener and every connection gone.
    pub fn kill_canary(&mut self) {
        if let Some(mut c) = self.canary.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A new canary app on the same address, once it answers.
    pub async fn restart_canary(&mut self) -> Result<(), String> {
        self.kill_canary();
        self.canary = Some(spawn_canary(self.canary_addr).await?);
        Ok(())
    }

    /// Prometheus killed (the proxy now finds nothing behind it).
    pub fn stop_prometheus(&mut self) {
        if let Some(mut p) = self.prom.take() {
            p.stop();
        }
    }

    /// A new Prometheus (fresh storage) behind the same proxy address.
    pub async fn restart_prometheus(&mut self) -> Result<(), String> {
        let p = Prometheus::start(&[self.stable.addr(), self.canary_addr]).await;
        self.prom_proxy.point_at(upstream(&p)?);
        self.prom = Some(p);
        Ok(())
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.kill_daemon();
        self.kill_canary();
    }
}

/// `canaryd sample-app` as v2 on `addr`, returned once `/healthz` answers.
async fn spawn_canary(addr: SocketAddr) -> Result<Child, String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_canaryd"))
        .args(["sample-app", "--service", "checkout", "--version", "v2"])
        .args(["--listen", &addr.to_string()])
        .args(["--latency-p50", "5ms", "--latency-p99", "20ms"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("sample-app: {e}"))?;
    let url = format!("http://{addr}/healthz");
    let up = wait(
        "the canary app to answer",
        Duration::from_secs(20),
        || async {
            reqwest::get(&url)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    )
    .await;
    if let Err(e) = up {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    Ok(child)
}

fn upstream(p: &Prometheus) -> Result<SocketAddr, String> {
    p.url()
        .trim_start_matches("http://")
        .parse()
        .map_err(|e| format!("prometheus address: {e}"))
}

/// A rollout in one line: phase, step, weight, watched time, pause reason.
pub fn brief(r: &Value) -> String {
    format!(
        "{} step {} at {}% watched {:.1}s{}",
        r["phase"].as_str().unwrap_or("?"),
        r["step"],
        r["canary_weight"],
        r["step_elapsed_seconds"].as_f64().unwrap_or_default(),
        r["pause_reason"]
            .as_object()
            .map(|_| format!(" ({})", r["pause_reason"]))
            .or_else(|| r["pause_reason"].as_str().map(|p| format!(" ({p})")))
            .unwrap_or_default()
    )
}

/// A decision's time.
pub fn decided_at(d: &Value) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(d["at"].as_str()?).ok()
}
