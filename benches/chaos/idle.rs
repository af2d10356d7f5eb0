//! Scenario: 2,000 idle connections (connected, sending nothing) to the
//! built-in router and 2,000 to the API, held while stable traffic flows
//! (the daemon at the usual open-file limit, 1024; its own limits at their
//! defaults: 256 per router listener, 128 for the API, 10 s header timeout).
//! Invariants: the router's success rate during the flood is no worse than
//! before it (tolerance from both sample counts), `/healthz` answers on a
//! fresh connection, the daemon survives and answers afterwards.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use tokio::net::TcpStream;

use crate::Opts;
use crate::checks::rate_holds;
use crate::probe::{Probe, count};
use crate::report::Rows;
use crate::rig::{LIMIT, Rig, wait};

const FLOOD: usize = 2_000;

pub async fn run(opts: &Opts) -> Rows {
    let mut rows = Rows::new("idle connections");
    if let Err(e) = scenario(opts, &mut rows).await {
        rows.aborted(&e);
    }
    rows
}

/// `n` connections that send nothing (a connect not accepted within 2 s is
/// left out).
async fn idle(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let each = (0..n).map(|_| async move {
        tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr))
            .await
            .ok()?
            .ok()
    });
    futures::future::join_all(each)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// `/healthz` on a fresh connection every 250 ms for `span`: (answered 200,
/// tried, the longest run of failures in a row).
async fn healthz_during(url: String, span: Duration) -> (usize, usize, usize) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(2))
        .build()
        .expect("HTTP client");
    let (mut ok, mut tried, mut run, mut longest) = (0, 0, 0, 0);
    let until = tokio::time::Instant::now() + span;
    while tokio::time::Instant::now() < until {
        tried += 1;
        if client
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            ok += 1;
            run = 0;
        } else {
            run += 1;
            longest = usize::max(longest, run);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    (ok, tried, longest)
}

async fn scenario(opts: &Opts, rows: &mut Rows) -> Result<(), String> {
    let hold = Duration::from_secs(if opts.short { 12 } else { 30 });
    let rig = Rig::new().await?;
    let plan = "    - deploy: 20%\n      duration: 10m\n    - deploy: 100%";
    rig.write_file("checkout.yaml", &rig.builtin_file(plan, ""))?;
    rig.start_daemon()?;
    rig.wait_rollout("the rollout to start", LIMIT, |r| {
        r["phase"] == "Progressing"
    })
    .await?;
    let probe = Probe::start(&format!("http://{}/", rig.router), 100.0);
    let base_from = SystemTime::now();
    tokio::time::sleep(Duration::from_secs(5)).await; // a baseline: a fixed pace
    let flood_from = SystemTime::now();
    let (router_flood, api_flood) = tokio::join!(idle(rig.router, FLOOD), idle(rig.api, FLOOD));
    let opened = (router_flood.len(), api_flood.len());
    let (health_ok, health_tried, in_a_row) = healthz_during(rig.api_url("/healthz"), hold).await;
    let flood_to = SystemTime::now();
    let fds = rig
        .pid()
        .and_then(|p| std::fs::read_dir(format!("/proc/{p}/fd")).ok())
        .map(|d| d.count());
    drop((router_flood, api_flood));

    let base = count(&probe.between(base_from, flood_from));
    let during = count(&probe.between(flood_from, flood_to));
    rows.result(
        "stable traffic keeps flowing",
        rate_holds(
            "router answered",
            (base.ok, base.total),
            (during.ok, during.total),
            0.99,
        )
        .map(|t| format!("{t}; {} + {} idle connections opened", opened.0, opened.1)),
    );
    let healthz_rate = health_ok as f64 / health_tried.max(1) as f64;
    // A liveness probe restarts a daemon after 3 failures in a row (the
    // kubelet's default failureThreshold): fewer in a row is a daemon that
    // stays up. A probe caught in the flood's first burst can be closed.
    rows.check(
        "/healthz answers on a fresh connection (never 3 failures in a row)",
        health_tried > 0 && in_a_row < 3,
        format!(
            "{health_ok}/{health_tried} ({:.0}%) over {:.0}s of flood, at most {in_a_row} failed in a row",
            healthz_rate * 100.0,
            hold.as_secs_f64()
        ),
    );
    let survived = rig.exited().is_none();
    let answers = wait(
        "the API after the flood",
        Duration::from_secs(20),
        || async { rig.rollout().await.map(|_| ()) },
    )
    .await;
    rows.check(
        "the daemon survives and answers afterwards",
        survived && answers.is_ok(),
        format!(
            "alive: {survived}, descriptors during the flood: {}, limit 1024",
            fds.map(|n| n.to_string()).unwrap_or("?".into())
        ),
    );
    Ok(())
}
