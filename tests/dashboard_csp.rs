//! The dashboard under its Content-Security-Policy, in a real headless
//! Chromium against a running daemon: the policy is sent, the pages render
//! (list, rollout page, the weight bar's width) and the browser reports no
//! violation, so nothing of the page was silently blocked.

mod harness;

use std::time::Duration;

use harness::browser::{Chrome, csp_violations, eval, wait_text};
use harness::daemon::{Daemon, free_addr};
use harness::{instant, sample_app, wait_for};

const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_renders_under_its_content_security_policy_without_a_violation() {
    let stable = sample_app("checkout", "v1", instant()).await;
    let canary = sample_app("checkout", "v2", instant()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("deploy")).expect("deploy dir");
    let text = format!(
        "service: checkout\npolicy: http-red\nrouter: {{ kind: builtin, listen: \"{}\" }}\n\
         stable: {{ version: v1, address: \"{}\" }}\ncanary: {{ version: v2, address: \"{}\" }}\n\
         deploy:\n  strategy: canary\n  steps:\n    - deploy: 10%\n      duration: 10m\n    - deploy: 100%\n  analysis:\n    interval: 1s\n",
        free_addr(),
        stable.addr(),
        canary.addr()
    );
    std::fs::write(dir.path().join("deploy/checkout.yaml"), text).expect("deploy file");
    // No Prometheus (port 9 on loopback): gates inconclusive, the page still shows it all.
    let daemon = Daemon::start_at(dir.path(), "http://127.0.0.1:9", &free_addr(), &[]);
    let rollout = daemon
        .wait_until("the rollout at 10%", LIMIT, |r| r["canary_weight"] == 10.0)
        .await;
    assert_eq!(rollout["file"], "checkout.yaml");

    let page_headers = wait_for("the dashboard", LIMIT, || async {
        reqwest::get(format!("{}/", daemon.api))
            .await
            .map(|r| r.headers().clone())
            .map_err(|e| e.to_string())
    })
    .await;
    let csp = page_headers["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));

    let chrome = Chrome::launch().await;
    let list = chrome.open_watching_csp(&format!("{}/", daemon.api)).await;
    let row = r#"tr[data-rollout="default/checkout"]"#;
    wait_text(
        &list,
        &format!("{row} [data-testid=weight]"),
        "the weight in the list",
        LIMIT,
        |t| t == "10%",
    )
    .await;
    // The bar's width is set through the CSSOM, which the policy allows.
    let width: String = eval(
        &list,
        &format!("document.querySelector('{row} .bar span').style.width"),
    )
    .await
    .expect("the bar");
    assert_eq!(width, "10%");
    // The theme script (a file now) ran before the first paint.
    let theme: String = eval(&list, "document.documentElement.dataset.theme")
        .await
        .expect("theme");
    assert!(theme == "light" || theme == "dark", "{theme}");
    assert_eq!(csp_violations(&list).await, Vec::<String>::new());

    let page = chrome
        .open_watching_csp(&format!("{}/rollouts/default/checkout", daemon.api))
        .await;
    wait_text(
        &page,
        "[data-testid=phase]",
        "the phase on the rollout page",
        LIMIT,
        |t| !t.is_empty(),
    )
    .await;
    assert_eq!(csp_violations(&page).await, Vec::<String>::new());
}
