//! The dashboard's rollout list with many rollouts, in a real headless
//! Chromium against a running daemon: the search box narrows the list on the
//! server and the pager counts what matches; with more than a page (100),
//! next and previous move between pages. A rollout's page follows only its
//! rollout's events, and waits for a rollout that is not there yet.
//!
//! No Prometheus answers and no upstream listens: the list is about the
//! deploy files, not their measurements.

mod harness;

use std::time::Duration;

use chromiumoxide::Page;
use harness::browser::{Chrome, click, csp_violations, eval, wait_text};
use harness::daemon::Daemon;
use harness::wait_for;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);
const NO_PROMETHEUS: &str = "http://127.0.0.1:9";

/// A daemon with a deploy file per name (each its own built-in router).
async fn daemon_with(dir: &std::path::Path, names: &[String]) -> Daemon {
    let deploy = dir.join("deploy");
    std::fs::create_dir_all(&deploy).expect("deploy dir");
    // Distinct addresses for the routers and the API: held together while
    // picked (one at a time, a port freed may come back).
    let held: Vec<std::net::TcpListener> = (0..=names.len())
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    let mut addrs: Vec<String> = held
        .iter()
        .map(|l| l.local_addr().expect("its address").to_string())
        .collect();
    drop(held);
    let api = addrs.pop().expect("one for the API");
    for (name, router) in names.iter().zip(&addrs) {
        let text = format!(
            "service: {name}\npolicy: http-red\nrouter: {{ kind: builtin, listen: \"{}\" }}\n\
             stable: {{ version: v1, address: \"127.0.0.1:9\" }}\ncanary: {{ version: v2, address: \"127.0.0.1:9\" }}\n\
             deploy:\n  strategy: canary\n  steps:\n    - deploy: 10%\n      duration: 10m\n    - deploy: 100%\n",
            router
        );
        std::fs::write(deploy.join(format!("{name}.yaml")), text).expect("write a deploy file");
    }
    let daemon = Daemon::start_at(dir, NO_PROMETHEUS, &api, &[]);
    let url = format!("{}/api/v1/rollouts?limit=1000", daemon.api);
    let n = names.len();
    wait_for("every rollout listed", LIMIT, || async {
        let body: Value = reqwest::get(&url)
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let listed: Vec<&str> = body["rollouts"]
            .as_array()
            .map(|a| a.iter().filter_map(|r| r["name"].as_str()).collect())
            .unwrap_or_default();
        if listed.len() == n {
            return Ok(());
        }
        let missing: Vec<&String> = names
            .iter()
            .filter(|m| !listed.contains(&m.as_str()))
            .collect();
        Err(format!("{} of {n}; missing {missing:?}", listed.len()))
    })
    .await;
    daemon
}

/// Types `text` into the list's search box (as a person would: an `input` event).
async fn search(page: &Page, text: &str) {
    let js = format!(
        "(() => {{ const s = document.getElementById('search'); s.value = {}; s.dispatchEvent(new Event('input')); return true; }})()",
        serde_json::to_string(text).expect("a JSON string")
    );
    let typed: bool = eval(page, &js).await.expect("type into the search box");
    assert!(typed);
}

/// The rollouts listed on the page, in order.
async fn rows(page: &Page) -> Vec<String> {
    eval(
        page,
        "[...document.querySelectorAll('#rollouts tbody tr')].map((r) => r.dataset.rollout)",
    )
    .await
    .unwrap_or_default()
}

