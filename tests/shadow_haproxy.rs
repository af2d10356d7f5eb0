//! Shadow mode over a real HAProxy (Debian's `haproxy`, driven by the team
//! through its Runtime API): canaryd reads the split the team sets, shows
//! it, follows a change of it, and never writes a weight, even when it
//! would promote.

mod harness;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use canaryd::spec::units::Weight;
use harness::daemon::Stack;
use harness::haproxy::Haproxy;
use harness::{load_on_url, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadowed_rollout_reads_the_teams_haproxy_split_and_never_writes_it() {
    let s = Stack::new().await;
    let haproxy = Haproxy::start(s.stable.addr(), s.canary.addr()).await;
    let team = haproxy.adapter("canary");
    let quarter = Weight::from_basis_points(2500).expect("25%");
    team.set_weight(quarter).await.expect("the team sets 25%");
    let text = format!(
        r#"service: checkout
policy: http-red
router: {{ kind: haproxy, socket: "{}", backend: app, stable_server: stable, canary_server: canary }}
stable: {{ version: v1 }}
canary: {{ version: v2 }}
deploy:
  strategy: canary
  mode: shadow
  steps:
    - deploy: 10%
      duration: 10s
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

    // HAProxy's own weight, every 100 ms, while canaryd watches.
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let watcher = {
        let (seen, adapter) = (seen.clone(), haproxy.adapter("canary"));
        tokio::spawn(async move {
            loop {
                if let Ok(w) = adapter.weight().await {
                    seen.lock().expect("lock").push(w.to_string());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let shown = daemon
        .wait_until("the team's 25% shown", Duration::from_secs(30), |r| {
            r["mode"] == "shadow" && r["canary_weight"] == 25.0 && r["phase"] == "Progressing"
        })
        .await;
    assert_eq!(shown["step"], 1, "{shown}");
    // The team moves to 50%: canaryd follows it.
    let half = Weight::from_basis_points(5000).expect("50%");
    team.set_weight(half).await.expect("the team sets 50%");
    daemon
        .wait_until("the team's 50% shown", Duration::from_secs(30), |r| {
            r["canary_weight"] == 50.0
        })
        .await;
    let done = daemon.wait_phase("Promoted", Duration::from_secs(60)).await;
    assert_eq!(done["canary_weight"], 50.0, "{done}");
    let last = daemon.decisions().await;
    let promote = last.last().expect("decisions");
    assert_eq!(promote["action"], "promote");
    assert!(
        promote["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("would promote:")),
        "{promote}"
    );
    // Two more seconds after the verdict: still the team's split.
    let n = seen.lock().expect("lock").len();
    wait_for("more HAProxy reads", Duration::from_secs(10), || async {
        let m = seen.lock().expect("lock").len();
        if m >= n + 20 {
            Ok(())
        } else {
            Err(format!("{m}"))
        }
    })
    .await;
    watcher.abort();
    let seen = seen.lock().expect("lock").clone();
    assert!(
        seen.iter().all(|w| w == "25%" || w == "50%"),
        "HAProxy held another weight: {seen:?}"
    );
    assert_eq!(seen.last().map(String::as_str), Some("50%"));
}
