//! `canaryd run` as a child process over a stack of real components: two
//! sample apps scraped by a real Prometheus, a deploy directory and a state
//! file in a temp dir, and a free address for the built-in router.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use canaryd::sample::{Behaviour, SampleApp};
use serde_json::Value;

use super::{Prometheus, free_port, load_on_url, sample_app, wait_for};

pub const TOKEN: &str = "e2e-t0ken";

pub fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

pub struct Daemon {
    child: Child,
    pub api: String,
}

impl Daemon {
    pub fn start(dir: &Path, prometheus: &str) -> Daemon {
        Daemon::start_with(dir, prometheus, &[])
    }

    /// Starts with extra environment variables.
    pub fn start_with(dir: &Path, prometheus: &str, env: &[(&str, String)]) -> Daemon {
        Daemon::start_at(dir, prometheus, &free_addr(), env)
    }

    /// Starts with its API at `api` (`127.0.0.1:port`).
    pub fn start_at(dir: &Path, prometheus: &str, api: &str, env: &[(&str, String)]) -> Daemon {
        Daemon::spawn(
            Command::new(env!("CARGO_BIN_EXE_canaryd")),
            dir,
            prometheus,
            api,
            env,
        )
    }

    /// Starts with its open-file limit (`ulimit -n`) set to `nofile`.
    pub fn start_with_nofile(
        dir: &Path,
        prometheus: &str,
        api: &str,
        env: &[(&str, String)],
        nofile: u32,
    ) -> Daemon {
        // `exec`: the child is canaryd itself, so its pid is the daemon's.
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_canaryd"));
        Daemon::spawn(sh, dir, prometheus, api, env)
    }

    fn spawn(
        mut command: Command,
        dir: &Path,
        prometheus: &str,
        api: &str,
        env: &[(&str, String)],
    ) -> Daemon {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("canaryd.log"))
            .expect("log");
        let child = command
            .args(["run", "--listen", api, "--prometheus", prometheus])
            .arg("--deploy-dir")
            .arg(dir.join("deploy"))
            .arg("--state")
            .arg(dir.join("state.db"))
            .env("CANARYD_API_TOKEN", TOKEN)
            .env("CANARYD_LOG", "info")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("canaryd starts");
        Daemon {
            child,
            api: format!("http://{api}"),
        }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub async fn rollout(&self) -> Result<Value, String> {
        let r = reqwest::get(format!("{}/api/v1/rollouts/default/checkout", self.api))
            .await
            .map_err(|e| e.to_string())?;
        r.json().await.map_err(|e| e.to_string())
    }

    pub async fn wait_phase(&self, phase: &str, limit: Duration) -> Value {
        self.wait_until(&format!("phase {phase}"), limit, |r| r["phase"] == phase)
            .await
    }

    /// Waits (bounded) until the rollout as the API shows it satisfies `ok`.
    pub async fn wait_until(
        &self,
        what: &str,
        limit: Duration,
        ok: impl Fn(&Value) -> bool,
    ) -> Value {
        wait_for(what, limit, || async {
            let r = self.rollout().await?;
            if ok(&r) { Ok(r) } else { Err(r.to_string()) }
        })
        .await
    }

    pub async fn decisions(&self) -> Vec<Value> {
        let r: Value = reqwest::get(format!(
            "{}/api/v1/rollouts/default/checkout/decisions",
            self.api
        ))
        .await
        .expect("decisions")
        .json()
        .await
        .expect("JSON");
        r["decisions"].as_array().cloned().unwrap_or_default()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Two sample apps scraped by a Prometheus, a temp dir for the deploy file
/// and the state, and a free address for the built-in router.
pub struct Stack {
    pub stable: SampleApp,
    pub canary: SampleApp,
    pub prom: Prometheus,
    pub dir: tempfile::TempDir,
    pub router: String,
}

impl Stack {
    pub async fn new() -> Stack {
        let stable = sample_app("checkout", "v1", fast()).await;
        let canary = sample_app("checkout", "v2", fast()).await;
        let prom = Prometheus::start(&[stable.addr(), canary.addr()]).await;
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("deploy")).expect("deploy dir");
        Stack {
            stable,
            canary,
            prom,
            dir,
            router: free_addr(),
        }
    }

    /// Writes the deploy file with these `steps` (YAML lines).
    pub fn deploy(&self, steps: &str) {
        self.deploy_with(steps, "");
    }

    /// Writes the deploy file with these `steps`, then `extra` top-level YAML.
    pub fn deploy_with(&self, steps: &str, extra: &str) {
        let text = format!(
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
      - latency_p99_greater_than: 400ms
  analysis:
    interval: 1s
    window: 5s
    min_requests: 5
{extra}"#,
            self.router,
            self.stable.addr(),
            self.canary.addr()
        );
        self.write_file(&text);
    }

    /// Writes `text` as the deploy file: written then renamed, as a deploy
    /// tool would, so no half file is read.
    pub fn write_file(&self, text: &str) {
        let deploy = self.dir.path().join("deploy");
        let tmp = deploy.join(".checkout.yaml.tmp");
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, deploy.join("checkout.yaml")).expect("rename");
    }

    pub fn daemon(&self) -> Daemon {
        Daemon::start(self.dir.path(), self.prom.url())
    }

    /// Changes the canary app's behaviour (`{"error_rate": "50%"}`).
    pub async fn set_canary(&self, behaviour: &str) {
        reqwest::Client::new()
            .put(format!("http://{}/admin/behaviour", self.canary.addr()))
            .body(behaviour.to_string())
            .send()
            .await
            .expect("change the canary's behaviour");
    }

    /// The built-in router's URL.
    pub fn url(&self) -> String {
        format!("http://{}/", self.router)
    }

    /// Open-loop load through the router.
    pub fn load(&self, rps: f64) -> canaryd::sample::load::LoadHandle {
        load_on_url(&self.url(), rps)
    }
}

pub fn fast() -> Behaviour {
    Behaviour {
        latency_p50: Duration::from_millis(5),
        latency_p99: Duration::from_millis(20),
        ..Behaviour::default()
    }
}
