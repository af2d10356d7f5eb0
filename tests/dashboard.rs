//! The dashboard in a real headless Chromium against a running daemon (real
//! Prometheus, sample apps, the built-in router): the list and the rollout
//! page show the rollout's name, phase, weight and gate values; updates
//! arrive over the event stream without a reload; an action without the token
//! is refused; a rolled-back rollout shows its reason; the delivery panel;
//! the empty state and the lost-connection notice. Screenshots go to target/dashboard/.

mod harness;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use canaryd::engine::EvidenceSummary;
use harness::browser::{Chrome, click, csp_violations, eval, screenshot, text, wait_text};
use harness::daemon::{Daemon, Stack, TOKEN, free_addr};
use harness::wait_for;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);

/// Types `text` into the list's search box (as a person would: an `input` event).
async fn search(page: &chromiumoxide::Page, text: &str) {
    let js = format!(
        "(() => {{ const s = document.getElementById('search'); s.value = {}; s.dispatchEvent(new Event('input')); return true; }})()",
        serde_json::to_string(text).expect("a JSON string")
    );
    let typed: bool = eval(page, &js).await.expect("type into the search box");
    assert!(typed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_in_progress_is_shown_live_and_actions_need_the_token() {
    let s = Stack::new().await;
    // Step 1 is long: the page is checked while it runs; a shorter step 1 is
    // then saved to the file, and the advance arrives over the event stream
    // (10 requests/s reach the canary: evidence that its error rate is under
    // 5% takes about 140 good requests). Until then step 1 also has a gate
    // that stays undecided (showing an error rate under 0.1% takes thousands
    // of requests) and one relative to the stable version.
    let steps = |first: &str, more: &str| {
        format!(
            "    - deploy: 10%\n      duration: {first}\n      metrics:\n        - error_rate_less_than: 5%\n{more}    - deploy: 50%\n      duration: 10m\n    - deploy: 100%"
        )
    };
    let strict =
        "        - error_rate_less_than: 0.1%\n        - error_rate_less_than: stable + 5%\n";
    let deploy =
        |first: &str, more: &str| s.deploy_with(&steps(first, more), "    max_extension: 2m\n");
    deploy("10m", strict);
    let daemon = s.daemon();
    let _load = s.load(100.0);
    daemon.wait_phase("Progressing", LIMIT).await;
    let chrome = Chrome::launch().await;

    // The list: name, phase, step, weight.
    let list = chrome.open(&format!("{}/", daemon.api)).await;
    let row = r#"tr[data-rollout="default/checkout"]"#;
    wait_text(
        &list,
        &format!("{row} [data-testid=phase]"),
        "the phase in the list",
        LIMIT,
        |t| t == "Progressing",
    )
    .await;
    wait_text(
        &list,
        &format!("{row} [data-testid=weight]"),
        "the weight in the list",
        LIMIT,
        |t| t == "10%",
    )
    .await;
    let cells = text(&list, row).await.unwrap_or_default();
    assert!(
        cells.contains("1/3") && cells.contains("v1 → v2"),
        "{cells}"
    );
    screenshot(&list, "list").await;

    // The pager says how many rollouts match; the search box narrows the
    // list (more rollouts, and pages: tests/dashboard_list.rs).
    let status = "[data-testid=page-status]";
    wait_text(&list, status, "the count", LIMIT, |t| t == "1–1 of 1").await;
    search(&list, "no-such-rollout").await;
    wait_text(&list, "#no-match", "no match", LIMIT, |t| {
        t == "No rollout matches."
    })
    .await;
    wait_text(&list, status, "none counted", LIMIT, |t| t == "0 of 0").await;
    search(&list, "CHECK").await;
    wait_text(&list, status, "the match counted", LIMIT, |t| {
        t == "1–1 of 1"
    })
    .await;
    let chip = wait_text(
        &list,
        "#phase-chips [data-phase=Progressing]",
        "the phase filter with its count",
        LIMIT,
        |t| t == "Progressing 1",
    )
    .await;
    assert_eq!(chip, "Progressing 1");

    // The rollout page: gate values as measured, time left, a chart per gate.
    let page = chrome
        .open_watching_csp(&format!("{}/rollouts/default/checkout", daemon.api))
        .await;
    let _: Value = eval(&page, "window.__sameDocument = 'yes'")
        .await
        .expect("mark the document");
    let gate = r#"#gate-values tr[data-gate="error_rate < 5%"] .canary-value"#;
    wait_text(&page, gate, "a measured gate value", LIMIT, |t| {
        t.ends_with('%')
    })
    .await;
    let left = wait_text(
        &page,
        "[data-testid=time-left]",
        "time left in step 1",
        LIMIT,
        |t| t.contains('m'),
    )
    .await;
    assert!(
        left.starts_with('9') || left.starts_with("10m"),
        "about 10 minutes left: {left}"
    );
    wait_for("the promotion gate's chart", LIMIT, || async {
        match eval::<u32>(
            &page,
            r#"document.querySelectorAll('.chart[data-gate="error_rate < 5%"] canvas').length"#,
        )
        .await
        {
            Ok(n) if n > 0 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // An undecided gate is shown as such, never as a pass, with the evidence
    // it rests on (the server's own sentence) and how far it has come.
    let undecided = r#"#gate-values tr[data-gate="error_rate < 0.1%"]"#;
    let badge = wait_text(
        &page,
        &format!("{undecided} [data-testid=verdict]"),
        "the strict gate undecided",
        LIMIT,
        |t| t == "undecided",
    )
    .await;
    assert_eq!(badge, "undecided");
    let title: String = eval(
        &page,
        &format!("document.querySelector('{undecided} [data-testid=verdict]').title"),
    )
    .await
    .expect("the badge's title");
    assert!(title.contains("never a pass"), "{title}");
    let sentence = wait_for(
        "the page's evidence to read as the server's",
        LIMIT,
        || async {
            let rollout = daemon.rollout().await?;
            let gate = rollout["gates"]
                .as_array()
                .and_then(|g| g.iter().find(|g| g["name"] == "error_rate < 0.1%"))
                .ok_or("no gate")?;
            let summary: EvidenceSummary =
                serde_json::from_value(gate["evidence"].clone()).map_err(|e| e.to_string())?;
            let shown = text(&page, &format!("{undecided} .evidence"))
                .await
                .unwrap_or_default();
            if shown == summary.to_string() && summary.requests > 0.0 {
                Ok(shown)
            } else {
                Err(format!("page {shown:?}, server {summary}"))
            }
        },
    )
    .await;
    assert!(
        sentence.starts_with("0% errors over") && sentence.contains("upper bound"),
        "{sentence}"
    );
    let progress = text(&page, &format!("{undecided} .progress-line"))
        .await
        .unwrap_or_default();
    assert!(
        progress.contains("of the evidence a pass needs"),
        "{progress}"
    );

    // The promotion gate's bound is on the chart, dashed in the canary's colour.
    let bound_points = wait_for("the bound on the chart", LIMIT, || async {
        let js = r#"(() => {
            const c = state.charts.get('error_rate < 0.1%');
            if (!c) return null;
            const i = c.plot.series.findIndex((s) => String(s.label).includes('confidence bound'));
            if (i < 0 || !c.plot.series[i].dash) return null;
            return c.plot.data[i].filter((v) => v !== null).length;
        })()"#;
        match eval::<Option<u32>>(&page, js).await {
            Ok(Some(n)) if n > 0 => Ok(n),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(bound_points > 0);
    let series: Value = reqwest::get(format!(
        "{}/api/v1/rollouts/default/checkout/series",
        daemon.api
    ))
    .await
    .expect("series")
    .json()
    .await
    .expect("JSON");
    let gate_series = |name: &str| {
        series["gates"]
            .as_array()
            .and_then(|g| g.iter().find(|g| g["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no series {name}: {series}"))
    };
    let strict_series = gate_series("error_rate < 0.1%");
    assert!(
        strict_series["points"].as_array().is_some_and(|p| p
            .iter()
            .any(|p| p["bound"].is_number() && p["verdict"] == "undecided")),
        "{strict_series}"
    );
    // A gate relative to the stable version has no fixed line to draw.
    let relative = gate_series("error_rate < stable + 5%");
    assert!(relative["threshold_value"].is_null(), "{relative}");
    let legend = text(&page, r#".chart[data-gate="error_rate < stable + 5%"]"#)
        .await
        .unwrap_or_default();
    assert!(legend.contains("threshold stable + 5%"), "{legend}");
    let drawn: u32 = eval(
        &page,
        r#"state.charts.get('error_rate < stable + 5%').plot.data[3].filter((v) => v !== null).length"#,
    )
    .await
    .expect("the relative gate's chart");
    assert_eq!(drawn, 0, "no threshold line for a relative gate");
    // The evidence bars' widths are set through the CSSOM: nothing blocked.
    assert_eq!(csp_violations(&page).await, Vec::<String>::new());
    screenshot(&page, "rollout-undecided").await;

    deploy("2s", "");
    wait_text(
        &page,
        "#summary [data-testid=weight]",
        "the weight of step 2",
        LIMIT,
        |t| t == "50%",
    )
    .await;
    wait_text(
        &page,
        "[data-testid=step]",
        "step 2",
        Duration::from_secs(5),
        |t| t == "2 / 3",
    )
    .await;
    let same: String = eval(&page, "window.__sameDocument").await.expect("marker");
    assert_eq!(same, "yes", "updated without a reload");
    let log = wait_text(
        &page,
        "#decision-log",
        "the advance in the log",
        Duration::from_secs(10),
        |t| t.contains("advance"),
    )
    .await;
    assert!(log.contains("step 1 passed"), "{log}");

    // Pause without the token: asked for it, refused, nothing changes.
    click(&page, "button[data-action=pause]").await;
    wait_for("the token prompt", Duration::from_secs(5), || async {
        match eval::<bool>(&page, "document.getElementById('token-dialog').open").await {
            Ok(true) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    click(&page, "#token-ok").await;
    let refused = wait_text(
        &page,
        "#notices",
        "the refusal",
        Duration::from_secs(10),
        |t| t.contains("refused"),
    )
    .await;
    assert!(refused.contains("401"), "{refused}");
    assert_eq!(
        daemon.rollout().await.expect("rollout")["phase"],
        "Progressing"
    );

    // With the token: paused, and the page says so.
    click(&page, "button[data-action=pause]").await;
    let _: Value = eval(
        &page,
        &format!("document.getElementById('token-input').value = '{TOKEN}'"),
    )
    .await
    .expect("type the token");
    click(&page, "#token-ok").await;
    wait_text(
        &page,
        "#notices",
        "the result",
        Duration::from_secs(10),
        |t| t.contains("pause: done"),
    )
    .await;
    wait_text(
        &page,
        "#phase-slot [data-testid=phase]",
        "Paused",
        Duration::from_secs(10),
        |t| t == "Paused",
    )
    .await;
    assert_eq!(daemon.rollout().await.expect("rollout")["phase"], "Paused");
    screenshot(&page, "rollout-paused").await;
}

/// `canaryd demo` as a child process, stopped on drop as a person stops it
/// (Ctrl-C: it stops the Prometheus it started; a SIGKILL would leave that
/// Prometheus running), killed if it has not exited within 20 s.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if !matches!(self.0.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demos_rolled_back_canary_shows_its_reason_breach_and_alert() {
    let api = free_addr();
    let _demo = Demo(
        Command::new(env!("CARGO_BIN_EXE_canaryd"))
            .args(["demo", "--api", &api])
            .env_remove("CANARYD_API_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the demo starts"),
    );
    let api = format!("http://{api}");
    let rollout = wait_for("v3 rolled back", Duration::from_secs(240), || async {
        let r: Value = reqwest::get(format!("{api}/api/v1/rollouts/default/checkout"))
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        if r["canary_version"] == "v3" && r["phase"] == "RolledBack" {
            Ok(r)
        } else {
            Err(r.to_string())
        }
    })
    .await;
    let reason = rollout["last_decision"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let chrome = Chrome::launch().await;
    let page = chrome
        .open(&format!("{api}/rollouts/default/checkout"))
        .await;
    let shown = wait_text(&page, "#reason", "the rollback reason", LIMIT, |t| {
        t.starts_with("Rolled back")
    })
    .await;
    assert!(shown.contains(&reason), "{shown} / {reason}");
    let breached_gate = harness::demo_rollback_gate(&reason)
        .unwrap_or_else(|| panic!("one of the demo's gates in {reason}"));
    let threshold = breached_gate.rsplit(' ').next().unwrap_or_default();
    assert!(shown.contains(breached_gate), "{shown}");
    assert_eq!(
        text(&page, "#summary [data-testid=weight]")
            .await
            .as_deref(),
        Some("0%")
    );
    let judged = text(
        &page,
        &format!(r#"#gate-values tr[data-gate="{breached_gate}"]"#),
    )
    .await
    .unwrap_or_default();
    assert!(
        judged.contains("fail"),
        "the breached gate as judged: {judged}"
    );
    // The breach is on the chart's data and the PromQL in the log.
    let series: Value = reqwest::get(format!("{api}/api/v1/rollouts/default/checkout/series"))
        .await
        .expect("series")
        .json()
        .await
        .expect("JSON");
    let breached = series["gates"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["name"] == breached_gate))
        .and_then(|g| g["points"].as_array())
        .is_some_and(|p| p.iter().any(|p| p["verdict"] == "fail"));
    assert!(breached, "{series}");
    let chart = text(&page, &format!(r#".chart[data-gate="{breached_gate}"]"#))
        .await
        .unwrap_or_default();
    assert!(
        chart.contains("breach") && chart.contains(&format!("threshold {threshold}")),
        "{chart}"
    );
    let log = text(&page, "#decision-log").await.unwrap_or_default();
    assert!(
        log.contains("rollback") && log.contains(r#"version="v3""#),
        "{log}"
    );
    // Each gate's evidence in the log: the verdict rests on a lower bound.
    assert!(
        log.contains("errors over") && log.contains("lower bound"),
        "{log}"
    );
    // The Slack alert of the rollback, delivered to the demo's receiver.
    let alerts = wait_text(
        &page,
        "#alert-log",
        "the rollback alert",
        Duration::from_secs(20),
        |t| t.contains("rolled back") && t.contains("delivered"),
    )
    .await;
    assert!(alerts.contains("slack:file:"), "{alerts}");
    let light = screenshot(&page, "demo-rollback").await;
    click(&page, "#theme").await;
    wait_text(
        &page,
        "#reason",
        "the page after the theme switch",
        Duration::from_secs(5),
        |t| t.starts_with("Rolled back"),
    )
    .await;
    let theme: String = eval(&page, "document.documentElement.dataset.theme")
        .await
        .expect("theme");
    assert_eq!(theme, "dark");
    screenshot(&page, "demo-rollback-dark").await;
    if std::env::var_os("CANARYD_UPDATE_DOCS").is_some() {
        let docs =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/dashboard-rollback.png");
        std::fs::copy(&light, docs).expect("update docs/");
    }

    // The delivery panel under the list: v2 promoted and v3 rolled back is
    // one failure in two finished rollouts, each a bar on today's chart.
    let list = chrome.open(&format!("{api}/")).await;
    let rate = wait_text(
        &list,
        "#delivery [data-testid=change-failure-rate]",
        "the change failure rate",
        LIMIT,
        |t| !t.is_empty(),
    )
    .await;
    assert_eq!(rate, "50%");
    let restore = text(&list, "#delivery [data-testid=time-to-restore]")
        .await
        .unwrap_or_default();
    let lead = text(&list, "#delivery [data-testid=lead-time]")
        .await
        .unwrap_or_default();
    assert!(
        restore.ends_with('s') && lead.ends_with('s'),
        "{restore} / {lead}"
    );
    let bars: Vec<String> = eval(
        &list,
        "[...document.querySelectorAll('[data-testid=delivery-chart] rect')].map((r) => r.getAttribute('class'))",
    )
    .await
    .expect("the chart's bars");
    assert_eq!(bars, ["bar-promoted", "bar-rolled_back"]);
    let row = text(
        &list,
        r#"#delivery-rollouts tr[data-rollout="default/checkout"]"#,
    )
    .await
    .unwrap_or_default();
    assert!(row.contains("50%"), "{row}");
    screenshot(&list, "delivery").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_rollouts_it_explains_how_to_declare_one_and_says_when_the_connection_drops() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("deploy")).expect("deploy dir");
    let addr = free_addr();
    let prometheus = "http://127.0.0.1:9"; // never asked: there is nothing to measure
    let mut daemon = Daemon::start_at(dir.path(), prometheus, &addr, &[]);
    wait_for("the API", LIMIT, || async {
        reqwest::get(format!("{}/readyz", daemon.api))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;
    let chrome = Chrome::launch().await;
    let page = chrome.open(&format!("{}/", daemon.api)).await;
    wait_text(&page, "#empty h1", "the empty state", LIMIT, |t| {
        t == "No rollouts yet"
    })
    .await;
    let help = text(&page, "#empty").await.unwrap_or_default();
    for needle in [
        "--deploy-dir",
        "service: checkout",
        "error_rate_less_than",
        "canaryd validate",
    ] {
        assert!(help.contains(needle), "`{needle}` missing: {help}");
    }
    screenshot(&page, "empty").await;

    daemon.kill();
    wait_text(&page, "#conn", "the lost-connection notice", LIMIT, |t| {
        t.contains("Connection lost")
    })
    .await;
    let _again = Daemon::start_at(dir.path(), prometheus, &addr, &[]);
    wait_text(&page, "#conn", "the reconnection", LIMIT, |t| {
        t.contains("Reconnected")
    })
    .await;
}
