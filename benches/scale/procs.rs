//! The real processes of a run, each killed when its guard drops (also on a
//! panic): Prometheus scraping the exporter every 5 s, one HAProxy with a
//! backend of two servers per rollout and an admin Runtime API socket, and
//! `canaryd run` on the deploy directory.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::exporter::SERIES_PER_SERVICE;

/// The API token the runner gives the daemon (for commands).
pub const TOKEN: &str = "scale-bench-token";

/// A child process killed on drop.
pub struct Proc {
    child: Child,
    pub pid: u32,
}

impl Proc {
    fn spawn(command: &mut Command, what: &str) -> Result<Proc, String> {
        let child = command
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {what}: {e}"))?;
        let pid = child.id().ok_or(format!("{what} exited at once"))?;
        Ok(Proc { child, pid })
    }

    /// Whether it has exited.
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A free loopback port (it may be taken before it is bound; rare).
pub fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

fn log_file(dir: &Path, name: &str) -> Result<std::fs::File, String> {
    std::fs::File::create(dir.join(name)).map_err(|e| format!("{name}: {e}"))
}

/// Polls `check` every 200 ms until it says done, for at most `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, String>>,
{
    let started = Instant::now();
    let mut last = String::new();
    loop {
        match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last = e,
        }
        if started.elapsed() > limit {
            return Err(format!("{what}: not after {limit:?} ({last})"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Prometheus scraping `target` every 5 s.
pub async fn prometheus(
    dir: &Path,
    target: SocketAddr,
    services: usize,
    http: &reqwest::Client,
) -> Result<(Proc, String), String> {
    let config = format!(
        "global: {{scrape_interval: 5s, scrape_timeout: 5s}}\n\
         scrape_configs:\n  - job_name: apps\n    static_configs: [{{targets: ['{target}']}}]\n"
    );
    let path = dir.join("prometheus.yml");
    std::fs::write(&path, config).map_err(|e| format!("prometheus.yml: {e}"))?;
    let port = free_port()?;
    let proc = Proc::spawn(
        Command::new("prometheus")
            .arg(format!("--config.file={}", path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(log_file(dir, "prometheus.log")?),
        "prometheus (apt-get install -y prometheus)",
    )?;
    let url = format!("http://127.0.0.1:{port}");
    // Every series present, with two samples each (so rates exist).
    let want = services * SERIES_PER_SERVICE;
    let query = format!("{url}/api/v1/query");
    let expr = "count(rate(http_requests_total[1m])) + count(rate(http_request_duration_seconds_bucket[1m]))";
    wait_until(
        "every series in Prometheus",
        Duration::from_secs(180),
        || {
            let request = http.post(&query).form(&[("query", expr)]).send();
            async move {
                let body: serde_json::Value = request
                    .await
                    .map_err(|e| e.to_string())?
                    .json()
                    .await
                    .map_err(|e| e.to_string())?;
                let have = body["data"]["result"][0]["value"][1]
                    .as_str()
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0);
                Ok(have as usize >= want)
            }
        },
    )
    .await?;
    Ok((proc, url))
}

/// The backend of rollout `i` in HAProxy.
pub fn backend(i: usize) -> String {
    format!("b{i:05}")
}

/// One HAProxy with `services` backends, each `stable` (weight 256) and
/// `canary` (weight 0) on `upstream`, without health checks (`no check`
/// counts as ready for canaryd), and its admin socket in `dir`.
pub async fn haproxy(
    dir: &Path,
    upstream: SocketAddr,
    services: usize,
) -> Result<(Proc, PathBuf), String> {
    let socket = dir.join("admin.sock");
    let port = free_port()?;
    let mut config = format!(
        "global\n  stats socket {} mode 600 level admin\n  maxconn 4096\n\
         defaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n\
         frontend web\n  bind 127.0.0.1:{port}\n  default_backend {}\n",
        socket.display(),
        backend(0)
    );
    for i in 0..services {
        let _ = write!(
            config,
            "backend {}\n  server stable {upstream} weight 256\n  server canary {upstream} weight 0\n",
            backend(i)
        );
    }
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config).map_err(|e| format!("haproxy.cfg: {e}"))?;
    let proc = Proc::spawn(
        Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(log_file(dir, "haproxy.log")?),
        "haproxy (apt-get install -y haproxy)",
    )?;
    let sock = socket.clone();
    wait_until("the HAProxy socket", Duration::from_secs(60), || {
        let sock = sock.clone();
        async move { Ok(runtime_api(&sock, "show info").await.is_ok()) }
    })
    .await?;
    Ok((proc, socket))
}

/// One command on HAProxy's Runtime API.
pub async fn runtime_api(socket: &Path, command: &str) -> Result<String, String> {
    let mut stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| e.to_string())?;
    stream
        .write_all(format!("{command}\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    stream
        .read_to_string(&mut out)
        .await
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// `canaryd run` on `dir/deploy` with its state in `dir`, the API on
/// `listen`, and the API token set.
pub fn daemon(binary: &Path, dir: &Path, prometheus: &str, listen: &str) -> Result<Proc, String> {
    Proc::spawn(
        Command::new(binary)
            .args(["run", "--listen", listen, "--prometheus", prometheus])
            .arg("--deploy-dir")
            .arg(dir.join("deploy"))
            .arg("--state")
            .arg(dir.join("state.db"))
            .env("CANARYD_API_TOKEN", TOKEN)
            .env("CANARYD_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log_file(dir, "canaryd.log")?),
        "canaryd",
    )
}
