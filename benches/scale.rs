//! The scale runner (issue 14): N rollouts in one `canaryd run`, over a real
//! Prometheus scraping synthetic `http-red` series of N services, each rollout
//! on its own backend of one shared HAProxy; measures the daemon only from
//! outside (its CLI, files, HTTP API, `/metrics` and `/proc`), so it runs
//! against any build of the daemon. See BENCHMARKS.md, *Scale*.
//!
//! `cargo bench --bench scale -- --n 100,1000 [--canaryd PATH] [--duration
//! 120s] [--interval 10s] [--label NAME] [--short]`. `--short` (CI): N = 50,
//! 40 s, exits 1 unless every rollout was measured and decided on; it
//! asserts no timing. Needs `prometheus`, `haproxy` and `wrk` on the PATH.

#[path = "scale/api.rs"]
mod api;
#[path = "scale/exporter.rs"]
mod exporter;
#[path = "scale/fleet.rs"]
mod fleet;
#[path = "scale/measure.rs"]
mod measure;
#[path = "scale/procs.rs"]
mod procs;
#[path = "scale/report.rs"]
mod report;
#[path = "scale/run.rs"]
mod run;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// The command line.
#[derive(Parser, Debug)]
#[command(about = "canaryd at N rollouts: CPU, queries, memory, latency")]
pub struct Opts {
    /// Rollout counts, one run each (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "100")]
    pub n: Vec<usize>,
    /// The daemon binary (default: this build's).
    #[arg(long)]
    pub canaryd: Option<PathBuf>,
    /// The measurement window, after a warm-up of two intervals.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Every rollout's `analysis.interval`.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// The row's name in the table (e.g. the commit).
    #[arg(long)]
    pub label: Option<String>,
    /// Seconds of each `wrk` run.
    #[arg(long, default_value_t = 10)]
    pub wrk_seconds: u64,
    /// The CI form: N = 50, about 40 s, exits 1 unless every rollout was
    /// measured and decided on.
    #[arg(long)]
    pub short: bool,
    /// Give up on an N after this long (its processes stopped, the run
    /// reported as failed with how far it got).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub limit: Option<Duration>,
    /// How long every rollout's first step lasts. At its end every rollout
    /// is promoted in the same tick: a burst worth measuring on its own
    /// (e.g. `--first-step 3m --duration 5m`).
    #[arg(long, default_value = "60m", value_parser = humantime::parse_duration)]
    pub first_step: Duration,
    /// `cargo bench` passes `--bench`; ignored.
    #[arg(long, hide = true)]
    pub bench: bool,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut opts = Opts::parse();
    if opts.short {
        opts.n = vec![50];
        opts.duration = Duration::from_secs(20);
        opts.wrk_seconds = 2;
    }
    let binary = opts
        .canaryd
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_canaryd")));
    let label = opts
        .label
        .clone()
        .unwrap_or_else(|| binary.display().to_string());
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/scale");
    let mut failed = false;
    println!("{}", report::header());
    for &n in &opts.n {
        let limit = opts.limit.unwrap_or(Duration::MAX);
        // A signal or the limit drops the run, and with it every process.
        let outcome = tokio::select! {
            r = tokio::time::timeout(limit, run::run(&opts, &binary, &label, n)) => {
                r.unwrap_or_else(|_| Err(format!("stopped after the limit of {limit:?}")))
            }
            _ = signalled() => {
                eprintln!("N = {n}: stopped by a signal");
                std::process::exit(1);
            }
        };
        match outcome {
            Ok(row) => {
                if let Err(e) = row.record(&out) {
                    eprintln!("cannot record the results: {e}");
                }
                if opts.short && (row.decided < n || row.measured < n || row.listed < n) {
                    eprintln!(
                        "short run failed: {} listed, {} decided on, {} measured, of {n}",
                        row.listed, row.decided, row.measured
                    );
                    failed = true;
                }
            }
            Err(e) => {
                eprintln!("N = {n}: {e}");
                failed = true;
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}

/// SIGINT or SIGTERM.
async fn signalled() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
