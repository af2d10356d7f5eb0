//! Shadow mode end to end (`canaryd run` as a process, a real Prometheus,
//! sample apps, the built-in router, a chat receiver): with a faulty canary
//! the router's weight, as the router itself reports it, never changes over
//! the whole run; the would-roll-back record, the shadow summary and the
//! shadow-labelled alert appear; and `canaryd status` shows the mode.

mod harness;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::daemon::{Daemon, Stack};
use harness::receiver::Receiver;
use harness::wait_for;
use serde_json::Value;

/// The built-in router's own weight metrics for the rollout: the weight it
/// applies (percent) and how many times it changed.
#[derive(Clone, Debug, Default, PartialEq)]
struct RouterReport {
    weight: Option<f64>,
    changes: f64,
}

async fn router_report(api: &str) -> Result<RouterReport, String> {
    let text = reqwest::get(format!("{api}/metrics"))
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    let mut report = RouterReport::default();
    for line in text.lines() {
        let value = || line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
        if line.starts_with("canaryd_router_canary_weight{") && line.contains("route=\"checkout\"")
        {
            report.weight = value();
        }
        if line.starts_with("canaryd_router_weight_changes_total{")
            && line.contains("route=\"checkout\"")
        {
            report.changes = value().unwrap_or(f64::NAN);
        }
    }
    Ok(report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadowed_faulty_canary_never_moves_the_router_and_is_reported_as_would_roll_back() {
    let s = Stack::new().await;
    let slack = Receiver::start().await;
    s.set_canary(r#"{"error_rate": "40%"}"#).await;
    // The team's process holds the canary at 30%; canaryd only watches.
    s.deploy_with(
        "    - deploy: 10%\n      duration: 10m\n    - deploy: 100%\n  mode: shadow\n  shadow_weight: 30%",
        "alerts:\n  - slack: { webhook_env: SLACK_WEBHOOK_URL }\n",
    );
    let env = [(
        "SLACK_WEBHOOK_URL",
        format!("{}/services/T0/B0/x", slack.base),
    )];
    let daemon = Daemon::start_with(s.dir.path(), s.prom.url(), &env);
    let first = wait_for("the router's weight", Duration::from_secs(30), || async {
        let r = router_report(&daemon.api).await?;
        r.weight.map(|_| r.clone()).ok_or_else(|| format!("{r:?}"))
    })
    .await;
    assert_eq!(first.weight, Some(30.0), "{first:?}");

    // The router's own report, every 100 ms over the whole run.
    let seen: Arc<Mutex<Vec<RouterReport>>> = Arc::default();
    let watcher = {
        let (seen, api) = (seen.clone(), daemon.api.clone());
        tokio::spawn(async move {
            loop {
                if let Ok(r) = router_report(&api).await {
                    seen.lock().expect("lock").push(r);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let _load = s.load(100.0);

    let rolled = daemon
        .wait_phase("RolledBack", Duration::from_secs(90))
        .await;
    assert_eq!(rolled["mode"], "shadow", "{rolled}");
    assert_eq!(
        rolled["canary_weight"], 30.0,
        "the weight read from the router"
    );

    let decisions = daemon.decisions().await;
    assert!(
        decisions.iter().all(|d| d["shadow"] == true),
        "{decisions:#?}"
    );
    let rollback = decisions
        .iter()
        .find(|d| d["action"] == "rollback")
        .expect("a would-roll-back record");
    let reason = rollback["reason"].as_str().unwrap_or("");
    assert!(
        reason.starts_with("would roll back: abort condition error_rate > 5% breached"),
        "{reason}"
    );

    let summary: Value = reqwest::get(format!(
        "{}/api/v1/rollouts/default/checkout/shadow",
        daemon.api
    ))
    .await
    .expect("shadow summary")
    .json()
    .await
    .expect("JSON");
    eprintln!(
        "shadow summary:\n{}",
        serde_json::to_string_pretty(&summary).unwrap_or_default()
    );
    assert_eq!(summary["releases_watched"], 1, "{summary}");
    assert_eq!(summary["would_roll_back"], 1, "{summary}");
    let release = &summary["releases"][0];
    assert_eq!(release["verdict"], "would_roll_back", "{summary}");
    assert!(
        release["time_to_verdict_seconds"].as_f64().is_some(),
        "{summary}"
    );
    assert!(
        !release["evidence"].as_array().is_some_and(Vec::is_empty),
        "{summary}"
    );

    let alert = wait_for("the shadow alert", Duration::from_secs(30), || async {
        slack
            .accepted()
            .iter()
            .map(|m| m.json()["text"].as_str().unwrap_or("").to_string())
            .find(|t| t.contains("would be rolled back"))
            .ok_or_else(|| format!("{} received", slack.received().len()))
    })
    .await;
    assert!(
        alert.contains("[shadow] checkout: v2 would be rolled back to v1"),
        "{alert}"
    );

    let status = std::process::Command::new(env!("CARGO_BIN_EXE_canaryd"))
        .args(["status", "--server", &daemon.api])
        .output()
        .expect("canaryd status");
    let table = String::from_utf8_lossy(&status.stdout);
    eprintln!("canaryd status:\n{table}");
    assert!(
        table.contains("MODE") && table.contains("shadow"),
        "{table}"
    );

    // Two more seconds of load after the verdict, then the whole run's report.
    let samples = seen.lock().expect("lock").len();
    wait_for("more router reports", Duration::from_secs(10), || async {
        let n = seen.lock().expect("lock").len();
        if n >= samples + 20 {
            Ok(())
        } else {
            Err(format!("{n}"))
        }
    })
    .await;
    watcher.abort();
    let seen = seen.lock().expect("lock").clone();
    assert!(seen.len() > 20, "{} reports", seen.len());
    assert!(
        seen.iter()
            .all(|r| r.weight == Some(30.0) && r.changes == 0.0),
        "the router's weight moved: {:?}",
        seen.iter()
            .find(|r| r.weight != Some(30.0) || r.changes != 0.0)
    );
}
