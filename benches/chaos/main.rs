//! The chaos runner: real rollouts (`canaryd run` as a process, a real
//! Prometheus, sample apps, the built-in router; HAProxy for its scenario)
//! through faults, each scenario bounded in time, with its invariants checked
//! and printed as a table: scenario → invariant → held / broken, and the
//! numbers. Exits 1 when any invariant broke.
//!
//! `cargo bench --profile dev --bench chaos -- [--short] [--seed N] [scenario…]`
//! (scenarios: sigkill, prometheus, canary, haproxy, disk, idle, files; all
//! by default). `--short` is the CI form (3 kills instead of 20, shorter
//! steps and outages). Needs `prometheus`, `haproxy` and `prlimit`.

#[path = "../../tests/harness/mod.rs"]
mod harness;

mod canary;
mod checks;
mod disk;
mod files;
mod haproxy;
mod idle;
mod kill;
mod probe;
mod prometheus;
mod proxy;
mod report;
mod rig;

use std::time::Instant;

/// The command line.
pub struct Opts {
    /// The CI form: fewer kills, shorter steps and outages.
    pub short: bool,
}

/// A small deterministic generator (SplitMix64): the seed is printed, so a
/// run's random instants can be replayed with `--seed`.
pub struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }
}

const SCENARIOS: [&str; 7] = [
    "sigkill",
    "prometheus",
    "canary",
    "haproxy",
    "disk",
    "idle",
    "files",
];

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let short = args.iter().any(|a| a == "--short");
    let seed = args
        .iter()
        .position(|a| a == "--seed")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    let mut chosen: Vec<&str> = SCENARIOS
        .iter()
        .copied()
        .filter(|s| args.iter().any(|a| a == s))
        .collect();
    if chosen.is_empty() {
        chosen = SCENARIOS.to_vec();
    }
    let unknown: Vec<&String> = args
        .iter()
        .filter(|a| !a.starts_with("--") && a.parse::<u64>().is_err())
        .filter(|a| !SCENARIOS.contains(&a.as_str()))
        .collect();
    if !unknown.is_empty() {
        eprintln!("unknown scenarios {unknown:?}; known: {SCENARIOS:?}");
        std::process::exit(2);
    }
    let opts = Opts { short };
    let mut rng = Rng(seed);
    println!(
        "chaos: {} form, seed {seed}, scenarios {chosen:?}",
        if short { "short" } else { "long" }
    );
    let started = Instant::now();
    let mut rows = Vec::new();
    for name in chosen {
        println!("== {name}");
        let t = Instant::now();
        let r = match name {
            "sigkill" => kill::run(&opts, &mut rng).await,
            "prometheus" => prometheus::run(&opts).await,
            "canary" => canary::run(&opts).await,
            "haproxy" => haproxy::run(&opts).await,
            "disk" => disk::run(&opts).await,
            "idle" => idle::run(&opts).await,
            _ => files::run(&opts).await,
        };
        println!("   ({name}: {:.0}s)", t.elapsed().as_secs_f64());
        rows.extend(r.rows);
    }
    report::print(&rows);
    println!("total {:.0}s", started.elapsed().as_secs_f64());
    if rows.iter().any(|r| !r.held) {
        std::process::exit(1);
    }
}
