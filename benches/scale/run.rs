//! One run at N rollouts: the exporter, Prometheus and HAProxy up first, then
//! the daemon (start-up timed), two intervals of warm-up, the measurement
//! window with the daemon left alone (CPU, queries, tick times), then the
//! API probes (`wrk`, commands while ticking, hot reloads). Every process is
//! killed when this returns or panics.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::Opts;
use crate::exporter::{Exporter, service};
use crate::measure::{self, buckets, buckets_with, max_bound, sum};
use crate::report::Row;
use crate::{api, fleet, procs};

/// A reading of both processes' counters at one instant.
struct Reading {
    at: Instant,
    daemon_cpu: f64,
    prom_cpu: f64,
    query_requests: f64,
    engine_queries: f64,
    tick_sum: f64,
    tick_count: f64,
    tick_buckets: Vec<(f64, f64)>,
}

const TICK: &str = "canaryd_tick_duration_seconds";
const TURN: &str = "canaryd_control_loop_turn_seconds";

async fn read(
    http: &reqwest::Client,
    api: &str,
    prom: &str,
    daemon: u32,
    prometheus: u32,
    hz: f64,
) -> Result<Reading, String> {
    let own = measure::scrape(http, &format!("{api}/metrics")).await?;
    let p = measure::scrape(http, &format!("{prom}/metrics")).await?;
    Ok(Reading {
        at: Instant::now(),
        daemon_cpu: measure::cpu_seconds(daemon, hz)?,
        prom_cpu: measure::cpu_seconds(prometheus, hz)?,
        query_requests: sum(
            &p,
            "prometheus_http_requests_total",
            &["handler=\"/api/v1/query\""],
        ),
        engine_queries: sum(
            &p,
            "prometheus_engine_query_duration_seconds_count",
            &["slice=\"inner_eval\""],
        ),
        tick_sum: sum(&own, &format!("{TICK}_sum"), &[]),
        tick_count: sum(&own, &format!("{TICK}_count"), &[]),
        tick_buckets: buckets(&own, TICK),
    })
}

/// Runs the scenario at `n` rollouts with the daemon `binary`.
pub async fn run(opts: &Opts, binary: &Path, label: &str, n: usize) -> Result<Row, String> {
    if !binary.exists() {
        return Err(format!("no daemon binary at {}", binary.display()));
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| e.to_string())?;
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let hz = measure::clock_ticks();
    let step = |what: &str| eprintln!("[N={n}] {what}");

    step("exporter, Prometheus and HAProxy");
    let exporter = Exporter::start(n).await?;
    let (prometheus, prom) = procs::prometheus(dir.path(), exporter.addr, n, &http).await?;
    let (_haproxy, socket) = procs::haproxy(dir.path(), exporter.addr, n).await?;
    let deploy = dir.path().join("deploy");
    fleet::write_all(&deploy, n, &socket, opts.interval, opts.first_step)?;

    step("the daemon");
    let listen = format!("127.0.0.1:{}", procs::free_port()?);
    let api = format!("http://{listen}");
    let spawned = Instant::now();
    let mut daemon = procs::daemon(binary, dir.path(), &prom, &listen)?;
    let ready_s =
        api::ready_after(&http, &api, &mut daemon, spawned, Duration::from_secs(300)).await?;
    step(&format!("ready after {ready_s:.2} s; warm-up"));
    tokio::time::sleep(opts.interval * 2).await;

    step("measuring (the daemon left alone)");
    let before = read(&http, &api, &prom, daemon.pid, prometheus.pid, hz).await?;
    tokio::time::sleep(opts.duration).await;
    let after = read(&http, &api, &prom, daemon.pid, prometheus.pid, hz).await?;
    let window = after.at.duration_since(before.at).as_secs_f64();
    let ticks = window / opts.interval.as_secs_f64();
    let tick_count = after.tick_count - before.tick_count;
    let mut row = Row {
        label: label.into(),
        n,
        interval_seconds: opts.interval.as_secs_f64(),
        ticks,
        daemon_cpu_per_tick_ms: (after.daemon_cpu - before.daemon_cpu) / ticks * 1000.0,
        tick_count,
        tick_mean_ms: if tick_count > 0.0 {
            (after.tick_sum - before.tick_sum) / tick_count * 1000.0
        } else {
            f64::NAN
        },
        tick_max_bound_ms: max_bound(&before.tick_buckets, &after.tick_buckets).map(|s| s * 1000.0),
        tick_top_bound_ms: measure::top_bound(&after.tick_buckets).map(|s| s * 1000.0),
        query_requests_per_tick: (after.query_requests - before.query_requests) / ticks,
        engine_queries_per_tick: (after.engine_queries - before.engine_queries) / ticks,
        prometheus_cpu_per_tick_s: (after.prom_cpu - before.prom_cpu) / ticks,
        rss_mb: measure::rss_mb(daemon.pid)?,
        fds: measure::fds(daemon.pid)?,
        ready_s,
        ..Row::default()
    };

    // What was seen so far, in case a later step does not finish.
    step(&format!("so far: {}", row.markdown()));

    // From here on a step that fails is noted and the next one still runs.
    step("the list and one rollout under wrk");
    let page = "?limit=100&view=summary";
    let list_bytes = api::census(&http, &api, page).await.map(|c| c.bytes);
    let list = format!("{api}/api/v1/rollouts{page}");
    if let Some(bytes) = kept(&mut row.notes, list_bytes) {
        let list = measure::wrk(&list, opts.wrk_seconds, bytes).await;
        row.list = kept(&mut row.notes, list);
    }
    let one = format!("{api}/api/v1/rollouts/default/{}", service(n / 2));
    let single = measure::wrk(&one, opts.wrk_seconds, 0).await;
    row.single = kept(&mut row.notes, single);

    step("commands while ticking");
    let span = if opts.short {
        opts.interval
    } else {
        opts.interval * 3
    };
    let turns_before = measure::scrape(&http, &format!("{api}/metrics")).await;
    let commands = api::commands(&http, &api, n / 2, span).await;
    let turns_after = measure::scrape(&http, &format!("{api}/metrics")).await;
    if let (Ok(before), Ok(after)) = (&turns_before, &turns_after) {
        for work in ["Command", "Tick", "Decide", "TickEnd", "Reload"] {
            let label = format!("work=\"{work}\"");
            let longest = max_bound(
                &buckets_with(before, TURN, &[&label]),
                &buckets_with(after, TURN, &[&label]),
            );
            if let Some(bound) = longest {
                row.longest_turns_ms.insert(work.into(), bound * 1000.0);
            }
        }
    }
    match commands {
        Ok((mut took, refused)) => {
            row.commands = took.len();
            row.refused = refused.len();
            row.notes.extend(refused.into_iter().take(1));
            (row.command_p50_ms, row.command_p99_ms, row.command_max_ms) =
                measure::quantiles(&mut took);
        }
        Err(e) => row.notes.push(e),
    }

    step("hot reloads");
    match api::reloads(&http, &api, &deploy, &socket, opts.interval, 3).await {
        Ok(r) => row.reload_ms = r,
        Err(e) => row.notes.push(e),
    }

    match api::census(&http, &api, "").await {
        Ok(c) => {
            row.listed = c.listed;
            row.decided = c.decided;
            row.measured = c.measured;
            row.phases = c.phases;
        }
        Err(e) => row.notes.push(e),
    }
    Ok(row)
}

/// A step's result, or its failure's reason kept in `notes`.
fn kept<T>(notes: &mut Vec<String>, done: Result<T, String>) -> Option<T> {
    done.map_err(|e| notes.push(e)).ok()
}
