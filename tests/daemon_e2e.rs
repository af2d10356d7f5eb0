//! The daemon end to end: `canaryd run` as a process, a real Prometheus, two
//! sample apps behind the built-in router under load.

mod harness;

use std::time::Duration;

use harness::daemon::{Stack, TOKEN};
use harness::{load_on_url, wait_for};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_canary_is_promoted_step_by_step() {
    let s = Stack::new().await;
    // 20 requests/s reach the canary at 20%: positive evidence that its
    // error rate is under 5% takes about 140 error-free requests.
    s.deploy_with(
        "    - deploy: 20%\n      duration: 3s\n      metrics:\n        - error_rate_less_than: 5%\n    - deploy: 50%\n      duration: 3s\n    - deploy: 100%",
        "    max_extension: 1m\n",
    );
    let daemon = s.daemon();
    let _load = s.load(100.0);

    let done = daemon.wait_phase("Promoted", Duration::from_secs(90)).await;
    assert_eq!(done["canary_weight"], 100.0);
    assert_eq!(done["stable_version"], "v2");
    // Holds are legitimate (waiting for evidence, or no data in the window
    // on a loaded machine's first ticks); the transitions are exactly these.
    let actions: Vec<String> = daemon
        .decisions()
        .await
        .iter()
        .map(|d| d["action"].as_str().unwrap_or_default().to_string())
        .filter(|a| a != "hold")
        .collect();
    assert_eq!(
        actions,
        ["start", "advance", "advance", "promote"],
        "{actions:?}"
    );
    // Every request now goes to the canary.
    let r = reqwest::get(s.url()).await.expect("through the router");
    assert_eq!(r.headers()["x-canaryd-track"], "canary");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_fault_at_step_2_cuts_the_canary_to_zero_and_says_why() {
    let s = Stack::new().await;
    s.deploy("    - deploy: 10%\n      duration: 3s\n    - deploy: 50%\n      duration: 10m\n    - deploy: 100%");
    let daemon = s.daemon();
    let _load = s.load(100.0);
    daemon
        .wait_until("step 2", Duration::from_secs(60), |r| {
            r["step"] == 2 && r["phase"] == "Progressing"
        })
        .await;

    s.set_canary(r#"{"error_rate": "50%"}"#).await;
    let r = daemon
        .wait_phase("RolledBack", Duration::from_secs(60))
        .await;
    assert_eq!(r["canary_weight"], 0.0);
    let reason = r["last_decision"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("error_rate > 5%"), "{reason}");
    assert!(reason.contains('%'), "the value is in the reason: {reason}");
    let rollback = daemon
        .decisions()
        .await
        .into_iter()
        .last()
        .expect("a decision");
    assert_eq!(rollback["action"], "rollback");
    let gate = rollback["gates"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["verdict"] == "fail"))
        .cloned()
        .expect("the breached gate is in the record");
    assert_eq!(gate["threshold"], "5%");
    assert!(gate["value"].as_f64().is_some_and(|v| v > 0.05), "{gate}");
    assert!(
        gate["query"]
            .as_str()
            .is_some_and(|q| q.contains(r#"version="v2""#)),
        "{gate}"
    );
    for _ in 0..20 {
        let r = reqwest::get(s.url()).await.expect("through the router");
        assert_eq!(r.headers()["x-canaryd-track"], "stable");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_need_the_token_and_a_broken_edit_keeps_the_rollout_going() {
    let s = Stack::new().await;
    s.deploy("    - deploy: 10%\n      duration: 10m\n    - deploy: 100%");
    let daemon = s.daemon();
    let _load = s.load(50.0);
    daemon
        .wait_phase("Progressing", Duration::from_secs(30))
        .await;

    let http = reqwest::Client::new();
    let pause = format!("{}/api/v1/rollouts/default/checkout/pause", daemon.api);
    let none = http.post(&pause).send().await.expect("post");
    assert_eq!(none.status(), 401);
    let body: Value = none.json().await.expect("JSON error");
    assert_eq!(body["error"]["code"], "unauthorized");
    let wrong = http
        .post(&pause)
        .bearer_auth("nope")
        .send()
        .await
        .expect("post");
    assert_eq!(wrong.status(), 403);
    let ok = http
        .post(&pause)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("post");
    assert_eq!(ok.status(), 200);
    let paused: Value = ok.json().await.expect("rollout");
    assert_eq!(paused["phase"], "Paused");
    let again = http
        .post(&pause)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("post");
    assert_eq!(again.status(), 409, "pausing a paused rollout is refused");

    // A broken edit is rejected with the validator's errors; nothing changes.
    std::fs::write(
        s.dir.path().join("deploy/checkout.yaml"),
        "service: checkout\ndeploy:\n  steps: [{deploy: 150%}]\n",
    )
    .expect("write");
    let r = daemon
        .wait_until("the edit to be rejected", Duration::from_secs(15), |r| {
            r["file_error"].is_string()
        })
        .await;
    assert!(
        r["file_error"]
            .as_str()
            .unwrap_or_default()
            .contains("150%"),
        "{r}"
    );
    assert_eq!(r["phase"], "Paused");
    assert_eq!(r["canary_weight"], 10.0);

    let missing = http
        .get(format!("{}/api/v1/rollouts/default/nope", daemon.api))
        .send()
        .await
        .expect("get");
    assert_eq!(missing.status(), 404);
    let metrics = http
        .get(format!("{}/metrics", daemon.api))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(r#"canaryd_rollout_phase{rollout="default/checkout",phase="Paused"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("canaryd_router_requests_total"),
        "{metrics}"
    );
    let openapi: Value = http
        .get(format!("{}/api/v1/openapi.json", daemon.api))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("JSON");
    assert_eq!(openapi["openapi"], "3.1.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_mid_step_continues_the_same_step_without_duplicate_decisions() {
    let s = Stack::new().await;
    s.deploy("    - deploy: 10%\n      duration: 3s\n    - deploy: 30%\n      duration: 10m\n    - deploy: 100%");
    let mut daemon = s.daemon();
    let _load = s.load(50.0);
    let before = daemon
        .wait_until(
            "step 2 with some watched time",
            Duration::from_secs(60),
            |r| r["step"] == 2 && r["step_elapsed_seconds"].as_f64().is_some_and(|s| s >= 2.0),
        )
        .await;
    let log_before = daemon.decisions().await;
    daemon.kill(); // SIGKILL: no shutdown code runs

    let daemon = s.daemon();
    let after = daemon
        .wait_until("the restarted daemon", Duration::from_secs(30), |r| {
            r["step_elapsed_seconds"].as_f64().is_some_and(|s| s > 0.0)
        })
        .await;
    assert_eq!(after["phase"], "Progressing");
    assert_eq!(after["step"], 2, "same step");
    assert_eq!(after["canary_weight"], 30.0, "router weight re-applied");
    let elapsed_before = before["step_elapsed_seconds"].as_f64().unwrap_or_default();
    let elapsed_after = after["step_elapsed_seconds"].as_f64().unwrap_or_default();
    assert!(
        elapsed_after >= elapsed_before,
        "{elapsed_before} → {elapsed_after}"
    );
    // Downtime does not count as watched time.
    assert!(
        elapsed_after < elapsed_before + 10.0,
        "{elapsed_before} → {elapsed_after}"
    );
    let log_after = daemon.decisions().await;
    assert_eq!(
        &log_after[..log_before.len()],
        &log_before[..],
        "the log is kept as it was"
    );
    let seqs: Vec<u64> = log_after.iter().filter_map(|d| d["seq"].as_u64()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "no decision twice"
    );
    // Traffic still reaches the canary at its weight.
    let mut canary_hits = 0;
    for _ in 0..100 {
        let r = reqwest::get(s.url()).await.expect("through the router");
        canary_hits += usize::from(r.headers()["x-canaryd-track"] == "canary");
    }
    assert!(
        (10..=55).contains(&canary_hits),
        "{canary_hits}/100 to a 30% canary"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_latency_only_fault_rolls_back() {
    let s = Stack::new().await;
    s.deploy("    - deploy: 30%\n      duration: 10m\n    - deploy: 100%");
    let daemon = s.daemon();
    let _load = s.load(100.0);
    daemon
        .wait_phase("Progressing", Duration::from_secs(30))
        .await;
    s.set_canary(r#"{"latency_p50": "600ms", "latency_p99": "900ms"}"#)
        .await;
    let r = daemon
        .wait_phase("RolledBack", Duration::from_secs(60))
        .await;
    let reason = r["last_decision"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("latency_p99 > 400ms"), "{reason}");
    assert_eq!(r["canary_weight"], 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_without_traffic_is_never_promoted() {
    let s = Stack::new().await;
    // Short steps: without data, even these must never pass.
    s.deploy("    - deploy: 10%\n      duration: 1s\n    - deploy: 100%");
    let daemon = s.daemon();
    // No load at all. After `inconclusive_limit` ticks of no data: paused.
    let r = daemon.wait_phase("Paused", Duration::from_secs(60)).await;
    assert_eq!(r["pause_reason"], "no_data");
    assert_eq!(r["step"], 1);
    let actions: Vec<Value> = daemon
        .decisions()
        .await
        .iter()
        .map(|d| d["action"].clone())
        .collect();
    assert!(
        !actions.iter().any(|a| a == "advance" || a == "promote"),
        "{actions:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_carries_each_decision_as_it_is_taken() {
    let s = Stack::new().await;
    s.deploy("    - deploy: 10%\n      duration: 10m\n    - deploy: 100%");
    let daemon = s.daemon();
    let _load = s.load(50.0);
    daemon
        .wait_phase("Progressing", Duration::from_secs(30))
        .await;

    let events = reqwest::get(format!("{}/api/v1/events", daemon.api))
        .await
        .expect("SSE");
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let mut events = events;
    reqwest::Client::new()
        .post(format!(
            "{}/api/v1/rollouts/default/checkout/abort",
            daemon.api
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("abort");
    let mut text = String::new();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(chunk) = events.chunk().await.expect("chunk") {
            text.push_str(&String::from_utf8_lossy(&chunk));
            if let Some(line) = text
                .lines()
                .find(|l| l.starts_with("data:") && l.contains(r#""action":"abort""#))
            {
                return line.to_string();
            }
        }
        String::new()
    })
    .await
    .expect("an abort decision event within 20s");
    let event: Value =
        serde_json::from_str(found.trim_start_matches("data:").trim()).expect("JSON event");
    assert_eq!(event["type"], "decision");
    assert_eq!(event["rollout"]["phase"], "Aborted");
    assert_eq!(event["rollout"]["canary_weight"], 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_drives_a_real_haproxy_through_its_runtime_api() {
    let s = Stack::new().await;
    let haproxy = harness::haproxy::Haproxy::start(s.stable.addr(), s.canary.addr()).await;
    let text = format!(
        r#"service: checkout
policy: http-red
router: {{ kind: haproxy, socket: "{}", backend: app, stable_server: stable, canary_server: canary }}
stable: {{ version: v1 }}
canary: {{ version: v2 }}
deploy:
  strategy: canary
  steps:
    - deploy: 25%
      duration: 3s
      metrics:
        - error_rate_less_than: 1%
    - deploy: 100%
  analysis:
    interval: 1s
    window: 5s
    min_requests: 5
"#,
        haproxy.socket
    );
    s.write_file(&text);
    let daemon = s.daemon();
    let _load = load_on_url(&format!("http://{}/", haproxy.frontend), 100.0);
    let adapter = haproxy.adapter("canary");
    // While at step 1, HAProxy itself holds 25% (64/256) for the canary.
    wait_for("HAProxy at 25%", Duration::from_secs(30), || async {
        let w = adapter.weight().await.map_err(|e| e.to_string())?;
        if w.to_string() == "25%" {
            Ok(())
        } else {
            Err(w.to_string())
        }
    })
    .await;
    let done = daemon.wait_phase("Promoted", Duration::from_secs(60)).await;
    assert_eq!(done["canary_weight"], 100.0);
    assert_eq!(
        adapter.weight().await.expect("read back").to_string(),
        "100%"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_broken_while_the_daemon_was_down_runs_its_last_good_version() {
    let s = Stack::new().await;
    s.deploy("    - deploy: 20%\n      duration: 10m\n    - deploy: 100%");
    let mut daemon = s.daemon();
    let _load = s.load(50.0);
    daemon
        .wait_phase("Progressing", Duration::from_secs(30))
        .await;
    daemon.kill();

    std::fs::write(
        s.dir.path().join("deploy/checkout.yaml"),
        "service: checkout\ndeploy: {steps: [{deploy: 5 %}]}\n",
    )
    .expect("break it");
    let daemon = s.daemon();
    let r = daemon
        .wait_until(
            "the rollout under its last good file",
            Duration::from_secs(30),
            |r| r["file_error"].is_string(),
        )
        .await;
    assert_eq!(r["phase"], "Progressing");
    assert_eq!(r["canary_weight"], 20.0);
    assert!(
        r["file_error"].as_str().unwrap_or_default().contains("5 %"),
        "{r}"
    );
    // The router is up again at the stored weight.
    let mut canary_hits = 0;
    for _ in 0..100 {
        let resp = reqwest::get(s.url()).await.expect("through the router");
        canary_hits += usize::from(resp.headers()["x-canaryd-track"] == "canary");
    }
    assert!(
        (3..=45).contains(&canary_hits),
        "{canary_hits}/100 to a 20% canary"
    );
}
