//! A Prometheus server for the demo: Debian's `prometheus`, a temporary
//! storage path, a 1 s scrape of the given targets; killed when dropped.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// A running Prometheus.
pub struct LocalPrometheus {
    _child: Child,
    /// Its base URL.
    pub url: String,
}

/// Starts Prometheus on `listen`, scraping `targets` (job `demo`) every second.
pub async fn start(
    dir: &Path,
    listen: SocketAddr,
    targets: &[SocketAddr],
) -> Result<LocalPrometheus, String> {
    let list = targets
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let config = format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s, scrape_timeout: 900ms}}\n\
         scrape_configs:\n  - job_name: demo\n    static_configs: [{{targets: [{list}]}}]\n"
    );
    let path = dir.join("prometheus.yml");
    std::fs::write(&path, config).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let log = std::fs::File::create(dir.join("prometheus.log")).map_err(|e| e.to_string())?;
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={listen}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start `prometheus` ({e}); install it: sudo apt-get install -y prometheus"
            )
        })?;
    let url = format!("http://{listen}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{url}/-/ready")).send().await
            && r.status().is_success()
        {
            return Ok(LocalPrometheus { _child: child, url });
        }
        if started.elapsed() > Duration::from_secs(30) {
            let log = std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
            return Err(format!(
                "Prometheus did not become ready within 30s:\n{log}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
