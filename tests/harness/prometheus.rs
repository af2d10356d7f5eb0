//! Starts Debian's `prometheus` on a free loopback port with a temporary
//! storage path, a 1 s scrape interval and a scrape config for the test's
//! targets; waits (bounded) until it is ready and every target is up; kills it
//! on drop. Or serves history backfilled with promtool, scraping nothing.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, wait_for};

/// A running Prometheus server owned by one test.
pub struct Prometheus {
    child: Option<Child>,
    url: String,
    dir: tempfile::TempDir,
}

/// The binary: `$PROMETHEUS_BIN`, else `prometheus` on the PATH.
fn binary() -> PathBuf {
    std::env::var_os("PROMETHEUS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("prometheus"))
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` every second (job `apps`) and
    /// returns once it is ready and has scraped every target successfully.
    pub async fn start(targets: &[SocketAddr]) -> Prometheus {
        let list = targets
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let config = format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s, scrape_timeout: 900ms}}\n\
             scrape_configs:\n  - job_name: apps\n    static_configs: [{{targets: [{list}]}}]\n"
        );
        let prom = Prometheus::launch(&config, None, &[]).await;
        prom.wait_targets_up(targets.len()).await;
        prom
    }

    /// Serves the TSDB in `data` (blocks backfilled with `promtool tsdb
    /// create-blocks-from openmetrics`), scraping nothing, with a retention
    /// long enough to keep history of any age.
    pub async fn serve_history(data: &std::path::Path) -> Prometheus {
        Prometheus::launch(
            "global: {scrape_interval: 1s}\nscrape_configs: []\n",
            Some(data),
            &["--storage.tsdb.retention.time=100y"],
        )
        .await
    }

    /// Starts Prometheus with `config` on a free port, its TSDB in `data`
    /// (else a fresh directory per attempt), and returns once it is ready.
    async fn launch(config: &str, data: Option<&std::path::Path>, extra: &[&str]) -> Prometheus {
        let dir = tempfile::tempdir().expect("temporary directory");
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let mut prom = Prometheus {
            child: None,
            url: String::new(),
            dir,
        };
        // A port found free can be taken before Prometheus binds it: retry.
        for attempt in 1..=3 {
            let port = free_port();
            let path = prom.dir.path().to_path_buf();
            let storage = data
                .map(std::path::Path::to_path_buf)
                .unwrap_or_else(|| path.join(format!("data-{attempt}")));
            let log = std::fs::File::create(path.join("prometheus.log")).expect("log file");
            // Through a shell that kills Prometheus when our end of its stdin
            // closes: on drop, and also when the test process dies without
            // running destructors (a runner timeout, SIGKILL).
            let child = Command::new("sh")
                .arg("-c")
                .arg(r#"exec 3<&0; "$@" & pid=$!; (read _ <&3; kill $pid 2>/dev/null) & wait $pid"#)
                .arg("prometheus-harness")
                .arg(binary())
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!("--storage.tsdb.path={}", storage.display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--web.enable-lifecycle")
                .arg("--log.level=warn")
                .args(extra)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("sh starts");
            prom.child = Some(child);
            prom.url = format!("http://127.0.0.1:{port}");
            match prom.wait_ready().await {
                Ok(()) => return prom,
                Err(why) if attempt < 3 => {
                    eprintln!("prometheus attempt {attempt} failed ({why}); retrying");
                    prom.stop();
                }
                Err(why) => panic!(
                    "prometheus did not start: {why}\n(is it installed? `apt-get install -y prometheus`, \
                     or set PROMETHEUS_BIN)"
                ),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// The base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// What Prometheus logged so far (warnings and errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Ready means: our child is alive and the server on the port is a
    /// Prometheus (another test's server could hold a port we thought free).
    async fn wait_ready(&mut self) -> Result<(), String> {
        let client = http();
        let url = format!("{}/api/v1/status/buildinfo", self.url);
        let started = std::time::Instant::now();
        loop {
            let answered = match client.get(&url).send().await {
                Ok(r) => r.json::<serde_json::Value>().await.ok(),
                Err(_) => None,
            };
            let alive = match self.child.as_mut().map(Child::try_wait) {
                Some(Ok(None)) => true,
                Some(Ok(Some(status))) => {
                    return Err(format!("exited with {status}: {}", self.log()));
                }
                _ => false,
            };
            if alive && answered.is_some_and(|b| b["status"] == "success") {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err(format!("not ready after 30s: {}", self.log()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `count` targets are up (each scraped successfully once).
    pub async fn wait_targets_up(&self, count: usize) {
        let client = http();
        let url = format!("{}/api/v1/targets?state=active", self.url);
        wait_for("every scrape target up", Duration::from_secs(30), || {
            let request = client.get(&url).send();
            async move {
                let body: serde_json::Value = request
                    .await
                    .map_err(|e| e.to_string())?
                    .json()
                    .await
                    .map_err(|e| e.to_string())?;
                let targets = body["data"]["activeTargets"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let up = targets.iter().filter(|t| t["health"] == "up").count();
                if up >= count {
                    Ok(())
                } else {
                    Err(format!("{up}/{count} up: {targets:?}"))
                }
            }
        })
        .await;
    }

    /// Kills the server (as an outage would) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Closing its stdin makes the shell kill Prometheus and exit.
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An HTTP client that gives up: a silent server must not hang a test.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("HTTP client")
}
