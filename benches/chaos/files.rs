//! Scenario: the deploy file renamed, then removed, then restored, with
//! traffic on the built-in router's port throughout. Invariants (README,
//! *Hot reload*): no connection is ever refused on the service port; a rename
//! keeps the rollout as it was; a removal aborts the canary (weight 0, no
//! canary answer after the cut) while the router keeps serving stable; the
//! restored file hands the router back with the rollout still Aborted (an
//! aborted version is not started again by itself), and `retry` restarts it.

use std::time::{Duration, SystemTime};

use crate::Opts;
use crate::probe::{Outcome, Probe, count};
use crate::report::Rows;
use crate::rig::{LIMIT, Rig, brief};

pub async fn run(opts: &Opts) -> Rows {
    let mut rows = Rows::new("deploy file");
    if let Err(e) = scenario(opts, &mut rows).await {
        rows.aborted(&e);
    }
    rows
}

async fn scenario(opts: &Opts, rows: &mut Rows) -> Result<(), String> {
    let gone = Duration::from_secs(if opts.short { 4 } else { 10 });
    let rig = Rig::new().await?;
    let plan = "    - deploy: 20%\n      duration: 10m\n    - deploy: 100%";
    let text = rig.builtin_file(plan, "");
    rig.write_file("checkout.yaml", &text)?;
    let rig = rig;
    rig.start_daemon()?;
    rig.wait_rollout("step 1 at 20%", LIMIT, |r| {
        r["phase"] == "Progressing" && r["canary_weight"] == 20.0
    })
    .await?;
    let probe = Probe::start(&format!("http://{}/", rig.router), 100.0);
    let started = SystemTime::now();
    let deploy = rig.dir.path().join("deploy");

    // Renamed: the same rollout goes on under its new file name.
    std::fs::rename(deploy.join("checkout.yaml"), deploy.join("shop.yaml"))
        .map_err(|e| e.to_string())?;
    let renamed = rig
        .wait_rollout("the new file name", Duration::from_secs(15), |r| {
            r["file"] == "shop.yaml"
        })
        .await;
    let before = rig.decisions().await?;
    let stopped = before
        .iter()
        .any(|d| matches!(d["action"].as_str(), Some("abort" | "rollback")));
    rows.check(
        "renamed: the rollout goes on",
        renamed
            .as_ref()
            .is_ok_and(|r| r["phase"] == "Progressing" && r["canary_weight"] == 20.0)
            && !stopped,
        renamed.map(|r| brief(&r)).unwrap_or_else(|e| e),
    );

    // Removed: the canary is aborted, the router keeps serving stable; the
    // rollout leaves the API (its state and log stay, checked once restored).
    std::fs::remove_file(deploy.join("shop.yaml")).map_err(|e| e.to_string())?;
    let removed = SystemTime::now();
    let unmanaged = crate::rig::wait("the rollout unmanaged", Duration::from_secs(15), || async {
        match rig.status("/api/v1/rollouts/default/checkout").await? {
            404 => Ok(()),
            s => Err(format!("{s}")),
        }
    })
    .await;
    let unmanaged_after = removed.elapsed().unwrap_or_default().as_secs_f64();
    let cut = SystemTime::now();
    let left = gone.saturating_sub(removed.elapsed().unwrap_or_default());
    tokio::time::sleep(left.max(Duration::from_secs(2))).await; // gone a while: a fixed pace
    let after_cut = probe.between(cut + Duration::from_millis(500), SystemTime::now());
    let to_canary = after_cut
        .iter()
        .filter(|s| s.outcome == Outcome::Canary)
        .count();
    rows.check(
        "removed: no canary traffic after the abort",
        to_canary == 0 && !after_cut.is_empty(),
        format!("{to_canary}/{} to the canary", after_cut.len()),
    );

    // Restored: the router is handed back; the aborted version stays aborted.
    rig.write_file("checkout.yaml", &text)?;
    let back = rig
        .wait_rollout("the file back", Duration::from_secs(15), |r| {
            r["file"] == "checkout.yaml" && r["file_error"].is_null()
        })
        .await;
    let log = rig.decisions().await?;
    let abort = log.iter().rev().find(|d| d["action"] == "abort").map(|d| {
        (
            d["reason"].as_str().unwrap_or("").to_string(),
            d["weight"].clone(),
        )
    });
    rows.check(
        "removed: the canary is aborted (weight 0, recorded)",
        unmanaged.is_ok()
            && abort
                .as_ref()
                .is_some_and(|(r, w)| r.contains("removed") && w == 0.0),
        format!("unmanaged after {unmanaged_after:.1}s ({unmanaged:?}); abort record: {abort:?}"),
    );
    rows.check(
        "restored: still Aborted, not restarted by itself",
        back.as_ref().is_ok_and(|r| r["phase"] == "Aborted"),
        back.as_ref().map(brief).unwrap_or_else(|e| e.clone()),
    );
    let retry = rig.command("retry").await;
    let again = rig
        .wait_rollout("Progressing after retry", Duration::from_secs(30), |r| {
            r["phase"] == "Progressing" && r["canary_weight"] == 20.0
        })
        .await;
    rows.result(
        "restored: retry restarts it at step 1",
        again.map(|r| format!("retry → {retry:?}, {}", brief(&r))),
    );
    let all = count(&probe.between(started, SystemTime::now()));
    rows.check(
        "no connection refused on the service port",
        all.refused == 0 && all.total > 0,
        format!(
            "{} requests: {} answered, {} refused, {} other failures, {} 5xx",
            all.total, all.ok, all.refused, all.failed, all.server_errors
        ),
    );
    Ok(())
}
