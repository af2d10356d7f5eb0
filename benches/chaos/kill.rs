//! Scenario: the daemon SIGKILLed at random instants over a rollout and
//! restarted each time. Invariants: the decision log is contiguous, no
//! decision is taken twice, every alert reaches the receiver exactly once
//! (a duplicate is forgiven only when the kill fell within 100 ms after its
//! first delivery: the documented instant between the receiver's 200 and the
//! outbox write), and the canary never serves above the committed weight.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use crate::checks;
use crate::probe::Probe;
use crate::report::Rows;
use crate::rig::{LIMIT, Rig, wait};
use crate::{Opts, Rng};

pub async fn run(opts: &Opts, rng: &mut Rng) -> Rows {
    let mut rows = Rows::new("sigkill");
    if let Err(e) = scenario(opts, rng, &mut rows).await {
        rows.aborted(&e);
    }
    rows
}

async fn scenario(opts: &Opts, rng: &mut Rng, rows: &mut Rows) -> Result<(), String> {
    let (kills, steps, step_secs) = if opts.short { (3, 3, 4) } else { (20, 6, 8) };
    let rig = Rig::new().await?;
    let mut plan = String::new();
    for i in 1..=steps {
        plan.push_str(&format!(
            "    - deploy: {}%\n      duration: {step_secs}s\n",
            i * 10
        ));
    }
    plan.push_str("    - deploy: 100%");
    rig.write_file("checkout.yaml", &rig.builtin_file(&plan, ""))?;
    rig.start_daemon()?;
    rig.wait_rollout("the rollout to start", LIMIT, |r| {
        r["phase"] == "Progressing"
    })
    .await?;
    let probe = Probe::start(&format!("http://{}/", rig.router), 50.0);

    // Kill at a random instant 0.3–2.0 s after each start is answering
    // (downtime does not count as watched time, so the rollout outlasts the
    // kills), unless the rollout is over.
    let mut killed_at: Vec<SystemTime> = Vec::new();
    let mut restarts = Vec::new();
    while killed_at.len() < kills {
        let r = rig.rollout().await?;
        if r["phase"] != "Progressing" && r["phase"] != "Paused" {
            break;
        }
        // Fixed pace on purpose: time passes while the daemon works.
        tokio::time::sleep(Duration::from_millis(rng.range(300, 2000))).await;
        rig.kill_daemon();
        killed_at.push(SystemTime::now());
        let restarted = Instant::now();
        rig.start_daemon()?;
        wait("the restarted daemon to answer", LIMIT, || async {
            if let Some(status) = rig.exited() {
                return Ok(Err(format!("exited: {status}")));
            }
            rig.rollout().await.map(|_| Ok(()))
        })
        .await??;
        restarts.push(restarted.elapsed().as_secs_f64());
    }
    rows.check(
        &format!("{kills} kills landed during the rollout"),
        killed_at.len() == kills,
        format!(
            "{} kills, restart to answering {:.2}–{:.2}s",
            killed_at.len(),
            restarts.iter().copied().fold(f64::INFINITY, f64::min),
            restarts.iter().copied().fold(0.0, f64::max)
        ),
    );
    let done = rig
        .wait_rollout("promotion", Duration::from_secs(120), |r| {
            r["phase"] == "Promoted"
        })
        .await;
    rows.result(
        "the rollout promotes after the kills",
        done.map(|r| crate::rig::brief(&r)),
    );
    let log = rig.decisions().await?;
    rows.result("decision log contiguous", checks::contiguous(&log));
    rows.result("no decision twice", checks::nothing_twice(&log));
    rows.result(
        "served weight never above committed",
        checks::served_within_committed(&probe.samples(), &log),
    );
    rows.result(
        "every alert delivered exactly once",
        alerts_once(&rig, &killed_at).await,
    );
    Ok(())
}

async fn alerts_once(rig: &Rig, killed_at: &[SystemTime]) -> Result<String, String> {
    let deliveries = wait("every alert delivered", LIMIT, || async {
        let a = rig.alerts().await?;
        if !a.is_empty() && a.iter().all(|d| d["state"] == "delivered") {
            Ok(a)
        } else {
            Err(format!("{} deliveries, not all delivered", a.len()))
        }
    })
    .await?;
    let mut by_key: BTreeMap<String, Vec<SystemTime>> = BTreeMap::new();
    let now_i = Instant::now();
    let now_s = SystemTime::now();
    for m in rig.receiver.accepted() {
        let key = m.header("idempotency-key").unwrap_or_default();
        let at = now_s - now_i.duration_since(m.at);
        by_key.entry(key).or_default().push(at);
    }
    let mut forgiven = 0;
    let mut twice = Vec::new();
    for (key, times) in &by_key {
        if times.len() < 2 {
            continue;
        }
        // The first delivery just before a kill: the documented instant.
        let first = times.iter().min().copied().unwrap_or(now_s);
        let instant = killed_at.iter().any(|k| {
            k.duration_since(first)
                .is_ok_and(|d| d < Duration::from_millis(100))
        });
        if instant && times.len() == 2 {
            forgiven += 1;
        } else {
            twice.push(format!("{key} ×{}", times.len()));
        }
    }
    let text = format!(
        "{} deliveries, {} distinct received, {forgiven} repeated at the documented instant",
        deliveries.len(),
        by_key.len()
    );
    if twice.is_empty() && by_key.len() == deliveries.len() {
        Ok(text)
    } else {
        Err(format!("{text}; more than once: {}", twice.join(", ")))
    }
}
