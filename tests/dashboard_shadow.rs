//! Shadow mode on the dashboard, in a real headless Chromium against a
//! running daemon (real Prometheus, sample apps, the built-in router): the
//! list, the rollout page and each decision of a shadowed rollout carry a
//! "shadow" badge, and the page shows the shadow summary with the would-be
//! rollback. Screenshots go to target/dashboard/.

mod harness;

use std::time::Duration;

use harness::browser::{Chrome, csp_violations, eval, screenshot, text, wait_text};
use harness::daemon::Stack;

const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadowed_rollout_is_badged_everywhere_and_its_page_shows_the_shadow_summary() {
    let s = Stack::new().await;
    s.set_canary(r#"{"error_rate": "40%"}"#).await;
    s.deploy(
        "    - deploy: 10%\n      duration: 10m\n    - deploy: 100%\n  mode: shadow\n  shadow_weight: 30%",
    );
    let daemon = s.daemon();
    let _load = s.load(100.0);
    daemon.wait_phase("RolledBack", LIMIT).await;
    let chrome = Chrome::launch().await;

    let list = chrome.open(&format!("{}/", daemon.api)).await;
    let row = r#"tr[data-rollout="default/checkout"]"#;
    wait_text(
        &list,
        &format!("{row} [data-testid=shadow]"),
        "the shadow badge in the list",
        LIMIT,
        |t| t == "shadow",
    )
    .await;
    let cells = text(&list, row).await.unwrap_or_default();
    assert!(cells.contains("would roll back"), "{cells}");
    assert!(cells.contains("30%"), "the router's weight: {cells}");
    screenshot(&list, "shadow-list").await;

    let page = chrome
        .open_watching_csp(&format!("{}/rollouts/default/checkout", daemon.api))
        .await;
    wait_text(
        &page,
        "#phase-slot [data-testid=shadow]",
        "the shadow badge by the phase",
        LIMIT,
        |t| t == "shadow",
    )
    .await;
    wait_text(
        &page,
        "[data-testid=shadow-rollbacks]",
        "the summary's would-be rollbacks",
        LIMIT,
        |t| t == "1",
    )
    .await;
    let outcome = text(&page, "#reason").await.unwrap_or_default();
    assert!(
        outcome.starts_with("Shadow verdict at ") && outcome.contains("would roll back:"),
        "{outcome}"
    );
    let watched = text(&page, "[data-testid=shadow-watched]").await;
    assert_eq!(watched.as_deref(), Some("1"));
    let releases = text(&page, "#shadow-releases").await.unwrap_or_default();
    assert!(
        releases.contains("v2")
            && releases.contains("would roll back")
            && releases.contains("error_rate > 5%"),
        "{releases}"
    );
    // Every entry of the log is a shadow decision, and badged so.
    let (entries, badged): (u32, u32) = eval(
        &page,
        "[document.querySelectorAll('#decision-log tbody tr').length, document.querySelectorAll('#decision-log tbody tr [data-testid=shadow]').length]",
    )
    .await
    .expect("count the log's badges");
    assert!(entries > 0 && badged == entries, "{badged} of {entries}");
    screenshot(&page, "shadow-rollout").await;
    assert!(csp_violations(&page).await.is_empty());
}