const STATUS: &str = "[data-testid=page-status]";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_search_box_narrows_the_list_and_the_pager_counts_the_matches() {
    let dir = tempfile::tempdir().expect("temp dir");
    let names: Vec<String> = ["checkout", "checkout-eu", "search"]
        .map(String::from)
        .to_vec();
    let daemon = daemon_with(dir.path(), &names).await;
    let chrome = Chrome::launch().await;
    let page = chrome.open_watching_csp(&format!("{}/", daemon.api)).await;
    wait_text(&page, STATUS, "all three counted", LIMIT, |t| {
        t == "1–3 of 3"
    })
    .await;
    search(&page, "Checkout").await;
    wait_text(&page, STATUS, "two match", LIMIT, |t| t == "1–2 of 2").await;
    assert_eq!(
        rows(&page).await,
        vec!["default/checkout", "default/checkout-eu"]
    );
    // A phase filter: every rollout is in the same phase, its chip counts the
    // two that match the search; pressing it keeps them, and says so.
    let chip = "#phase-chips button.chip";
    let label = wait_text(&page, chip, "a phase chip", LIMIT, |t| t.ends_with(" 2")).await;
    click(&page, chip).await;
    wait_for("the chip pressed", LIMIT, || async {
        match eval::<String>(
            &page,
            &format!("document.querySelector('{chip}').getAttribute('aria-pressed')"),
        )
        .await
        {
            Ok(p) if p == "true" => Ok(()),
            other => Err(format!("{label}: {other:?}")),
        }
    })
    .await;
    wait_text(&page, STATUS, "still two", LIMIT, |t| t == "1–2 of 2").await;
    search(&page, "").await;
    wait_text(&page, STATUS, "all three again", LIMIT, |t| t == "1–3 of 3").await;
    assert_eq!(csp_violations(&page).await, Vec::<String>::new());
}

/// Needs the paged API (`GET /api/v1/rollouts?limit=&continue=`, issue 14):
/// against a daemon that answers the whole list at once, the dashboard shows
/// it as one page and this test fails at "page 1 of 120".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_of_120_rollouts_is_shown_100_at_a_time_with_next_and_previous() {
    let dir = tempfile::tempdir().expect("temp dir");
    let names: Vec<String> = (0..120).map(|i| format!("svc-{i:03}")).collect();
    let daemon = daemon_with(dir.path(), &names).await;
    let chrome = Chrome::launch().await;
    let page = chrome.open(&format!("{}/", daemon.api)).await;
    wait_text(&page, STATUS, "page 1 of 120", LIMIT, |t| {
        t == "1–100 of 120"
    })
    .await;
    let first = rows(&page).await;
    assert_eq!(first.len(), 100);
    assert_eq!(first[0], "default/svc-000");
    click(&page, "#page-next").await;
    wait_text(&page, STATUS, "page 2", LIMIT, |t| t == "101–120 of 120").await;
    let second = rows(&page).await;
    assert_eq!(second.first().map(String::as_str), Some("default/svc-100"));
    assert_eq!(second.len(), 20);
    let next_disabled: bool = eval(&page, "document.getElementById('page-next').disabled")
        .await
        .expect("the next button");
    assert!(next_disabled, "no page after the last");
    click(&page, "#page-prev").await;
    wait_text(&page, STATUS, "back to page 1", LIMIT, |t| {
        t == "1–100 of 120"
    })
    .await;
    assert_eq!(rows(&page).await, first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollouts_page_says_it_is_missing_and_shows_it_when_its_file_appears() {
    let dir = tempfile::tempdir().expect("temp dir");
    let daemon = daemon_with(dir.path(), &["checkout".to_string()]).await;
    let chrome = Chrome::launch().await;
    let page = chrome
        .open(&format!("{}/rollouts/default/later", daemon.api))
        .await;
    wait_text(&page, "#app .notice", "the missing rollout", LIMIT, |t| {
        t.contains("No rollout default/later")
    })
    .await;
    let checkout = std::fs::read_to_string(dir.path().join("deploy/checkout.yaml"))
        .expect("read a deploy file");
    let router = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .to_string();
    let later = checkout
        .replace("service: checkout", "service: later")
        .lines()
        .map(|l| {
            if l.starts_with("router:") {
                format!("router: {{ kind: builtin, listen: \"{router}\" }}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.path().join("deploy/later.yaml"), later).expect("write a deploy file");
    // Over the event stream, without a reload.
    wait_text(&page, "#detail h1", "the rollout's page", LIMIT, |t| {
        t == "default/later"
    })
    .await;
    wait_text(&page, "[data-testid=phase]", "its phase", LIMIT, |t| {
        !t.is_empty()
    })
    .await;
}
