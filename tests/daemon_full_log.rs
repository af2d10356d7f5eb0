//! `canaryd run` whose stderr is a log file on a full disk (simulated: the
//! daemon's RLIMIT_FSIZE lowered below the file's size with `prlimit`,
//! SIGXFSZ ignored, so every write to it fails): the daemon keeps running
//! and answering instead of panicking on a log line it cannot write.

mod harness;

use std::process::{Command, Stdio};
use std::time::Duration;

use harness::daemon::free_addr;
use harness::{instant, sample_app, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_that_cannot_be_written_does_not_stop_the_daemon() {
    let stable = sample_app("checkout", "v1", instant()).await;
    let canary = sample_app("checkout", "v2", instant()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("deploy")).expect("deploy dir");
    let (router, api) = (free_addr(), free_addr());
    std::fs::write(
        dir.path().join("deploy/checkout.yaml"),
        format!(
            "service: checkout\npolicy: http-red\nrouter: {{ kind: builtin, listen: \"{router}\" }}\n\
             stable: {{ version: v1, address: \"{}\" }}\ncanary: {{ version: v2, address: \"{}\" }}\n\
             deploy:\n  strategy: canary\n  steps:\n    - deploy: 10%\n      duration: 10m\n    - deploy: 100%\n",
            stable.addr(),
            canary.addr()
        ),
    )
    .expect("deploy file");
    // A log already past the limit about to be set: every line fails.
    let log_path = dir.path().join("canaryd.log");
    std::fs::write(&log_path, "#".repeat(16 * 1024)).expect("log");
    let log = std::fs::OpenOptions::new()
        .append(true)
        .open(&log_path)
        .expect("log");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_canaryd"))
        .args([
            "run",
            "--listen",
            &api,
            "--prometheus",
            "http://127.0.0.1:9",
        ])
        .arg("--deploy-dir")
        .arg(dir.path().join("deploy"))
        .arg("--state")
        .arg(dir.path().join("state.db"))
        .env("CANARYD_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("canaryd starts");
    let healthz = format!("http://{api}/healthz");
    let answers = || async {
        reqwest::get(&healthz)
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| {
                if r.status() == 200 {
                    Ok(())
                } else {
                    Err(r.status().to_string())
                }
            })
    };
    wait_for("the daemon to answer", Duration::from_secs(30), answers).await;
    let limited = Command::new("prlimit")
        .arg("--pid")
        .arg(child.id().to_string())
        .arg("--fsize=4096:unlimited")
        .status()
        .expect("prlimit (util-linux)");
    assert!(limited.success());
    // Debug logging on every tick and request: a few seconds of lines that
    // cannot be written (a fixed pace on purpose: time must pass).
    for _ in 0..20 {
        let _ = reqwest::get(&healthz).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let exited = child.try_wait().expect("try_wait");
    let _ = child.kill();
    let _ = child.wait();
    assert!(exited.is_none(), "the daemon exited: {exited:?}");
}
