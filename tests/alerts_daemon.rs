//! Alerts from the running daemon (`canaryd run` as a process, a real
//! Prometheus, sample apps, the built-in router): a rollback alert still
//! pending when the daemon is killed is sent exactly once after the restart,
//! and webhook URLs and secrets never show in logs or API responses.

mod harness;

use std::collections::BTreeMap;
use std::time::Duration;

use harness::daemon::{Daemon, Stack};
use harness::receiver::Receiver;
use harness::wait_for;
use serde_json::Value;

const SLACK_PATH: &str = "/services/T0/B0/s3cr3t-slack-token";
const HOOK_PATH: &str = "/hooks/s3cr3t-hook-token";
const SIGNING: &str = "s3cr3t-signing-key";

async fn get(url: &str) -> String {
    reqwest::get(url)
        .await
        .expect("GET")
        .text()
        .await
        .expect("body")
}

/// The deliveries the API reports, by state.
async fn delivery_states(daemon: &Daemon) -> Result<BTreeMap<String, usize>, String> {
    let url = format!("{}/api/v1/rollouts/default/checkout/alerts", daemon.api);
    let body = reqwest::get(url)
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    let mut states = BTreeMap::new();
    for a in v["alerts"].as_array().into_iter().flatten() {
        *states
            .entry(a["state"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    Ok(states)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_alert_pending_at_a_crash_is_sent_once_after_restart_and_secrets_stay_hidden() {
    let s = Stack::new().await;
    let slack = Receiver::start().await;
    let hook = Receiver::start().await;
    // The chat services are down for the rollback alert only.
    slack.refuse_containing(Some("rolled back"));
    hook.refuse_containing(Some("rolled_back"));
    s.deploy_with(
        "    - deploy: 10%\n      duration: 3s\n    - deploy: 50%\n      duration: 10m\n    - deploy: 100%",
        "alerts:\n  - slack: { webhook_env: SLACK_WEBHOOK_URL }\n  - webhook: { webhook_env: HOOK_URL, secret_env: HOOK_SECRET, severity: warn }\n",
    );
    let env = [
        ("SLACK_WEBHOOK_URL", format!("{}{SLACK_PATH}", slack.base)),
        ("HOOK_URL", format!("{}{HOOK_PATH}", hook.base)),
        ("HOOK_SECRET", SIGNING.to_string()),
        ("CANARYD_ALERT_RETRY_FIRST", "300ms".to_string()),
        ("CANARYD_LOG", "debug".to_string()),
    ];
    let mut daemon = Daemon::start_with(s.dir.path(), s.prom.url(), &env);
    let _load = s.load(100.0);
    daemon
        .wait_until("step 2", Duration::from_secs(60), |r| {
            r["step"] == 2 && r["phase"] == "Progressing"
        })
        .await;
    s.set_canary(r#"{"error_rate": "50%"}"#).await;
    daemon
        .wait_phase("RolledBack", Duration::from_secs(60))
        .await;
    // Both sinks have been tried and refused: the alert is pending in the outbox.
    wait_for("refused attempts", Duration::from_secs(20), || async {
        let refused = |r: &Receiver| r.received().iter().any(|m| m.status == 503);
        if refused(&slack) && refused(&hook) {
            Ok(())
        } else {
            Err(format!(
                "slack {:?}, hook {:?}",
                slack.received().len(),
                hook.received().len()
            ))
        }
    })
    .await;
    daemon.kill();

    slack.refuse_containing(None);
    hook.refuse_containing(None);
    let daemon = Daemon::start_with(s.dir.path(), s.prom.url(), &env);
    let states = wait_for("every alert delivered", Duration::from_secs(30), || async {
        let states = delivery_states(&daemon).await?;
        if states.keys().all(|k| k == "delivered") && !states.is_empty() {
            Ok(states)
        } else {
            Err(format!("{states:?}"))
        }
    })
    .await;

    // Slack (info and up): started, advanced, rolled back; each exactly once.
    let slack_texts: Vec<String> = slack
        .accepted()
        .iter()
        .map(|m| m.json()["text"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(slack_texts.len(), 3, "{slack_texts:#?}");
    assert!(
        slack_texts[0].contains("canary v2 started"),
        "{slack_texts:?}"
    );
    assert!(
        slack_texts[1].contains("advanced to step 2/3"),
        "{slack_texts:?}"
    );
    assert!(
        slack_texts[2].contains("v2 rolled back to v1"),
        "{slack_texts:?}"
    );
    // The webhook (warn and up): the rollback only, once, signed.
    let hooks = hook.accepted();
    assert_eq!(
        hooks.len(),
        1,
        "{:#?}",
        hooks.iter().map(|h| h.json()).collect::<Vec<_>>()
    );
    assert_eq!(hooks[0].json()["event"], "rolled_back");
    assert!(hooks[0].header("x-canaryd-signature").is_some());
    assert_eq!(states.get("delivered"), Some(&4), "{states:?}");

    // No URL or secret anywhere a person or a scraper can see.
    let mut seen = std::fs::read_to_string(s.dir.path().join("canaryd.log")).expect("log");
    assert!(seen.contains("alert delivered"), "the log is captured");
    for path in [
        "/api/v1/rollouts",
        "/api/v1/rollouts/default/checkout",
        "/api/v1/rollouts/default/checkout/decisions",
        "/api/v1/rollouts/default/checkout/alerts",
        "/metrics",
    ] {
        seen.push_str(&get(&format!("{}{path}", daemon.api)).await);
    }
    assert!(!seen.contains("s3cr3t"), "a secret leaked");
    assert!(
        seen.contains("slack:env:SLACK_WEBHOOK_URL"),
        "sinks are named by where their URL is read"
    );
}
