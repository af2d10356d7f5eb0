//! Scenario: the canary app killed mid-step (its listener and connections
//! dropped) and restarted on the same address later. Invariants: no request
//! goes to the dead canary beyond the router's health interval (1 s, plus
//! 0.5 s for the request in flight), the rollout takes the canary's weight
//! away and pauses, then gets its step weight back and resumes when the
//! canary is ready (README: unready → resume), and promotes.

use std::time::{Duration, SystemTime};

use crate::Opts;
use crate::probe::{Outcome, Probe};
use crate::report::Rows;
use crate::rig::{LIMIT, Rig, brief};

pub async fn run(opts: &Opts) -> Rows {
    let mut rows = Rows::new("canary killed");
    if let Err(e) = scenario(opts, &mut rows).await {
        rows.aborted(&e);
    }
    rows
}

async fn scenario(opts: &Opts, rows: &mut Rows) -> Result<(), String> {
    let (down, step) = if opts.short { (5, 8) } else { (15, 15) };
    let mut rig = Rig::new().await?;
    let plan = format!("    - deploy: 30%\n      duration: {step}s\n    - deploy: 100%");
    rig.write_file("checkout.yaml", &rig.builtin_file(&plan, ""))?;
    rig.start_daemon()?;
    let probe = Probe::start(&format!("http://{}/", rig.router), 100.0);
    rig.wait_rollout("step 1 at 30%", LIMIT, |r| {
        r["phase"] == "Progressing"
            && r["canary_weight"] == 30.0
            && r["step_elapsed_seconds"].as_f64().is_some_and(|s| s >= 1.0)
    })
    .await?;

    rig.kill_canary();
    let killed = SystemTime::now();
    let cut = rig
        .wait_rollout("the canary's weight taken away", LIMIT, |r| {
            r["canary_weight"] == 0.0
        })
        .await;
    rows.result(
        "weight 0 while the canary is dead",
        cut.map(|r| {
            format!(
                "{} after {:.1}s",
                brief(&r),
                killed.elapsed().unwrap_or_default().as_secs_f64()
            )
        }),
    );
    let paused = rig
        .wait_rollout("a pause", LIMIT, |r| r["phase"] == "Paused")
        .await;
    rows.result("the rollout pauses", paused.map(|r| brief(&r)));
    // The canary stays dead a while (a fixed pace on purpose).
    let left = Duration::from_secs(down).saturating_sub(killed.elapsed().unwrap_or_default());
    tokio::time::sleep(left).await;
    let restarted = SystemTime::now();
    rig.restart_canary().await?;

    let health = Duration::from_millis(1500);
    let after = probe.between(killed, restarted);
    let late: Vec<_> = after
        .iter()
        .filter(|s| !s.outcome.ok() && s.sent > killed + health)
        .collect();
    let early = after
        .iter()
        .filter(|s| !s.outcome.ok() && s.sent <= killed + health)
        .count();
    let stable_ok = after
        .iter()
        .filter(|s| s.outcome == Outcome::Stable)
        .count();
    rows.check(
        "no request to the dead canary beyond the health interval",
        late.is_empty(),
        format!(
            "{} requests while dead: {early} failed within 1.5s of the kill, {} after, {stable_ok} served by stable",
            after.len(),
            late.len()
        ),
    );
    let resumed = rig
        .wait_rollout("the step weight back", LIMIT, |r| {
            r["phase"] == "Progressing" && r["canary_weight"] == 30.0
        })
        .await;
    rows.result(
        "resumes at its step weight when the canary is ready",
        resumed.map(|r| {
            format!(
                "{} after {:.1}s",
                brief(&r),
                restarted.elapsed().unwrap_or_default().as_secs_f64()
            )
        }),
    );
    let done = rig
        .wait_rollout("promotion", Duration::from_secs(90), |r| {
            r["phase"] == "Promoted"
        })
        .await;
    rows.result("promotes in the end", done.map(|r| brief(&r)));
    Ok(())
}
