//! Scenario: Prometheus stopped (killed) and later replaced by a fresh one at
//! the same address; then Prometheus slowed beyond the daemon's query timeout
//! (1 s here; every answer delayed 2.5 s by the proxy). Invariants, for each
//! outage: no advance or promotion decided while data was missing, the step
//! held (Progressing without watched time, or Paused), watched time grew by at
//! most two intervals, and the rollout resumed once data was back; in the end
//! it promotes.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::Opts;
use crate::probe::Probe;
use crate::report::Rows;
use crate::rig::{LIMIT, Rig, brief};

pub async fn run(opts: &Opts) -> Rows {
    let mut rows = Rows::new("prometheus");
    if let Err(e) = scenario(opts, &mut rows).await {
        rows.aborted(&e);
    }
    rows
}

fn watched(r: &Value) -> f64 {
    r["step_elapsed_seconds"].as_f64().unwrap_or_default()
}

async fn scenario(opts: &Opts, rows: &mut Rows) -> Result<(), String> {
    let (outage, step2) = if opts.short { (6, 10) } else { (20, 25) };
    let outage = Duration::from_secs(outage);
    let mut rig = Rig::new().await?;
    let plan = format!(
        "    - deploy: 10%\n      duration: 3s\n    - deploy: 50%\n      duration: {step2}s\n    - deploy: 100%"
    );
    rig.write_file("checkout.yaml", &rig.builtin_file(&plan, ""))?;
    rig.start_daemon()?;
    let _probe = Probe::start(&format!("http://{}/", rig.router), 50.0);
    rig.wait_rollout("step 2 watched", LIMIT, |r| {
        r["step"] == 2 && r["phase"] == "Progressing" && watched(r) >= 1.0
    })
    .await?;

    for kind in ["stopped", "slowed"] {
        let before = rig.rollout().await?;
        let from = SystemTime::now();
        if kind == "stopped" {
            rig.stop_prometheus();
        } else {
            rig.prom_proxy.delay(Duration::from_millis(2500));
        }
        // Let the outage last (a fixed pace on purpose), watching the rollout.
        let mut phases = std::collections::BTreeSet::new();
        let mut last = before.clone();
        let until = tokio::time::Instant::now() + outage;
        while tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if let Ok(r) = rig.rollout().await {
                phases.insert(r["phase"].as_str().unwrap_or("?").to_string());
                last = r;
            }
        }
        let to = SystemTime::now();
        if kind == "stopped" {
            rig.restart_prometheus().await?;
        } else {
            rig.prom_proxy.delay(Duration::ZERO);
        }
        let log = rig.decisions().await?;
        let moved: Vec<String> = log
            .iter()
            .filter(|d| {
                crate::rig::decided_at(d).is_some_and(|t| t >= from && t <= to)
                    && matches!(d["action"].as_str(), Some("advance" | "promote"))
            })
            .map(|d| format!("{} at seq {}", d["action"], d["seq"]))
            .collect();
        let held = last["step"] == before["step"]
            && (last["phase"] == "Paused" || last["phase"] == "Progressing");
        rows.check(
            &format!("{kind}: never advanced or promoted without data"),
            moved.is_empty() && held,
            format!(
                "{:.0}s outage: {} → {}, phases seen {phases:?}{}",
                outage.as_secs_f64(),
                brief(&before),
                brief(&last),
                if moved.is_empty() {
                    String::new()
                } else {
                    format!(", moved: {}", moved.join(", "))
                }
            ),
        );
        let grew = if last["step"] == before["step"] {
            watched(&last) - watched(&before)
        } else {
            f64::INFINITY
        };
        rows.check(
            &format!("{kind}: watched time frozen while data was missing"),
            grew <= 2.0,
            format!("grew {grew:.1}s over the outage (≤ 2 intervals)"),
        );
        let base = watched(&last);
        let resumed = rig
            .wait_rollout("the rollout to resume", LIMIT, |r| {
                r["phase"] == "Progressing"
                    && (watched(r) > base + 1.0 || r["step"] != last["step"])
            })
            .await;
        rows.result(
            &format!("{kind}: resumed once data was back"),
            resumed.map(|r| brief(&r)),
        );
    }
    let done = rig
        .wait_rollout("promotion", Duration::from_secs(90), |r| {
            r["phase"] == "Promoted"
        })
        .await;
    rows.result("promotes in the end", done.map(|r| brief(&r)));
    Ok(())
}
