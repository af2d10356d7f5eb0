//! Starts Debian's `haproxy` with a frontend on a free loopback port, one
//! backend with a `stable` and a `canary` server (HTTP health checks on
//! `/healthz`) and an admin-level Runtime API socket; killed on drop.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use canaryd::router::{HaproxyConfig, HaproxyRouter};

use super::{free_port, wait_for};

/// A running HAProxy owned by one test.
pub struct Haproxy {
    child: Child,
    /// Where clients connect.
    pub frontend: SocketAddr,
    /// The Runtime API socket path.
    pub socket: String,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// Starts HAProxy in front of `stable` and `canary` (canary weight 0).
    pub async fn start(stable: SocketAddr, canary: SocketAddr) -> Haproxy {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let socket = dir.path().join("admin.sock").display().to_string();
        let config = format!(
            "global\n  stats socket {socket} mode 600 level admin\n\
             defaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n\
             frontend web\n  bind 127.0.0.1:{port}\n  default_backend app\n\
             backend app\n  balance random\n  option httpchk GET /healthz\n  default-server inter 200ms fall 1 rise 1\n\
             \x20 server stable {stable} weight 256 check\n  server canary {canary} weight 0 check\n"
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).expect("write haproxy.cfg");
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start haproxy: {e}. Install it: apt-get install -y haproxy")
            });
        let h = Haproxy {
            child,
            frontend: format!("127.0.0.1:{port}").parse().expect("address"),
            socket,
            _dir: dir,
        };
        let url = format!("http://{}/", h.frontend);
        wait_for("haproxy to answer", Duration::from_secs(10), || {
            let url = url.clone();
            async move {
                reqwest::get(&url)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        })
        .await;
        h
    }
}

impl Haproxy {
    /// canaryd's adapter for backend `app`, stable server `stable` and the
    /// given canary server name.
    pub fn adapter(&self, canary_server: &str) -> HaproxyRouter {
        HaproxyRouter::new(HaproxyConfig {
            socket: self.socket.clone(),
            backend: "app".into(),
            stable_server: "stable".into(),
            canary_server: canary_server.into(),
        })
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
