//! Scenario: the state disk full. Simulated by lowering the daemon's
//! RLIMIT_FSIZE to 4 KiB at run time (`prlimit --fsize`, SIGXFSZ ignored):
//! every write past a file's first 4 KiB then fails (EFBIG or a short write,
//! which SQLite reports as a full disk / write error), so every commit fails
//! as on a full disk. (A tiny tmpfs filled with ballast needs root, and
//! SQLite can ride it out by overwriting WAL space it already holds.) While
//! full, the canary starts failing. Invariants: `/readyz` 503 and the API's
//! `store_error`, `canaryd_errors_total{kind="store"}` grows, the rollback's
//! weight cut is applied without its commit and never undone, and after
//! recovery the rollback is committed: a contiguous log, nothing twice, its
//! alert sent once.

use std::process::Command;
use std::time::{Duration, SystemTime};

use crate::Opts;
use crate::checks;
use crate::probe::{Outcome, Probe};
use crate::report::Rows;
use crate::rig::{LIMIT, Rig, brief, wait};

pub async fn run(opts: &Opts) -> Rows {
    let mut rows = Rows::new("disk full");
    if let Err(e) = scenario(opts, &mut rows).await {
        rows.aborted(&e);
    }
    rows
}

fn fsize(pid: u32, limit: &str) -> Result<(), String> {
    let out = Command::new("prlimit")
        .arg("--pid")
        .arg(pid.to_string())
        .arg(format!("--fsize={limit}:unlimited"))
        .output()
        .map_err(|e| format!("prlimit: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

async fn scenario(opts: &Opts, rows: &mut Rows) -> Result<(), String> {
    let full_for = Duration::from_secs(if opts.short { 5 } else { 15 });
    let rig = Rig::new().await?;
    let plan = "    - deploy: 20%\n      duration: 10m\n    - deploy: 100%";
    rig.write_file("checkout.yaml", &rig.builtin_file(plan, ""))?;
    rig.start_daemon()?;
    let probe = Probe::start(&format!("http://{}/", rig.router), 100.0);
    rig.wait_rollout("step 1 watched", LIMIT, |r| {
        r["phase"] == "Progressing" && r["step_elapsed_seconds"].as_f64().is_some_and(|s| s >= 2.0)
    })
    .await?;
    let pid = rig.pid().ok_or("no daemon")?;
    let errors_before = rig
        .metric("canaryd_errors_total", &["kind=\"store\""])
        .await?;

    fsize(pid, "4096")?;
    let full = SystemTime::now();
    let not_ready = wait("/readyz 503", Duration::from_secs(20), || async {
        match rig.status("/readyz").await? {
            503 => Ok(()),
            s => Err(format!("{s}")),
        }
    })
    .await;
    let shown = rig
        .get_json("/api/v1/rollouts")
        .await
        .map(|v| v["store_error"].is_string())
        .unwrap_or(false);
    rows.check(
        "/readyz 503 and store_error in the API while full",
        not_ready.is_ok() && shown,
        format!(
            "{}; store_error shown: {shown}",
            not_ready
                .map(|_| format!(
                    "503 after {:.1}s",
                    full.elapsed().unwrap_or_default().as_secs_f64()
                ))
                .unwrap_or_else(|e| e)
        ),
    );
    let errors = rig
        .metric("canaryd_errors_total", &["kind=\"store\""])
        .await?;
    rows.check(
        "canaryd_errors_total{kind=\"store\"} grows",
        errors > errors_before,
        format!("{errors_before} → {errors}"),
    );

    rig.set_canary(r#"{"error_rate": "50%"}"#).await?;
    let fault = SystemTime::now();
    // The cut shows as two quiet seconds: no canary answer among the requests.
    let cut = wait(
        "no canary answer for 2s",
        Duration::from_secs(30),
        || async {
            let now = SystemTime::now();
            let recent = probe.between(now - Duration::from_secs(2), now);
            let canary = recent
                .iter()
                .filter(|s| {
                    matches!(
                        s.outcome,
                        Outcome::Canary | Outcome::ServerError { canary: true }
                    )
                })
                .count();
            if canary == 0 && recent.len() >= 50 {
                Ok(now - Duration::from_secs(2))
            } else {
                Err(format!("{canary}/{} to the canary", recent.len()))
            }
        },
    )
    .await;
    let cut_at = match cut {
        Ok(t) => {
            rows.check(
                "the rollback's weight cut applies while full",
                true,
                format!(
                    "canary traffic stopped {:.1}s after the fault",
                    t.duration_since(fault).unwrap_or_default().as_secs_f64()
                ),
            );
            t
        }
        Err(e) => {
            rows.check("the rollback's weight cut applies while full", false, e);
            SystemTime::now()
        }
    };
    let left = full_for.saturating_sub(full.elapsed().unwrap_or_default());
    tokio::time::sleep(left.max(Duration::from_secs(3))).await; // still full: a fixed pace
    let still_full = SystemTime::now();
    let after_cut = probe.between(cut_at, still_full);
    let leaked = after_cut
        .iter()
        .filter(|s| {
            matches!(
                s.outcome,
                Outcome::Canary | Outcome::ServerError { canary: true }
            )
        })
        .count();
    rows.check(
        "the cut is never undone without a commit",
        leaked == 0,
        format!(
            "{leaked}/{} requests to the canary after the cut",
            after_cut.len()
        ),
    );

    fsize(pid, "unlimited")?;
    let ready = wait("/readyz 200", LIMIT, || async {
        match rig.status("/readyz").await? {
            200 => Ok(()),
            s => Err(format!("{s}")),
        }
    })
    .await;
    let rolled = rig
        .wait_rollout("RolledBack", LIMIT, |r| r["phase"] == "RolledBack")
        .await;
    rows.result(
        "after recovery: ready, the rollback committed",
        ready.and(rolled).map(|r| brief(&r)),
    );
    let log = rig.decisions().await?;
    rows.result("decision log contiguous", checks::contiguous(&log));
    rows.result("no decision twice", checks::nothing_twice(&log));
    let sent = wait("the rollback alert", Duration::from_secs(30), || async {
        let n = rig
            .receiver
            .accepted()
            .iter()
            .filter(|m| m.header("x-canaryd-event").as_deref() == Some("rolled_back"))
            .count();
        if n >= 1 {
            Ok(n)
        } else {
            Err("none yet".into())
        }
    })
    .await;
    rows.result(
        "the rollback alert sent once",
        match sent {
            Ok(1) => Ok("1 delivery".into()),
            Ok(n) => Err(format!("{n} deliveries")),
            Err(e) => Err(e),
        },
    );
    Ok(())
}
